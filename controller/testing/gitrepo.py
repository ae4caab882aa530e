"""Real git repositories for tests, benchmarks and the demo, written with pygit2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pygit2

AUTHOR = pygit2.Signature("flowpin demo", "demo@flowpin.dev")


def commit_all(repo: pygit2.Repository, message: str, author: pygit2.Signature = AUTHOR) -> str:
    """Stage every change in the work tree and commit it on HEAD's branch; returns the id."""
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    parents = [] if repo.head_is_unborn else [repo.head.target]
    oid = repo.create_commit("HEAD", author, author, message, tree, parents)
    return str(oid)


def repo_from_directory(source: Path, destination: Path, message: str) -> pygit2.Repository:
    """A new repository on branch `main` whose first commit holds a copy of `source`."""
    shutil.copytree(source, destination, dirs_exist_ok=True)
    repo = pygit2.init_repository(str(destination), initial_head="main")
    commit_all(repo, message)
    return repo

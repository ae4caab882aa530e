"""Writing a commit on a new branch without touching the work tree or the checked-out
branch: what `flowpin promote` and `flowpin rollback --git` hand to a pull request."""

from __future__ import annotations

import pygit2

from controller.git.history import GitError


def signature(repo: pygit2.Repository) -> pygit2.Signature:
    try:
        return repo.default_signature
    except (KeyError, pygit2.GitError):
        return pygit2.Signature("flowpin", "flowpin@flowpin.dev")


def commit_on_new_branch(
    repo: pygit2.Repository, path: str, content: bytes, branch: str, message: str
) -> str:
    """Commit `path` (relative to the repository root) with `content` on top of HEAD, as the
    new branch `branch`. Refuses when the branch exists, so nothing is overwritten."""
    if branch in repo.branches.local:
        raise GitError(f"branch {branch} already exists; delete it or pick another version")
    head = repo.head.peel(pygit2.Commit)
    tree = _replace(repo, head.tree, path.split("/"), repo.create_blob(content))
    author = signature(repo)
    commit = repo.create_commit(None, author, author, message, tree, [head.id])
    created = repo[commit]
    assert isinstance(created, pygit2.Commit)
    repo.branches.local.create(branch, created)
    return str(commit)


def _replace(
    repo: pygit2.Repository, tree: pygit2.Tree | None, parts: list[str], blob: pygit2.Oid
) -> pygit2.Oid:
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    name = parts[0]
    if len(parts) == 1:
        builder.insert(name, blob, pygit2.enums.FileMode.BLOB)
    else:
        existing = tree[name] if tree is not None and name in tree else None
        subtree = existing if isinstance(existing, pygit2.Tree) else None
        builder.insert(name, _replace(repo, subtree, parts[1:], blob), pygit2.enums.FileMode.TREE)
    return builder.write()

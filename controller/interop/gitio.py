"""The git side of export and import (pygit2): locate the workflow repository, read the
versions history knows, and commit imported files on a new branch.

Imports never touch the working tree or the checked-out branch: files go straight into the
object database as a chain of commits on top of HEAD, and a new branch points at the last
one (as `flowpin promote` does), ready to push for a pull request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pygit2

from controller.git.commits import signature
from controller.git.history import (
    GitError,
    blob_data,
    manifest_blobs,
    open_repository,
    resolve_commit,
    walk,
)
from controller.git.worktree import find_root
from controller.model.semver import parse_version
from controller.model.versions import VersionIndex, VersionRecord


@dataclass
class Source:
    """A workflow repository as of HEAD."""

    repo: pygit2.Repository
    root: Path  # the directory holding workflows/ and environments/
    prefix: str  # root relative to the repository's top ("" at the top)
    head: pygit2.Commit | None  # None in a repository without commits

    def full(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path


def open_source(path: Path) -> Source:
    """The repository that holds `path`, the way `flowpin versions` finds it."""
    root = find_root(path.resolve())
    repo = open_repository(str(root))
    if repo.is_bare or repo.workdir is None:
        raise GitError(f"{root} is a bare repository; give a clone with a working tree")
    prefix = root.relative_to(Path(repo.workdir).resolve()).as_posix()
    head: pygit2.Commit | None
    try:
        head = None if repo.head_is_unborn else resolve_commit(repo, "HEAD")
    except GitError:
        head = None
    return Source(repo, root, "" if prefix == "." else prefix, head)


def history(source: Source) -> VersionIndex:
    if source.head is None:
        return VersionIndex()
    return walk(source.repo, source.head, source.prefix).index


def newest(records: Mapping[str, VersionRecord]) -> str:
    return max(records, key=parse_version)


def version_content(source: Source, record: VersionRecord) -> bytes:
    """The file of a version as committed where that version first appeared."""
    commit = resolve_commit(source.repo, record.commit.id)
    try:
        entry = commit.tree[source.full(record.path)]
    except KeyError as error:
        raise GitError(f"{record.path} is missing from commit {record.commit.id[:12]}") from error
    return blob_data(source.repo, str(entry.id))


def head_files(source: Source) -> dict[str, bytes]:
    """Every manifest at HEAD: path relative to the root → content."""
    if source.head is None:
        return {}
    blobs = manifest_blobs(source.repo, source.head.tree, source.prefix)
    return {path: blob_data(source.repo, blob) for path, blob in blobs.items()}


def branch_exists(source: Source, branch: str) -> bool:
    return branch in source.repo.branches.local


MAX_BRANCH_BYTES = 200  # git stores a branch as a file (plus `.lock`): stay clear of 255


def branch_name_problem(branch: str) -> str | None:
    """Why git would refuse `branch` as a new branch's name (None: it would not)."""
    shown = repr(branch) if len(branch) <= 60 else f"{branch[:40]!r}… ({len(branch)} characters)"
    if len(branch.encode("utf-8", "surrogateescape")) > MAX_BRANCH_BYTES:
        return f"{shown} is longer than {MAX_BRANCH_BYTES} bytes"
    parts = branch.split("/")
    odd = sorted(set(branch) & set("~^:?*[\\"))
    why = (
        "it is empty"
        if not branch
        else "HEAD is reserved"
        if branch == "HEAD"
        else "@ is reserved"
        if branch == "@"
        else "it starts with `-` (it would read as an option)"
        if branch.startswith("-")
        else "it starts with `refs/`: give the branch's short name (`x`, not `refs/heads/x`)"
        if branch.startswith("refs/")
        else "it contains `..`"
        if ".." in branch
        else "it contains a space or a control character"
        if any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in branch)
        else f"it contains `{odd[0]}`"
        if odd
        else "it contains `@{`"
        if "@{" in branch
        else "it has an empty part (a leading, trailing or double `/`)"
        if "" in parts
        else "a part starts with `.`"
        if any(part.startswith(".") for part in parts)
        else "a part ends with `.lock`"
        if any(part.endswith(".lock") for part in parts)
        else "it ends with `.`"
        if branch.endswith(".")
        else None
    )
    if why is None:
        try:
            valid = pygit2.reference_is_valid_name(f"refs/heads/{branch}")
        except (UnicodeError, ValueError):
            valid = False
        why = None if valid else "git refuses it"
    return f"{shown} is not a valid branch name: {why}" if why else None


def branch_clash(source: Source, branch: str) -> str | None:
    """Why `branch` cannot be created in this repository: it exists, or an existing branch
    is a folder or a file in its way (`a` blocks `a/b`)."""
    existing = source.repo.branches.local
    if branch in existing:
        return f"branch {branch} already exists; pass another --branch"
    for other in existing:
        if other.startswith(f"{branch}/") or branch.startswith(f"{other}/"):
            return f"branch {branch} cannot sit beside the existing branch {other}"
    return None


def commit_chain(
    source: Source, commits: Sequence[tuple[str, Mapping[str, bytes]]], branch: str
) -> list[str]:
    """Commit each (message, {path relative to root: content}) on top of the previous one,
    starting at HEAD, and create `branch` at the last. Refuses an existing branch."""
    repo = source.repo
    if branch in repo.branches.local:
        raise GitError(f"branch {branch} already exists; pass --branch with another name")
    author = signature(repo)
    parent = source.head
    tree = parent.tree if parent is not None else None
    ids: list[str] = []
    for message, files in commits:
        changes: dict[str, object] = {}
        for path, content in files.items():
            *folders, name = source.full(path).split("/")
            level = changes
            for folder in folders:
                nested = level.setdefault(folder, {})
                assert isinstance(nested, dict)
                level = nested
            level[name] = repo.create_blob(content)
        written = repo[_write_tree(repo, tree, changes)]
        assert isinstance(written, pygit2.Tree)
        tree = written
        parents = [parent.id] if parent is not None else []
        oid = repo.create_commit(None, author, author, message, tree.id, parents)
        created = repo[oid]
        assert isinstance(created, pygit2.Commit)
        parent = created
        ids.append(str(oid))
    if parent is not None and ids:
        repo.branches.local.create(branch, parent)
    return ids


def _write_tree(
    repo: pygit2.Repository, tree: pygit2.Tree | None, changes: Mapping[str, object]
) -> pygit2.Oid:
    """`tree` with the blobs in `changes` (nested by folder) written in: one TreeBuilder per
    folder touched, however many files a commit has."""
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    for name, value in changes.items():
        if isinstance(value, Mapping):
            existing = tree[name] if tree is not None and name in tree else None
            subtree = existing if isinstance(existing, pygit2.Tree) else None
            builder.insert(name, _write_tree(repo, subtree, value), pygit2.enums.FileMode.TREE)
        else:
            assert isinstance(value, pygit2.Oid)
            builder.insert(name, value, pygit2.enums.FileMode.BLOB)
    return builder.write()

"""Reading manifests from git with pygit2: first-parent walks and per-commit changes.

Only `workflows/` and `environments/` (any depth, `.yaml`/`.yml`) under the source's path are
read. A commit whose manifest subtrees have the same tree ids as its parent's is skipped
without a diff, so walking a long history costs little more than listing it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pygit2

from controller.model.versions import CommitMeta, VersionIndex

MANIFEST_DIRS = ("workflows", "environments")
SUFFIXES = (".yaml", ".yml")


class GitError(Exception):
    """A repository, ref or path that cannot be read; the message says which."""


def open_repository(path: str) -> pygit2.Repository:
    found = pygit2.discover_repository(path)
    if found is None:
        raise GitError(f"{path} is not inside a git repository")
    return pygit2.Repository(found)


def resolve_commit(repo: pygit2.Repository, ref: str) -> pygit2.Commit:
    try:
        obj = repo.revparse_single(ref)
    except (KeyError, pygit2.GitError, ValueError) as error:
        raise GitError(f"unknown git ref {ref!r}") from error
    commit = obj.peel(pygit2.Commit)
    assert isinstance(commit, pygit2.Commit)
    return commit


def commit_meta(commit: pygit2.Commit) -> CommitMeta:
    offset = datetime.timedelta(minutes=commit.commit_time_offset)
    moment = datetime.datetime.fromtimestamp(commit.commit_time, datetime.timezone(offset))
    author = commit.author
    return CommitMeta(
        id=str(commit.id),
        author=f"{author.name} <{author.email}>",
        time=moment,
        message=(commit.message or "").strip().splitlines()[0] if commit.message.strip() else "",
    )


def first_parent_chain(
    repo: pygit2.Repository, tip: pygit2.Commit, stop_at: str | None = None
) -> tuple[list[pygit2.Commit], bool]:
    """Commits from the root (or just after `stop_at`) up to `tip`, oldest first, and whether
    `stop_at` was found (False means history was rewritten under it)."""
    chain: list[pygit2.Commit] = []
    commit: pygit2.Commit | None = tip
    while commit is not None:
        if stop_at is not None and str(commit.id) == stop_at:
            chain.reverse()
            return chain, True
        chain.append(commit)
        commit = commit.parents[0] if commit.parents else None
    chain.reverse()
    return chain, stop_at is None


def _subtree(tree: pygit2.Tree | None, path: str) -> pygit2.Tree | None:
    if tree is None:
        return None
    if not path:
        return tree
    try:
        entry = tree[path]
    except KeyError:
        return None
    obj = entry if isinstance(entry, pygit2.Tree) else None
    return obj


def _is_manifest(name: str) -> bool:
    return name.endswith(SUFFIXES)


def manifest_blobs(repo: pygit2.Repository, tree: pygit2.Tree, root: str = "") -> dict[str, str]:
    """Every manifest file in `tree` under `root`: path (relative to root) → blob id."""
    base = _subtree(tree, root.strip("/"))
    found: dict[str, str] = {}
    if base is None:
        return found
    for directory in MANIFEST_DIRS:
        sub = _subtree(base, directory)
        if sub is None:
            continue
        todo: list[tuple[pygit2.Tree, str]] = [(sub, directory)]
        while todo:
            current, prefix = todo.pop()
            for entry in current:
                name = entry.name or ""
                path = f"{prefix}/{name}"
                if isinstance(entry, pygit2.Tree):
                    todo.append((entry, path))
                elif entry.type_str == "blob" and _is_manifest(name):
                    found[path] = str(entry.id)
    return found


def changed_manifests(
    repo: pygit2.Repository,
    commit: pygit2.Commit,
    parent: pygit2.Commit | None,
    root: str = "",
) -> dict[str, str | None]:
    """Manifest files this commit changed relative to `parent`: path → new blob id, or None
    when deleted."""
    root = root.strip("/")
    new_base = _subtree(commit.tree, root)
    old_base = _subtree(parent.tree, root) if parent is not None else None
    changes: dict[str, str | None] = {}
    for directory in MANIFEST_DIRS:
        new = _subtree(new_base, directory)
        old = _subtree(old_base, directory)
        if new is None and old is None:
            continue
        if new is not None and old is not None and new.id == old.id:
            continue
        if old is None or new is None:
            side = commit if new is not None else parent
            assert side is not None
            for path, blob in manifest_blobs(repo, side.tree, root).items():
                if path.startswith(directory + "/"):
                    changes[path] = blob if new is not None else None
            continue
        diff = old.diff_to_tree(new)
        for delta in diff.deltas:
            if delta.status == pygit2.enums.DeltaStatus.DELETED:
                if _is_manifest(delta.old_file.path):
                    changes[f"{directory}/{delta.old_file.path}"] = None
            else:
                if delta.old_file.path != delta.new_file.path and _is_manifest(delta.old_file.path):
                    changes[f"{directory}/{delta.old_file.path}"] = None
                if _is_manifest(delta.new_file.path):
                    changes[f"{directory}/{delta.new_file.path}"] = str(delta.new_file.id)
    return changes


def blob_data(repo: pygit2.Repository, blob_id: str) -> bytes:
    blob = repo[blob_id]
    assert isinstance(blob, pygit2.Blob)
    return blob.data


def read_blobs(repo: pygit2.Repository, ids: Mapping[str, str | None]) -> dict[str, bytes | None]:
    return {
        path: (blob_data(repo, blob_id) if blob_id is not None else None)
        for path, blob_id in ids.items()
    }


@dataclass
class WalkResult:
    index: VersionIndex
    commits: int  # commits walked (new ones only)
    rewritten: bool  # the previous tip is no longer in the first-parent history


def walk(
    repo: pygit2.Repository,
    tip: pygit2.Commit,
    root: str = "",
    index: VersionIndex | None = None,
) -> WalkResult:
    """Fold the first-parent history into `index`, from its last commit (incremental) or from
    the root. When history was rewritten, the whole chain is folded again on top of what the
    index holds: versions are never removed."""
    index = index or VersionIndex()
    chain, found = first_parent_chain(repo, tip, index.last_commit)
    rewritten = index.last_commit is not None and not found
    if rewritten:
        # What the files say now comes from the new history alone; versions stay.
        index.files.clear()
        index.environments.clear()
    previous: pygit2.Commit | None = None
    if chain and chain[0].parents and not rewritten:
        previous = chain[0].parents[0]
    for commit in chain:
        changes = changed_manifests(repo, commit, previous, root)
        if changes:
            index.apply(commit_meta(commit), read_blobs(repo, changes))
        else:
            index.last_commit = str(commit.id)
        previous = commit
    return WalkResult(index, len(chain), rewritten)


class GitHistory:
    """`validate.History` over a repository ref, walked once on first use."""

    def __init__(self, repo: pygit2.Repository, ref: str = "HEAD", root: str = "") -> None:
        self.repo = repo
        self.ref = ref
        self.root = root
        self._index: VersionIndex | None = None

    @property
    def index(self) -> VersionIndex:
        if self._index is None:
            try:
                tip = resolve_commit(self.repo, self.ref)
            except GitError:
                self._index = VersionIndex()  # an empty repository has no history yet
            else:
                self._index = walk(self.repo, tip, self.root).index
        return self._index

    def versions(self, workflow: str) -> Mapping[str, Mapping[str, Any]]:
        return {
            version: record.spec
            for version, record in self.index.versions.get(workflow, {}).items()
        }


class PathHistory:
    """`validate.History` that follows one file per workflow back through first-parent
    history, reading a blob only when its id changes, and only as far as a question needs:
    `has_version` stops at the first match and reads just `spec.version`; `versions` (for
    migration checks) reads the whole history of that one file. `GitHistory` instead folds
    every file of every commit once. A workflow whose file moved is followed only as far
    back as its current path exists."""

    def __init__(
        self, repo: pygit2.Repository, tip: pygit2.Commit, paths: Mapping[str, str], root: str = ""
    ) -> None:
        self.repo = repo
        self.tip = tip
        self.paths = paths  # workflow name → file path relative to root
        self.prefix = f"{root.strip('/')}/" if root.strip("/") else ""
        self._seen: dict[str, dict[str, str]] = {}  # workflow → version → blob id (oldest)
        self._walks: dict[str, Iterator[tuple[str, str]]] = {}
        self._specs: dict[str, dict[str, Mapping[str, Any]]] = {}

    def has_version(self, workflow: str, version: str) -> bool:
        seen = self._seen.setdefault(workflow, {})
        if version in seen:
            return True
        walk = self._walks.setdefault(workflow, self._versions_backwards(workflow))
        for found, blob_id in walk:
            seen[found] = blob_id  # walking backwards: the oldest blob of a version wins
            if found == version:
                return True
        return version in seen

    def versions(self, workflow: str) -> Mapping[str, Mapping[str, Any]]:
        if workflow not in self._specs:
            self.has_version(workflow, "")  # walk to the end
            specs: dict[str, Mapping[str, Any]] = {}
            for version, blob_id in self._seen.get(workflow, {}).items():
                spec = _quick_spec(blob_data(self.repo, blob_id))
                if spec is not None:
                    specs[version] = spec
            self._specs[workflow] = specs
        return self._specs[workflow]

    def _versions_backwards(self, workflow: str) -> Iterator[tuple[str, str]]:
        path = self.paths.get(workflow)
        if path is None:
            return
        full = self.prefix + path
        last_blob: str | None = None
        commit: pygit2.Commit | None = self.tip
        while commit is not None:
            try:
                blob_id = str(commit.tree[full].id)
            except KeyError:
                return
            if blob_id != last_blob:
                last_blob = blob_id
                version = _quick_version(blob_data(self.repo, blob_id))
                if version is not None:
                    yield version, blob_id
            commit = commit.parents[0] if commit.parents else None


def _quick_version(data: bytes) -> str | None:
    """`spec.version` of a historical file: read from the lines for the usual block layout
    (`version:` at the indentation of spec's children), parsed otherwise. Reading every
    version of a long history must not cost a YAML parse each."""
    lines = data.split(b"\n")
    try:
        start = lines.index(b"spec:") + 1
    except ValueError:
        start = -1
    indent: int | None = None
    for line in lines[start:] if start > 0 else []:
        stripped = line.lstrip(b" ")
        if not stripped.strip() or stripped.startswith(b"#"):
            continue
        depth = len(line) - len(stripped)
        if indent is None:
            indent = depth
        if depth < indent or depth == 0:
            break
        if depth == indent and stripped.startswith(b"version:"):
            value = stripped[len(b"version:") :].split(b"#")[0].strip().strip(b"\"'")
            if value:
                return value.decode("utf-8", "replace")
            break
    spec = _quick_spec(data)
    version = spec.get("version") if spec is not None else None
    return version if isinstance(version, str) else None


def _quick_spec(data: bytes) -> dict[str, Any] | None:
    """The spec of a historical file, leniently: history is context, not under review."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        document = yaml.load(data, Loader=loader)
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("spec"), dict):
        return None
    spec: dict[str, Any] = document["spec"]
    return spec

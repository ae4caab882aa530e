"""Reading manifests from git with pygit2: first-parent walks and per-commit changes.

Only `workflows/` and `environments/` (any depth, `.yaml`/`.yml`) under the source's path are
read. A commit whose manifest subtrees have the same tree ids as its parent's is skipped
without a diff, so walking a long history costs little more than listing it.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pygit2

from controller.model.findings import Finding
from controller.model.history_rules import PastVersion
from controller.model.validate import Manifest, check_workflow, parse_manifest
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
        if repo.head_is_unborn:
            raise GitError(
                f"{repo.workdir or repo.path} has no commit yet: commit your manifests first "
                f"(`{ref}` names nothing)"
            ) from error
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
        # What the files say now comes from the new history alone; versions stay, orphaned
        # until the new history shows them again.
        index.files.clear()
        index.environments.clear()
        index.orphan_all()
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


class WorkflowHistory:
    """`validate.History` and `history_rules.PastVersions` over the first-parent history of
    `tip`: the one notion of a workflow's history that pins, migrations, `--against` and
    `flowpin versions` share. A workflow is its file, found by `metadata.name`: the walk
    follows the file's path back, reading a blob only when its id changes, and only
    `metadata.name` and `spec.version` from its first lines; where the path ends (the file
    was added there), the walk looks for the file the history continues from — one that the
    adding commit, or an older one, removed while it held the same name (a `git mv`, or a
    removal and a later re-add). Walks are lazy and stop at their answer: `has_version` at
    the newest match."""

    def __init__(
        self,
        repo: pygit2.Repository,
        tip: pygit2.Commit,
        paths: Mapping[str, str] | None = None,
        root: str = "",
    ) -> None:
        self.repo = repo
        self.tip = tip
        self.paths = dict(paths or {})  # workflow → where to look first at the tip
        self.root = root.strip("/")
        # workflow → version → its files, newest first: (blob id, oldest commit holding it)
        self._found: dict[str, dict[str, list[tuple[str, pygit2.Commit]]]] = {}
        self._walks: dict[str, Iterator[tuple[str, str]]] = {}
        self._done: set[str] = set()
        self._identity: dict[pygit2.Oid, tuple[str | None, str | None]] = {}
        self._removed: dict[pygit2.Oid, list[tuple[str, pygit2.Oid]]] = {}
        self._parsed: dict[str, Manifest | None] = {}

    # ---------------------------------------------------------------- walking

    def _workflows(self, commit: pygit2.Commit) -> pygit2.Tree | None:
        return _subtree(_subtree(commit.tree, self.root), "workflows")

    def _name_of(self, oid: pygit2.Oid) -> tuple[str | None, str | None]:
        if oid not in self._identity:
            blob = self.repo[oid]
            assert isinstance(blob, pygit2.Blob)
            self._identity[oid] = _quick_identity(blob.data)
        return self._identity[oid]

    def _blob_at(self, commit: pygit2.Commit, path: str) -> pygit2.Oid | None:
        """The blob at `workflows/<path>`: one lookup, the cost of a step of a walk."""
        try:
            entry = commit.tree[f"{self.root}/workflows/{path}".lstrip("/")]
        except KeyError:
            return None
        return entry.id if entry.type_str == "blob" else None

    def _removed_by(self, commit: pygit2.Commit) -> list[tuple[str, pygit2.Oid]]:
        """Workflow files the first parent of `commit` holds and `commit` does not."""
        if commit.id not in self._removed:
            removed: list[tuple[str, pygit2.Oid]] = []
            if commit.parents:
                new = self._workflows(commit)
                old = self._workflows(commit.parents[0])
                if old is not None and (new is None or new.id != old.id):
                    if new is None:
                        for path, entry in _walk_tree(old):
                            removed.append((path, entry.id))
                    else:
                        for delta in new.diff_to_tree(old).deltas:  # from `commit` to parent
                            if delta.status == pygit2.enums.DeltaStatus.ADDED:
                                removed.append((delta.new_file.path, delta.new_file.id))
            self._removed[commit.id] = [(p, o) for p, o in removed if _is_manifest(p)]
        return self._removed[commit.id]

    def _continued(
        self, workflow: str, commit: pygit2.Commit | None
    ) -> tuple[pygit2.Commit, str] | None:
        """Where the history of `workflow` goes on below `commit`, which lacks its file: the
        newest older commit holding a file of that name that a later commit removed."""
        while commit is not None and commit.parents:
            for path, oid in self._removed_by(commit):
                if self._name_of(oid)[0] == workflow:
                    return commit.parents[0], path
            commit = commit.parents[0]
        return None

    def _at_tip(self, workflow: str) -> str | None:
        path = self.paths.get(workflow)
        prefix = "workflows/"
        if path is not None and path.startswith(prefix):
            oid = self._blob_at(self.tip, path[len(prefix) :])
            if oid is not None and self._name_of(oid)[0] == workflow:
                return path[len(prefix) :]
        tree = self._workflows(self.tip)
        for found, entry in _walk_tree(tree) if tree is not None else []:
            if _is_manifest(found) and self._name_of(entry.id)[0] == workflow:
                return found
        return None

    def _walk(self, workflow: str) -> Iterator[tuple[str, str]]:
        """(workflow, version) of each file of `workflow`, newest first."""
        versions = self._found.setdefault(workflow, {})
        path = self._at_tip(workflow)
        place = (self.tip, path) if path is not None else self._continued(workflow, self.tip)
        while place is not None:
            commit, path = place
            last: pygit2.Oid | None = None
            version = ""
            newer = commit
            current: pygit2.Commit | None = commit
            while current is not None:
                oid = self._blob_at(current, path)
                if oid is None or (oid != last and self._name_of(oid)[0] != workflow):
                    break
                if oid == last:
                    files = versions[version]
                    files[-1] = (files[-1][0], current)  # added by an older commit
                else:
                    last = oid
                    version = self._name_of(oid)[1] or ""
                    versions.setdefault(version, []).append((str(oid), current))
                    yield workflow, version
                newer = current
                current = current.parents[0] if current.parents else None
            place = self._continued(workflow, newer) if current is not None else None
        self._done.add(workflow)

    def _advance(self, workflow: str, version: str | None) -> None:
        """Walk until `version` turns up (None: to the end)."""
        walk = self._walks.setdefault(workflow, self._walk(workflow))
        for found in walk:
            if version is not None and found[1] == version:
                return

    def _manifest(self, workflow: str, blob_id: str) -> Manifest | None:
        """The file as a schema-valid Workflow of that name, or None: like `VersionIndex`,
        an invalid file is no version."""
        if blob_id not in self._parsed:
            manifest, _ = parse_manifest(blob_data(self.repo, blob_id), "history")
            valid = manifest is not None and manifest.kind == "Workflow"
            self._parsed[blob_id] = manifest if valid else None
        manifest = self._parsed[blob_id]
        return manifest if manifest is not None and manifest.name == workflow else None

    def _first(self, workflow: str, version: str) -> tuple[Manifest, pygit2.Commit] | None:
        """The oldest valid file of a version, which is its content (versions are immutable)."""
        for blob_id, commit in reversed(self._found.get(workflow, {}).get(version, [])):
            manifest = self._manifest(workflow, blob_id)
            if manifest is not None:
                return manifest, commit
        return None

    def has_version(self, workflow: str, version: str) -> bool:
        checked = 0
        while True:
            files = self._found.get(workflow, {}).get(version, [])
            for blob_id, _ in files[checked:]:
                if self._manifest(workflow, blob_id) is not None:
                    return True
            checked = len(files)
            if workflow in self._done:
                return False
            self._advance(workflow, version)

    def version_names(self, workflow: str) -> list[str]:
        """Every version of `workflow` in history (named in a file; validity unchecked)."""
        self._advance(workflow, None)
        return list(self._found.get(workflow, {}))

    def past_version(self, workflow: str, version: str) -> PastVersion | None:
        self._advance(workflow, None)  # the oldest file of the version is its content
        first = self._first(workflow, version)
        if first is None:
            return None
        return PastVersion(first[0].spec, str(first[1].id))

    def versions(self, workflow: str) -> Mapping[str, Mapping[str, Any]]:
        self._advance(workflow, None)
        specs: dict[str, Mapping[str, Any]] = {}
        for version in self._found.get(workflow, {}):
            first = self._first(workflow, version)
            if first is not None:
                specs[version] = first[0].spec
        return specs

    def records(self, workflow: str) -> list[tuple[str, pygit2.Commit, list[Finding]]]:
        """Version, the commit where it first appeared and its semantic findings, oldest
        first: what `flowpin versions` lists."""
        self._advance(workflow, None)
        listed = []
        for version in reversed(self._found.get(workflow, {})):  # found newest first
            first = self._first(workflow, version)
            if first is not None:
                listed.append((version, first[1], check_workflow(first[0])))
        return sorted(listed, key=lambda item: item[1].commit_time)


def _walk_tree(tree: pygit2.Tree) -> Iterator[tuple[str, pygit2.Object]]:
    """(path relative to `tree`, blob) of every blob under `tree`."""
    todo: list[tuple[pygit2.Tree, str]] = [(tree, "")]
    while todo:
        current, prefix = todo.pop()
        for entry in current:
            if isinstance(entry, pygit2.Tree):
                todo.append((entry, f"{prefix}{entry.name}/"))
            elif entry.type_str == "blob":
                yield f"{prefix}{entry.name}", entry


def _quick_identity(data: bytes) -> tuple[str | None, str | None]:
    """`metadata.name` and `spec.version` of a historical file, read from the lines of the
    usual block layout (near the top, so only the first lines are split) and parsed
    otherwise."""
    lines = data.split(b"\n", 64)[:64]  # the 65th item would be the rest of the file
    name = _quick_field(lines, b"metadata:", b"name:")
    if name is None:
        match = re.search(rb"^metadata:\s*\{\s*name:\s*([^,}\s]+)", data, re.MULTILINE)
        name = match.group(1).strip(b"\"'").decode("utf-8", "replace") if match else None
    version = _quick_field(lines, b"spec:", b"version:")
    if name is None or version is None:
        document = _quick_document(data)
        metadata = document.get("metadata") if document else None
        spec = document.get("spec") if document else None
        if name is None and isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
            name = metadata["name"]
        if version is None and isinstance(spec, dict) and isinstance(spec.get("version"), str):
            version = spec["version"]
    return name, version


def _quick_field(lines: list[bytes], parent: bytes, key: bytes) -> str | None:
    """A scalar child of a top-level block mapping, without a YAML parse."""
    try:
        start = lines.index(parent) + 1
    except ValueError:
        return None
    indent: int | None = None
    for line in lines[start:]:
        stripped = line.lstrip(b" ")
        if not stripped.strip() or stripped.startswith(b"#"):
            continue
        depth = len(line) - len(stripped)
        if indent is None:
            indent = depth
        if depth < indent or depth == 0:
            return None
        if depth == indent and stripped.startswith(key):
            value = stripped[len(key) :].split(b"#")[0].strip().strip(b"\"'")
            return value.decode("utf-8", "replace") if value else None
    return None


def _quick_document(data: bytes) -> dict[str, Any] | None:
    """A historical file, leniently: history is context, not under review."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        document = yaml.load(data, Loader=loader)
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None

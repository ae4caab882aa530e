"""Reviewing a working tree: what `flowpin validate` (and `flowpin plan`) compute.

Gathers the inputs — manifest files from disk, the base ref's files from git, history
lookups — and hands them to the pure rules in `controller.model`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2

from controller.git.history import (
    GitError,
    WorkflowHistory,
    blob_data,
    manifest_blobs,
    open_repository,
    resolve_commit,
)
from controller.git.worktree import find_root, read_manifest, scan
from controller.model.findings import Finding
from controller.model.history_rules import BaseFile, check_against
from controller.model.plan import EnvironmentState, Plan, build_plan
from controller.model.validate import (
    History,
    Manifest,
    NoHistory,
    check_files,
    check_repository,
)


@dataclass
class Review:
    root: Path
    manifests: list[Manifest]
    findings: list[Finding]
    base_files: dict[str, BaseFile] = field(default_factory=dict)
    """Base-ref files whose content differs from the working tree (or that it lacks)."""
    base_paths: set[str] = field(default_factory=set)
    """Every manifest path at the base ref."""
    history: History = field(default_factory=NoHistory)
    """Versions in history as of HEAD."""
    base: str = ""
    """What the change was compared with: `REF (merge base abc123456789)`."""


def _repository(root: Path) -> tuple[pygit2.Repository, str] | None:
    try:
        repo = open_repository(str(root))
    except GitError:
        return None
    workdir = Path(repo.workdir or root).resolve()
    try:
        relative = root.resolve().relative_to(workdir).as_posix()
    except ValueError:
        return None
    return repo, "" if relative == "." else relative


class NothingToReview(Exception):
    """The paths hold no manifests: almost always a wrong path in a CI configuration."""


def review(paths: Sequence[Path], against: str | None = None) -> list[Review]:
    """Validate the manifests of every repository root that holds one of `paths` (the
    directory with workflows/ or environments/); with `against`, also the history rules
    relative to that ref. Findings are limited to the files named in `paths` when those are
    files (a pre-commit hook passes the changed files), and name files relative to the
    current directory, as CI annotations need."""
    targets = [p.resolve() for p in (paths or [Path(".")])]
    by_root: dict[Path, list[Path]] = {}
    for target in targets:
        by_root.setdefault(find_root(target), []).append(target)
    reviews = [_review_root(root, chosen, against) for root, chosen in by_root.items()]
    if not any(r.manifests or r.findings for r in reviews):
        where = ", ".join(str(p) for p in (paths or [Path(".")]))
        raise NothingToReview(
            f"no manifests in {where}: expected workflows/ or environments/ with .yaml files"
        )
    return reviews


def display_path(root: Path, file: str) -> str:
    return os.path.relpath(root / file)


def _review_root(root: Path, targets: list[Path], against: str | None) -> Review:
    tree = scan(root)
    files = tree.files
    for target in targets:
        if target.is_file():
            files.setdefault(target.relative_to(root).as_posix(), read_manifest(target))
    located = _repository(root)
    history: History = NoHistory()
    tip: pygit2.Commit | None = None
    if located is not None:
        try:
            tip = resolve_commit(located[0], "HEAD")
        except GitError:
            tip = None  # no commit yet
    manifests, findings = check_files(files)
    findings = tree.findings + findings
    workflow_history: WorkflowHistory | None = None
    if located is not None and tip is not None:
        paths = {m.name: m.path for m in manifests if m.kind == "Workflow"}
        history = workflow_history = WorkflowHistory(located[0], tip, paths, located[1])
    if against is None:
        findings = sorted(findings + check_repository(manifests, history))
        result = Review(root, manifests, findings, history=history)
    else:
        if located is None:
            raise GitError(f"--against needs a git repository; {root} is not in one")
        repo, prefix = located
        base, described = merge_base(repo, tip, against)
        base_paths = set(manifest_blobs(repo, base.tree, prefix))
        base_files = _base_files(repo, base, prefix, files)
        changed = set(base_files) | (set(files) - base_paths)
        base_migrations = _base_fields(base_files, "Workflow", "migrations", [])
        unchanged_migrations = {
            m.name
            for m in manifests
            if m.kind == "Workflow"
            and m.name in base_migrations
            and base_migrations[m.name] == m.spec.get("migrations", [])
        }
        base_pins = _base_fields(base_files, "Environment", "pins", {})
        findings += check_repository(manifests, history, changed, unchanged_migrations, base_pins)
        findings += check_against(manifests, base_files, workflow_history, set(files) - base_paths)
        result = Review(
            root, manifests, sorted(findings), base_files, base_paths, history, described
        )
    chosen = {t.relative_to(root).as_posix() for t in targets if t.is_file()}
    if chosen:
        result.findings = [f for f in result.findings if f.file in chosen]
    return result


def merge_base(
    repo: pygit2.Repository, tip: pygit2.Commit | None, against: str
) -> tuple[pygit2.Commit, str]:
    """The commit a pull request from HEAD into `against` is compared with, as `git diff
    REF...HEAD` and GitHub do: their merge base, so that what REF gained since the branch
    forked is not taken for a change of the branch. Also how to name it."""
    shallow = (
        " This clone is shallow: fetch the whole history first (actions/checkout: fetch-depth: 0)."
        if repo.is_shallow
        else ""
    )
    try:
        ref = resolve_commit(repo, against)
    except GitError as error:
        raise GitError(f"{error}.{shallow}") from None
    if tip is None:
        return ref, against  # no commit yet: everything in the tree is the change
    found = repo.merge_base(tip.id, ref.id)
    if found is None:
        raise GitError(
            f"HEAD and {against} have no common history (no merge base); "
            f"compare with a ref the branch was made from.{shallow}"
        )
    base = repo[found]
    assert isinstance(base, pygit2.Commit)
    if base.id == ref.id:
        return base, f"{against} ({str(base.id)[:12]})"
    return base, f"{against} (merge base {str(base.id)[:12]})"


def _base_fields(
    base_files: Mapping[str, BaseFile], kind: str, field: str, absent: Any
) -> dict[str, Any]:
    """Name → `spec.<field>` (`absent` when unset) at the base, of the changed files of
    that kind."""
    found: dict[str, Any] = {}
    for base_file in base_files.values():
        manifest = base_file.manifest
        if manifest is not None and manifest.kind == kind:
            found[manifest.name] = manifest.spec.get(field, absent)
    return found


def _base_files(
    repo: pygit2.Repository, base: pygit2.Commit, prefix: str, head: dict[str, bytes]
) -> dict[str, BaseFile]:
    """The base ref's manifest files that differ from the working tree (by blob id), so
    that the cost follows the size of the change."""
    changed: dict[str, BaseFile] = {}
    for path, blob_id in manifest_blobs(repo, base.tree, prefix).items():
        content = head.get(path)
        if content is not None and str(pygit2.hash(content)) == blob_id:
            continue
        changed[path] = BaseFile(path, blob_data(repo, blob_id))
    return changed


def default_base(path: Path) -> tuple[str, str]:
    """The ref a plan compares with when none is given, and why: the pull request's base
    branch on GitHub Actions, else the current branch's upstream, else HEAD (the working
    tree's uncommitted changes)."""
    github = os.environ.get("GITHUB_BASE_REF")
    if github:
        return f"origin/{github}", "the pull request's base branch ($GITHUB_BASE_REF)"
    located = _repository(find_root(path.resolve()))
    if located is not None:
        repo = located[0]
        try:
            branch = None if repo.head_is_detached else repo.branches.local[repo.head.shorthand]
            upstream = branch.upstream if branch is not None else None
        except (KeyError, pygit2.GitError):
            upstream = None
        if upstream is not None:
            return upstream.shorthand, "the upstream of the current branch"
    return "HEAD", "no --against, $GITHUB_BASE_REF or upstream branch: uncommitted changes"


def plan(paths: Sequence[Path], against: str) -> tuple[Review, Plan]:
    """What merging the working tree into `against` (from their merge base) does to each
    environment."""
    reviews = review(paths, against)
    if len(reviews) > 1:
        raise NothingToReview("plan one repository at a time: the paths are in different ones")
    result = reviews[0]
    head_manifests = {m.path: m for m in result.manifests}
    base_manifests = {
        path: manifest
        for path, manifest in head_manifests.items()
        if path in result.base_paths and path not in result.base_files
    }
    for base_file in result.base_files.values():
        if base_file.manifest is not None:
            base_manifests[base_file.path] = base_file.manifest

    def state(manifests: Iterable[Manifest]) -> EnvironmentState:
        listed = list(manifests)
        return EnvironmentState(
            environments={m.name: m.spec for m in listed if m.kind == "Environment"},
            current_versions={m.name: m.spec["version"] for m in listed if m.kind == "Workflow"},
        )

    known: dict[tuple[str, str], Mapping[str, Any]] = {
        (m.name, m.spec["version"]): m.spec
        for m in [*base_manifests.values(), *head_manifests.values()]
        if m.kind == "Workflow"
    }

    def spec_of(workflow: str, version: str) -> Mapping[str, Any] | None:
        return known.get((workflow, version)) or result.history.versions(workflow).get(version)

    return result, build_plan(
        state(base_manifests.values()), state(head_manifests.values()), spec_of
    )

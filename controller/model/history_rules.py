"""The history rules of `flowpin validate --against REF`, as pure functions.

A changed workflow is compared with its version at the base (the merge base of HEAD and
REF): the same version with other content is not bumped, a lower one goes backwards. A
workflow the base lacks (new, or re-added after a removal) is looked up in history: an
existing version keeps its content and the version does not go below the newest. Versions
then increase across removals too, so a version above the base's is new without a look-up,
and the cost follows the change. The bump must be at least the change class (breaking →
major, feature → minor, fix → patch); a breaking change made of step changes that a
`migrations` entry maps for the base version counts as a feature. Before 1.0.0 everything
shifts down one place (breaking → minor, feature and fix → patch), as semver allows for
initial development.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controller.model.diff import (
    STEP_BREAKING_KINDS,
    WorkflowDiff,
    diff_specs,
    unmapped_breaking_changes,
)
from controller.model.findings import Finding
from controller.model.semver import Version, parse_version
from controller.model.validate import Manifest, parse_manifest
from controller.model.versions import digest_of

_RANK = {"none": 0, "patch": 1, "minor": 2, "major": 3}
_NEEDED = {"none": "none", "fix": "patch", "feature": "minor", "breaking": "major"}


@dataclass(frozen=True)
class BaseFile:
    """A manifest file as it is at the base ref."""

    path: str
    content: bytes

    @functools.cached_property
    def manifest(self) -> Manifest | None:
        """Parsed once, however many checks read it (None: not a valid manifest)."""
        return parse_manifest(self.content, self.path)[0]


@dataclass(frozen=True)
class PastVersion:
    """A version as history has it: the content of the commit where it first appeared."""

    spec: Mapping[str, Any]
    commit: str


class PastVersions(Protocol):
    """What first-parent history knows about a workflow's versions."""

    def version_names(self, workflow: str) -> Collection[str]:
        """Every version of `workflow` in history."""
        ...

    def past_version(self, workflow: str, version: str) -> PastVersion | None:
        """That version's content, or None when history lacks it."""
        ...


def bump_of(old: Version, new: Version) -> str:
    if new.major != old.major:
        return "major"
    if new.minor != old.minor:
        return "minor"
    if (new.patch, new.prerelease) != (old.patch, old.prerelease):
        return "patch"
    return "none"


def needed_bump(change_class: str, old: Version) -> str:
    needed = _NEEDED[change_class]
    if old.major == 0 and needed in ("major", "minor"):
        return {"major": "minor", "minor": "patch"}[needed]
    return needed


def next_version(old: Version, bump: str) -> str:
    if bump == "major":
        return f"{old.major + 1}.0.0"
    if bump == "minor":
        return f"{old.major}.{old.minor + 1}.0"
    return f"{old.major}.{old.minor}.{old.patch + 1}"


def effective_class(diff: WorkflowDiff, new_spec: Mapping[str, object], old_version: str) -> str:
    """The change class after migrations: breaking step changes that a migration maps for
    runs on `old_version` are no longer breaking."""
    if diff.change_class != "breaking":
        return diff.change_class
    breaking = [c for c in diff.changes if c.change_class == "breaking"]
    unmapped = unmapped_breaking_changes(diff, new_spec, old_version)
    if unmapped or not breaking:
        return "breaking"
    return "feature"


def check_against(
    head: Sequence[Manifest],
    base_files: Mapping[str, BaseFile],
    history: PastVersions | None = None,
    added: Collection[str] = (),
) -> list[Finding]:
    """Findings for workflows that differ from the base. `base_files` holds only the base
    files whose content differs from the working tree; `added` names the paths the base
    lacks. `history`, when given, is asked about the added files whose workflow the base
    lacks."""
    base_workflows: dict[str, Manifest] = {}
    for base_file in base_files.values():
        manifest = base_file.manifest
        if manifest is not None and manifest.kind == "Workflow":
            base_workflows[manifest.name] = manifest
    findings: list[Finding] = []
    for manifest in head:
        if manifest.kind != "Workflow":
            continue
        base = base_workflows.get(manifest.name)
        if base is not None and digest_of(base.spec) == digest_of(manifest.spec):
            continue  # only comments/formatting changed
        if base is not None:
            findings += _check_change(base, manifest)
        elif manifest.path in added and history is not None:
            findings += _check_added(manifest, history)
    return findings


def _check_added(head: Manifest, history: PastVersions) -> list[Finding]:
    """A workflow the base lacks (new, or re-added after a removal) continues its history:
    an existing version keeps its content, and the version does not go below the newest.
    That makes versions increase across removals too, so a version above the base's needs
    no look-up."""
    version = head.spec["version"]
    newest = _newest(history.version_names(head.name))
    if newest is None or _version(head) > newest:
        return []  # a new workflow, or above everything history has
    past = history.past_version(head.name, version)
    if past is not None and digest_of(past.spec) != digest_of(head.spec):
        return [
            head.at(
                ("spec", "version"),
                "version-mutated",
                f"{head.name} {version} already exists in git history (commit "
                f"{past.commit[:12]}) with other content; versions are immutable. "
                f"Bump spec.version to {next_version(newest, 'patch')} or above",
            )
        ]
    if _version(head) < newest:
        return [
            head.at(
                ("spec", "version"),
                "version-decreased",
                f"spec.version goes back from {newest} (the newest in git history) to "
                f"{version}; versions only increase",
            )
        ]
    return []  # the newest version as it was: a restored file


def _version(manifest: Manifest) -> Version:
    return parse_version(manifest.spec["version"])


def _newest(versions: Collection[str]) -> Version | None:
    parsed = []
    for version in versions:
        try:
            parsed.append(parse_version(version))
        except ValueError:
            continue  # history is context: an unreadable old version is no bound
    return max(parsed, default=None)


def _check_change(base: Manifest, head: Manifest) -> list[Finding]:
    old = parse_version(base.spec["version"])
    new = parse_version(head.spec["version"])
    diff = diff_specs(base.spec, head.spec)
    change_class = effective_class(diff, head.spec, str(old))
    needed = needed_bump(change_class, old)
    summary = _summary(diff)
    if new == old:
        suggestion = next_version(old, needed) if needed != "none" else next_version(old, "patch")
        return [
            head.at(
                ("spec", "version"),
                "version-not-bumped",
                f"{head.name} changed but spec.version is still {old}: {summary}. "
                f"Bump it to {suggestion}",
            )
        ]
    if new < old:
        return [
            head.at(
                ("spec", "version"),
                "version-decreased",
                f"spec.version goes back from {old} to {new}; versions only increase",
            )
        ]
    bump = bump_of(old, new)
    if _RANK[bump] < _RANK[needed]:
        hint = _migration_hint(diff, head.spec, str(old)) if change_class == "breaking" else ""
        return [
            head.at(
                ("spec", "version"),
                "insufficient-bump",
                f"{change_class} changes need a {needed} bump ({old} → "
                f"{next_version(old, needed)}), not {bump} ({new}): {summary}{hint}",
            )
        ]
    return []


def _migration_hint(diff: WorkflowDiff, new_spec: Mapping[str, Any], old_version: str) -> str:
    """Migrations answer only removed, retyped or renamed steps: offer them only when those
    are all that keeps the change breaking."""
    unmapped = unmapped_breaking_changes(diff, new_spec, old_version)
    if not unmapped or any(c.kind not in STEP_BREAKING_KINDS for c in unmapped):
        return ""
    steps = ", ".join(sorted({c.step_id or "" for c in unmapped}))
    return f"; or map the removed, retyped or renamed steps ({steps}) in spec.migrations"


def _summary(diff: WorkflowDiff, limit: int = 3) -> str:
    worst = [c for c in diff.changes if c.change_class == diff.change_class] or list(diff.changes)
    text = "; ".join(c.reason for c in worst[:limit])
    if len(worst) > limit:
        text += f"; and {len(worst) - limit} more"
    return text or "no semantic change"

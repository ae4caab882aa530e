"""The history rules of `flowpin validate --against REF`, as pure functions.

Versions only increase, so comparing a changed workflow with its version at the base ref is
enough: a version equal to the base's with other content is a mutation, a lower one goes
backwards, a higher one is new. That keeps the cost proportional to the change, not to the
length of history. The bump must be at least the change class (breaking → major,
feature → minor, fix → patch); a breaking change made of step changes that a `migrations`
entry maps for the base version counts as a feature. Before 1.0.0 everything shifts down one
place (breaking → minor, feature and fix → patch), as semver allows for initial development.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.model.diff import WorkflowDiff, diff_specs, unmapped_breaking_changes
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


def check_against(head: Sequence[Manifest], base_files: Mapping[str, BaseFile]) -> list[Finding]:
    """Findings for workflows that differ from the base ref. `base_files` holds only the base
    files whose content differs from the working tree."""
    base_workflows: dict[str, Manifest] = {}
    for base_file in base_files.values():
        manifest, _ = parse_manifest(base_file.content, base_file.path)
        if manifest is not None and manifest.kind == "Workflow":
            base_workflows[manifest.name] = manifest
    findings: list[Finding] = []
    for manifest in head:
        if manifest.kind != "Workflow":
            continue
        base = base_workflows.get(manifest.name)
        if base is None or digest_of(base.spec) == digest_of(manifest.spec):
            continue  # new workflow, or only comments/formatting changed
        findings += _check_change(base, manifest)
    return findings


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
        hint = (
            "; or map the removed and retyped steps in spec.migrations"
            if diff.change_class == "breaking" and change_class == "breaking"
            else ""
        )
        return [
            head.at(
                ("spec", "version"),
                "insufficient-bump",
                f"{change_class} changes need a {needed} bump ({old} → "
                f"{next_version(old, needed)}), not {bump} ({new}): {summary}{hint}",
            )
        ]
    return []


def _summary(diff: WorkflowDiff, limit: int = 3) -> str:
    worst = [c for c in diff.changes if c.change_class == diff.change_class] or list(diff.changes)
    text = "; ".join(c.reason for c in worst[:limit])
    if len(worst) > limit:
        text += f"; and {len(worst) - limit} more"
    return text or "no semantic change"

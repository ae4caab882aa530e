"""Older flowpin manifest formats, migrated to the current `flowpin.dev/v1alpha1`. Pure.

The formats, oldest first (docs/interop.md shows each):

- `flowpin.dev/v0` (also a file without `apiVersion` and without `spec`): everything at the
  top level — `name`, `labels`, `annotations`, and the spec fields (`version`, `steps`, …
  for a Workflow; `pins`, `promotion`, … for an Environment).
- `flowpin.dev/v1alpha0`: `metadata` and `spec` as today, with older spellings: a step's
  `goto` (now `next`), a condition's `if` (now `when`), a wait's `seconds: N` (now
  `duration: Ns`), a schedule trigger's `cron` (now `schedule`), an environment's
  `versions` (now `pins`).

Each migration is a function from one format to the next that also says, change by change,
what it did; `migrate` chains them and returns the list, which the import prints.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CURRENT = "flowpin.dev/v1alpha1"
V1ALPHA0 = "flowpin.dev/v1alpha0"
V0 = "flowpin.dev/v0"
_METADATA_FIELDS = ("name", "labels", "annotations")


class MigrationError(ValueError):
    """The document names a format flowpin does not know."""


@dataclass(frozen=True)
class Applied:
    """One migration applied to one document."""

    source: str
    target: str
    changes: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.source} → {self.target}: " + "; ".join(self.changes)


Migration = Callable[[dict[str, Any]], tuple[dict[str, Any], list[str]]]


def _v0_to_v1alpha0(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    metadata = {k: data[k] for k in _METADATA_FIELDS if k in data}
    spec = {k: v for k, v in data.items() if k not in (*_METADATA_FIELDS, "apiVersion", "kind")}
    changes = [f"{k} → metadata.{k}" for k in metadata]
    changes += [f"{k} → spec.{k}" for k in spec]
    migrated = {"apiVersion": V1ALPHA0, "kind": data.get("kind"), "metadata": metadata}
    migrated["spec"] = spec
    return migrated, changes


def _v1alpha0_to_v1alpha1(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    migrated = copy.deepcopy(data)
    migrated["apiVersion"] = CURRENT
    spec = migrated.get("spec")
    changes: list[str] = []
    if not isinstance(spec, dict):
        return migrated, changes
    if migrated.get("kind") == "Environment":
        if "versions" in spec:
            spec["pins"] = spec.pop("versions")
            changes.append("spec.versions → spec.pins")
        return migrated, changes
    steps, triggers = spec.get("steps"), spec.get("triggers")
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            continue
        where = f"spec.steps[{index}]"
        if "goto" in step:
            step["next"] = step.pop("goto")
            changes.append(f"{where}.goto → next")
        condition = step.get("condition")
        if isinstance(condition, dict) and "if" in condition:
            condition["when"] = condition.pop("if")
            changes.append(f"{where}.condition.if → when")
        wait = step.get("wait")
        if isinstance(wait, dict) and "seconds" in wait:
            seconds = wait.pop("seconds")
            wait["duration"] = f"{seconds}s"
            changes.append(f"{where}.wait.seconds: {seconds} → duration: {seconds}s")
    for index, trigger in enumerate(triggers if isinstance(triggers, list) else []):
        if isinstance(trigger, dict) and "cron" in trigger:
            trigger["schedule"] = trigger.pop("cron")
            changes.append(f"spec.triggers[{index}].cron → schedule")
    return migrated, changes


_CHAIN: dict[str, tuple[str, Migration]] = {
    V0: (V1ALPHA0, _v0_to_v1alpha0),
    V1ALPHA0: (CURRENT, _v1alpha0_to_v1alpha1),
}
KNOWN = (V0, V1ALPHA0, CURRENT)


def version_of(data: dict[str, Any]) -> str:
    """The format of a document; a file without `apiVersion` is v0 unless it has a spec."""
    version = data.get("apiVersion")
    if version is None:
        return CURRENT if isinstance(data.get("spec"), dict) else V0
    return str(version)


def migrate(data: dict[str, Any]) -> tuple[dict[str, Any], list[Applied]]:
    """`data` in the current format, and the migrations applied (empty when current)."""
    applied: list[Applied] = []
    source = version_of(data)
    if source not in KNOWN:
        raise MigrationError(f"apiVersion {source!r} is not a flowpin format ({', '.join(KNOWN)})")
    current = data
    if data.get("apiVersion") is None and source == CURRENT:
        current = {"apiVersion": CURRENT, **data}
        applied.append(Applied("(none)", CURRENT, ("apiVersion: flowpin.dev/v1alpha1 added",)))
    while source != CURRENT:
        target, step = _CHAIN[source]
        current, changes = step(current)
        applied.append(Applied(source, target, tuple(changes) or ("apiVersion only",)))
        source = target
    return current, applied

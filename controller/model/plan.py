"""`flowpin plan`: what merging a pull request will do, per environment.

For each environment (in promotion order), each deployment whose resolved version changes
(from → to), the gates it will pass (from the Environment's promotion policy), how it rolls
out, and the breaking changes between the two versions with whether migrations map them.
Pure: the caller resolves manifests and historical specs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from controller.model.diff import diff_specs, unmapped_breaking_changes
from controller.model.durations import format_duration, parse_duration
from controller.model.graph import cycles

LATEST = "latest"
Action = Literal["update", "add", "remove"]
SpecLookup = Callable[[str, str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class EnvironmentState:
    """One side (base or head) of the repository: environment specs and workflow versions."""

    environments: Mapping[str, Mapping[str, Any]]
    current_versions: Mapping[str, str]  # workflow → version its file declares


@dataclass(frozen=True)
class PlannedChange:
    environment: str
    workflow: str
    action: Action
    from_version: str | None
    to_version: str | None
    pin: str | None
    gates: tuple[str, ...]
    rollout: str
    change_class: str | None
    breaking: tuple[str, ...]
    unmapped: tuple[str, ...]

    @property
    def migrations_cover(self) -> bool | None:
        if not self.breaking:
            return None
        return not self.unmapped


@dataclass(frozen=True)
class Plan:
    environments: tuple[str, ...]
    changes: tuple[PlannedChange, ...]

    def for_environment(self, name: str) -> list[PlannedChange]:
        return [c for c in self.changes if c.environment == name]


def promotion_order(environments: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Upstream first (dev, staging, prod); unrelated environments by name; cycles last."""
    upstream = {name: spec.get("promotion", {}).get("from") for name, spec in environments.items()}
    depth: dict[str, int] = {}
    in_cycle = {
        n for c in cycles({k: [v] if v in upstream else [] for k, v in upstream.items()}) for n in c
    }

    def level(name: str) -> int:
        if name in in_cycle:
            return len(environments)
        if name not in depth:
            parent = upstream.get(name)
            depth[name] = (
                level(parent) + 1 if isinstance(parent, str) and parent in environments else 0
            )
        return depth[name]

    return sorted(environments, key=lambda name: (level(name), name))


def describe_gates(spec: Mapping[str, Any]) -> tuple[str, ...]:
    promotion = spec.get("promotion", {})
    gates = ["the version is valid"]
    if promotion.get("from"):
        gates.append(f"Verified in {promotion['from']}")
        if promotion.get("soak"):
            soak = format_duration(parse_duration(promotion["soak"]))
            gates.append(f"soaked {soak} after verification in {promotion['from']}")
    for window in promotion.get("windows", []):
        gates.append(
            f"{window['kind']} window '{window['schedule']}' for {window['duration']}"
            f" ({window.get('timezone', 'UTC')})"
        )
    if promotion.get("approval") == "required":
        gates.append("approved (flowpin approve)")
    return tuple(gates)


def describe_rollout(spec: Mapping[str, Any]) -> str:
    rollout = spec.get("rollout", {})
    strategy = rollout.get("strategy", "immediate")
    inflight = spec.get("inflight", "pin")
    if strategy == "canary":
        weights = " → ".join(f"{step['weight']}%" for step in rollout.get("steps", []))
        text = f"canary {weights} → 100%"
    else:
        text = "immediate"
    return f"{text}; runs in flight: {inflight}"


def _resolve(pin: str | None, state: EnvironmentState, workflow: str) -> str | None:
    if pin is None:
        return None
    if pin == LATEST:
        return state.current_versions.get(workflow)
    return pin


def build_plan(base: EnvironmentState, head: EnvironmentState, spec_of: SpecLookup) -> Plan:
    order = promotion_order(head.environments)
    changes: list[PlannedChange] = []
    for name in order:
        spec = head.environments[name]
        base_pins = base.environments.get(name, {}).get("pins", {})
        head_pins = spec.get("pins", {})
        gates = describe_gates(spec)
        rollout = describe_rollout(spec)
        for workflow in sorted(set(base_pins) | set(head_pins)):
            old = _resolve(base_pins.get(workflow), base, workflow)
            new = _resolve(head_pins.get(workflow), head, workflow)
            if old == new:
                continue
            action: Action = "add" if old is None else "remove" if new is None else "update"
            change_class, breaking, unmapped = _compare(workflow, old, new, spec_of)
            changes.append(
                PlannedChange(
                    environment=name,
                    workflow=workflow,
                    action=action,
                    from_version=old,
                    to_version=new,
                    pin=head_pins.get(workflow),
                    gates=gates if new is not None else (),
                    rollout=rollout if new is not None else "",
                    change_class=change_class,
                    breaking=breaking,
                    unmapped=unmapped,
                )
            )
    return Plan(tuple(order), tuple(changes))


def _compare(
    workflow: str, old: str | None, new: str | None, spec_of: SpecLookup
) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    if old is None or new is None:
        return None, (), ()
    old_spec, new_spec = spec_of(workflow, old), spec_of(workflow, new)
    if old_spec is None or new_spec is None:
        return None, (), ()
    diff = diff_specs(old_spec, new_spec)
    breaking = tuple(c.reason for c in diff.breaking)
    unmapped = tuple(c.reason for c in unmapped_breaking_changes(diff, new_spec, old))
    return diff.change_class, breaking, unmapped


# --------------------------------------------------------------------------- rendering


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(plan: Plan) -> str:
    lines = ["## flowpin plan", ""]
    if not plan.changes:
        lines.append("No deployment changes: every environment keeps the versions it runs.")
        return "\n".join(lines) + "\n"
    total = len(plan.changes)
    lines.append(f"{total} deployment change{'s' if total != 1 else ''} after merge.")
    for name in plan.environments:
        changes = plan.for_environment(name)
        if not changes:
            continue
        lines += ["", f"### {name}", ""]
        lines.append(f"Gates: {_md(' → '.join(changes[0].gates) or 'none')}  ")
        lines.append(f"Rollout: {_md(changes[0].rollout or 'n/a')}")
        lines += ["", "| Workflow | From | To | Change | Breaking changes | Migrations |"]
        lines.append("|---|---|---|---|---|---|")
        for change in changes:
            breaking = (
                "<br>".join(
                    f"{'✗' if reason in change.unmapped else '✓'} {_md(reason)}"
                    for reason in change.breaking
                )
                or "—"
            )
            cover = change.migrations_cover
            migrations = (
                "—"
                if cover is None
                else "✓ map every breaking step change"
                if cover
                else f"✗ {len(change.unmapped)} of {len(change.breaking)} not mapped"
            )
            kind = change.change_class or change.action
            lines.append(
                f"| {_md(change.workflow)} | {_md(change.from_version or '—')} | "
                f"{_md(change.to_version or 'removed')} | {_md(kind)} | {breaking} | {migrations} |"
            )
    return "\n".join(lines) + "\n"


def render_text(plan: Plan) -> str:
    if not plan.changes:
        return "No deployment changes.\n"
    lines: list[str] = []
    for name in plan.environments:
        changes = plan.for_environment(name)
        if not changes:
            continue
        lines.append(f"{name}:")
        for change in changes:
            kind = change.change_class or change.action
            lines.append(
                f"  {change.workflow}: {change.from_version or '-'} → "
                f"{change.to_version or 'removed'} ({kind})"
            )
            if change.gates:
                lines.append(f"    gates: {' → '.join(change.gates)}")
            for reason in change.breaking:
                mark = "unmapped" if reason in change.unmapped else "mapped"
                lines.append(f"    breaking ({mark}): {reason}")
    return "\n".join(lines) + "\n"


def render_json(plan: Plan) -> str:
    return json.dumps(
        {
            "environments": list(plan.environments),
            "changes": [
                {**asdict(change), "migrationsCover": change.migrations_cover}
                for change in plan.changes
            ],
        },
        indent=2,
    )

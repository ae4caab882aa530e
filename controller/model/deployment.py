"""What a WorkflowDeployment should report and do, as a pure function of what is known.

States, in order of precedence:
1. **Rollback hold** (`flowpin rollback`): annotations name the version to run and the pin it
   overrides. While git still pins that version, the deployment runs the hold version,
   phase `Held`, `Drifted=True` ("git pins X, running Y"). `flowpin release` (removing the
   annotations) or a new pin in git ends it, and the deployment follows git again.
2. **Held version** (`status.heldVersion`): a version that failed verification or whose
   canary was aborted is not tried again while git pins it, until `flowpin retry` (an
   annotation naming it) or a new pin.
3. **Converged**: the desired version is active: `Verified`, `Ready=True`.
4. **Gates**: the first closed gate makes the phase `Blocked` with its reason; the decision
   says when to look again. All open: the version is activated (`immediate`; a `canary`
   rollout arrives with the runs and activates at once until then) and becomes `Verified`.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.api import kinds
from controller.model.conditions import ConditionStatus, set_condition
from controller.model.gates import (
    GateInputs,
    VersionInfo,
    evaluate_gates,
    first_closed,
    next_opening,
    rfc3339,
)

HISTORY_LIMIT = 20
ANNOTATION_HOLD = f"{kinds.GROUP}/hold-version"
ANNOTATION_HOLD_PIN = f"{kinds.GROUP}/hold-pin"
ANNOTATION_HOLD_BY = f"{kinds.GROUP}/hold-by"
ANNOTATION_APPROVED_BY = f"{kinds.GROUP}/approved-by"
ANNOTATION_RETRY = f"{kinds.GROUP}/retry-version"


@dataclass(frozen=True)
class DeploymentInputs:
    workflow: str
    environment: str
    desired: str
    commit: str
    author: str
    generation: int
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    environment_spec: Mapping[str, Any]
    info: VersionInfo
    hold_info: VersionInfo | None
    upstream_verified_at: datetime.datetime | None
    now: datetime.datetime


@dataclass(frozen=True)
class Transition:
    """Something worth an Event, an audit line, a history entry and (maybe) a git note."""

    result: str  # Activated, Blocked, RolledBack, Released, Retried
    version: str
    reason: str
    message: str
    initiator: str
    warning: bool = False


@dataclass
class Decision:
    status: dict[str, Any]
    transitions: list[Transition] = field(default_factory=list)
    wake_at: datetime.datetime | None = None


def _conditions(
    current: list[dict[str, Any]],
    generation: int,
    now: str,
    ready: tuple[ConditionStatus, str, str],
    reconciling: bool,
    stalled: tuple[bool, str, str],
    blocked: tuple[bool, str, str],
    drifted: tuple[bool, str],
) -> list[dict[str, Any]]:
    c = set_condition(current, "Ready", *ready, generation, now)
    c = set_condition(
        c,
        "Reconciling",
        "True" if reconciling else "False",
        ready[1] if reconciling else "Converged" if ready[0] == "True" else ready[1],
        ready[2] if reconciling else "Not reconciling.",
        generation,
        now,
    )
    c = set_condition(
        c,
        "Stalled",
        "True" if stalled[0] else "False",
        stalled[1] if stalled[0] else "NotStalled",
        stalled[2] if stalled[0] else "Not stalled.",
        generation,
        now,
    )
    c = set_condition(
        c,
        "Blocked",
        "True" if blocked[0] else "False",
        blocked[1] if blocked[0] else "GatesOpen",
        blocked[2] if blocked[0] else "No gate is closed.",
        generation,
        now,
    )
    return set_condition(
        c,
        "Drifted",
        "True" if drifted[0] else "False",
        "Rollback" if drifted[0] else "InSync",
        drifted[1] if drifted[0] else "Running what git pins (or on its way to it).",
        generation,
        now,
    )


def _history(status: Mapping[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry, *list(status.get("history") or [])][:HISTORY_LIMIT]


def _clean(status: dict[str, Any], *keys: str) -> None:
    for key in keys:
        status.pop(key, None)


def decide(inputs: DeploymentInputs) -> Decision:
    status = copy.deepcopy(dict(inputs.status))
    now = rfc3339(inputs.now)
    desired = inputs.desired
    active = status.get("activeVersion")
    annotations = inputs.annotations
    conditions = list(status.get("conditions") or [])
    transitions: list[Transition] = []
    g = inputs.generation

    def entry(version: str, result: str, reason: str, initiator: str) -> dict[str, Any]:
        return {
            "version": version,
            "commit": inputs.commit,
            "startedAt": status.get("progressingSince") or now,
            "finishedAt": now,
            "result": result,
            "reason": reason,
            "initiator": initiator,
        }

    # 1. A rollback hold, while git still pins what it overrides.
    hold = annotations.get(ANNOTATION_HOLD)
    if hold and annotations.get(ANNOTATION_HOLD_PIN) == desired and hold != desired:
        who = annotations.get(ANNOTATION_HOLD_BY, "someone")
        message = f"git pins {desired}, running {hold} (rollback by {who}); " + (
            "`flowpin release` or a new pin in git ends it"
        )
        if inputs.hold_info is not None and not inputs.hold_info.exists:
            message = f"cannot roll back to {hold}: it is not mirrored; running {active}"
        elif active != hold:
            status["previousVersion"] = active
            status["activeVersion"] = hold
            transitions.append(
                Transition(
                    "RolledBack",
                    hold,
                    "Rollback",
                    f"rolled back from {active} to {hold}",
                    who,
                    True,
                )
            )
            status["history"] = _history(status, entry(hold, "RolledBack", "Rollback", who))
        status.update(phase="Held", reason="Rollback", message=message)
        _clean(status, "soakEndsAt", "nextWindowAt", "progressingSince")
        status["conditions"] = _conditions(
            conditions,
            g,
            now,
            ("False", "Drifted", message),
            False,
            (False, "", ""),
            (False, "", ""),
            (True, message),
        )
        status["observedGeneration"] = g
        return Decision(status, transitions)

    # A hold whose pin changed, or a release, ends the rollback: record it once.
    if status.get("phase") == "Held" and active != desired:
        transitions.append(
            Transition(
                "Released",
                desired,
                "Released" if not hold else "PinChanged",
                f"rollback ended; following git again ({desired})",
                annotations.get(ANNOTATION_HOLD_BY, "controller"),
            )
        )

    # 2. A version held after a failed verification or an aborted canary.
    held = status.get("heldVersion")
    if held and held != desired:
        _clean(status, "heldVersion")
        held = None
    if held and annotations.get(ANNOTATION_RETRY) == held:
        transitions.append(
            Transition("Retried", held, "Retry", f"retrying {held}", "flowpin retry")
        )
        _clean(status, "heldVersion")
        held = None
    if held:
        message = (
            f"{held} failed or was rolled back; it is not tried again until git pins another "
            f"version or `flowpin retry` is run"
        )
        phase = status.get("phase") if status.get("phase") in ("RolledBack", "Failed") else "Failed"
        status.update(phase=phase, reason="Held", message=message)
        status["conditions"] = _conditions(
            conditions,
            g,
            now,
            ("False", "Held", message),
            False,
            (True, "Held", message),
            (True, "Held", message),
            (False, ""),
        )
        status["observedGeneration"] = g
        return Decision(status, transitions)

    # 3. Converged.
    if active == desired and status.get("phase") == "Verified":
        _verified(status, conditions, g, now, f"{desired} is active")
        return Decision(status, transitions)

    # 4. Gates, then activation.
    gates = evaluate_gates(
        GateInputs(
            workflow=inputs.workflow,
            environment=inputs.environment,
            version=desired,
            info=inputs.info,
            promotion=inputs.environment_spec.get("promotion") or {},
            upstream_verified_at=inputs.upstream_verified_at,
            approved_version=annotations.get(kinds.ANNOTATION_APPROVED_VERSION),
            now=inputs.now,
        )
    )
    status["gates"] = [gate.as_status() for gate in gates]
    status.setdefault("progressingSince", now)
    closed = first_closed(gates)
    if closed is not None:
        if status.get("phase") != "Blocked" or status.get("reason") != closed.reason:
            transitions.append(
                Transition("Blocked", desired, closed.reason, closed.message, "controller")
            )
        status.update(phase="Blocked", reason=closed.reason, message=closed.message)
        for gate_name, key in (("soak", "soakEndsAt"), ("window", "nextWindowAt")):
            gate = next((x for x in gates if x.name == gate_name and not x.open), None)
            if gate is not None and gate.opens_at is not None:
                status[key] = rfc3339(gate.opens_at)
            else:
                status.pop(key, None)
        needs_person = closed.reason in ("InvalidVersion", "AwaitingApproval")
        status["conditions"] = _conditions(
            conditions,
            g,
            now,
            ("False", closed.reason, closed.message),
            not needs_person,
            (closed.reason == "InvalidVersion", closed.reason, closed.message),
            (True, closed.reason, closed.message),
            (False, ""),
        )
        status["observedGeneration"] = g
        return Decision(status, transitions, next_opening(gates))

    approver = annotations.get(ANNOTATION_APPROVED_BY)
    initiator = inputs.author or "git"
    if approver and annotations.get(kinds.ANNOTATION_APPROVED_VERSION) == desired:
        initiator = f"{initiator} (approved by {approver})"
    rollout = (inputs.environment_spec.get("rollout") or {}).get("strategy", "immediate")
    message = f"{desired} is active"
    if rollout == "canary":
        message += " (canary analysis arrives with runs: activated at 100%)"
    transitions.append(Transition("Activated", desired, "Activated", message, initiator))
    status["history"] = _history(status, entry(desired, "Activated", "GatesOpen", initiator))
    if active and active != desired:
        status["previousVersion"] = active
    status.update(activeVersion=desired, phase="Verified", verifiedAt=now)
    _verified(status, conditions, g, now, message)
    return Decision(status, transitions)


def _verified(
    status: dict[str, Any],
    conditions: list[dict[str, Any]],
    generation: int,
    now: str,
    message: str,
) -> None:
    """The desired version is active and Verified: Ready, nothing pending."""
    status.update(reason="Verified", message=message)
    _clean(status, "soakEndsAt", "nextWindowAt", "progressingSince", "gates")
    status["conditions"] = _conditions(
        conditions,
        generation,
        now,
        ("True", "Verified", message),
        False,
        (False, "", ""),
        (False, "", ""),
        (False, ""),
    )
    status["observedGeneration"] = generation


def verified_at(status: Mapping[str, Any], version: str) -> datetime.datetime | None:
    """When `version` became Verified in the deployment with this status: now active and
    Verified, or an Activated entry in its history (a version that moved on stays verified)."""
    moments: list[str] = []
    if (
        status.get("activeVersion") == version
        and status.get("phase") in ("Verified", "Held")
        and status.get("verifiedAt")
    ):
        moments.append(str(status["verifiedAt"]))
    for item in status.get("history") or []:
        if item.get("version") == version and item.get("result") == "Activated":
            moments.append(str(item.get("finishedAt")))
    parsed = [datetime.datetime.fromisoformat(m.replace("Z", "+00:00")) for m in moments if m]
    return min(parsed) if parsed else None


DRAINED_LIMIT = 5  # drained versions kept in status.versions, newest first


def version_entries(
    previous: list[dict[str, Any]],
    active: str | None,
    counts: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """`status.versions`: where the runs of this deployment are, with their counts per
    version (`model.runstats.counts`). The active version is `Active`; an older version with
    unfinished runs is `Draining` (they finish on it: runs keep the version they started
    on); once its last run ends it is `Drained`, and the newest few Drained versions stay."""

    def entry(version: str, state: str) -> dict[str, Any]:
        found = dict(counts.get(version) or {})
        item: dict[str, Any] = {
            "version": version,
            "state": state,
            "activeRuns": found.get("active", 0),
        }
        if found.get("total"):
            item["runs"] = found
        return item

    entries: list[dict[str, Any]] = [entry(active, "Active")] if active else []
    for version in sorted(v for v, c in counts.items() if c.get("active") and v != active):
        entries.append(entry(version, "Draining"))
    listed = {e["version"] for e in entries}
    drained: list[dict[str, Any]] = []
    for item in previous:
        old = item.get("version")
        if old and old not in listed and item.get("state") in ("Active", "Draining", "Drained"):
            drained.append(entry(str(old), "Drained"))
            listed.add(old)
    return entries + drained[:DRAINED_LIMIT]


def total_counts(counts: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """`status.runs` of a deployment: its runs on every version."""
    total = {"total": 0, "succeeded": 0, "failed": 0, "active": 0}
    for found in counts.values():
        for key in total:
            total[key] += int(found.get(key) or 0)
    return total


def versions_to_cancel(
    inflight: str, active: str | None, counts: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """With `inflight: cancel`, the runs of every version but the active one are cancelled
    when the active version changes; with `pin` (the default) they finish where they are."""
    if inflight != "cancel" or not active:
        return []
    return sorted(v for v, c in counts.items() if c.get("active") and v != active)

"""What a WorkflowDeployment should report and do, as a pure function of what is known.

States, in order of precedence:
1. **Rollback hold** (`flowpin rollback`): annotations name the version to run and the pin it
   overrides. While git still pins that version, the deployment runs the hold version,
   phase `Held`, `Drifted=True` ("git pins X, running Y"). `flowpin release` (removing the
   annotations) or a new pin in git ends it, and the deployment follows git again. A canary
   in progress is dropped; it starts afresh afterwards.
2. **Held version** (`status.heldVersion`): a version that failed verification or whose
   canary was aborted is not tried again while git pins it, until `flowpin retry` (an
   annotation naming it) or a new pin. After an abort the phase stays `RolledBack` and the
   message keeps the canary's figures; a retry starts the canary again from step 0.
3. **Converged**: the desired version is active: `Verified`, `Ready=True`.
4. **Gates**: the first closed gate makes the phase `Blocked` with its reason; the decision
   says when to look again. All open: with `rollout.strategy: canary` and a stable active
   version, the canary starts (phase `Canary`, `model/canary.py` decides each move: steps,
   analysis, promotion, abort); otherwise (`immediate`, or a first activation with nothing
   to compare against) the version is activated and becomes `Verified`. The gates admit a
   version to its canary; once it runs they are not asked again, so an abort never waits
   for a window to open and a window closing mid-canary does not freeze its weight.

`flowpin retry`, `flowpin abort` and `flowpin promote --full` are one-shot requests whose
annotation names a version: `Decision.consumed_annotations` lists the ones acted on or no
longer applicable, for the operator to remove, so that a stale request never acts on a
later canary and the same request can be made again.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.api import kinds
from controller.model import canary
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
    # (phase, finishedAt) of this deployment's runs on the desired version: the canary's
    # evidence (only those finished since the canary started count).
    canary_runs: tuple[canary.CanaryRun, ...] = ()
    upstream_exists: bool = True  # the environment `promotion.from` names is mirrored


@dataclass(frozen=True)
class Transition:
    """Something worth an Event, an audit line, a history entry and (maybe) a git note."""

    # Activated, Blocked, RolledBack, Released, Retried, CanaryStarted, CanaryStep,
    # CanarySuperseded
    result: str
    version: str
    reason: str
    message: str
    initiator: str
    warning: bool = False
    commit: str = ""  # the commit of the version it made run, when not the pin's own


@dataclass
class Decision:
    status: dict[str, Any]
    transitions: list[Transition] = field(default_factory=list)
    wake_at: datetime.datetime | None = None
    # One-shot annotations (retry, abort, promote-full) to remove from the deployment.
    consumed_annotations: list[str] = field(default_factory=list)


# Closed gates that only a change in git opens: Stalled, not Reconciling.
STALLING = frozenset({"InvalidVersion", "UpstreamNotFound"})

ONE_SHOT = (ANNOTATION_RETRY, kinds.ANNOTATION_ABORT, kinds.ANNOTATION_PROMOTE_FULL)


_OFF = (False, "", "")


def _set_conditions(
    status: dict[str, Any],
    current: list[dict[str, Any]],
    generation: int,
    now: str,
    ready: tuple[ConditionStatus, str, str],
    reconciling: bool = False,
    stalled: tuple[bool, str, str] = _OFF,
    blocked: tuple[bool, str, str] = _OFF,
    drifted: tuple[bool, str] = (False, ""),
) -> None:
    """Write the five conditions, and the generation they answer, into `status`; a flag not
    given is off."""
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
    status["conditions"] = set_condition(
        c,
        "Drifted",
        "True" if drifted[0] else "False",
        "Rollback" if drifted[0] else "InSync",
        drifted[1] if drifted[0] else "Running what git pins (or on its way to it).",
        generation,
        now,
    )
    status["observedGeneration"] = generation


def _history(status: Mapping[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry, *list(status.get("history") or [])][:HISTORY_LIMIT]


def _clean(status: dict[str, Any], *keys: str) -> None:
    for key in keys:
        status.pop(key, None)


def decide(inputs: DeploymentInputs) -> Decision:
    """The new status, the transitions to record, when to look again, and the one-shot
    annotations to remove (acted on, or naming a version they can no longer act on)."""
    consumed: list[str] = []
    decision = _decide(inputs, consumed)
    held = decision.status.get("heldVersion")
    active = decision.status.get("activeVersion")
    for key in ONE_SHOT:
        value = inputs.annotations.get(key)
        if value is None or key in consumed:
            continue
        if key == ANNOTATION_RETRY:
            stale = value != held  # a retry means something only while its version is held
        else:
            stale = value != inputs.desired or value == active
        if stale:
            consumed.append(key)
    decision.consumed_annotations = consumed
    return decision


def _decide(inputs: DeploymentInputs, consumed: list[str]) -> Decision:
    status = copy.deepcopy(dict(inputs.status))
    now = rfc3339(inputs.now)
    desired = inputs.desired
    active = status.get("activeVersion")
    annotations = dict(inputs.annotations)
    conditions = list(status.get("conditions") or [])
    transitions: list[Transition] = []
    g = inputs.generation

    def entry(
        version: str, result: str, reason: str, initiator: str, commit: str | None = None
    ) -> dict[str, Any]:
        return {
            "version": version,
            "commit": inputs.commit if commit is None else commit,
            "startedAt": status.get("progressingSince") or now,
            "finishedAt": now,
            "result": result,
            "reason": reason,
            "initiator": initiator,
        }

    # 1. A rollback hold, while git still pins what it overrides. A hold on a version that
    # is not mirrored could never run: it is removed, and git is followed.
    hold = annotations.get(ANNOTATION_HOLD)
    if hold and inputs.hold_info is not None and not inputs.hold_info.exists:
        consumed.extend((ANNOTATION_HOLD, ANNOTATION_HOLD_PIN, ANNOTATION_HOLD_BY))
        transitions.append(
            Transition(
                "HoldRemoved",
                hold,
                "UnknownVersion",
                f"rollback to {hold} ignored: no such version is mirrored; following git "
                f"({desired})",
                annotations.get(ANNOTATION_HOLD_BY, "someone"),
                True,
            )
        )
        hold = None
    if hold and annotations.get(ANNOTATION_HOLD_PIN) == desired and hold != desired:
        who = annotations.get(ANNOTATION_HOLD_BY, "someone")
        message = f"git pins {desired}, running {hold} (rollback by {who}); " + (
            "`flowpin release` or a new pin in git ends it"
        )
        hold_commit = inputs.hold_info.commit if inputs.hold_info is not None else ""
        if active != hold:
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
                    hold_commit,
                )
            )
            status["history"] = _history(
                status, entry(hold, "RolledBack", "Rollback", who, hold_commit or None)
            )
        status.update(phase="Held", reason="Rollback", message=message)
        if (status.get("canary") or {}).get("state") == canary.PROGRESSING:
            _clean(status, "canary")  # every new run goes to the hold version
        _clean(status, "soakEndsAt", "nextWindowAt", "progressingSince")
        _set_conditions(
            status,
            conditions,
            g,
            now,
            ("False", "Drifted", message),
            drifted=(True, message),
        )
        return Decision(status, transitions)

    # A hold whose pin changed, or a release, ends the rollback: record it once.
    if status.get("phase") == "Held" and status.get("reason") == "Rollback" and active != desired:
        reason = "Released" if not hold else "PinChanged"
        who = annotations.get(ANNOTATION_HOLD_BY, "controller")
        transitions.append(
            Transition(
                "Released",
                desired,
                reason,
                f"rollback ended; following git again ({desired})",
                who,
            )
        )
        status["history"] = _history(status, entry(desired, "Released", reason, who))

    # 2. A version held after a failed verification or an aborted canary.
    held = status.get("heldVersion")
    if held and held != desired:
        _clean(status, "heldVersion")
        held = None
    if held and annotations.get(ANNOTATION_RETRY) == held:
        transitions.append(
            Transition("Retried", held, "Retry", f"retrying {held}", "flowpin retry")
        )
        consumed.append(ANNOTATION_RETRY)
        if annotations.get(kinds.ANNOTATION_ABORT) == held:  # the retry supersedes it
            consumed.append(kinds.ANNOTATION_ABORT)
            del annotations[kinds.ANNOTATION_ABORT]
        _clean(status, "heldVersion")
        held = None
    if held:
        _held(status, conditions, g, now, held)
        return Decision(status, transitions)

    # Only a Progressing canary of the desired version, in a canary rollout, carries on.
    rollout = inputs.environment_spec.get("rollout") or {}
    canary_rollout = rollout.get("strategy") == "canary" and bool(active) and active != desired
    current = status.get("canary") or {}
    running = current.get("state") == canary.PROGRESSING
    if current and not (canary_rollout and running and current.get("version") == desired):
        if running and current.get("version") != desired:
            transitions.append(
                Transition(
                    "CanarySuperseded",
                    str(current.get("version")),
                    "PinChanged",
                    f"canary {current.get('version')} dropped: git now pins {desired}",
                    inputs.author or "git",
                )
            )
        _clean(status, "canary")
        current = {}

    # 3. Converged.
    if active == desired and status.get("phase") == "Verified":
        _verified(status, conditions, g, now, f"{desired} is active")
        return Decision(status, transitions)

    approver = annotations.get(ANNOTATION_APPROVED_BY)
    initiator = inputs.author or "git"
    if approver and annotations.get(kinds.ANNOTATION_APPROVED_VERSION) == desired:
        initiator = f"{initiator} (approved by {approver})"

    # 4. Gates (a canary under way already passed them), then activation.
    if not current:
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
                upstream_exists=inputs.upstream_exists,
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
            needs_person = closed.reason in STALLING | {"AwaitingApproval"}
            _set_conditions(
                status,
                conditions,
                g,
                now,
                ("False", closed.reason, closed.message),
                reconciling=not needs_person,
                stalled=(closed.reason in STALLING, closed.reason, closed.message),
                blocked=(True, closed.reason, closed.message),
            )
            return Decision(status, transitions, next_opening(gates))

    if canary_rollout:
        moved = canary.progress(
            rollout,
            current,
            desired,
            str(active),
            inputs.canary_runs,
            annotations,
            inputs.now,
        )
        consumed.extend(moved.consumed)
        if moved.action == "abort":
            transitions.append(
                Transition("RolledBack", desired, moved.reason, moved.what, moved.initiator, True)
            )
            status["history"] = _history(
                status, entry(desired, "RolledBack", moved.reason, moved.initiator)
            )
            status.update(canary=moved.canary, heldVersion=desired)
            _clean(status, "progressingSince")
            _held(status, conditions, g, now, desired)
            return Decision(status, transitions)
        if moved.action != "promote":
            _canary_running(status, conditions, g, now, moved, transitions, entry, initiator)
            return Decision(status, transitions, moved.wake_at)
        message = moved.message
        who = initiator if moved.initiator == "controller" else moved.initiator
        reason = moved.reason
    else:
        message = f"{desired} is active"
        who, reason = initiator, "GatesOpen"
    _clean(status, "canary")
    transitions.append(Transition("Activated", desired, "Activated", message, who))
    status["history"] = _history(status, entry(desired, "Activated", reason, who))
    if active and active != desired:
        status["previousVersion"] = active
    status.update(activeVersion=desired, phase="Verified", verifiedAt=now)
    _verified(status, conditions, g, now, message)
    return Decision(status, transitions)


def _canary_running(
    status: dict[str, Any],
    conditions: list[dict[str, Any]],
    generation: int,
    now: str,
    moved: canary.Progress,
    transitions: list[Transition],
    entry: Callable[[str, str, str, str], dict[str, Any]],
    initiator: str,
) -> None:
    """A canary started, stays or moved to its next step: phase `Canary`, not Ready yet; the
    active version is still the stable one."""
    version = str(moved.canary["version"])
    if moved.action == "start":
        transitions.append(Transition("CanaryStarted", version, "GatesOpen", moved.what, initiator))
        status["history"] = _history(
            status, entry(version, "CanaryStarted", "GatesOpen", initiator)
        )
    elif moved.action == "advance":  # an Event, not history: steps would crowd it out
        transitions.append(
            Transition("CanaryStep", version, moved.reason, moved.what, "controller")
        )
    reason = "CanaryAwaitingRuns" if moved.reason == "CanaryAwaitingRuns" else "CanaryProgressing"
    status.update(canary=moved.canary, phase="Canary", reason=reason, message=moved.message)
    _clean(status, "soakEndsAt", "nextWindowAt")
    _set_conditions(
        status,
        conditions,
        generation,
        now,
        ("False", reason, moved.message),
        reconciling=True,
    )


def _held(
    status: dict[str, Any],
    conditions: list[dict[str, Any]],
    generation: int,
    now: str,
    held: str,
) -> None:
    """A held version: not tried again until git pins another or `flowpin retry`. After a
    canary abort the phase is `RolledBack` and the message keeps the canary's figures."""
    aborted = status.get("canary") or {}
    hint = "it is not tried again until git pins another version or `flowpin retry` is run"
    if aborted.get("version") == held and aborted.get("state") == canary.ABORTED:
        figures = (aborted.get("analysis") or {}).get("message") or "no figures"
        message = (
            f"canary {held} was aborted: {figures}. Every new run goes to "
            f"{status.get('activeVersion')}; {hint}"
        )
        phase, reason = "RolledBack", "CanaryAborted"
    else:
        message = f"{held} failed or was rolled back; {hint}"
        phase = (
            str(status["phase"]) if status.get("phase") in ("RolledBack", "Failed") else "Failed"
        )
        reason = "Held"
    status.update(phase=phase, reason=reason, message=message)
    _set_conditions(
        status,
        conditions,
        generation,
        now,
        ("False", reason, message),
        stalled=(True, reason, message),
        blocked=(True, reason, message),
    )


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
    _set_conditions(
        status,
        conditions,
        generation,
        now,
        ("True", "Verified", message),
    )


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
    canary_status: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`status.versions`: where the runs of this deployment are, with their counts per
    version (`model.runstats.counts`). The active version is `Active`; the version of a
    Progressing canary (`status.canary`) is `Canary`, right after it; an older version with
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
    trial = (canary_status or {}).get("version")
    if trial and trial != active and (canary_status or {}).get("state") == canary.PROGRESSING:
        entries.append(entry(str(trial), "Canary"))
    listed = {e["version"] for e in entries}
    for version in sorted(v for v, c in counts.items() if c.get("active") and v not in listed):
        entries.append(entry(version, "Draining"))
    listed = {e["version"] for e in entries}
    drained: list[dict[str, Any]] = []
    for item in previous:
        old = item.get("version")
        if (
            old
            and old not in listed
            and item.get("state") in ("Active", "Canary", "Draining", "Drained")
        ):
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

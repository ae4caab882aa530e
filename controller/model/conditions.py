"""kstatus conditions (Ready, Reconciling, Stalled, and kind-specific ones), as pure data.

`lastTransitionTime` changes only when a condition's status changes, and every condition
carries the `observedGeneration` it was computed from, so that `kubectl wait` and kstatus
readers (Flux, Argo CD health checks) interpret them correctly.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]
Condition = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: str | None = None,
) -> list[Condition]:
    """A new list with the condition of `type_` replaced (or added), others untouched."""
    previous = next((c for c in conditions if c.get("type") == type_), None)
    transition = (
        previous["lastTransitionTime"]
        if previous is not None
        and previous.get("status") == status
        and previous.get("lastTransitionTime")
        else (now or now_rfc3339())
    )
    updated: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }
    result = [c for c in conditions if c.get("type") != type_]
    result.append(updated)
    return sorted(result, key=lambda c: str(c.get("type")))


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def accepted_source_conditions(conditions: list[Condition], generation: int) -> list[Condition]:
    """A source the operator has seen but not synced yet: Reconciling, not Ready."""
    ready = get_condition(conditions, "Ready")
    if ready is not None and ready.get("observedGeneration") == generation:
        return conditions
    result = set_condition(
        conditions, "Reconciling", "True", "Progressing", "Waiting for the first sync.", generation
    )
    return set_condition(
        result, "Ready", "Unknown", "Progressing", "Waiting for the first sync.", generation
    )


def phase_conditions(
    conditions: list[Condition],
    phase: str,
    message: str,
    generation: int,
    now: str,
    *,
    reconciling: bool,
    stalled: bool,
    idle: tuple[str, str],
    not_stalled_reason: str = "NotStalled",
) -> list[Condition]:
    """Ready, Reconciling and Stalled of an object whose `phase` says it all (a run, a
    migration): Ready once Succeeded; the phase and its message name the active condition;
    `idle` is the (reason, message) of Reconciling when nothing is under way."""
    result = set_condition(
        conditions,
        "Ready",
        "True" if phase == "Succeeded" else "False",
        phase,
        message,
        generation,
        now,
    )
    reason, text = (phase, message) if reconciling else idle
    result = set_condition(
        result, "Reconciling", "True" if reconciling else "False", reason, text, generation, now
    )
    reason, text = (phase, message) if stalled else (not_stalled_reason, "Not stalled.")
    return set_condition(
        result, "Stalled", "True" if stalled else "False", reason, text, generation, now
    )

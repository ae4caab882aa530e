"""Promotion gates, in order: the version is valid → it is Verified upstream → the soak has
elapsed → the time is inside an allow window and outside every deny window → it is approved.

Each gate says whether it is open, why not, what will open it, and when that is known, so the
controller can wake up exactly then instead of polling.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.model.durations import format_duration, parse_duration
from controller.model.mirror import invalid_message
from controller.model.schedule import Window, window_state

GATE_ORDER = ("valid", "upstream", "soak", "window", "approval")


@dataclass(frozen=True)
class VersionInfo:
    """What the cluster knows of the desired version."""

    exists: bool
    valid: bool = True
    problem: str = ""  # why it is invalid
    commit: str = ""  # the git commit the version was mirrored from


def version_info(obj: Mapping[str, Any]) -> VersionInfo | None:
    """What a WorkflowVersion object says of its validity: its `spec.facts`, written at its
    creation; for a version created before versions carried facts, its Ready condition
    (None while such a version has no status yet)."""
    spec = obj.get("spec") or {}
    commit = str((spec.get("git") or {}).get("commit") or "")
    facts = spec.get("facts")
    if isinstance(facts, Mapping):
        if facts.get("valid", True) is False:
            problem = invalid_message(list(facts.get("problems") or []))
            return VersionInfo(True, False, problem, commit)
        return VersionInfo(True, commit=commit)
    conditions = (obj.get("status") or {}).get("conditions") or []
    if not conditions:
        return None
    for condition in conditions:
        if condition.get("type") == "Ready" and condition.get("status") == "False":
            return VersionInfo(True, False, str(condition.get("message", "")), commit)
    return VersionInfo(True, commit=commit)


@dataclass(frozen=True)
class Gate:
    name: str
    open: bool
    reason: str = ""
    message: str = ""
    opens_at: datetime.datetime | None = None

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"name": self.name, "open": self.open}
        if self.reason:
            status["reason"] = self.reason
        if self.message:
            status["message"] = self.message
        if self.opens_at is not None:
            status["opensAt"] = rfc3339(self.opens_at)
        return status


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class GateInputs:
    workflow: str
    environment: str
    version: str
    info: VersionInfo
    promotion: Mapping[str, Any]
    upstream_verified_at: datetime.datetime | None  # when `version` was Verified upstream
    approved_version: str | None
    now: datetime.datetime
    upstream_exists: bool = True  # the environment `promotion.from` names is mirrored


def _windows(specs: Sequence[Mapping[str, Any]]) -> list[Window]:
    return [
        Window(
            kind=spec["kind"],
            schedule=spec["schedule"],
            duration=parse_duration(spec["duration"]),
            timezone=spec.get("timezone", "UTC"),
        )
        for spec in specs
    ]


def evaluate_gates(inputs: GateInputs) -> list[Gate]:
    """Every gate the environment defines, in order, each evaluated on its own (so a person
    sees all that stand between git and the cluster, not only the first)."""
    p = inputs.promotion
    name = f"{inputs.workflow} {inputs.version}"
    gates: list[Gate] = []
    if not inputs.info.exists:
        gates.append(
            Gate(
                "valid",
                False,
                "InvalidVersion",
                f"{name} is not mirrored from git: pin a version that exists "
                "(`flowpin versions` lists them)",
            )
        )
    elif not inputs.info.valid:
        gates.append(
            Gate(
                "valid",
                False,
                "InvalidVersion",
                f"{name} is invalid ({inputs.info.problem}); fix it in a new version",
            )
        )
    else:
        gates.append(Gate("valid", True))
    upstream = p.get("from")
    if upstream:
        verified = inputs.upstream_verified_at
        if not inputs.upstream_exists:
            gates.append(
                Gate(
                    "upstream",
                    False,
                    "UpstreamNotFound",
                    f"{inputs.environment} promotes from {upstream}, but there is no such "
                    f"environment: fix `promotion.from` in {inputs.environment}'s file "
                    "(`flowpin validate` reports it as unknown-environment)",
                )
            )
        elif verified is None:
            gates.append(
                Gate(
                    "upstream",
                    False,
                    "UpstreamNotVerified",
                    f"waiting for {name} to be Verified in {upstream}; "
                    f"it proceeds by itself once it is",
                )
            )
        else:
            gates.append(Gate("upstream", True))
        if p.get("soak"):
            soak = parse_duration(str(p["soak"]))
            if verified is None:
                gates.append(
                    Gate(
                        "soak",
                        False,
                        "SoakPending",
                        f"soaks {format_duration(soak)} once Verified in {upstream}",
                    )
                )
            elif inputs.now < verified + soak:
                ends = verified + soak
                gates.append(
                    Gate(
                        "soak",
                        False,
                        "SoakPending",
                        f"soaking in {upstream} until {rfc3339(ends)} "
                        f"({format_duration(soak)} after verification)",
                        ends,
                    )
                )
            else:
                gates.append(Gate("soak", True))
    if p.get("windows"):
        state = window_state(_windows(p["windows"]), inputs.now)
        if state.open:
            gates.append(Gate("window", True))
        else:
            when = (
                f"; the next window opens at {rfc3339(state.next_change_at)}"
                if state.next_change_at
                else ""
            )
            gates.append(
                Gate(
                    "window", False, "OutsideWindow", f"{state.reason}{when}", state.next_change_at
                )
            )
    if p.get("approval") == "required":
        if inputs.approved_version == inputs.version:
            gates.append(Gate("approval", True))
        else:
            gates.append(
                Gate(
                    "approval",
                    False,
                    "AwaitingApproval",
                    f"needs approval: flowpin approve {inputs.workflow} "
                    f"--env {inputs.environment} --version {inputs.version}",
                )
            )
    return gates


def first_closed(gates: Sequence[Gate]) -> Gate | None:
    return next((gate for gate in gates if not gate.open), None)


def next_opening(gates: Sequence[Gate]) -> datetime.datetime | None:
    """When to look again: the earliest known time a closed gate opens."""
    times = [g.opens_at for g in gates if not g.open and g.opens_at is not None]
    return min(times) if times else None

"""The deployment state machine, table by table."""

from __future__ import annotations

import datetime
from typing import Any

from controller.model.deployment import (
    ANNOTATION_APPROVED_BY,
    ANNOTATION_HOLD,
    ANNOTATION_HOLD_BY,
    ANNOTATION_HOLD_PIN,
    ANNOTATION_RETRY,
    DeploymentInputs,
    decide,
    total_counts,
    verified_at,
    version_entries,
    versions_to_cancel,
)
from controller.model.gates import VersionInfo

EXISTS = VersionInfo(True)
NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
APPROVED = "flowpin.dev/approved-version"


def inputs(
    desired: str = "1.4.0",
    status: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    promotion: dict[str, Any] | None = None,
    info: VersionInfo = EXISTS,
    upstream: datetime.datetime | None = None,
    hold_info: VersionInfo | None = None,
) -> DeploymentInputs:
    return DeploymentInputs(
        workflow="wf",
        environment="prod",
        desired=desired,
        commit="c0ffee",
        author="Ada <ada@example.com>",
        generation=2,
        status=status or {},
        annotations=annotations or {},
        environment_spec={"promotion": promotion or {}},
        info=info,
        hold_info=hold_info,
        upstream_verified_at=upstream,
        now=NOW,
    )


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_no_gates_activates_and_verifies() -> None:
    decision = decide(inputs())
    status = decision.status
    assert (status["phase"], status["activeVersion"], status["verifiedAt"]) == (
        "Verified",
        "1.4.0",
        "2026-11-23T12:00:00Z",
    )
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Ready")["observedGeneration"] == 2
    (activated,) = decision.transitions
    assert (activated.result, activated.initiator) == ("Activated", "Ada <ada@example.com>")
    assert status["history"][0]["result"] == "Activated"


def test_converged_is_stable_and_writes_nothing_new() -> None:
    first = decide(inputs()).status
    again = decide(inputs(status=first))
    assert again.status == first and again.transitions == []


def test_a_new_pin_keeps_the_previous_version() -> None:
    first = decide(inputs()).status
    second = decide(inputs("1.5.0", status=first)).status
    assert (second["activeVersion"], second["previousVersion"]) == ("1.5.0", "1.4.0")
    assert [h["version"] for h in second["history"]] == ["1.5.0", "1.4.0"]


def test_blocked_by_soak_with_when() -> None:
    decision = decide(
        inputs(
            promotion={"from": "staging", "soak": "1h"},
            upstream=NOW - datetime.timedelta(minutes=30),
        )
    )
    status = decision.status
    assert (status["phase"], status["reason"]) == ("Blocked", "SoakPending")
    assert status["soakEndsAt"] == "2026-11-23T12:30:00Z"
    assert decision.wake_at == NOW + datetime.timedelta(minutes=30)
    blocked = condition(status, "Blocked")
    assert blocked["status"] == "True" and blocked["reason"] == "SoakPending"
    assert condition(status, "Reconciling")["status"] == "True"
    assert "activeVersion" not in status


def test_blocked_transition_is_reported_once_per_reason() -> None:
    first = decide(inputs(promotion={"from": "staging"}))
    again = decide(inputs(promotion={"from": "staging"}, status=first.status))
    assert [t.result for t in first.transitions] == ["Blocked"]
    assert again.transitions == []


def test_approval_records_the_approver() -> None:
    annotations = {APPROVED: "1.4.0", ANNOTATION_APPROVED_BY: "grace"}
    decision = decide(inputs(promotion={"approval": "required"}, annotations=annotations))
    assert decision.status["phase"] == "Verified"
    assert decision.transitions[0].initiator == "Ada <ada@example.com> (approved by grace)"


def test_awaiting_approval_is_not_reconciling() -> None:
    status = decide(inputs(promotion={"approval": "required"})).status
    assert status["reason"] == "AwaitingApproval"
    assert condition(status, "Reconciling")["status"] == "False"


def test_invalid_version_stalls() -> None:
    status = decide(inputs(info=VersionInfo(False))).status
    assert (status["phase"], status["reason"]) == ("Blocked", "InvalidVersion")
    assert condition(status, "Stalled")["status"] == "True"


def test_rollback_hold_and_release() -> None:
    verified = decide(inputs("1.5.0", status=decide(inputs()).status)).status
    hold = {ANNOTATION_HOLD: "1.4.0", ANNOTATION_HOLD_PIN: "1.5.0", ANNOTATION_HOLD_BY: "ops"}
    held = decide(inputs("1.5.0", status=verified, annotations=hold))
    assert (held.status["phase"], held.status["activeVersion"]) == ("Held", "1.4.0")
    drifted = condition(held.status, "Drifted")
    assert drifted["status"] == "True" and "git pins 1.5.0, running 1.4.0" in drifted["message"]
    assert [t.result for t in held.transitions] == ["RolledBack"]
    released = decide(inputs("1.5.0", status=held.status))  # annotations removed
    assert (released.status["phase"], released.status["activeVersion"]) == ("Verified", "1.5.0")
    assert [t.result for t in released.transitions] == ["Released", "Activated"]


def test_a_new_pin_ends_a_hold() -> None:
    hold = {ANNOTATION_HOLD: "1.4.0", ANNOTATION_HOLD_PIN: "1.5.0"}
    status = decide(inputs("1.6.0", annotations=hold)).status
    assert (status["phase"], status["activeVersion"]) == ("Verified", "1.6.0")


def test_a_held_version_waits_for_retry_or_a_new_pin() -> None:
    failed = {"activeVersion": "1.4.0", "phase": "RolledBack", "heldVersion": "1.5.0"}
    held = decide(inputs("1.5.0", status=failed)).status
    assert (held["phase"], held["reason"], held["activeVersion"]) == ("RolledBack", "Held", "1.4.0")
    retried = decide(inputs("1.5.0", status=held, annotations={ANNOTATION_RETRY: "1.5.0"}))
    assert retried.status["activeVersion"] == "1.5.0" and "heldVersion" not in retried.status
    moved = decide(inputs("1.6.0", status=held)).status
    assert moved["activeVersion"] == "1.6.0"


def test_verified_at_reads_status_and_history() -> None:
    status = decide(inputs()).status
    assert verified_at(status, "1.4.0") == NOW
    later = decide(inputs("1.5.0", status=status)).status
    assert verified_at(later, "1.4.0") == NOW  # moved on, still verified once
    assert verified_at({}, "1.4.0") is None


# ---------------------------------------------------------------- runs per version


def counts(active: int, total: int | None = None, succeeded: int = 0) -> dict[str, Any]:
    total = active + succeeded if total is None else total
    return {"total": total, "succeeded": succeeded, "failed": 0, "active": active}


def test_the_active_version_and_the_draining_ones_with_their_runs() -> None:
    entries = version_entries(
        [{"version": "1.0.0", "state": "Active"}],
        "1.1.0",
        {"1.0.0": counts(2), "1.1.0": counts(1)},
    )
    assert [(e["version"], e["state"], e["activeRuns"]) for e in entries] == [
        ("1.1.0", "Active", 1),
        ("1.0.0", "Draining", 2),
    ]
    assert entries[1]["runs"]["total"] == 2


def test_a_version_whose_last_run_ended_is_drained_and_keeps_its_counts() -> None:
    entries = version_entries(
        [{"version": "1.1.0", "state": "Active"}, {"version": "1.0.0", "state": "Draining"}],
        "1.1.0",
        {"1.0.0": counts(0, succeeded=2)},
    )
    assert [(e["version"], e["state"], e["activeRuns"]) for e in entries] == [
        ("1.1.0", "Active", 0),
        ("1.0.0", "Drained", 0),
    ]
    assert entries[1]["runs"]["succeeded"] == 2
    assert "runs" not in entries[0]  # no run yet: no counts shown


def test_drained_versions_are_bounded_newest_first() -> None:
    previous = [{"version": f"1.{i}.0", "state": "Drained"} for i in range(9, 0, -1)]
    entries = version_entries(previous, "2.0.0", {})
    assert [e["version"] for e in entries] == ["2.0.0", "1.9.0", "1.8.0", "1.7.0", "1.6.0", "1.5.0"]


def test_total_counts_add_up_every_version() -> None:
    assert total_counts({"1.0.0": counts(1, succeeded=2), "1.1.0": counts(3)}) == {
        "total": 6,
        "succeeded": 2,
        "failed": 0,
        "active": 4,
    }


def test_only_inflight_cancel_cancels_and_never_the_active_version() -> None:
    found = {"1.0.0": counts(2), "1.1.0": counts(1), "0.9.0": counts(0, succeeded=1)}
    assert versions_to_cancel("cancel", "1.1.0", found) == ["1.0.0"]
    assert versions_to_cancel("pin", "1.1.0", found) == []
    assert versions_to_cancel("cancel", None, found) == []

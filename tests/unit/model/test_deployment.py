"""The deployment state machine, table by table."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

from controller.api import kinds
from controller.model.deployment import (
    ANNOTATION_APPROVED_BY,
    ANNOTATION_HOLD,
    ANNOTATION_HOLD_BY,
    ANNOTATION_HOLD_PIN,
    ANNOTATION_RETRY,
    Decision,
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
    rollout: dict[str, Any] | None = None,
    canary_runs: tuple[tuple[str, datetime.datetime | None], ...] = (),
    now: datetime.datetime = NOW,
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
        environment_spec={
            "promotion": promotion or {},
            **({"rollout": rollout} if rollout else {}),
        },
        info=info,
        hold_info=hold_info,
        upstream_verified_at=upstream,
        now=now,
        canary_runs=canary_runs,
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


def test_release_is_in_history_and_the_rollback_row_has_the_held_versions_commit() -> None:
    """Issue 14: `release` after a rollback left no history row, and the rollback's row
    carried the commit of the pinned version, not of the version activated."""
    verified = decide(inputs("1.5.0", status=decide(inputs()).status)).status
    hold = {ANNOTATION_HOLD: "1.4.0", ANNOTATION_HOLD_PIN: "1.5.0", ANNOTATION_HOLD_BY: "ops"}
    decision = decide(
        inputs(
            "1.5.0", status=verified, annotations=hold, hold_info=VersionInfo(True, commit="0ld")
        )
    )
    assert [(t.result, t.commit) for t in decision.transitions] == [("RolledBack", "0ld")]
    held = decision.status
    rolled_back = held["history"][0]  # newest first
    assert (rolled_back["result"], rolled_back["version"]) == ("RolledBack", "1.4.0")
    assert rolled_back["commit"] == "0ld"
    released = decide(inputs("1.5.0", status=held)).status
    rows = [(row["result"], row["version"]) for row in released["history"][:3]]
    assert rows == [("Activated", "1.5.0"), ("Released", "1.5.0"), ("RolledBack", "1.4.0")]
    assert released["history"][1]["commit"] == "c0ffee"


def test_a_hold_on_a_version_that_is_not_mirrored_is_removed() -> None:
    """`flowpin rollback --to 9.9.9` by annotation: nothing could run it, so the hold goes
    and git is followed, instead of `Held` until someone releases it (issue 14)."""
    verified = decide(inputs("1.5.0", status=decide(inputs()).status)).status
    hold = {ANNOTATION_HOLD: "9.9.9", ANNOTATION_HOLD_PIN: "1.5.0", ANNOTATION_HOLD_BY: "ops"}
    decision = decide(
        inputs("1.5.0", status=verified, annotations=hold, hold_info=VersionInfo(False))
    )
    assert (decision.status["phase"], decision.status["activeVersion"]) == ("Verified", "1.5.0")
    assert set(decision.consumed_annotations) >= {
        ANNOTATION_HOLD,
        ANNOTATION_HOLD_PIN,
        ANNOTATION_HOLD_BY,
    }
    (removed,) = [t for t in decision.transitions if t.result == "HoldRemoved"]
    assert (removed.version, removed.reason, removed.initiator) == (
        "9.9.9",
        "UnknownVersion",
        "ops",
    )
    assert "no such version is mirrored" in removed.message


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


# ---------------------------------------------------------------- canary rollout

CANARY: dict[str, Any] = {
    "strategy": "canary",
    "steps": [{"weight": 10, "pause": "10m"}, {"weight": 50, "pause": "10m"}],
    "analysis": {"minRuns": 4, "successRate": 0.75, "maxFailedRuns": 2},
}
MIN = datetime.timedelta(minutes=1)


def ok(n: int, failed: int = 0, at: datetime.datetime = NOW) -> tuple[Any, ...]:
    return (("Succeeded", at),) * n + (("Failed", at),) * failed


def stable() -> dict[str, Any]:
    """1.4.0 active and Verified: what a canary of 1.5.0 runs against."""
    return decide(inputs()).status


def canary_of(
    status: dict[str, Any] | None = None,
    minutes: int = 0,
    runs: tuple[Any, ...] = (),
    annotations: dict[str, str] | None = None,
    desired: str = "1.5.0",
    rollout: dict[str, Any] | None = None,
    promotion: dict[str, Any] | None = None,
) -> Decision:
    return decide(
        inputs(
            desired,
            status=stable() if status is None else status,
            annotations=annotations,
            rollout=rollout or CANARY,
            canary_runs=runs,
            now=NOW + minutes * MIN,
            promotion=promotion,
        )
    )


def test_a_canary_starts_once_the_gates_open() -> None:
    decision = canary_of()
    status = decision.status
    assert (status["phase"], status["reason"], status["activeVersion"]) == (
        "Canary",
        "CanaryProgressing",
        "1.4.0",
    )
    assert {k: status["canary"][k] for k in ("version", "weight", "step", "state")} == {
        "version": "1.5.0",
        "weight": 10,
        "step": 0,
        "state": "Progressing",
    }
    assert decision.wake_at == NOW + 10 * MIN
    assert condition(status, "Ready")["status"] == "False"
    assert condition(status, "Reconciling")["status"] == "True"
    assert [t.result for t in decision.transitions] == ["CanaryStarted"]
    assert status["history"][0]["result"] == "CanaryStarted"
    assert status["message"].startswith("canary 1.5.0 at 10% (step 1/2), 1.4.0 the rest: ")
    assert decision.transitions[0].message.startswith("canary 1.5.0 started: 10% of new runs")


def test_a_canary_stays_until_its_pause_ends_and_writes_nothing_new() -> None:
    started = canary_of().status
    again = canary_of(started, minutes=3)
    assert again.status == started and again.transitions == []
    assert again.wake_at == NOW + 10 * MIN


def test_a_canary_moves_to_its_next_step_then_is_promoted() -> None:
    started = canary_of().status
    step = canary_of(started, minutes=11, runs=ok(4, at=NOW + 5 * MIN))
    assert (step.status["canary"]["step"], step.status["canary"]["weight"]) == (1, 50)
    assert [t.result for t in step.transitions] == ["CanaryStep"]
    assert step.status["history"] == started["history"]  # an Event, not history
    assert step.wake_at == NOW + 21 * MIN
    runs = ok(4, at=NOW + 5 * MIN) + ok(5, 1, at=NOW + 15 * MIN)
    done = canary_of(step.status, minutes=21, runs=runs)
    status = done.status
    assert (status["phase"], status["activeVersion"], status["previousVersion"]) == (
        "Verified",
        "1.5.0",
        "1.4.0",
    )
    assert "canary" not in status
    (activated,) = done.transitions
    assert (activated.result, activated.initiator) == ("Activated", "Ada <ada@example.com>")
    assert activated.message.startswith("canary passed: 9/10 canary runs succeeded (90%)")
    assert (status["history"][0]["result"], status["history"][0]["reason"]) == (
        "Activated",
        "CanaryPassed",
    )
    assert verified_at(status, "1.5.0") == NOW + 21 * MIN
    assert decide(inputs("1.5.0", status=status, rollout=CANARY)).transitions == []


def test_promote_full_takes_over_at_once() -> None:
    started = canary_of().status
    decision = canary_of(started, minutes=1, annotations={kinds.ANNOTATION_PROMOTE_FULL: "1.5.0"})
    assert decision.status["activeVersion"] == "1.5.0" and "canary" not in decision.status
    assert decision.transitions[0].initiator == "flowpin promote --full"
    assert decision.consumed_annotations == [kinds.ANNOTATION_PROMOTE_FULL]


def test_abort_by_annotation_holds_the_version() -> None:
    started = canary_of().status
    decision = canary_of(
        started, minutes=1, runs=ok(1), annotations={kinds.ANNOTATION_ABORT: "1.5.0"}
    )
    status = decision.status
    (rolled_back,) = decision.transitions
    assert (rolled_back.result, rolled_back.initiator, rolled_back.warning) == (
        "RolledBack",
        "flowpin abort",
        True,
    )
    assert (status["phase"], status["activeVersion"], status["heldVersion"]) == (
        "RolledBack",
        "1.4.0",
        "1.5.0",
    )
    assert (status["canary"]["weight"], status["canary"]["state"]) == (0, "Aborted")
    assert decision.consumed_annotations == [kinds.ANNOTATION_ABORT]
    assert "aborted by `flowpin abort`" in status["message"]


def test_too_many_failed_runs_abort_mid_pause_and_the_hold_keeps_the_figures() -> None:
    started = canary_of().status
    decision = canary_of(started, minutes=2, runs=ok(1, 3, at=NOW + MIN))
    status = decision.status
    assert (status["phase"], status["reason"], status["heldVersion"]) == (
        "RolledBack",
        "CanaryAborted",
        "1.5.0",
    )
    assert status["message"].startswith(
        "canary 1.5.0 was aborted: 3 canary runs failed, more than maxFailedRuns 2; "
        "1/4 canary runs succeeded (25%). Every new run goes to 1.4.0; it is not tried again"
    )
    assert (decision.transitions[0].result, decision.transitions[0].reason) == (
        "RolledBack",
        "CanaryFailed",
    )
    assert status["history"][0]["result"] == "RolledBack"
    assert condition(status, "Stalled")["status"] == "True"
    assert decision.wake_at is None
    later = canary_of(status, minutes=30, runs=ok(1, 3, at=NOW + MIN))
    assert later.status == status and later.transitions == []


def test_a_low_success_rate_aborts_when_the_pause_ends() -> None:
    runs = ok(2, 2, at=NOW + MIN)
    started = canary_of().status
    assert canary_of(started, minutes=9, runs=runs).status["phase"] == "Canary"
    status = canary_of(started, minutes=10, runs=runs).status
    assert status["phase"] == "RolledBack"
    assert "2/4 canary runs succeeded (50%), below 75%" in status["message"]


def test_a_verdict_waits_for_enough_runs_without_a_wake_up() -> None:
    started = canary_of().status
    decision = canary_of(started, minutes=15, runs=ok(3))
    assert (decision.status["phase"], decision.status["reason"]) == ("Canary", "CanaryAwaitingRuns")
    assert decision.wake_at is None and "a verdict needs 4" in decision.status["message"]


def test_the_window_leaves_old_runs_out() -> None:
    rollout = {**CANARY, "analysis": {"minRuns": 4, "window": "5m"}}
    started = canary_of(rollout=rollout).status
    status = canary_of(started, minutes=11, runs=ok(4, at=NOW + 2 * MIN), rollout=rollout).status
    assert status["canary"]["analysis"]["finished"] == 0
    assert status["reason"] == "CanaryAwaitingRuns"


def test_retry_restarts_the_canary_from_step_zero() -> None:
    started = canary_of().status
    aborted = canary_of(started, minutes=2, runs=ok(0, 3, at=NOW + MIN)).status
    # The abort request lingers (not removed yet): the retry supersedes it.
    annotations = {ANNOTATION_RETRY: "1.5.0", kinds.ANNOTATION_ABORT: "1.5.0"}
    retried = canary_of(aborted, minutes=30, runs=ok(0, 3, at=NOW + MIN), annotations=annotations)
    status = retried.status
    assert [t.result for t in retried.transitions] == ["Retried", "CanaryStarted"]
    assert (status["phase"], status["canary"]["step"], status["canary"]["state"]) == (
        "Canary",
        0,
        "Progressing",
    )
    assert status["canary"]["startedAt"] == "2026-11-23T12:30:00Z"
    assert status["canary"]["analysis"]["failed"] == 0  # the first attempt's runs are past
    assert "heldVersion" not in status
    assert sorted(retried.consumed_annotations) == sorted(annotations)


def test_a_new_pin_drops_the_canary_and_starts_another() -> None:
    started = canary_of().status
    decision = canary_of(started, minutes=3, desired="1.6.0")
    status = decision.status
    assert [t.result for t in decision.transitions] == ["CanarySuperseded", "CanaryStarted"]
    assert (status["activeVersion"], status["canary"]["version"], status["canary"]["step"]) == (
        "1.4.0",
        "1.6.0",
        0,
    )


def test_a_new_pin_after_an_abort_ends_the_hold() -> None:
    aborted = canary_of(canary_of().status, minutes=2, runs=ok(0, 3)).status
    status = canary_of(aborted, minutes=5, desired="1.6.0").status
    assert "heldVersion" not in status
    assert (status["phase"], status["canary"]["version"]) == ("Canary", "1.6.0")


def test_without_a_stable_version_the_first_one_is_activated_at_once() -> None:
    decision = decide(inputs(rollout=CANARY))
    assert (decision.status["phase"], decision.status["activeVersion"]) == ("Verified", "1.4.0")
    assert decision.transitions[0].message == "1.4.0 is active"
    assert "canary" not in decision.status


def test_gates_are_not_asked_again_once_the_canary_runs() -> None:
    started = canary_of().status
    decision = canary_of(started, minutes=3, promotion={"approval": "required"})
    assert decision.status["phase"] == "Canary" and decision.transitions == []
    blocked = canary_of(promotion={"approval": "required"}).status
    assert (blocked["phase"], blocked.get("canary")) == ("Blocked", None)


def test_switching_to_immediate_mid_canary_activates() -> None:
    started = canary_of().status
    status = decide(inputs("1.5.0", status=started, now=NOW + MIN)).status
    assert (status["phase"], status["activeVersion"]) == ("Verified", "1.5.0")
    assert "canary" not in status


def test_a_rollback_hold_drops_the_canary() -> None:
    started = canary_of().status
    hold = {ANNOTATION_HOLD: "1.4.0", ANNOTATION_HOLD_PIN: "1.5.0"}
    held = canary_of(started, minutes=1, annotations=hold).status
    assert (held["phase"], held["activeVersion"], held.get("canary")) == ("Held", "1.4.0", None)
    released = canary_of(held, minutes=2)
    assert [t.result for t in released.transitions] == ["Released", "CanaryStarted"]


def test_stale_one_shot_annotations_are_consumed() -> None:
    annotations = {
        kinds.ANNOTATION_ABORT: "1.4.9",  # another version
        kinds.ANNOTATION_PROMOTE_FULL: "1.4.0",  # already active
        ANNOTATION_RETRY: "1.4.0",  # nothing held
    }
    assert sorted(decide(inputs(annotations=annotations)).consumed_annotations) == sorted(
        annotations
    )
    # A request for the desired version waits for its canary (gates still closed).
    waiting = {kinds.ANNOTATION_PROMOTE_FULL: "1.5.0"}
    blocked = canary_of(annotations=waiting, promotion={"approval": "required"})
    assert blocked.consumed_annotations == []


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


def test_a_progressing_canary_is_listed_after_the_active_version() -> None:
    canary = {"version": "1.5.0", "state": "Progressing", "weight": 10}
    previous = [{"version": "1.3.0", "state": "Canary"}]
    entries = version_entries(
        previous, "1.4.0", {"1.5.0": counts(1), "1.3.0": counts(0), "1.2.0": counts(2)}, canary
    )
    assert [(e["version"], e["state"]) for e in entries] == [
        ("1.4.0", "Active"),
        ("1.5.0", "Canary"),
        ("1.2.0", "Draining"),
        ("1.3.0", "Drained"),
    ]
    aborted = {**canary, "state": "Aborted", "weight": 0}
    entries = version_entries([], "1.4.0", {"1.5.0": counts(1)}, aborted)
    assert [(e["version"], e["state"]) for e in entries] == [
        ("1.4.0", "Active"),
        ("1.5.0", "Draining"),
    ]


def test_an_upstream_that_does_not_exist_stalls_and_says_so() -> None:
    """`promotion.from: uat` with no `uat`: it never "proceeds by itself" (issue 14)."""
    decision = decide(replace(inputs(promotion={"from": "uat"}), upstream_exists=False))
    status = decision.status
    assert (status["phase"], status["reason"]) == ("Blocked", "UpstreamNotFound")
    stalled = condition(status, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "UpstreamNotFound")
    assert condition(status, "Reconciling")["status"] == "False"
    assert "prod promotes from uat, but there is no such environment" in status["message"]
    assert "proceeds by itself" not in status["message"]

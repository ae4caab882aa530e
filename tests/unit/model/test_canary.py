"""Canary assignment, analysis and progress, table by table."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from controller.api import kinds
from controller.model import canary
from controller.model.canary import Analysis, analyse, assign, bucket, progress

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
MIN = datetime.timedelta(minutes=1)
ROLLOUT: dict[str, Any] = {
    "strategy": "canary",
    "steps": [{"weight": 10, "pause": "10m"}, {"weight": 50, "pause": "10m"}],
    "analysis": {"minRuns": 4, "successRate": 0.75},
}


def running(
    step: int = 0, weight: int = 10, step_started: datetime.datetime = NOW - 11 * MIN
) -> dict[str, Any]:
    return {
        "version": "1.5.0",
        "weight": weight,
        "step": step,
        "state": "Progressing",
        "startedAt": "2026-11-23T11:30:00Z",
        "stepStartedAt": canary.rfc3339(step_started),
    }


def runs(succeeded: int, failed: int = 0, at: datetime.datetime = NOW - MIN) -> list[Any]:
    return [("Succeeded", at)] * succeeded + [("Failed", at)] * failed


# ---------------------------------------------------------------- assignment


def test_bucket_is_stable_and_in_range() -> None:
    assert bucket("lead-nurture-x7k2p") == bucket("lead-nurture-x7k2p")
    assert {bucket(f"run-{i}") for i in range(2000)} == set(range(100))


@pytest.mark.parametrize("weight", [10, 50, 90])
def test_the_split_matches_the_weight_over_many_runs(weight: int) -> None:
    status = {"version": "1.5.0", "weight": weight, "state": "Progressing"}
    names = [f"lead-nurture-{i:05d}" for i in range(10_000)]
    share = sum(assign(name, "1.4.0", status)[0] == "1.5.0" for name in names) / 100
    assert abs(share - weight) <= 1.5


@pytest.mark.parametrize(
    ("weight", "state", "expected"),
    [(0, "Progressing", 0), (100, "Progressing", 500), (100, "Aborted", 0), (50, "", 0)],
)
def test_weight_bounds_and_states(weight: int, state: str, expected: int) -> None:
    status = {"version": "1.5.0", "weight": weight, "state": state}
    got = [assign(f"r{i}", "1.4.0", status)[0] for i in range(500)]
    assert got.count("1.5.0") == expected
    assert got.count("1.4.0") == 500 - expected


def test_assignment_reason_and_monotony() -> None:
    name = next(f"r{i}" for i in range(100) if bucket(f"r{i}") < 10)
    at10 = {"version": "1.5.0", "weight": 10, "state": "Progressing"}
    assert assign(name, "1.4.0", at10, "prod") == ("1.5.0", "canary in prod (10% of new runs)")
    assert assign(name, "1.4.0", {**at10, "weight": 50})[0] == "1.5.0"  # stays on the canary
    assert assign(name, "1.4.0", {}, "prod") == ("1.4.0", "active in prod")
    assert assign(name, None, {}) == (None, "active")


# ---------------------------------------------------------------- analysis


@pytest.mark.parametrize(
    ("spec", "ok", "bad", "verdict", "message"),
    [
        (
            {"minRuns": 4},
            3,
            0,
            "Pending",
            "3 canary runs finished (3 succeeded); a verdict needs 4",
        ),
        ({}, 0, 0, "Pending", "0 canary runs finished (0 succeeded); a verdict needs 1"),
        ({"minRuns": 0}, 0, 0, "Passed", "no canary run finished; minRuns is 0"),
        ({"successRate": 0.95}, 19, 1, "Passed", "19/20 canary runs succeeded (95%), at least 95%"),
        ({"successRate": 0.95}, 18, 2, "Failed", "18/20 canary runs succeeded (90%), below 95%"),
        ({}, 3, 7, "Failed", "3/10 canary runs succeeded (30%), below 95%"),
        ({"successRate": 0.5}, 2, 1, "Passed", "2/3 canary runs succeeded (66.7%), at least 50%"),
    ],
)
def test_verdicts(spec: dict[str, Any], ok: int, bad: int, verdict: str, message: str) -> None:
    result = analyse(runs(ok, bad), spec, NOW - 30 * MIN, NOW)
    assert (result.verdict, result.message, result.tripped) == (verdict, message, False)


@pytest.mark.parametrize(("failed", "tripped"), [(2, False), (3, True)])
def test_max_failed_runs_is_the_most_tolerated(failed: int, tripped: bool) -> None:
    result = analyse(runs(20, failed), {"maxFailedRuns": 2, "minRuns": 50}, NOW - MIN * 30, NOW)
    assert result.tripped is tripped
    assert result.verdict == ("Failed" if tripped else "Pending")
    if tripped:
        assert result.message == (
            "3 canary runs failed, more than maxFailedRuns 2; 20/23 canary runs succeeded (87%)"
        )


def test_max_failed_runs_zero_aborts_on_the_first_failure() -> None:
    assert not analyse(runs(5), {"maxFailedRuns": 0}, NOW - MIN, NOW).tripped
    assert analyse(runs(5, 1), {"maxFailedRuns": 0}, NOW - MIN * 2, NOW).tripped


def test_only_finished_runs_since_the_start_and_within_the_window_count() -> None:
    found = [
        ("Succeeded", NOW - 40 * MIN),  # before the canary started
        ("Failed", NOW - 20 * MIN),  # outside a 10m window
        ("Cancelled", NOW - 5 * MIN),  # counts as failed
        ("Succeeded", NOW - 10 * MIN),  # exactly at the window's edge: counts
        ("Running", None),
        ("Succeeded", None),
    ]
    since = NOW - 30 * MIN
    assert (analyse(found, {}, since, NOW).finished, analyse(found, {}, since, NOW).failed) == (
        3,
        2,
    )
    windowed = analyse(found, {"window": "10m"}, since, NOW)
    assert (windowed.finished, windowed.succeeded, windowed.failed) == (2, 1, 1)
    # A window longer than the canary: the canary's start still bounds it.
    assert analyse(found, {"window": "2h"}, since, NOW).finished == 3


def test_analysis_status() -> None:
    assert analyse(runs(2, 1), {}, NOW - MIN * 2, NOW).as_status() == {
        "finished": 3,
        "succeeded": 2,
        "failed": 1,
        "successRate": 0.6667,
        "verdict": "Failed",
        "message": "2/3 canary runs succeeded (66.7%), below 95%",
    }
    assert "successRate" not in Analysis(0, 0, 0, "Pending", "").as_status()


# ---------------------------------------------------------------- progress


def test_start_at_step_zero_and_wake_at_the_pause_end() -> None:
    moved = progress(ROLLOUT, {}, "1.5.0", "1.4.0", runs(9), {}, NOW)
    assert moved.action == "start" and moved.wake_at == NOW + 10 * MIN
    assert {k: v for k, v in moved.canary.items() if k != "analysis"} == {
        "version": "1.5.0",
        "weight": 10,
        "step": 0,
        "state": "Progressing",
        "startedAt": "2026-11-23T12:00:00Z",
        "stepStartedAt": "2026-11-23T12:00:00Z",
    }
    assert moved.canary["analysis"]["finished"] == 0  # earlier runs are not evidence
    assert moved.what == "canary 1.5.0 started: 10% of new runs (step 1/2), 1.4.0 the rest"
    assert moved.message == (
        "canary 1.5.0 at 10% (step 1/2), 1.4.0 the rest: 0 canary runs finished (0 succeeded); "
        "a verdict needs 4; the step's pause ends at 2026-11-23T12:10:00Z"
    )
    # The same line while nothing changes: a reconcile with no news writes nothing.
    again = progress(ROLLOUT, moved.canary, "1.5.0", "1.4.0", (), {}, NOW + 5 * MIN)
    assert (again.action, again.message, again.canary) == ("stay", moved.message, moved.canary)


@pytest.mark.parametrize(
    "current",
    [
        {**running(), "version": "1.4.9"},  # another version's canary
        {**running(), "state": "Aborted", "weight": 0},  # an aborted one (retried)
        {**running(), "stepStartedAt": "garbage"},
    ],
)
def test_anything_but_a_progressing_canary_of_the_version_starts_afresh(
    current: dict[str, Any],
) -> None:
    moved = progress(ROLLOUT, current, "1.5.0", "1.4.0", runs(9), {}, NOW)
    assert (moved.action, moved.canary["step"], moved.canary["startedAt"]) == (
        "start",
        0,
        "2026-11-23T12:00:00Z",
    )


def test_stay_during_the_pause_shows_a_provisional_verdict() -> None:
    current = running(step_started=NOW - 4 * MIN)
    moved = progress(ROLLOUT, current, "1.5.0", "1.4.0", runs(1, 3), {}, NOW)
    assert (moved.action, moved.reason, moved.wake_at) == (
        "stay",
        "CanaryProgressing",
        NOW + 6 * MIN,
    )
    assert moved.canary["analysis"]["verdict"] == "Pending"  # judged when the pause ends
    assert moved.canary["analysis"]["message"] == (
        "1/4 canary runs succeeded (25%), below 75%; judged at 2026-11-23T12:06:00Z"
    )
    assert moved.canary["stepStartedAt"] == "2026-11-23T11:56:00Z"


def test_advance_after_the_pause_with_a_passed_verdict() -> None:
    moved = progress(ROLLOUT, running(), "1.5.0", "1.4.0", runs(4), {}, NOW)
    assert moved.action == "advance" and moved.wake_at == NOW + 10 * MIN
    assert (moved.canary["step"], moved.canary["weight"], moved.canary["stepStartedAt"]) == (
        1,
        50,
        "2026-11-23T12:00:00Z",
    )
    assert moved.canary["startedAt"] == "2026-11-23T11:30:00Z"
    assert moved.what == (
        "canary 1.5.0 passed step 1/2 (4/4 canary runs succeeded (100%), at least 75%): "
        "now 50% of new runs (step 2/2)"
    )
    assert moved.message.startswith("canary 1.5.0 at 50% (step 2/2), 1.4.0 the rest: 4/4")


def test_promote_after_the_last_step_passes() -> None:
    moved = progress(ROLLOUT, running(1, 50), "1.5.0", "1.4.0", runs(3, 1), {}, NOW)
    assert (moved.action, moved.reason, moved.canary) == ("promote", "CanaryPassed", {})
    assert moved.message == (
        "canary passed: 3/4 canary runs succeeded (75%), at least 75%; 1.5.0 takes every new run"
    )


def test_a_pending_verdict_after_the_pause_waits_for_runs() -> None:
    moved = progress(ROLLOUT, running(), "1.5.0", "1.4.0", runs(3), {}, NOW)
    assert (moved.action, moved.reason, moved.wake_at) == ("stay", "CanaryAwaitingRuns", None)
    assert moved.canary["step"] == 0 and "a verdict needs 4" in moved.message


def test_abort_on_the_success_rate_at_the_pause_end() -> None:
    moved = progress(ROLLOUT, running(), "1.5.0", "1.4.0", runs(2, 2), {}, NOW)
    assert (moved.action, moved.reason, moved.initiator) == ("abort", "CanaryFailed", "controller")
    assert (moved.canary["weight"], moved.canary["state"], moved.canary["step"]) == (
        0,
        "Aborted",
        0,
    )
    assert moved.canary["analysis"]["verdict"] == "Failed"
    assert moved.message == (
        "canary 1.5.0 aborted at 10% (step 1/2): 2/4 canary runs succeeded (50%), below 75%; "
        "every new run goes to 1.4.0"
    )


def test_max_failed_runs_aborts_mid_pause() -> None:
    rollout = {**ROLLOUT, "analysis": {"minRuns": 20, "maxFailedRuns": 1}}
    current = running(step_started=NOW - MIN)
    assert progress(rollout, current, "1.5.0", "1.4.0", runs(5, 1), {}, NOW).action == "stay"
    moved = progress(rollout, current, "1.5.0", "1.4.0", runs(5, 2), {}, NOW)
    assert moved.action == "abort" and moved.canary["analysis"]["verdict"] == "Failed"


@pytest.mark.parametrize("current", [{}, running(step_started=NOW - MIN)])
def test_promote_full_by_annotation(current: dict[str, Any]) -> None:
    annotations = {kinds.ANNOTATION_PROMOTE_FULL: "1.5.0"}
    moved = progress(ROLLOUT, current, "1.5.0", "1.4.0", runs(1), annotations, NOW)
    assert (moved.action, moved.initiator, moved.consumed) == (
        "promote",
        "flowpin promote --full",
        (kinds.ANNOTATION_PROMOTE_FULL,),
    )


def test_abort_by_annotation_wins_and_an_annotation_for_another_version_is_ignored() -> None:
    both = {kinds.ANNOTATION_ABORT: "1.5.0", kinds.ANNOTATION_PROMOTE_FULL: "1.5.0"}
    current = running(step_started=NOW - MIN)
    moved = progress(ROLLOUT, current, "1.5.0", "1.4.0", runs(2), both, NOW)
    assert (moved.action, moved.reason, moved.initiator) == (
        "abort",
        "CanaryAborted",
        "flowpin abort",
    )
    assert moved.consumed == (kinds.ANNOTATION_ABORT,)
    assert moved.canary["analysis"]["message"].startswith("aborted by `flowpin abort`; ")
    other = {kinds.ANNOTATION_ABORT: "1.4.9"}
    assert progress(ROLLOUT, current, "1.5.0", "1.4.0", runs(2), other, NOW).action == "stay"


def test_no_steps_promotes_at_once() -> None:
    moved = progress({"strategy": "canary"}, {}, "1.5.0", "1.4.0", (), {}, NOW)
    assert (moved.action, moved.reason) == ("promote", "NoCanarySteps")


def test_a_step_without_pause_is_judged_at_once() -> None:
    rollout = {"steps": [{"weight": 20}, {"weight": 60}], "analysis": {"minRuns": 0}}
    started = progress(rollout, {}, "1.5.0", "1.4.0", (), {}, NOW)
    assert (started.action, started.wake_at) == ("start", None)
    moved = progress(rollout, started.canary, "1.5.0", "1.4.0", (), {}, NOW)
    assert (moved.action, moved.canary["weight"]) == ("advance", 60)


def test_fewer_steps_after_a_spec_change_judge_the_last_one() -> None:
    rollout = {**ROLLOUT, "steps": [{"weight": 10, "pause": "10m"}]}
    moved = progress(rollout, running(3, 80), "1.5.0", "1.4.0", runs(4), {}, NOW)
    assert moved.action == "promote"

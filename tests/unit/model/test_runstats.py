"""Run counts that stay exact across restarts (controller.model.runstats)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.model.runstats import RECENT_LIMIT, counts, duration_seconds, expired, fold

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def run(uid: str, phase: str | None = "Succeeded", seconds: float | None = 10.0) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
        status["startedAt"] = "2024-05-01T12:00:00.000000Z"
    if seconds is not None and phase is not None:
        finished = T0 + timedelta(seconds=seconds)
        status["finishedAt"] = finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"metadata": {"uid": uid, "name": f"run-{uid}"}, "status": status}


@pytest.mark.parametrize(
    ("status", "seconds"),
    [
        ({"startedAt": "2024-05-01T12:00:00Z", "finishedAt": "2024-05-01T12:01:30.5Z"}, 90.5),
        ({"startedAt": "2024-05-01T12:00:00Z"}, None),
        ({"finishedAt": "2024-05-01T12:00:00Z"}, None),
        ({"startedAt": "2024-05-01T12:00:10Z", "finishedAt": "2024-05-01T12:00:00Z"}, 0.0),
    ],
)
def test_duration_seconds(status: dict[str, Any], seconds: float | None) -> None:
    assert duration_seconds(status) == seconds


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            run("a", "Succeeded", 10),
            {"total": 1, "succeeded": 1, "finished": 1, "durationSeconds": 10.0},
        ),
        (run("a", "Failed", 2.5), {"total": 1, "failed": 1, "finished": 1, "durationSeconds": 2.5}),
        (
            run("a", "Cancelled", 1),
            {"total": 1, "cancelled": 1, "finished": 1, "durationSeconds": 1.0},
        ),
        # deleted before it finished: counted as cancelled, without a duration
        (run("a", "Running", None), {"total": 1, "cancelled": 1}),
        (run("a", "Waiting", None), {"total": 1, "cancelled": 1}),
        (run("a", None), {"total": 1, "cancelled": 1}),
        (run("a", "Failed", None), {"total": 1, "failed": 1}),  # failed before it started
    ],
)
def test_fold_one_run(item: dict[str, Any], expected: dict[str, Any]) -> None:
    ledger = fold({}, item, set())
    assert ledger == {**expected, "recent": ["a"]}


def test_fold_adds_to_the_ledger() -> None:
    ledger: dict[str, Any] = {}
    for uid, phase, seconds in [
        ("a", "Succeeded", 10),
        ("b", "Failed", 20),
        ("c", "Succeeded", 1.5),
    ]:
        new = fold(ledger, run(uid, phase, seconds), set())
        assert new is not None
        ledger = new
    assert ledger == {
        "total": 3,
        "succeeded": 2,
        "failed": 1,
        "finished": 3,
        "durationSeconds": 31.5,
        "recent": ["a", "b", "c"],
    }


def test_fold_twice_of_the_same_uid_counts_once() -> None:
    """A fold repeated after a crash (ledger written, finalizer not yet removed)."""
    first = fold({"total": 4, "succeeded": 4}, run("a"), set())
    assert first is not None and first["total"] == 5
    assert fold(first, run("a"), set()) is None
    assert fold(first, run("a", "Failed"), set()) is None  # whatever its status says now


def test_recent_drops_only_runs_seen_deleted() -> None:
    ledger = {"total": 3, "succeeded": 3, "recent": ["gone1", "a", "gone2"]}
    new = fold(ledger, run("b"), {"gone1", "gone2"})
    assert new is not None and new["recent"] == ["a", "b"] and new["total"] == 4
    # a run deleted long ago (no longer in `recent`) is a different uid: nothing is lost
    assert fold(new, run("gone1"), set()) is not None


def test_recent_is_bounded() -> None:
    uids = [f"u{i}" for i in range(RECENT_LIMIT + 10)]
    ledger: dict[str, Any] = {}
    for uid in uids:
        new = fold(ledger, run(uid), set())
        assert new is not None
        ledger = new
    assert ledger["total"] == len(uids)
    assert ledger["recent"] == uids[-RECENT_LIMIT:]


def test_fold_does_not_change_its_input() -> None:
    ledger = {"total": 1, "succeeded": 1, "recent": ["x"]}
    fold(ledger, run("a"), set())
    assert ledger == {"total": 1, "succeeded": 1, "recent": ["x"]}


@pytest.mark.parametrize(
    ("ledger", "live", "expected"),
    [
        ({}, [], {"total": 0, "succeeded": 0, "failed": 0, "active": 0}),
        (
            {},
            [
                run("a", "Succeeded", 10),
                run("b", "Failed", 20),
                run("c", "Running", None),
                run("d", "Waiting", None),
                run("e", "Cancelled", 30),
                run("f", None),
            ],
            {"total": 6, "succeeded": 1, "failed": 2, "active": 3, "avgDurationSeconds": 20.0},
        ),
        # the ledger's cancelled runs count as failed
        (
            {
                "total": 10,
                "succeeded": 6,
                "failed": 3,
                "cancelled": 1,
                "finished": 9,
                "durationSeconds": 90.0,
            },
            [],
            {"total": 10, "succeeded": 6, "failed": 4, "active": 0, "avgDurationSeconds": 10.0},
        ),
        # ledger + live, where folded-but-not-yet-released runs are not counted twice
        (
            {
                "total": 2,
                "succeeded": 1,
                "failed": 1,
                "finished": 2,
                "durationSeconds": 30.0,
                "recent": ["a", "b"],
            },
            [
                run("a", "Succeeded", 10),
                run("b", "Failed", 20),
                run("c", "Succeeded", 60),
                run("d", "Running", None),
            ],
            {"total": 4, "succeeded": 2, "failed": 1, "active": 1, "avgDurationSeconds": 30.0},
        ),
        # an average of thirds is rounded to milliseconds
        (
            {},
            [run("a", "Succeeded", 1), run("b", "Succeeded", 1), run("c", "Succeeded", 0.001)],
            {"total": 3, "succeeded": 3, "failed": 0, "active": 0, "avgDurationSeconds": 0.667},
        ),
        # a failed run without a start has no duration, so no average
        (
            {},
            [run("a", "Failed", None)],
            {"total": 1, "succeeded": 0, "failed": 1, "active": 0},
        ),
    ],
)
def test_counts(
    ledger: dict[str, Any], live: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    assert counts(ledger, live) == expected


def test_counts_stay_exact_through_a_crash_between_fold_and_release() -> None:
    live = [run("a", "Succeeded", 10), run("b", "Failed", 20), run("c", "Running", None)]
    before = counts({}, live)
    ledger = fold({}, live[0], set())  # "a" is being deleted: folded ...
    assert ledger is not None
    assert counts(ledger, live) == before  # ... but still in the cache: not counted twice
    assert fold(ledger, live[0], set()) is None  # the repeated fold after a crash
    assert counts(ledger, live[1:]) == before  # released: the ledger carries it


@pytest.mark.parametrize(
    ("status", "ttl", "due"),
    [
        (
            {"phase": "Succeeded", "finishedAt": "2024-05-01T12:00:00Z"},
            3600,
            T0 + timedelta(hours=1),
        ),
        ({"phase": "Failed", "finishedAt": "2024-05-01T12:00:00Z"}, 0, T0),
        (
            {"phase": "Cancelled", "finishedAt": "2024-05-01T12:00:00.5Z"},
            60,
            T0 + timedelta(seconds=60.5),
        ),
        ({"phase": "Running", "finishedAt": "2024-05-01T12:00:00Z"}, 60, None),
        ({"phase": "Waiting"}, 60, None),
        ({"phase": "Succeeded"}, 60, None),
        ({}, 60, None),
    ],
)
def test_expired(status: dict[str, Any], ttl: int, due: datetime | None) -> None:
    assert expired(status, ttl, T0) == due


def test_a_restart_with_a_partial_cache_never_counts_a_held_run_twice() -> None:
    """Run a was folded, then the operator crashed before releasing it. After the restart b
    is folded while a is not yet in the cache: a must stay in `recent`."""
    a, b = run("a", "Succeeded", 1), run("b", "Succeeded", 1)
    ledger = fold({}, a, set())
    assert ledger is not None
    ledger = fold(ledger, b, set())  # nothing seen deleted yet in the new process
    assert ledger is not None and ledger["recent"] == ["a", "b"]
    assert counts(ledger, [a, b])["total"] == 2
    assert fold(ledger, a, set()) is None

"""The migration plan of in-flight runs (controller.model.migration): pure tables."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from controller.model.migration import (
    MigrationPlan,
    MigrationRefused,
    RunFacts,
    RunMove,
    apply_migration,
    next_batch,
    plan_migration,
    progress,
    run_facts,
)

T0 = datetime.datetime(2026, 3, 2, 12, 0, tzinfo=datetime.UTC)
WAKE = "2026-03-03T12:00:00.000000Z"


def steps(**types: str) -> list[dict[str, Any]]:
    return [{"id": sid.replace("_", "-"), "type": kind} for sid, kind in types.items()]


# Version 1.x: welcome → wait-1d → opened → follow-up; notify and pause are side paths.
V1_STEPS = steps(
    welcome="http",
    wait_1d="wait",
    opened="condition",
    follow_up="http",
    notify="http",
    pause="wait",
)
SOURCES: dict[str, dict[str, Any]] = {
    v: {"version": v, "steps": V1_STEPS} for v in ("0.9.0", "1.0.0", "1.1.0", "1.5.0-rc.1")
}
# 2.0.0 renames wait-1d to wait-2d, turns notify into a wait, drops pause.
TARGET_STEPS = steps(
    welcome="http",
    wait_2d="wait",
    wait_3d="wait",
    opened="condition",
    follow_up="http",
    notify="wait",
)
DEFAULT_MIGRATIONS = [{"from": ">=1.0.0 <2.0.0", "map": {"wait-1d": "wait-2d"}}]


def target(migrations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    entries = DEFAULT_MIGRATIONS if migrations is None else migrations
    return {"version": "2.0.0", "steps": TARGET_STEPS, "migrations": entries}


def facts(
    name: str = "r1",
    version: str = "1.0.0",
    step: str = "wait-1d",
    phase: str = "Waiting",
    *,
    in_flight: bool = False,
    variables: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
) -> RunFacts:
    return RunFacts(name, version, phase, step, None, variables or {}, in_flight, inputs or {})


def plan(*runs: RunFacts, migrations: list[dict[str, Any]] | None = None) -> MigrationPlan:
    return plan_migration("2.0.0", target(migrations), list(runs), SOURCES)


# ------------------------------------------------------------------------ routing one run


@pytest.mark.parametrize(
    ("run", "verdict", "expected"),
    [
        # the mapping of the entry whose range holds the run's version
        (facts(), "ready", "wait-2d"),
        (facts(version="1.1.0"), "ready", "wait-2d"),
        # no mapping: the same step id with the same type
        (facts(step="welcome", phase="Running"), "ready", "welcome"),
        (facts(step="opened", phase="Running"), "ready", "opened"),
        # the same id with another type: refused
        (facts(step="notify", phase="Running"), "type-changed", "is wait in version 2.0.0"),
        # the step is gone and nothing maps it
        (facts(step="pause"), "unmapped", "'pause' does not exist in version 2.0.0"),
        # outside every range (0.9.0; a pre-release unless the range names one): no mapping
        (facts(version="0.9.0"), "unmapped", "no migration for version 0.9.0"),
        (facts(version="1.5.0-rc.1"), "unmapped", "'wait-1d' does not exist"),
        # what the plan cannot know
        (facts(version="3.0.0"), "unknown-version", "definition of version 3.0.0"),
        (facts(step="ghost"), "unknown-step", "'ghost' is not a step of version 1.0.0"),
        # in flight: eligible, but not yet
        (facts(step="welcome", phase="Running", in_flight=True), "deferred", "safe point"),
    ],
)
def test_where_a_run_goes(run: RunFacts, verdict: str, expected: str) -> None:
    result = plan(run)
    assert result.ok and not result.skipped
    if verdict in ("ready", "deferred"):
        (move,) = result.moves
        assert (move.from_version, move.from_step) == (run.version, run.current_step)
        assert move.to_version == "2.0.0"
        assert result.eligible == 1 and not result.blocked
        if verdict == "ready":
            assert move.to_step == expected and not move.deferred
            assert result.ready == (run.name,) and result.deferred == ()
        else:
            assert expected in move.deferred and result.deferred == (run.name,)
            assert result.ready == ()
    else:
        (blocked,) = result.blocked
        assert blocked.code == verdict and expected in blocked.reason, blocked.reason
        assert (blocked.run, blocked.version, blocked.step) == (
            run.name,
            run.version,
            run.current_step,
        )
        assert result.eligible == 0


@pytest.mark.parametrize(
    ("run", "counted"),
    [
        (facts(version="2.0.0", step="wait-2d"), "ignored"),  # already on the target
        (facts(version="", step="", phase="Pending"), "ignored"),  # not started: no version
        (facts(step="", phase="Pending"), "ignored"),  # not started yet
        (facts(phase="Succeeded"), "skipped"),
        (facts(phase="Failed"), "skipped"),
        (facts(phase="Cancelled", version="3.0.0"), "skipped"),  # before any other check
    ],
)
def test_runs_left_out(run: RunFacts, counted: str) -> None:
    result = plan(run)
    assert result.moves == () and result.blocked == () and result.ok
    assert result.skipped == ((run.name,) if counted == "skipped" else ())


def test_first_matching_entry_wins() -> None:
    migrations = [
        {"from": "1.1.x", "map": {"wait-1d": "wait-3d"}},
        {"from": ">=1.0.0 <2.0.0", "map": {"wait-1d": "wait-2d"}},
    ]
    result = plan(facts("a", "1.0.0"), facts("b", "1.1.0"), migrations=migrations)
    assert {m.run: (m.to_step, m.entry) for m in result.moves} == {
        "a": ("wait-2d", 1),
        "b": ("wait-3d", 0),
    }


def test_a_mapping_overrides_the_same_id() -> None:
    result = plan(
        facts(step="welcome", phase="Running"),
        migrations=[{"from": "1.x", "map": {"welcome": "follow-up"}}],
    )
    assert [m.to_step for m in result.moves] == ["follow-up"]


def test_several_steps_may_map_to_one_target() -> None:
    migrations = [{"from": "1.x", "map": {"wait-1d": "wait-2d", "pause": "wait-2d"}}]
    result = plan(facts("a"), facts("b", step="pause"), migrations=migrations)
    assert result.ok and [m.to_step for m in result.moves] == ["wait-2d", "wait-2d"]


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("migrations", "error", "blocked"),
    [
        # a map key that is no step of the source version: named with its entry
        (
            [{"from": "1.x", "map": {"wait-1d": "wait-2d", "wiat-1d": "wait-3d"}}],
            "migrations[0] (from '1.x'): map key 'wiat-1d' is not a step of version 1.0.0",
            [],
        ),
        # a target that is no step of the target version
        (
            [{"from": "1.x", "map": {"wait-1d": "wait-9d"}}],
            "maps 'wait-1d' to 'wait-9d', which is not a step of version 2.0.0",
            ["unknown-target"],
        ),
        # the step type must not change
        (
            [{"from": "1.x", "map": {"wait-1d": "welcome"}}],
            "maps 'wait-1d' (wait in 1.0.0) to 'welcome' (http in 2.0.0)",
            ["type-changed"],
        ),
        # a range that cannot be read holds nothing, and is an error
        (
            [{"from": ">=banana", "map": {"wait-1d": "wait-2d"}}],
            "migrations[0]: '>=banana' is not a version range",
            ["unmapped"],
        ),
        # a `set` expression that does not compile
        (
            [{"from": "1.x", "map": {"wait-1d": "wait-2d"}, "set": {"x": "1 +"}}],
            "migrations[0] (from '1.x'): set.x: column 4: syntax error",
            ["cel-error", "cel-error"],  # `set` applies to every run the entry holds
        ),
    ],
)
def test_invalid_entries_stop_the_plan(
    migrations: list[dict[str, Any]], error: str, blocked: list[str]
) -> None:
    result = plan(facts("a"), facts("b", step="welcome", phase="Running"), migrations=migrations)
    assert not result.ok
    assert any(error in e for e in result.errors), result.errors
    assert [b.code for b in result.blocked] == blocked
    # an invalid plan moves nothing, not even the runs it would cover
    assert next_batch(result, set(), "immediate") == []


def test_entries_no_run_uses_are_not_checked() -> None:
    migrations = [
        {"from": "1.x", "map": {"wait-1d": "wait-2d"}},
        {"from": "0.x", "map": {"typo": "nowhere"}},  # holds no run's version
    ]
    result = plan(facts(), migrations=migrations)
    assert result.ok and result.ready == ("r1",)


def test_a_map_key_needs_only_one_covered_version() -> None:
    # 1.0.0 lacks `legacy` but 1.1.0 has it: one entry may cover versions that differ.
    sources = {
        "1.0.0": {"steps": V1_STEPS},
        "1.1.0": {"steps": [*V1_STEPS, {"id": "legacy", "type": "wait"}]},
    }
    migrations = [{"from": "1.x", "map": {"wait-1d": "wait-2d", "legacy": "wait-3d"}}]
    runs = [facts("a", "1.0.0"), facts("b", "1.1.0", "legacy")]
    result = plan_migration("2.0.0", target(migrations), runs, sources)
    assert result.ok
    assert [(m.run, m.to_step) for m in result.moves] == [("a", "wait-2d"), ("b", "wait-3d")]


def test_parked_steps_without_a_target_are_reported() -> None:
    result = plan(
        facts("a", step="pause"),
        facts("b", step="pause"),
        facts("c", step="notify", phase="Running"),
        facts("d", version="0.9.0"),
        facts("e"),
    )
    assert result.ok  # uncovered runs stay on their version; the others move
    assert [(u.version, u.step, u.count) for u in result.unmapped] == [
        ("0.9.0", "wait-1d", 1),
        ("1.0.0", "notify", 1),
        ("1.0.0", "pause", 2),
    ]
    assert "type" in result.unmapped[1].reason
    assert result.ready == ("e",)


# ------------------------------------------------------------------------ set (CEL)


def test_set_is_evaluated_over_inputs_vars_and_run() -> None:
    migrations = [
        {
            "from": "1.x",
            "map": {"wait-1d": "wait-2d"},
            "set": {
                "count": "vars.count + 1",
                "email": "inputs.email",
                "origin": "run.version + '/' + run.step",
                "old": "vars.count",  # every value sees the vars from before
            },
        }
    ]
    run = facts(variables={"count": 1, "keep": True}, inputs={"email": "a@example.com"})
    result = plan(run, migrations=migrations)
    (move,) = result.moves
    status = {"phase": "Waiting", "version": "1.0.0", "currentStep": "wait-1d", "vars": run.vars}
    new = apply_migration(status, move, T0, "m1")
    assert new is not None
    assert new["vars"] == {
        "count": 2,
        "keep": True,
        "email": "a@example.com",
        "origin": "1.0.0/wait-1d",
        "old": 1,
    }


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("vars.missing + 1", "migrations[0].set.x: no such key: 'missing'"),
        ("1 / vars.zero", "migrations[0].set.x: division by zero"),
    ],
)
def test_set_failures_block_the_run(expression: str, message: str) -> None:
    migrations = [{"from": "1.x", "map": {"wait-1d": "wait-2d"}, "set": {"x": expression}}]
    result = plan(facts(variables={"zero": 0}), migrations=migrations)
    (blocked,) = result.blocked
    assert blocked.code == "cel-error" and blocked.reason == message
    assert result.ok  # the entry is valid; this run's data is not


def test_set_failure_when_applied_fails_the_run() -> None:
    move = RunMove(
        "r1", "1.0.0", "wait-1d", "2.0.0", "wait-2d", "wait", {"x": "vars.n + 1"}, entry=3
    )
    status = {"phase": "Waiting", "version": "1.0.0", "currentStep": "wait-1d", "vars": {}}
    with pytest.raises(MigrationRefused) as refused:
        apply_migration(status, move, T0, "m1")
    assert refused.value.outcome == "failed"
    assert refused.value.reason == "migrations[3].set.x: no such key: 'n'"


# ------------------------------------------------------------------------ apply


WAITING: dict[str, Any] = {
    "phase": "Waiting",
    "version": "1.0.0",
    "versionReason": "active in prod",
    "currentStep": "wait-1d",
    "wakeAt": WAKE,
    "vars": {"a": 1},
    "steps": [
        {"id": "welcome", "phase": "Succeeded", "attempts": 1, "output": {"status": 200}},
        {"id": "wait-1d", "phase": "Running", "visits": 1, "startedAt": "2026-03-02T10:00:00Z"},
    ],
    "versionHistory": [
        {"from": "0.9.0", "to": "1.0.0", "fromStep": "x", "toStep": "wait-1d", "migration": "m0"}
    ],
}
TO_WAIT_2D = RunMove("r1", "1.0.0", "wait-1d", "2.0.0", "wait-2d", "wait")


def test_a_waiting_run_moves_and_keeps_its_wake_time() -> None:
    new = apply_migration(WAITING, TO_WAIT_2D, T0, "lead-nurture.prod.v2")
    assert new is not None
    assert new["version"] == "2.0.0" and new["currentStep"] == "wait-2d"
    assert new["phase"] == "Waiting" and new["wakeAt"] == WAKE
    assert new["vars"] == {"a": 1}
    assert new["versionReason"] == "migrated by lead-nurture.prod.v2"
    # the wait under way moves with the run; finished steps keep their results
    assert [(e["id"], e["phase"]) for e in new["steps"]] == [
        ("welcome", "Succeeded"),
        ("wait-2d", "Running"),
    ]
    assert new["steps"][1]["startedAt"] == "2026-03-02T10:00:00Z"
    assert new["versionHistory"] == [
        WAITING["versionHistory"][0],
        {
            "from": "1.0.0",
            "to": "2.0.0",
            "fromStep": "wait-1d",
            "toStep": "wait-2d",
            "at": "2026-03-02T12:00:00.000000Z",
            "migration": "lead-nurture.prod.v2",
        },
    ]
    assert WAITING["version"] == "1.0.0" and len(WAITING["versionHistory"]) == 1  # untouched


@pytest.mark.parametrize(
    ("status", "move", "phase", "wake"),
    [
        # a waiting run at a non-wait target runs that step now
        (
            WAITING,
            RunMove("r1", "1.0.0", "wait-1d", "2.0.0", "opened", "condition"),
            "Running",
            None,
        ),
        # a running run in a retry backoff keeps it
        (
            {"phase": "Running", "version": "1.0.0", "currentStep": "welcome", "wakeAt": WAKE},
            RunMove("r1", "1.0.0", "welcome", "2.0.0", "welcome", "http"),
            "Running",
            WAKE,
        ),
        # a running run between steps stays running
        (
            {"phase": "Running", "version": "1.0.0", "currentStep": "opened"},
            RunMove("r1", "1.0.0", "opened", "2.0.0", "opened", "condition"),
            "Running",
            None,
        ),
    ],
)
def test_phase_and_wake_time_after_the_move(
    status: dict[str, Any], move: RunMove, phase: str, wake: str | None
) -> None:
    new = apply_migration(status, move, T0, "m1")
    assert new is not None
    assert (new["phase"], new.get("wakeAt"), new["currentStep"]) == (phase, wake, move.to_step)


def test_a_retry_keeps_its_count_at_the_renamed_step() -> None:
    status = {
        "phase": "Running",
        "version": "1.0.0",
        "currentStep": "notify",
        "wakeAt": WAKE,
        "steps": [
            {"id": "notify", "phase": "Retrying", "attempts": 2, "visits": 1},
            {"id": "notify-2", "phase": "Succeeded", "visits": 1},  # an older visit
        ],
    }
    move = RunMove("r1", "1.0.0", "notify", "2.0.0", "notify-2", "http")
    new = apply_migration(status, move, T0, "m1")
    assert new is not None
    assert new["steps"] == [{"id": "notify-2", "phase": "Retrying", "attempts": 2, "visits": 1}]


def test_one_migration_moves_a_run_once() -> None:
    first = apply_migration(WAITING, TO_WAIT_2D, T0, "m1")
    assert first is not None
    assert apply_migration(first, TO_WAIT_2D, T0, "m1") is None
    # also when the run was moved back meanwhile: the name is the key
    back = {**first, "version": "1.0.0", "currentStep": "wait-1d"}
    assert apply_migration(back, TO_WAIT_2D, T0, "m1") is None
    # another migration may move it
    again = apply_migration(back, TO_WAIT_2D, T0, "m2")
    assert again is not None and len(again["versionHistory"]) == 3


@pytest.mark.parametrize(
    ("change", "outcome", "reason"),
    [
        ({"phase": "Succeeded"}, "skipped", "finished (Succeeded)"),
        ({"phase": "Cancelled"}, "skipped", "finished (Cancelled)"),
        ({"version": "2.0.0"}, "skipped", "on version 2.0.0 already"),
        ({"currentStep": "opened", "phase": "Running"}, "stale", "planned at 1.0.0/wait-1d"),
        ({"version": "1.1.0"}, "stale", "run is at 1.1.0/wait-1d"),
        ({"phase": "Pending"}, "stale", "(Pending)"),
    ],
)
def test_runs_that_changed_since_the_plan(
    change: dict[str, Any], outcome: str, reason: str
) -> None:
    with pytest.raises(MigrationRefused) as refused:
        apply_migration({**WAITING, **change}, TO_WAIT_2D, T0, "m1")
    assert refused.value.outcome == outcome and reason in refused.value.reason


def test_plan_then_apply_round_trip() -> None:
    run = {
        "metadata": {"name": "r7"},
        "spec": {"inputs": {"email": "x@example.com"}},
        "status": WAITING,
    }
    migrations = [{"from": "1.x", "map": {"wait-1d": "wait-2d"}, "set": {"to": "inputs.email"}}]
    result = plan(run_facts(run), migrations=migrations)
    (name,) = next_batch(result, set(), "immediate")
    new = apply_migration(WAITING, result.by_run[name], T0, "m1")
    assert new is not None and new["vars"] == {"a": 1, "to": "x@example.com"}
    # once moved, the run is on the target: a new plan leaves it out
    moved = run_facts({**run, "status": new})
    assert plan(moved, migrations=migrations).moves == ()


# ------------------------------------------------------------------------ run facts


def test_run_facts() -> None:
    run = {
        "metadata": {"name": "r1", "namespace": "ns"},
        "spec": {"inputs": {"email": "a@b"}},
        "status": {**WAITING},
    }
    assert run_facts(run, in_flight=True) == RunFacts(
        "r1",
        "1.0.0",
        "Waiting",
        "wait-1d",
        datetime.datetime(2026, 3, 3, 12, 0, tzinfo=datetime.UTC),
        {"a": 1},
        True,
        {"email": "a@b"},
    )
    bare = run_facts({"metadata": {"name": "new"}})
    assert (bare.version, bare.phase, bare.current_step, bare.wake_at) == ("", "Pending", "", None)
    assert run_facts({"metadata": {"name": "x"}, "status": {"wakeAt": "soon"}}).wake_at is None


# ------------------------------------------------------------------------ status.plan


def test_as_status() -> None:
    result = plan(
        facts("a"),
        facts("b"),
        facts("c", step="welcome", phase="Running", in_flight=True),
        facts("d", step="pause"),
        facts("e", version="1.1.0"),
        facts("f", phase="Succeeded"),
        facts("g", version="2.0.0"),
    )
    assert result.as_status() == {
        "toVersion": "2.0.0",
        "eligible": 4,
        "ready": 3,
        "deferred": 1,
        "skipped": 1,
        "moves": [
            {"fromVersion": "1.0.0", "fromStep": "wait-1d", "toStep": "wait-2d", "count": 2},
            {"fromVersion": "1.0.0", "fromStep": "welcome", "toStep": "welcome", "count": 1},
            {"fromVersion": "1.1.0", "fromStep": "wait-1d", "toStep": "wait-2d", "count": 1},
        ],
        "blockedCount": 1,
        "blocked": [
            {
                "run": "d",
                "version": "1.0.0",
                "step": "pause",
                "reason": "step 'pause' does not exist in version 2.0.0 and no migration "
                "for version 1.0.0 maps it",
            }
        ],
        "unmapped": [
            {
                "fromVersion": "1.0.0",
                "fromStep": "pause",
                "count": 1,
                "reason": "step 'pause' does not exist in version 2.0.0 and no migration "
                "for version 1.0.0 maps it",
            }
        ],
        "errors": [],
    }


def test_blocked_list_is_bounded_but_counted() -> None:
    result = plan(*(facts(f"r{i:03}", step="pause") for i in range(150)))
    status = result.as_status(limit=100)
    assert status["blockedCount"] == 150 and len(status["blocked"]) == 100
    assert status["blocked"][0]["run"] == "r000"
    assert status["unmapped"][0]["count"] == 150


def test_moves_are_ordered_by_version_precedence() -> None:
    sources = {v: {"steps": V1_STEPS} for v in ("1.10.0", "1.9.0", "1.0.0-rc.1")}
    runs = [facts("a", "1.10.0"), facts("b", "1.9.0"), facts("c", "1.0.0-rc.1")]
    migrations = [{"from": ">=1.0.0-rc.1 <2.0.0", "map": {"wait-1d": "wait-2d"}}]
    result = plan_migration("2.0.0", target(migrations), runs, sources)
    assert [c.from_version for c in result.counts] == ["1.0.0-rc.1", "1.9.0", "1.10.0"]


# ------------------------------------------------------------------------ batches


BATCH_PLAN = plan(
    *(facts(f"r{i}") for i in range(1, 6)),
    facts("r0", step="welcome", phase="Running", in_flight=True),
)


@pytest.mark.parametrize(
    ("done", "strategy", "size", "expected"),
    [
        (set(), "immediate", None, ["r1", "r2", "r3", "r4", "r5"]),  # deferred r0 waits
        (set(), "immediate", 2, ["r1", "r2"]),
        ({"r1", "r2"}, "immediate", 2, ["r3", "r4"]),
        ({"r1", "r3"}, "gradual", 2, ["r2", "r4"]),
        ({"r1", "r2", "r3", "r4"}, "gradual", 2, ["r5"]),
        ({"r1", "r2", "r3", "r4", "r5"}, "gradual", 2, []),
        (set(), "manual", 1, ["r1"]),
    ],
)
def test_next_batch(done: set[str], strategy: str, size: int | None, expected: list[str]) -> None:
    assert next_batch(BATCH_PLAN, done, strategy, size) == expected


def test_default_batch_is_one_hundred() -> None:
    big = plan(*(facts(f"r{i:04}") for i in range(250)))
    first = next_batch(big, set(), "immediate")
    second = next_batch(big, set(first), "immediate")
    third = next_batch(big, set(first) | set(second), "immediate")
    assert [len(b) for b in (first, second, third)] == [100, 100, 50]
    assert len(set(first) | set(second) | set(third)) == 250


@pytest.mark.parametrize(
    ("strategy", "size", "message"),
    [("eventually", None, "unknown strategy 'eventually'"), ("gradual", 0, "at least 1")],
)
def test_next_batch_refuses(strategy: str, size: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        next_batch(BATCH_PLAN, set(), strategy, size)


# ------------------------------------------------------------------------ progress


MINUTE = datetime.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("counts", "elapsed", "remaining", "eta"),
    [
        # 100 of 1,000 in 1 minute: 900 more take 9 minutes
        ((1000, 90, 5, 5), MINUTE, 900, "2026-03-02T12:10:00Z"),
        # nothing done yet: no rate, no estimate
        ((1000, 0, 0, 0), MINUTE, 1000, None),
        # all done: nothing to estimate
        ((10, 8, 1, 1), MINUTE, 0, None),
        # more processed than counted at the start (runs found meanwhile): never negative
        ((10, 12, 0, 0), MINUTE, 0, None),
        # no time has passed
        ((10, 1, 0, 0), datetime.timedelta(0), 9, None),
    ],
)
def test_progress(
    counts: tuple[int, int, int, int], elapsed: datetime.timedelta, remaining: int, eta: str | None
) -> None:
    now = T0 + MINUTE
    result = progress(*counts, now - elapsed, now)
    total, migrated, failed, skipped = counts
    assert result == {
        "total": total,
        "migrated": migrated,
        "failed": failed,
        "skipped": skipped,
        "remaining": remaining,
        **({"eta": eta} if eta else {}),
    }


def test_progress_without_a_start() -> None:
    assert "eta" not in progress(10, 5, 0, 0, None, T0)


# ------------------------------------------------------------------------ lifecycle

from controller.model.migration import (  # noqa: E402
    automatic_migration,
    fail,
    finish_batch,
    next_step,
    settled_outcome,
)


def waiting(count: int) -> MigrationPlan:
    return plan(*(facts(f"r{i}") for i in range(count)))


def phase_of(spec: dict[str, Any], status: dict[str, Any] | None = None, count: int = 3) -> str:
    return str(next_step(spec, status or {}, waiting(count), set(), 1, T0).status["phase"])


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        ({"toVersion": "2.0.0"}, {}, "Running"),
        ({"dryRun": True}, {}, "Planned"),
        ({"strategy": "manual"}, {}, "AwaitingApproval"),
        ({"strategy": "manual", "approved": True}, {}, "Running"),
        ({"dryRun": True, "cancel": True}, {}, "Cancelled"),
        ({"paused": True}, {}, "Paused"),
        ({"strategy": "sideways"}, {}, "Failed"),
        ({"strategy": "gradual", "interval": "soon"}, {}, "Failed"),
        ({"maxFailures": 1}, {"progress": {"failed": 2}}, "Failed"),
        ({"maxFailures": 2}, {"progress": {"failed": 2}}, "Running"),
        ({}, {"phase": "Succeeded"}, "Succeeded"),  # final phases stay
        ({"cancel": True}, {"phase": "Failed"}, "Failed"),
    ],
)
def test_phases(spec: dict[str, Any], status: dict[str, Any], expected: str) -> None:
    assert phase_of(spec, status) == expected


def test_a_batch_is_named_before_it_moves_and_counted_once() -> None:
    step = next_step({"batchSize": 2}, {}, waiting(5), set(), 3, T0)
    assert step.batch == ["r0", "r1"] and step.status["currentBatch"] == ["r0", "r1"]
    assert step.status["phase"] == "Running" and step.status["startedAt"] == "2026-03-02T12:00:00Z"
    assert step.status["progress"]["total"] == 5 and step.status["observedGeneration"] == 3
    ready = {c["type"]: c["status"] for c in step.status["conditions"]}
    assert ready == {"Ready": "False", "Reconciling": "True", "Stalled": "False"}

    later = T0 + datetime.timedelta(seconds=10)
    after = finish_batch(
        step.status, {"r0": ("migrated", ""), "r1": ("failed", "set.x: boom")}, later
    )
    assert "currentBatch" not in after
    assert after["progress"]["migrated"] == 1 and after["progress"]["failed"] == 1
    assert after["failures"] == [{"run": "r1", "reason": "set.x: boom"}]

    # The runs handled are out of the next batch; the failed one is never tried again.
    nxt = next_step({"batchSize": 2}, after, waiting(5), {"r0"}, 3, later)
    assert nxt.batch == ["r2", "r3"]
    assert nxt.status["progress"] == {
        "total": 5,
        "migrated": 1,
        "failed": 1,
        "skipped": 0,
        "remaining": 3,
        "eta": "2026-03-02T12:00:25Z",
    }


def test_stale_outcomes_are_not_counted() -> None:
    after = finish_batch({"currentBatch": ["r0"]}, {"r0": ("stale", "moved on")}, T0)
    assert after["progress"] == {"migrated": 0, "failed": 0, "skipped": 0}


def test_done_when_nothing_remains() -> None:
    status = {"progress": {"migrated": 3, "skipped": 1}, "startedAt": "2026-03-02T11:00:00Z"}
    blocked = plan(facts("r9", step="pause"))  # pause is gone in 2.0.0 and unmapped
    step = next_step({}, status, blocked, set(), 1, T0)
    assert step.status["phase"] == "Succeeded" and step.batch == []
    assert step.status["message"] == (
        "3 runs migrated to 2.0.0 (1 skipped, 0 failed); "
        "1 runs cannot migrate and stay on their versions"
    )
    assert step.status["finishedAt"] == "2026-03-02T12:00:00Z"
    assert step.status["progress"]["remaining"] == 0 and "eta" not in step.status["progress"]
    assert {c["type"]: c["status"] for c in step.status["conditions"]}["Ready"] == "True"


def test_gradual_waits_between_batches() -> None:
    spec = {"strategy": "gradual", "batchSize": 1, "interval": "30s"}
    first = next_step(spec, {}, waiting(3), set(), 1, T0)
    assert first.batch == ["r0"] and first.status["nextBatchAt"] == "2026-03-02T12:00:30Z"
    after = finish_batch(first.status, {"r0": ("migrated", "")}, T0)
    early = next_step(spec, after, waiting(3), {"r0"}, 1, T0 + datetime.timedelta(seconds=5))
    assert early.batch == [] and early.wake_at == T0 + datetime.timedelta(seconds=30)
    due = next_step(spec, after, waiting(3), {"r0"}, 1, T0 + datetime.timedelta(seconds=30))
    assert due.batch == ["r1"]


def test_runs_mid_step_are_waited_for() -> None:
    busy = plan(facts("r0", in_flight=True))
    step = next_step({}, {}, busy, set(), 1, T0)
    assert step.batch == [] and step.wake_at == T0 + datetime.timedelta(seconds=1)
    assert "waiting for 1 runs to reach a safe point" in step.status["message"]


def test_plan_errors_fail_the_migration() -> None:
    broken = plan(facts("r0"), migrations=[{"from": ">=1.0.0", "map": {"wait-1d": "nowhere"}}])
    step = next_step({}, {}, broken, set(), 1, T0)
    assert step.status["phase"] == "Failed" and step.batch == []
    assert "nothing moves" in step.status["message"] and "'nowhere'" in step.status["message"]
    assert {c["type"]: c["status"] for c in step.status["conditions"]}["Stalled"] == "True"


def test_a_dry_run_keeps_its_plan_and_moves_nothing() -> None:
    step = next_step({"dryRun": True}, {}, waiting(2), set(), 1, T0)
    assert step.batch == [] and step.status["plan"]["eligible"] == 2
    assert "startedAt" not in step.status and "approve" in step.status["message"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, ("skipped", "the run no longer exists")),
        ({"versionHistory": [{"migration": "m"}], "phase": "Succeeded"}, ("migrated", "")),
        ({"phase": "Succeeded", "version": "1.0.0"}, ("skipped", "run finished (Succeeded)")),
        ({"phase": "Waiting", "version": "2.0.0"}, ("skipped", "run is on version 2.0.0 already")),
        ({"phase": "Waiting", "version": "1.0.0"}, ("stale", "the run cannot migrate now")),
    ],
)
def test_settled_outcome(status: dict[str, Any] | None, expected: tuple[str, str]) -> None:
    outcome, reason = settled_outcome(status, "m", "2.0.0")
    assert outcome == expected[0] and reason.startswith(expected[1])


def test_fail() -> None:
    failed = fail({"phase": "Running"}, "parcel has no version 9.0.0", 2, T0)
    assert failed["phase"] == "Failed" and failed["message"] == "parcel has no version 9.0.0"
    assert failed["observedGeneration"] == 2 and failed["finishedAt"] == "2026-03-02T12:00:00Z"


DRAINING = {"1.0.0": {"active": 2}, "2.0.0": {"active": 1}}
VERIFIED = {"activeVersion": "2.0.0", "phase": "Verified", "verifiedAt": "2026-03-02T12:00:00Z"}
MIGRATE = {"inflight": "migrate", "migration": {"strategy": "gradual", "batchSize": 10}}


def test_automatic_migration() -> None:
    body = automatic_migration("lead", "prod", VERIFIED, DRAINING, MIGRATE)
    assert body is not None
    assert body["metadata"]["name"] == "lead.prod.to-2.0.0.20260302120000"
    assert body["spec"] == {
        "workflow": "lead",
        "environment": "prod",
        "toVersion": "2.0.0",
        "strategy": "gradual",
        "batchSize": 10,
    }
    assert body["metadata"]["labels"]["flowpin.dev/workflow"] == "lead"


@pytest.mark.parametrize(
    ("status", "counts", "env"),
    [
        (VERIFIED, DRAINING, {"inflight": "pin"}),
        (VERIFIED, {"1.0.0": {"active": 0}, "2.0.0": {"active": 4}}, MIGRATE),
        ({**VERIFIED, "phase": "Held"}, DRAINING, MIGRATE),
        ({**VERIFIED, "phase": "Canary"}, DRAINING, MIGRATE),
        ({"phase": "Verified"}, DRAINING, MIGRATE),
    ],
)
def test_no_automatic_migration(
    status: dict[str, Any], counts: dict[str, dict[str, Any]], env: dict[str, Any]
) -> None:
    assert automatic_migration("lead", "prod", status, counts, env) is None


def test_a_finished_migration_keeps_its_plan_and_its_numbers_add_up() -> None:
    """Issue 14: once done, `status.plan` read "eligible 0 … no runs to move"."""
    first = next_step({"batchSize": 3}, {}, waiting(3), set(), 1, T0)
    assert first.batch == ["r0", "r1", "r2"] and first.status["plan"]["eligible"] == 3
    moved = {run: ("migrated", "") for run in first.batch}
    after = finish_batch(first.status, moved, T0)
    done = next_step({"batchSize": 3}, after, plan(), set(first.batch), 1, T0)
    assert done.status["phase"] == "Succeeded"
    assert done.status["plan"]["eligible"] == 3  # the plan it ran, not an empty one
    assert done.status["progress"]["total"] == 3 and done.status["progress"]["remaining"] == 0


def test_a_cancelled_dry_run_moved_nothing_and_says_so() -> None:
    """Issue 14: a cancelled dry run showed REMAINING 4 TOTAL 4."""
    planned = next_step({"dryRun": True}, {}, waiting(4), set(), 1, T0)
    assert planned.status["phase"] == "Planned"
    cancelled = next_step(
        {"dryRun": True, "cancel": True}, planned.status, waiting(4), set(), 2, T0
    )
    assert cancelled.status["phase"] == "Cancelled"
    assert cancelled.status["progress"] == {
        "total": 0,
        "migrated": 0,
        "failed": 0,
        "skipped": 0,
        "remaining": 0,
        "notMoved": 4,
    }


def test_a_dry_run_with_nothing_to_move_does_not_suggest_approving() -> None:
    step = next_step({"dryRun": True}, {}, plan(), set(), 1, T0)
    assert step.status["message"] == "dry run: no run would move to 2.0.0; nothing to approve"

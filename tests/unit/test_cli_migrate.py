"""The pure printing helpers of `flowpin migrate` and the canary summary of `flowpin status`,
and the argument checks that run before any cluster is asked. No cluster."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from click.testing import CliRunner

from controller.api import kinds
from controller.cli.cluster import canary_summary
from controller.cli.migrate import (
    FINAL_PHASES,
    migrate,
    migration_name_prefix,
    migration_object,
    migration_progress,
    processed,
    progress_bar,
    progress_line,
    relative_time,
    render_migration,
    render_migrations,
    render_plan,
)

NOW = datetime.datetime(2026, 3, 2, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("done", "total", "expected"),
    [
        (600, 1000, "[#######.....] 60% 600/1000"),
        (0, 1000, "[............] 0% 0/1000"),
        (1000, 1000, "[############] 100% 1000/1000"),
        (999, 1000, "[###########.] 99% 999/1000"),  # rounded down: 100% means done
        (5, 3, "[############] 100% 3/3"),  # never past the end
        (-1, 3, "[............] 0% 0/3"),
        (0, 0, "[............] 0% 0/0"),
    ],
)
def test_progress_bar(done: int, total: int, expected: str) -> None:
    assert progress_bar(done, total) == expected


def test_progress_bar_width() -> None:
    assert progress_bar(1, 2, width=4) == "[##..] 50% 1/2"


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        ({"total": 10, "migrated": 3, "failed": 1, "skipped": 1, "remaining": 5}, 5),
        ({"total": 10, "remaining": 12}, 0),
        ({"migrated": 3, "failed": 1, "skipped": 2}, 6),  # no remaining: add them up
        ({}, 0),
    ],
)
def test_processed(progress: dict[str, Any], expected: int) -> None:
    assert processed(progress) == expected


def test_progress_line_before_anything_is_counted() -> None:
    assert progress_line({}) == "-"
    assert progress_line({"progress": {"total": 4, "remaining": 1}}) == "[#########...] 75% 3/4"


def test_migration_progress() -> None:
    obj = {
        "metadata": {"name": "m1"},
        "status": {"progress": {"total": 10, "remaining": 5, "failed": 2}},
    }
    assert migration_progress(obj) == "m1 [######......] 50% 5/10, 2 failed"
    assert migration_progress({"metadata": {"name": "m2"}}) == "m2"


@pytest.mark.parametrize(
    ("workflow", "env", "version", "expected"),
    [
        ("lead-nurture", "prod", "1.5.0", "lead-nurture.prod.to-1.5.0-"),
        ("lead-nurture", "prod", "1.5.0-RC.1", "lead-nurture.prod.to-1.5.0-rc.1-"),
        ("lead-nurture", "prod", "1.5.0+build.7", "lead-nurture.prod.to-1.5.0-build.7-"),
    ],
)
def test_migration_name_prefix(workflow: str, env: str, version: str, expected: str) -> None:
    assert migration_name_prefix(workflow, env, version) == expected


def test_a_long_prefix_is_cut_where_a_name_may_continue() -> None:
    prefix = migration_name_prefix("a" * 50, "prod", "1.5.0")
    assert len(prefix) <= 58 and prefix.endswith("-") and not prefix.endswith(".-")
    assert prefix.startswith("a" * 50 + ".prod")


@pytest.mark.parametrize(
    ("workflow", "version"), [("lead_nurture", "1.0.0"), ("wf", "1..0"), ("-wf", "1.0.0")]
)
def test_names_that_cannot_be_object_names(workflow: str, version: str) -> None:
    with pytest.raises(ValueError, match="not a valid object name prefix"):
        migration_name_prefix(workflow, "prod", version)


def test_migration_object_leaves_unset_options_to_the_operator() -> None:
    obj = migration_object("wf", "prod", "2.0.0")
    assert obj["kind"] == "WorkflowMigration" and obj["apiVersion"] == kinds.API_VERSION
    assert obj["metadata"] == {
        "generateName": "wf.prod.to-2.0.0-",
        "labels": {kinds.LABEL_WORKFLOW: "wf", kinds.LABEL_ENVIRONMENT: "prod"},
    }
    assert obj["spec"] == {"workflow": "wf", "environment": "prod", "toVersion": "2.0.0"}


def test_migration_object_with_every_option() -> None:
    spec = migration_object(
        "wf",
        "prod",
        "2.0.0",
        from_version="1.0.0",
        strategy="gradual",
        batch_size=10,
        interval="1m",
        max_failures=0,
        dry_run=True,
    )["spec"]
    assert spec == {
        "workflow": "wf",
        "environment": "prod",
        "toVersion": "2.0.0",
        "fromVersion": "1.0.0",
        "strategy": "gradual",
        "batchSize": 10,
        "interval": "1m",
        "maxFailures": 0,
        "dryRun": True,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T12:04:10Z", "in 4m10s"),
        ("2026-03-02T15:12:00Z", "in 3h12m"),
        ("2026-03-04T17:00:00Z", "in 2d5h"),
        ("2026-03-02T12:00:45.500000Z", "in 45s"),
        ("2026-03-02T11:00:00Z", "now"),
        ("soon", "soon"),
        (None, ""),
        ("", ""),
    ],
)
def test_relative_time(text: str | None, expected: str) -> None:
    assert relative_time(text, NOW) == expected


# --------------------------------------------------------------------------- plans

PLAN: dict[str, Any] = {
    "toVersion": "2.0.0",
    "eligible": 42,
    "ready": 40,
    "deferred": 2,
    "skipped": 3,
    "moves": [
        {"fromVersion": "1.3.0", "fromStep": "wait-1d", "toStep": "wait-2d", "count": 30},
        {"fromVersion": "1.4.0", "fromStep": "welcome", "toStep": "welcome", "count": 12},
    ],
    "blockedCount": 5,
    "blocked": [
        {"run": "r1", "version": "1.4.0", "step": "pause", "reason": "step 'pause' is gone"},
        {"run": "r2", "version": "1.4.0", "step": "pause", "reason": "step 'pause' is gone"},
    ],
    "unmapped": [
        {"fromVersion": "1.4.0", "fromStep": "pause", "count": 5, "reason": "step 'pause' is gone"}
    ],
    "errors": [],
}


def test_render_plan_text() -> None:
    assert render_plan(PLAN, "text", "m1").splitlines() == [
        "m1: plan to 2.0.0",
        "  eligible 42 (ready 40, deferred 2), skipped 3, blocked 5",
        "",
        "  FROM VERSION  FROM STEP     TO STEP  RUNS",
        "  1.3.0         wait-1d    →  wait-2d  30",
        "  1.4.0         welcome    →  welcome  12",
        "",
        "  unmapped steps (their runs stay on their version):",
        "    1.4.0 pause: 5 runs: step 'pause' is gone",
        "",
        "  blocked runs (5):",
        "    r1 (1.4.0 at pause): step 'pause' is gone",
        "    r2 (1.4.0 at pause): step 'pause' is gone",
        "    … and 3 more",
    ]


def test_render_plan_with_errors_says_nothing_moves() -> None:
    plan = {"toVersion": "2.0.0", "errors": ["migrations[0]: '>=banana' is not a version range"]}
    assert render_plan(plan).splitlines() == [
        "plan to 2.0.0",
        "  eligible 0 (ready 0, deferred 0), skipped 0, blocked 0",
        "",
        "  no runs to move",
        "",
        "  errors (nothing will move):",
        "    migrations[0]: '>=banana' is not a version range",
    ]


def test_render_plan_lists_all_blocked_runs_when_all_are_listed() -> None:
    plan = {**PLAN, "blockedCount": 2}
    assert "more" not in render_plan(plan)
    assert "more" not in render_plan(plan, "markdown")


def test_render_plan_markdown() -> None:
    text = render_plan(PLAN, "markdown", "m1")
    assert text.startswith("### Migration plan m1 → 2.0.0\n")
    assert "| 1.3.0 | wait-1d | wait-2d | 30 |" in text
    assert "- 1.4.0 `pause`: 5 runs: step 'pause' is gone" in text
    assert "**Blocked runs** (5):" in text and "- … and 3 more" in text
    assert "Errors" not in text


def test_render_plan_markdown_escapes_pipes() -> None:
    plan = {"toVersion": "2.0.0", "errors": ["a | b"]}
    assert "- a \\| b" in render_plan(plan, "markdown")


def test_render_plan_json_is_the_status_unchanged() -> None:
    assert json.loads(render_plan(PLAN, "json")) == PLAN


def test_render_plan_refuses_unknown_formats() -> None:
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        render_plan(PLAN, "yaml")


# --------------------------------------------------------------------------- status


def migration(
    name: str,
    phase: str | None,
    progress: dict[str, Any] | None = None,
    created: str = "2026-03-02T11:00:00Z",
    **spec: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if progress is not None:
        status["progress"] = progress
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"workflow": "lead-nurture", "environment": "prod", "toVersion": "2.0.0", **spec},
        "status": status,
    }


RUNNING = migration(
    "lead-nurture.prod.to-2.0.0-b",
    "Running",
    {
        "total": 1000,
        "migrated": 590,
        "failed": 4,
        "skipped": 6,
        "remaining": 400,
        "eta": "2026-03-02T12:04:10Z",
    },
    created="2026-03-02T11:30:00Z",
    strategy="gradual",
)


def test_render_migrations_table() -> None:
    items = [
        RUNNING,
        migration(
            "lead-nurture.prod.to-2.0.0-a",
            "Succeeded",
            {"total": 2, "remaining": 0, "eta": "2026-03-02T13:00:00Z"},
        ),
        migration("onboarding.dev.to-3.0.0-c", None, workflow="onboarding", environment="dev"),
    ]
    assert render_migrations(items, NOW).splitlines() == [
        "NAME                          WORKFLOW      ENV   TO     STRATEGY   PHASE      "
        "PROGRESS                     FAILED  ETA",
        "lead-nurture.prod.to-2.0.0-a  lead-nurture  prod  2.0.0  immediate  Succeeded  "
        "[############] 100% 2/2      0",
        "lead-nurture.prod.to-2.0.0-b  lead-nurture  prod  2.0.0  gradual    Running    "
        "[#######.....] 60% 600/1000  4       in 4m10s",
        "onboarding.dev.to-3.0.0-c     onboarding    dev   2.0.0  immediate  Pending    "
        "-                            -",
    ]


def test_render_migrations_empty() -> None:
    assert render_migrations([], NOW) == "no migrations\n"


def test_render_migration_detail() -> None:
    obj = {
        **RUNNING,
        "spec": {
            **RUNNING["spec"],
            "fromVersion": "1.4.0",
            "batchSize": 100,
            "interval": "30s",
            "maxFailures": 5,
            "approved": True,
        },
        "status": {
            **RUNNING["status"],
            "message": "batch 7",
            "currentBatch": ["r1", "r2"],
            "nextBatchAt": "2026-03-02T12:00:30Z",
            "startedAt": "2026-03-02T11:30:00Z",
            "failures": [{"run": "r9", "reason": "migrations[0].set.x: no such key: 'x'"}],
            "plan": PLAN,
        },
    }
    assert render_migration(obj, NOW).splitlines() == [
        "lead-nurture.prod.to-2.0.0-b",
        "  workflow:   lead-nurture in prod: 1.4.0 → 2.0.0",
        "  strategy:   gradual, batches of 100, every 30s, at most 5 failures [approved]",
        "  phase:      Running",
        "  message:    batch 7",
        "  progress:   [#######.....] 60% 600/1000  migrated 590, failed 4, skipped 6, "
        "remaining 400",
        "  eta:        in 4m10s (2026-03-02T12:04:10Z)",
        "  batch:      2 runs under way",
        "  next batch: in 30s (2026-03-02T12:00:30Z)",
        "  started:    2026-03-02T11:30:00Z",
        "  plan:       eligible 42 (ready 40, deferred 2), skipped 3, blocked 5, 1 unmapped step, "
        "0 errors (flowpin migrate plan lead-nurture.prod.to-2.0.0-b)",
        "  failures (1):",
        "    r9: migrations[0].set.x: no such key: 'x'",
    ]


@pytest.mark.parametrize("phase", FINAL_PHASES)
def test_a_finished_migration_shows_no_eta_or_next_batch(phase: str) -> None:
    obj = {
        **RUNNING,
        "status": {
            **RUNNING["status"],
            "phase": phase,
            "nextBatchAt": "2026-03-02T12:00:30Z",
            "currentBatch": ["r1"],
            "finishedAt": "2026-03-02T12:00:00Z",
        },
    }
    text = render_migration(obj, NOW)
    assert "eta:" not in text and "next batch:" not in text and "batch:" not in text
    assert "finished: 2026-03-02T12:00:00Z" in text
    assert f"phase:    {phase}" in text


def test_render_migration_of_a_new_object() -> None:
    text = render_migration({"metadata": {"name": "m"}, "spec": {"workflow": "wf"}}, NOW)
    assert text.splitlines() == [
        "m",
        "  workflow: wf in : every older version → ",
        "  strategy: immediate",
        "  phase:    Pending",
    ]


# --------------------------------------------------------------------------- canary


@pytest.mark.parametrize(
    ("canary", "steps", "expected"),
    [
        (
            {"version": "1.5.0", "weight": 10, "step": 0, "state": "Progressing"},
            2,
            "1.5.0 canary 10% (step 1/2)",
        ),
        ({"version": "1.5.0", "weight": 50, "step": 1}, None, "1.5.0 canary 50% (step 2)"),
        ({"version": "1.5.0", "weight": 10}, 2, "1.5.0 canary 10%"),
        (
            {"version": "1.5.0", "weight": 0, "step": 1, "state": "Aborted"},
            2,
            "1.5.0 canary aborted",
        ),
    ],
)
def test_canary_summary(canary: dict[str, Any], steps: int | None, expected: str) -> None:
    assert canary_summary(canary, steps) == expected


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "5x"], "invalid duration '5x'"),
        (["--timeout", "soon"], "invalid duration 'soon'"),
        (["--from", "2.0.0"], "--from and --to name the same version"),
        (["--batch-size", "0"], "0 is not in the range x>=1"),
        (["--strategy", "fast"], "'fast' is not one of"),
    ],
)
def test_start_refuses_bad_arguments_before_asking_the_cluster(
    args: list[str], message: str
) -> None:
    result = CliRunner().invoke(migrate, ["start", "wf", "--env", "prod", "--to", "2.0.0", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_start_refuses_names_that_cannot_be_objects() -> None:
    result = CliRunner().invoke(migrate, ["start", "wf_x", "--env", "prod", "--to", "2.0.0"])
    assert result.exit_code == 2
    assert "not a valid object name prefix" in result.output


def test_the_why_column_is_sentences_not_glued_fragments() -> None:
    """Issue 14: `1.1.0 is active 1.0.0 Drained`, and a canary said twice."""
    from controller.cli.cluster import why_text

    assert (
        why_text("", "1.1.0 is active", "1.0.0 Drained") == "1.1.0 is active; older: 1.0.0 Drained"
    )
    message = "canary 1.5.0 at 10% (step 1/2), 1.4.0 the rest: 3 of 20 runs"
    summary = "1.5.0 canary 10% (step 1/2); 3 of 20 runs"
    assert why_text(summary, message, "") == message
    assert why_text("1.5.0 canary aborted", "held: analysis failed.", "") == (
        "1.5.0 canary aborted; held: analysis failed"
    )

"""Runs parked on steps a new version removes or retypes (controller.model.parked): tables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.model.migration import RunFacts
from controller.model.parked import (
    NOT_REACHABLE,
    ParkedCheck,
    ParkedReport,
    ParkedStep,
    as_json,
    describe_step,
    parked_runs,
    render_json,
    render_markdown,
    render_text,
)


def steps(**types: str) -> list[dict[str, Any]]:
    return [{"id": sid.replace("_", "-"), "type": kind} for sid, kind in types.items()]


# 1.x: welcome → wait-1d → follow-up, with notify (http) and pause (wait) on the side.
OLD = {
    "steps": steps(welcome="http", wait_1d="wait", follow_up="http", notify="http", pause="wait")
}
SOURCES = {v: OLD for v in ("1.3.0", "1.4.0", "1.9.0", "1.10.0")}
# 2.0.0 renames wait-1d to wait-2d, turns notify into a wait and drops pause.
NEW_STEPS = steps(welcome="http", wait_2d="wait", follow_up="http", notify="wait")
MAP = [{"from": ">=1.0.0 <2.0.0", "map": {"wait-1d": "wait-2d"}}]


def target(migrations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"steps": NEW_STEPS, "migrations": MAP if migrations is None else migrations}


def run(
    name: str,
    step: str = "wait-1d",
    version: str = "1.4.0",
    phase: str = "Waiting",
    variables: dict[str, Any] | None = None,
) -> RunFacts:
    return RunFacts(name, version, phase, step, vars=variables or {})


def check(
    *runs: RunFacts,
    migrations: list[dict[str, Any]] | None = None,
    definition: dict[str, Any] | None = None,
    sources: dict[str, Any] | None = None,
) -> ParkedReport:
    return parked_runs(
        "prod",
        "lead-nurture",
        "1.4.0",
        "2.0.0",
        definition if definition is not None else target(migrations),
        runs,
        SOURCES if sources is None else sources,
    )


def summary(report: ParkedReport) -> list[tuple[str, str, str, int, int]]:
    return [(s.version, s.step, s.change, s.runs, s.covered) for s in report.steps]


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        # a removed step the migrations map: every run is covered
        ([run("a"), run("b")], [("1.4.0", "wait-1d", "removed", 2, 2)]),
        # a removed step nothing maps
        ([run("a", "pause")], [("1.4.0", "pause", "removed", 1, 0)]),
        # a step whose type changed under the same id
        ([run("a", "notify")], [("1.4.0", "notify", "retyped", 1, 0)]),
        # kept steps move by id: nothing to say about them
        ([run("a", "welcome"), run("b", "follow-up", phase="Running")], []),
        # runs on the new version, finished runs and runs not started are not parked
        (
            [
                run("a", version="2.0.0"),
                run("b", phase="Succeeded"),
                run("c", phase="Cancelled"),
                run("d", version=""),
            ],
            [],
        ),
        # one line per version and step, in version order (1.10.0 after 1.9.0)
        (
            [run("a", version="1.10.0"), run("b", version="1.9.0"), run("c", "pause", "1.9.0")],
            [
                ("1.9.0", "pause", "removed", 1, 0),
                ("1.9.0", "wait-1d", "removed", 1, 1),
                ("1.10.0", "wait-1d", "removed", 1, 1),
            ],
        ),
    ],
)
def test_parked_steps(runs: list[RunFacts], expected: list[tuple[str, str, str, int, int]]) -> None:
    assert summary(check(*runs)) == expected


def test_unfinished_counts_every_run_on_another_version() -> None:
    report = check(
        run("a"), run("b", "welcome"), run("c", version="2.0.0"), run("d", phase="Failed")
    )
    assert report.unfinished == 2
    assert report.parked == 1


def test_covered_runs_say_where_they_go() -> None:
    (step,) = check(run("a"), run("b")).steps
    assert step.covers and step.targets == ("wait-2d",) and step.reasons == ()
    assert describe_step(step) == (
        "step wait-1d (1.4.0) removed; 2 runs are parked there; the mapping covers them (→ wait-2d)"
    )


def test_uncovered_runs_say_why() -> None:
    (step,) = check(run("a", "pause")).steps
    assert not step.covers
    assert step.reasons == (
        "step 'pause' does not exist in version 2.0.0 and no migration for version 1.4.0 maps it",
    )
    assert describe_step(step).startswith(
        "step pause (1.4.0) removed; 1 run is parked there; the mapping does not cover it: "
    )


def test_a_retyped_step_names_both_types() -> None:
    (step,) = check(run("a", "notify")).steps
    assert (step.old_type, step.new_type) == ("http", "wait")
    assert "retyped http → wait" in describe_step(step)
    assert "cannot change a step's type" in step.reasons[0]


def test_a_mapping_onto_another_type_does_not_cover() -> None:
    report = check(run("a"), migrations=[{"from": "1.x", "map": {"wait-1d": "welcome"}}])
    (step,) = report.steps
    assert step.covered == 0
    assert report.errors  # the planner refuses the entry itself too
    assert not report.covers


def test_partial_coverage_when_a_set_fails_for_some_runs() -> None:
    migrations = [{"from": "1.x", "map": {"wait-1d": "wait-2d"}, "set": {"n": "vars.n + 1"}}]
    report = check(run("a", variables={"n": 1}), run("b"), migrations=migrations)
    (step,) = report.steps
    assert (step.runs, step.covered) == (2, 1)
    assert step.reasons == ("migrations[0].set.n: no such key: 'n'",)
    assert "the mapping covers 1 (→ wait-2d) but not 1: " in describe_step(step)


def test_invalid_migrations_cover_nothing() -> None:
    report = check(run("a"), migrations=[{"from": "1.x", "map": {"wait-1d": "wait-9d"}}])
    assert report.errors and not report.covers
    assert summary(report) == [("1.4.0", "wait-1d", "removed", 1, 0)]


def test_an_unmapped_entry_error_does_not_hide_covered_runs_of_a_valid_plan() -> None:
    report = check(run("a"), run("b", "pause"))
    assert not report.errors
    assert [s.covers for s in report.steps] == [False, True]  # pause, then wait-1d


def test_versions_without_a_definition_are_listed_not_guessed() -> None:
    report = check(run("a", version="0.9.0"), run("b", version="0.9.0"), run("c"))
    assert report.unknown_versions == (("0.9.0", 2),)
    assert summary(report) == [("1.4.0", "wait-1d", "removed", 1, 1)]
    assert not report.covers


def test_an_unknown_target_definition_checks_nothing() -> None:
    report = parked_runs("prod", "wf", "1.0.0", "2.0.0", None, [run("a")], SOURCES)
    assert report.steps == () and report.unfinished == 1
    assert report.errors == ("the definition of version 2.0.0 is unknown: runs not checked",)


def test_a_run_on_a_step_its_version_lacks_is_left_to_the_planner() -> None:
    assert check(run("a", "no-such-step")).steps == ()


# --------------------------------------------------------------------------- rendering

REPORT = check(run("a"), run("b"), run("c", "pause"), run("d", version="0.9.0"))
CHECK = ParkedCheck(True, "flowpin", reports=(REPORT,))


def test_render_text() -> None:
    assert render_text(CHECK).splitlines() == [
        "parked runs (cluster namespace flowpin):",
        "  prod: lead-nurture 1.4.0 → 2.0.0",
        "    step pause (1.4.0) removed; 1 run is parked there; the mapping does not cover it: "
        "step 'pause' does not exist in version 2.0.0 and no migration for version 1.4.0 maps it",
        "    step wait-1d (1.4.0) removed; 2 runs are parked there; the mapping covers them "
        "(→ wait-2d)",
        "    1 run on version 0.9.0, whose definition is unknown: not checked",
    ]


def test_render_markdown_has_a_table_per_deployment() -> None:
    text = render_markdown(CHECK)
    assert text.startswith("### Parked runs\n")
    assert "#### ✗ prod: lead-nurture 1.4.0 → 2.0.0" in text
    assert "| 1.4.0 | wait-1d | removed | 2 | ✓ the mapping covers them (→ wait-2d) |" in text
    assert "| 1.4.0 | pause | removed | 1 | ✗ the mapping does not cover it: " in text
    assert "- 1 run on version 0.9.0, whose definition is unknown: not checked" in text


@pytest.mark.parametrize("render", [render_text, render_markdown])
def test_an_unreachable_cluster_is_said_not_hidden(render: Any) -> None:
    note = f"{NOT_REACHABLE} (Connection refused)"
    assert note in render(ParkedCheck(False, note=note))


@pytest.mark.parametrize("render", [render_text, render_markdown])
def test_nothing_to_say(render: Any) -> None:
    assert render(None) == ""
    assert render(ParkedCheck(True, "flowpin")) == ""


@pytest.mark.parametrize(
    ("report", "line"),
    [
        (ParkedReport("prod", "wf", "1.0.0", "2.0.0", 0), "no unfinished runs on other versions"),
        (
            ParkedReport("prod", "wf", "1.0.0", "2.0.0", 3),
            "3 runs unfinished on other versions; none parked on a removed or retyped step",
        ),
    ],
)
def test_quiet_deployments_still_get_a_line(report: ParkedReport, line: str) -> None:
    assert line in render_text(ParkedCheck(True, "ns", reports=(report,)))


def test_json() -> None:
    data = json.loads(render_json(CHECK))
    assert data == as_json(CHECK)
    (deployment,) = data["deployments"]
    assert deployment["covers"] is False and deployment["parked"] == 3
    assert deployment["unknown_versions"] == [{"version": "0.9.0", "runs": 1}]
    assert [(s["step"], s["covers"]) for s in deployment["steps"]] == [
        ("pause", False),
        ("wait-1d", True),
    ]


def test_step_covers_is_all_or_nothing() -> None:
    step = ParkedStep("1.0.0", "x", "removed", "wait", "", 2, 1, ("y",), ("why",))
    assert not step.covers

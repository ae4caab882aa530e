"""What a source mirrors and which writes it makes: writes only for what changed."""

from __future__ import annotations

import datetime
from typing import Any

from controller.model.findings import Finding
from controller.model.mirror import (
    Actual,
    Retention,
    SourceMeta,
    VersionFacts,
    desired_objects,
    plan_writes,
    resolve_pin,
    retention_writes,
)
from controller.model.source_status import SyncOutcome, source_status
from controller.model.versions import CommitMeta, EnvironmentRecord, VersionIndex, VersionRecord

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
COMMIT = CommitMeta("c" * 40, "Ada <ada@example.com>", T0, "init")
ME = SourceMeta("ns", "src", "uid-1", "2026-01-01T00:00:00Z")


def record(version: str, valid: bool = True) -> VersionRecord:
    problems = () if valid else (Finding("w.yaml", 1, 1, "schema", "bad"),)
    spec = {"version": version, "steps": [{"id": "a", "type": "log"}]}
    return VersionRecord(
        "wf", version, spec, {}, f"d-{version}", "workflows/wf.yaml", COMMIT, problems
    )


def index(*versions: str, pins: dict[str, str] | None = None) -> VersionIndex:
    idx = VersionIndex(last_commit=COMMIT.id)
    idx.versions["wf"] = {v: record(v) for v in versions}
    idx.environments["dev"] = EnvironmentRecord(
        "dev",
        {"pins": {"wf": "latest"} if pins is None else pins},
        {},
        "d",
        "environments/dev.yaml",
        COMMIT,
    )
    return idx


def actual_from(writes: list[Any], desired: Any) -> Actual:
    """The cluster after applying a first sync's writes."""
    versions = {n: {**o, "status": desired.version_status(n)} for n, o in desired.versions.items()}
    return Actual(
        versions, dict(desired.environments), dict(desired.deployments), {"src": ME.created}
    )


def test_first_sync_creates_everything_and_a_second_writes_nothing() -> None:
    desired = desired_objects(index("1.0.0", "1.1.0"), ME)
    first = plan_writes(desired, Actual({}, {}, {}, {"src": ME.created}), ME)
    assert sorted((w.action, w.kind) for w in first.writes) == sorted(
        [("create", "WorkflowVersion"), ("patch-status", "WorkflowVersion")] * 2
        + [("create", "Environment"), ("create", "WorkflowDeployment")]
    )
    assert plan_writes(desired, actual_from(first.writes, desired), ME).writes == []


def test_latest_resolves_to_the_highest_valid_version() -> None:
    versions = {v: record(v) for v in ("1.0.0", "1.10.0", "1.9.0")}
    versions["2.0.0"] = record("2.0.0", valid=False)
    assert resolve_pin("latest", versions) == "1.10.0"
    assert resolve_pin("1.0.0", versions) == "1.0.0"


def test_a_new_pin_is_one_spec_update() -> None:
    before = desired_objects(index("1.0.0", "1.1.0", pins={"wf": "1.0.0"}), ME)
    after = desired_objects(index("1.0.0", "1.1.0", pins={"wf": "1.1.0"}), ME)
    plan = plan_writes(after, actual_from([], before), ME)
    assert [(w.action, w.kind, w.name) for w in plan.writes] == [
        ("replace-spec", "Environment", "dev"),
        ("replace-spec", "WorkflowDeployment", "wf.dev"),
    ]


def test_a_removed_pin_is_kept_while_runs_are_active() -> None:
    before = desired_objects(index("1.0.0"), ME)
    after = desired_objects(index("1.0.0", pins={}), ME)
    actual = actual_from([], before)
    busy = Actual(
        actual.versions,
        actual.environments,
        actual.deployments,
        actual.source_created,
        {"wf.dev": 2},
    )
    assert plan_writes(after, busy, ME).kept_for_runs == ["wf.dev"]
    deletes = [w for w in plan_writes(after, actual, ME).writes if w.action == "delete"]
    assert [(w.kind, w.name) for w in deletes] == [("WorkflowDeployment", "wf.dev")]


def test_the_older_source_wins_a_conflict() -> None:
    desired = desired_objects(index("1.0.0"), ME)
    theirs = {
        n: {**o, "metadata": {**o["metadata"], "labels": {"flowpin.dev/source": "old"}}}
        for n, o in desired.versions.items()
    }
    older = Actual(theirs, {}, {}, {"src": ME.created, "old": "2025-01-01T00:00:00Z"})
    plan = plan_writes(desired, older, ME)
    assert plan.conflicts and "older source old" in plan.conflicts[0]
    newer = Actual(theirs, {}, {}, {"src": ME.created, "old": "2027-01-01T00:00:00Z"})
    assert any(w.action == "adopt" for w in plan_writes(desired, newer, ME).writes)


def test_retention_archives_beyond_keep_unused_and_old() -> None:
    facts = [VersionFacts(f"wf.v1.{i}.0", "wf", f"1.{i}.0", T0, "Available") for i in range(5)]
    now = T0 + datetime.timedelta(days=100)
    writes = retention_writes(facts, {("wf", "1.0.0")}, Retention(keep_versions=2), now)
    assert sorted(w.name for w in writes) == ["wf.v1.1.0", "wf.v1.2.0"]  # 1.0.0 is pinned
    assert retention_writes(facts, set(), Retention(keep_versions=2), T0) == []  # too young
    pruned = retention_writes(facts, set(), Retention(keep_versions=4, prune=True), now)
    assert [(w.action, w.name) for w in pruned] == [("delete", "wf.v1.0.0")]


def test_source_status_reasons_in_order_and_idle_is_stable() -> None:
    base = {"generation": 1, "interval": "1m", "commit": COMMIT, "now": "2026-01-01T00:00:00Z"}
    ok = source_status({}, SyncOutcome(**base))  # type: ignore[arg-type]
    ready = next(c for c in ok["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    later = {**base, "now": "2026-01-02T00:00:00Z"}
    assert source_status(ok, SyncOutcome(**later)) == ok  # type: ignore[arg-type]  # nothing new
    invalid = Finding("workflows/a.yaml", 3, 1, "schema", "bad")
    both = SyncOutcome(**base, invalid=[invalid], conflicts=["taken"])  # type: ignore[arg-type]
    reason = next(c for c in source_status({}, both)["conditions"] if c["type"] == "Ready")[
        "reason"
    ]
    assert reason == "Conflict"
    failed = SyncOutcome(1, "1m", fetch_failure=("AuthFailed", "rejected"), now="x")
    status = source_status(ok, failed)
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and status["artifact"] == ok["artifact"]

"""What a source mirrors and which writes it makes: writes only for what changed."""

from __future__ import annotations

import datetime
import json
from typing import Any

from controller.model.findings import Finding
from controller.model.mirror import (
    Actual,
    Mirrored,
    Retention,
    SourceMeta,
    VersionFacts,
    Write,
    desired_objects,
    pin_commit,
    plan_writes,
    resolve_pin,
    restore_writes,
    retention_writes,
)
from controller.model.source_status import SyncOutcome, source_status
from controller.model.versions import (
    CommitMeta,
    EnvironmentRecord,
    VersionIndex,
    VersionRecord,
    fold_pin_commits,
    index_from_json,
    index_to_json,
)

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
    """The cluster after applying a first sync's writes (versions with their spec facts)."""
    versions = {n: desired.version_to_create(n) for n in desired.versions}
    return Actual(
        versions, dict(desired.environments), dict(desired.deployments), {"src": ME.created}
    )


def test_first_sync_creates_everything_and_a_second_writes_nothing() -> None:
    desired = desired_objects(index("1.0.0", "1.1.0"), ME)
    first = plan_writes(desired, Actual({}, {}, {}, {"src": ME.created}), ME)
    assert sorted((w.action, w.kind) for w in first.writes) == sorted(
        [("create", "WorkflowVersion")] * 2
        + [("create", "Environment"), ("create", "WorkflowDeployment")]
    )
    assert plan_writes(desired, actual_from(first.writes, desired), ME).writes == []


def test_a_new_version_carries_its_facts_in_its_spec() -> None:
    idx = index("1.0.0", "1.1.0")
    idx.versions["wf"]["1.2.0"] = record("1.2.0", valid=False)
    desired = desired_objects(idx, ME)
    first = plan_writes(desired, Actual({}, {}, {}, {"src": ME.created}), ME)
    created = {w.name: w.body for w in first.writes if w.kind == "WorkflowVersion"}
    assert all(body is not None and "status" not in body for body in created.values())
    facts = {n: b["spec"]["facts"] for n, b in created.items() if b is not None}
    assert facts["wf.v1.0.0"] == {"changeClass": "initial", "valid": True, "problems": []}
    assert facts["wf.v1.1.0"] == {
        "changeClass": "none",
        "previousVersion": "1.0.0",
        "valid": True,
        "problems": [],
    }
    assert facts["wf.v1.2.0"]["valid"] is False
    assert facts["wf.v1.2.0"]["problems"] == ["w.yaml:1: bad"]
    assert "facts" not in desired.versions["wf.v1.0.0"]["spec"]  # computed for creates only


def test_a_version_created_before_facts_is_never_given_a_new_spec() -> None:
    desired = desired_objects(index("1.0.0", "1.1.0"), ME)
    old = {n: {**o, "status": desired.version_status(n)} for n, o in desired.versions.items()}
    listed = Actual(old, dict(desired.environments), dict(desired.deployments), {"src": ME.created})
    assert plan_writes(desired, listed, ME).writes == []
    assert plan_writes(desired, Mirrored.from_actual(listed).actual(), ME).writes == []
    # Its status lost to a crash between create and status: the status, never the spec.
    bare = {n: dict(o) for n, o in desired.versions.items()}
    crashed = Actual(
        bare, dict(desired.environments), dict(desired.deployments), listed.source_created
    )
    writes = plan_writes(desired, crashed, ME).writes
    assert sorted((w.action, w.name) for w in writes) == [
        ("patch-status", "wf.v1.0.0"),
        ("patch-status", "wf.v1.1.0"),
    ]
    assert writes[0].body is not None and writes[0].body["changeClass"] == "initial"


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


def test_orphaned_versions_take_no_kept_slot() -> None:
    """After a force-push back to 1.1.0, the orphaned 1.3.0 and 1.4.0 must not push the
    reachable 1.0.0 out of `keepVersions: 2` (review of issue 14)."""
    facts = [
        VersionFacts(f"wf.v1.{i}.0", "wf", f"1.{i}.0", T0, "Available", orphaned=i >= 2)
        for i in range(5)
    ]
    now = T0 + datetime.timedelta(days=100)
    writes = retention_writes(facts, set(), Retention(keep_versions=2), now)
    assert sorted(w.name for w in writes) == ["wf.v1.2.0", "wf.v1.3.0", "wf.v1.4.0"]


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


# ------------------------------------------------------------------ per-pin commits

LATER = CommitMeta("d" * 40, "Grace <grace@example.com>", T0 + datetime.timedelta(hours=1), "pin")


def environment(pins: dict[str, str], commit: CommitMeta, previous: Any = None) -> Any:
    spec = {"pins": pins}
    return EnvironmentRecord(
        "dev",
        spec,
        {},
        "d",
        "environments/dev.yaml",
        commit,
        fold_pin_commits(previous, spec, commit),
    )


def test_a_pin_keeps_the_commit_that_last_changed_it() -> None:
    first = environment({"a": "1.0.0", "b": "1.0.0"}, COMMIT)
    second = environment({"a": "1.1.0", "b": "1.0.0", "c": "latest"}, LATER, first)
    assert {w: c.id for w, c in second.pin_commits.items()} == {
        "a": LATER.id,  # changed
        "b": COMMIT.id,  # the same: keeps the commit that set it
        "c": LATER.id,  # new
    }
    third = environment({"b": "1.0.0"}, LATER, second)
    assert third.pin_commit("b") == COMMIT and third.pin_commit("gone") == LATER


def test_one_pin_change_in_a_big_environment_rewrites_one_deployment() -> None:
    workflows = [f"wf{i}" for i in range(50)]
    idx = VersionIndex(last_commit=COMMIT.id)
    for workflow in workflows:
        idx.versions[workflow] = {
            v: VersionRecord(workflow, v, {"version": v}, {}, v, "p", COMMIT)
            for v in ("1.0.0", "1.1.0")
        }
    pins = {w: "1.0.0" for w in workflows}
    idx.environments["dev"] = environment(pins, COMMIT)
    before = desired_objects(idx, ME)
    idx.environments["dev"] = environment({**pins, "wf7": "1.1.0"}, LATER, idx.environments["dev"])
    after = desired_objects(idx, ME)
    plan = plan_writes(after, actual_from([], before), ME)
    assert [(w.action, w.kind, w.name) for w in plan.writes] == [
        ("replace-spec", "Environment", "dev"),
        ("replace-spec", "WorkflowDeployment", "wf7.dev"),
    ]
    spec = after.deployments["wf7.dev"]["spec"]
    assert (spec["commit"], spec["author"]) == (LATER.id, LATER.author)
    assert after.deployments["wf8.dev"]["spec"]["commit"] == COMMIT.id


def test_a_latest_pin_names_the_newer_of_its_pin_and_its_version() -> None:
    env = environment({"wf": "latest"}, COMMIT)
    newer = VersionRecord("wf", "1.1.0", {}, {}, "d", "p", LATER)
    assert pin_commit(env, "wf", "latest", newer) == LATER  # a new version moved it
    older_env = environment({"wf": "latest"}, LATER)
    old = VersionRecord("wf", "1.0.0", {}, {}, "d", "p", COMMIT)
    assert pin_commit(older_env, "wf", "latest", old) == LATER  # the pin moved it
    exact = environment({"wf": "1.1.0"}, COMMIT)
    assert pin_commit(exact, "wf", "1.1.0", newer) == COMMIT  # exact: the pin alone


def test_the_index_snapshot_keeps_pin_commits_and_refuses_the_old_format() -> None:
    idx = index("1.0.0")
    idx.environments["dev"] = environment({"wf": "1.0.0", "x": "latest"}, COMMIT)
    idx.environments["dev"] = environment(
        {"wf": "1.0.0", "x": "2.0.0"}, LATER, idx.environments["dev"]
    )
    text = index_to_json(idx)
    loaded = index_from_json(text)
    assert loaded is not None
    assert loaded.environments == idx.environments
    assert loaded.versions == idx.versions
    old = json.loads(text)
    old["format"] = 1
    for item in old["environments"]:
        del item["pinCommits"]
    assert index_from_json(json.dumps(old)) is None  # walked again: every pin's own commit


# ------------------------------------------------------------------ planning from memory


def first_sync(desired: Any) -> Mirrored:
    """What a source knows after its first sync into an empty namespace."""
    mirrored = Mirrored.from_actual(Actual({}, {}, {}, {"src": ME.created}))
    for write in plan_writes(desired, mirrored.actual(), ME).writes:
        mirrored.record(write)
    return mirrored


def test_memory_after_a_sync_plans_what_a_listing_would() -> None:
    before = desired_objects(index("1.0.0", "1.1.0", pins={"wf": "1.0.0"}), ME)
    mirrored = first_sync(before)
    assert plan_writes(before, mirrored.actual(), ME).writes == []  # nothing to do again
    listed = actual_from([], before)
    assert Mirrored.from_actual(listed) == mirrored
    after = desired_objects(index("1.0.0", "1.1.0", "1.2.0", pins={"wf": "1.2.0"}), ME)
    from_memory = plan_writes(after, mirrored.actual(), ME)
    assert from_memory.writes == plan_writes(after, listed, ME).writes
    assert [(w.action, w.name) for w in from_memory.writes] == [
        ("create", "wf.v1.2.0"),
        ("replace-spec", "dev"),
        ("replace-spec", "wf.dev"),
    ]
    for write in from_memory.writes:
        mirrored.record(write)
    assert plan_writes(after, mirrored.actual(), ME).writes == []
    gone = desired_objects(index("1.0.0", "1.1.0", "1.2.0", pins={}), ME)
    deletes = plan_writes(gone, mirrored.actual(), ME).writes
    assert ("delete", "wf.dev") in [(w.action, w.name) for w in deletes]
    for write in deletes:
        mirrored.record(write)
    assert "wf.dev" not in mirrored.deployments


def test_memory_keeps_other_sources_objects_and_their_conflicts() -> None:
    desired = desired_objects(index("1.0.0"), ME)
    theirs = {
        n: {**o, "metadata": {**o["metadata"], "labels": {"flowpin.dev/source": "old"}}}
        for n, o in desired.versions.items()
    }
    listed = Actual(theirs, {}, {}, {"src": ME.created, "old": "2025-01-01T00:00:00Z"})
    mirrored = Mirrored.from_actual(listed)
    assert plan_writes(desired, mirrored.actual(), ME).conflicts == (
        plan_writes(desired, listed, ME).conflicts
    )


def test_between_listings_retention_only_restores_pinned_versions() -> None:
    versions = [f"1.{i}.0" for i in range(5)]
    desired = desired_objects(index(*versions, pins={"wf": "1.0.0"}), ME)
    mirrored = first_sync(desired)
    for name in ("wf.v1.0.0", "wf.v1.1.0"):
        mirrored.record(Write("patch-status", "WorkflowVersion", name, {"phase": "Archived"}))
    writes = restore_writes(desired, mirrored, ME, Retention(keep_versions=2))
    assert [(w.name, w.body) for w in writes] == [("wf.v1.0.0", {"phase": "Available"})]
    assert restore_writes(desired, first_sync(desired), ME, Retention(keep_versions=2)) == []


def test_a_rewrite_is_said_in_its_own_condition_until_a_full_sync_completes() -> None:
    """Review of issue 14: an invalid file (which wins Ready) or a failed fetch must neither
    hide nor end the notice; only a full sync that completed does."""

    def rewritten(status: dict[str, Any]) -> str:
        return next(c["status"] for c in status["conditions"] if c["type"] == "HistoryRewritten")

    base = {"generation": 1, "interval": "1m", "commit": COMMIT, "now": "2026-01-01T00:00:00Z"}
    found = source_status({}, SyncOutcome(**base, rewritten=True, orphaned=2))  # type: ignore[arg-type]
    assert rewritten(found) == "True" and "2 versions exist only in the old history" in next(
        c["message"] for c in found["conditions"] if c["type"] == "HistoryRewritten"
    )
    bad = Finding("workflows/a.yaml", 3, 1, "schema", "bad")
    invalid = source_status(found, SyncOutcome(**base, invalid=[bad]))  # type: ignore[arg-type]
    assert rewritten(invalid) == "True"
    failed = source_status(
        invalid,
        SyncOutcome(generation=1, interval="1m", fetch_failure=("FetchFailed", "down")),
    )
    assert rewritten(failed) == "True"
    full = source_status(failed, SyncOutcome(**base, full=True))  # type: ignore[arg-type]
    assert rewritten(full) == "False"
    assert next(c for c in full["conditions"] if c["type"] == "Ready")["reason"] == "Succeeded"

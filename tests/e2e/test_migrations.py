"""Migrations of in-flight runs end to end: real API server, real git repository, the
operator as a process (killed in the middle of a migration in one test)."""

from __future__ import annotations

import datetime
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.model.triggers import run_object
from controller.testing.cluster import Kubectl, OperatorProcess, poll, source_manifest
from controller.testing.gitrepo import commit_all
from tests.e2e.test_runs import flowpin

pytestmark = pytest.mark.e2e
StartOperator = Any


def parcel(version: str, wait_step: str, migrations: str = "", lanes: bool = False) -> str:
    """Runs park at a one-hour wait; `lanes` adds a second wait reached with input lane=b."""
    route = (
        "    - id: route\n"
        "      type: condition\n"
        f"      condition: {{when: \"inputs.lane == 'b'\", then: side, else: {wait_step}}}\n"
        "    - {id: side, type: wait, wait: {duration: 1h}, next: done}\n"
        if lanes
        else ""
    )
    inputs = "  inputs: {type: object, properties: {lane: {type: string}}}\n" if lanes else ""
    return (
        "apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\nmetadata: {name: parcel}\nspec:\n"
        f"  version: {version}\n{inputs}"
        "  triggers: [{id: by-hand, type: manual}]\n"
        "  steps:\n"
        f"{route}"
        f"    - {{id: {wait_step}, type: wait, wait: {{duration: 1h}}, next: done}}\n"
        '    - {id: done, type: log, log: {message: "delivered"}}\n'
        f"{migrations}"
    )


def environment(inflight: str = "pin", strategy: str = "immediate") -> str:
    return (
        "apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\n"
        f"spec:\n  pins: {{parcel: latest}}\n  inflight: {inflight}\n"
        f"  migration: {{strategy: {strategy}}}\n"
    )


def setup(
    kubectl: Kubectl, namespace: str, path: Path, inflight: str = "pin", lanes: bool = False
) -> pygit2.Repository:
    repo = pygit2.init_repository(str(path), initial_head="main")
    (path / "workflows").mkdir(parents=True)
    (path / "environments").mkdir()
    (path / "workflows/parcel.yaml").write_text(parcel("1.0.0", "hold", lanes=lanes))
    (path / "environments/dev.yaml").write_text(environment(inflight))
    commit_all(repo, "parcel 1.0.0")
    kubectl.apply(source_manifest("parcels", str(path)), namespace)
    wait_active(kubectl, namespace, "1.0.0")
    return repo


def wait_active(kubectl: Kubectl, namespace: str, version: str) -> None:
    def status() -> dict[str, Any]:
        found = kubectl.json("get", "wfd", "-n", namespace).get("items", [])
        return next(
            (d.get("status") or {} for d in found if d["metadata"]["name"] == "parcel.dev"), {}
        )

    poll(
        status,
        lambda s: s.get("activeVersion") == version and s.get("phase") == "Verified",
        timeout=60,
        what=f"parcel.dev active at {version}",
    )


def release(
    kubectl: Kubectl, namespace: str, repo: pygit2.Repository, path: Path, text: str, v: str
) -> None:
    (path / "workflows/parcel.yaml").write_text(text)
    commit_all(repo, f"parcel {v}")
    synced = flowpin("sync", "parcels", "-n", namespace)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    wait_active(kubectl, namespace, v)


def start_runs(kubectl: Kubectl, namespace: str, count: int, lane: str = "a") -> list[str]:
    at = datetime.datetime.now(datetime.UTC)
    items = []
    for index in range(count):
        body = run_object("parcel", "dev", {"lane": lane}, None, at)
        body["metadata"]["name"] = f"parcel-{lane}-{index}"
        del body["metadata"]["generateName"]
        items.append(body)
    kubectl.run(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
    )
    names = [item["metadata"]["name"] for item in items]
    poll(
        lambda: runs(kubectl, namespace),
        lambda found: all(found.get(n, {}).get("phase") == "Waiting" for n in names),
        timeout=60 + count / 2,  # 200 runs take a loaded operator a while to start
        what=f"{count} runs Waiting",
    )
    return names


def runs(kubectl: Kubectl, namespace: str) -> dict[str, dict[str, Any]]:
    return {
        r["metadata"]["name"]: r.get("status") or {}
        for r in kubectl.json("get", "wfr", "-n", namespace).get("items", [])
    }


def migration(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.json("get", "wfmig", name, "-n", namespace)
    return found


def wait_phase(
    kubectl: Kubectl, namespace: str, name: str, phase: str, timeout: float = 90
) -> dict[str, Any]:
    found: dict[str, Any] = poll(
        lambda: migration(kubectl, namespace, name).get("status") or {},
        lambda s: s.get("phase") == phase,
        timeout=timeout,
        what=f"migration {name} {phase}",
    )
    return found


def create_migration(kubectl: Kubectl, namespace: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": "flowpin.dev/v1alpha1",
        "kind": "WorkflowMigration",
        "metadata": {"name": name},
        "spec": {"workflow": "parcel", "environment": "dev", **spec},
    }
    kubectl.apply(json.dumps(body), namespace)


MAP_HOLD_TO_PARK = (
    '  migrations:\n    - {from: "<2.0.0", map: {hold: park}, set: {migrated: "true"}}\n'
)


def test_inflight_migrate_moves_waiting_runs_with_the_mapping(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    path = tmp_path / "repo"
    repo = setup(kubectl, namespace, path, inflight="migrate")
    names = start_runs(kubectl, namespace, 5)
    before = runs(kubectl, namespace)
    release(kubectl, namespace, repo, path, parcel("2.0.0", "park", MAP_HOLD_TO_PARK), "2.0.0")

    [mig] = poll(
        lambda: kubectl.json("get", "wfmig", "-n", namespace).get("items", []),
        lambda items: len(items) == 1,
        what="the migration the deployment created",
    )
    name = mig["metadata"]["name"]
    assert name.startswith("parcel.dev.to-2.0.0.")
    assert mig["spec"]["toVersion"] == "2.0.0" and mig["spec"]["strategy"] == "immediate"
    status = wait_phase(kubectl, namespace, name, "Succeeded")
    assert status["progress"]["migrated"] == 5 and status["progress"]["remaining"] == 0
    assert status["plan"]["moves"] == [] or status["progress"]["total"] == 5

    after = runs(kubectl, namespace)
    for run in names:
        moved = after[run]
        assert moved["version"] == "2.0.0" and moved["currentStep"] == "park"
        assert moved["phase"] == "Waiting"
        assert moved["wakeAt"] == before[run]["wakeAt"]  # the wait keeps its deadline
        assert moved["vars"]["migrated"] is True
        [entry] = moved["versionHistory"]
        assert entry["from"] == "1.0.0" and entry["to"] == "2.0.0"
        assert entry["fromStep"] == "hold" and entry["toStep"] == "park"
        assert entry["migration"] == name

    printed = kubectl.run("get", "wfmig", "-n", namespace).stdout
    assert "Succeeded" in printed and "2.0.0" in printed
    # The deployment recounts its versions' runs after the moves: 1.0.0 stops draining.
    poll(
        lambda: kubectl.json("get", "wfd", "parcel.dev", "-n", namespace)["status"],
        lambda status: not any(v["state"] == "Draining" for v in status.get("versions") or []),
        what="no version of parcel.dev Draining once its runs moved",
    )


def test_a_dry_run_lists_blocked_runs_and_approval_moves_the_others(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    path = tmp_path / "repo"
    repo = setup(kubectl, namespace, path, lanes=True)
    movable = start_runs(kubectl, namespace, 3, lane="a")
    stuck = start_runs(kubectl, namespace, 2, lane="b")
    # 2.0.0 drops the `side` wait (lane b) without a mapping; `hold` stays.
    release(kubectl, namespace, repo, path, parcel("2.0.0", "hold"), "2.0.0")

    create_migration(kubectl, namespace, "to-two", toVersion="2.0.0", dryRun=True)
    status = wait_phase(kubectl, namespace, "to-two", "Planned")
    plan = status["plan"]
    assert plan["eligible"] == 3 and plan["blockedCount"] == 2
    assert plan["moves"] == [
        {"fromVersion": "1.0.0", "fromStep": "hold", "toStep": "hold", "count": 3}
    ]
    assert sorted(b["run"] for b in plan["blocked"]) == sorted(stuck)
    assert all("'side' does not exist in version 2.0.0" in b["reason"] for b in plan["blocked"])
    assert plan["unmapped"] == [
        {
            "fromVersion": "1.0.0",
            "fromStep": "side",
            "count": 2,
            "reason": plan["blocked"][0]["reason"],
        }
    ]
    assert all(r["version"] == "1.0.0" for r in runs(kubectl, namespace).values())

    kubectl.run(
        "patch", "wfmig", "to-two", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"dryRun": False, "approved": True}}),
    )  # fmt: skip
    status = wait_phase(kubectl, namespace, "to-two", "Succeeded")
    assert status["progress"]["migrated"] == 3
    assert "2 runs cannot migrate" in status["message"]
    found = runs(kubectl, namespace)
    assert all(found[r]["version"] == "2.0.0" for r in movable)
    assert all(found[r]["version"] == "1.0.0" and found[r]["phase"] == "Waiting" for r in stuck)


def test_gradual_migration_pauses_resumes_and_reports_progress(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    path = tmp_path / "repo"
    repo = setup(kubectl, namespace, path)
    start_runs(kubectl, namespace, 6)
    release(kubectl, namespace, repo, path, parcel("2.0.0", "park", MAP_HOLD_TO_PARK), "2.0.0")
    create_migration(
        kubectl, namespace, "slowly", toVersion="2.0.0", strategy="gradual",
        batchSize=2, interval="15s",  # batches far enough apart to see one and to pause
    )  # fmt: skip
    status = poll(
        lambda: migration(kubectl, namespace, "slowly").get("status") or {},
        lambda s: s.get("phase") == "Running" and s.get("progress", {}).get("migrated") == 2,
        timeout=60,
        what="the first batch of a gradual migration",
    )
    assert status["progress"]["total"] == 6 and status["progress"]["remaining"] == 4
    assert status.get("nextBatchAt")
    kubectl.run(
        "patch", "wfmig", "slowly", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"paused": true}}',
    )  # fmt: skip
    paused = wait_phase(kubectl, namespace, "slowly", "Paused")
    held = paused["progress"]["migrated"]
    assert held < 6
    kubectl.run(
        "patch", "wfmig", "slowly", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"paused": false}}',
    )  # fmt: skip
    done = wait_phase(kubectl, namespace, "slowly", "Succeeded", timeout=120)
    assert done["progress"]["migrated"] == 6
    assert all(r["version"] == "2.0.0" for r in runs(kubectl, namespace).values())


def test_a_migration_killed_mid_batch_moves_every_run_exactly_once(
    kubectl: Kubectl,
    namespace: str,
    start_operator: StartOperator,
    tmp_path: Path,
) -> None:
    operator = start_operator((namespace,))
    path = tmp_path / "repo"
    repo = setup(kubectl, namespace, path)
    names = start_runs(kubectl, namespace, 200)
    release(kubectl, namespace, repo, path, parcel("2.0.0", "park", MAP_HOLD_TO_PARK), "2.0.0")
    operator.kill()
    create_migration(kubectl, namespace, "bumpy", toVersion="2.0.0", batchSize=5)
    chooser = random.Random()
    for attempt in range(2):
        # The same identity, as a restarted container: it takes its own lease back at once.
        operator = start_operator((namespace,))
        threshold = chooser.randint(1 + 60 * attempt, 60 * (attempt + 1))

        def moved_enough(status: dict[str, Any], threshold: int = threshold) -> bool:
            return int(status.get("progress", {}).get("migrated") or 0) >= threshold or (
                status.get("phase") == "Succeeded"
            )

        seen = poll(
            lambda: migration(kubectl, namespace, "bumpy").get("status") or {},
            moved_enough,
            timeout=90,
            what=f"at least {threshold} runs migrated",
        )
        operator.kill()
        print("killed at", seen.get("phase"), seen.get("progress"), seen.get("currentBatch"))
    start_operator((namespace,))
    status = wait_phase(kubectl, namespace, "bumpy", "Succeeded", timeout=120)
    progress = status["progress"]
    assert progress["migrated"] + progress["skipped"] + progress["failed"] == len(names)
    assert progress["migrated"] == len(names)
    for run, found in runs(kubectl, namespace).items():
        entries = [h for h in found.get("versionHistory") or [] if h["migration"] == "bumpy"]
        assert len(entries) == 1, (run, found.get("versionHistory"))
        assert found["version"] == "2.0.0" and found["currentStep"] == "park"


def test_flowpin_plan_counts_the_runs_parked_on_removed_steps(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    path = tmp_path / "repo"
    setup(kubectl, namespace, path, lanes=True)
    start_runs(kubectl, namespace, 3, lane="a")
    start_runs(kubectl, namespace, 2, lane="b")
    # The pull request: 2.0.0 renames hold to park (mapped) and drops the side path (not).
    (path / "workflows/parcel.yaml").write_text(parcel("2.0.0", "park", MAP_HOLD_TO_PARK))
    command = ["plan", "--against", "main", "--format", "text", "-n", namespace]
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", *command],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "step hold (1.0.0) removed; 3 runs are parked there; the mapping covers them" in out
    assert "step side (1.0.0) removed; 2 runs are parked there; the mapping does not cover" in out

"""Runs end to end: the engine against a real HTTP server on loopback, the real API server,
the operator as a process (killed in the middle of a run in one test, cut off by an API
server restart in another)."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.model.triggers import run_object
from controller.testing.cluster import Kubectl, OperatorProcess, poll, source_manifest
from controller.testing.controlplane import ControlPlane
from controller.testing.gitrepo import commit_all
from controller.testing.httpsink import HttpSink

pytestmark = pytest.mark.e2e
StartOperator = Any


def orders_workflow(sink: str, version: str = "1.0.0", wait: str = "1s") -> str:
    return f"""\
apiVersion: flowpin.dev/v1alpha1
kind: Workflow
metadata: {{name: orders}}
spec:
  version: {version}
  inputs: {{type: object, required: [order], properties: {{order: {{type: integer}}}}}}
  triggers: [{{id: by-hand, type: manual}}]
  steps:
    - id: reserve
      type: http
      http: {{method: POST, url: "{sink}/reserve", body: {{order: "${{ inputs.order }}"}}}}
      next: pause
    - {{id: pause, type: wait, wait: {{duration: {wait}}}, next: check}}
    - id: check
      type: condition
      condition: {{when: "steps.reserve.output.status == 200", then: remember, else: broken}}
    - id: remember
      type: set
      set: {{reserved: "steps.reserve.output.body.json.order"}}
      next: notify
    - id: notify
      type: http
      http: {{method: POST, url: "{sink}/notify", body: "order ${{ vars.reserved }}"}}
      retry: {{limit: 3, backoff: fixed, initialDelay: 1s, jitter: 0}}
      next: done
    - {{id: done, type: log, log: {{message: "done ${{ vars.reserved }}"}}}}
    - id: broken
      type: fail
      fail: {{message: "reserve said ${{ steps.reserve.output.status }}"}}
"""


def breaker_workflow(sink: str) -> str:
    return f"""\
apiVersion: flowpin.dev/v1alpha1
kind: Workflow
metadata: {{name: hammer}}
spec:
  version: 1.0.0
  steps:
    - id: call
      type: http
      http: {{url: "{sink}/down"}}
      retry: {{limit: 8, backoff: fixed, initialDelay: 1s, jitter: 0}}
"""


def dev(ttl: int | None = None) -> str:
    runs = f"\n  runs: {{ttlSecondsAfterFinished: {ttl}}}" if ttl is not None else ""
    return (
        "apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\n"
        f"spec:\n  pins: {{orders: latest, hammer: latest}}{runs}\n"
    )


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    server = HttpSink().start()
    yield server
    server.stop()


def make_repo(
    path: Path, sink: HttpSink, ttl: int | None = None, wait: str = "1s"
) -> pygit2.Repository:
    repo = pygit2.init_repository(str(path), initial_head="main")
    (path / "workflows").mkdir(parents=True)
    (path / "environments").mkdir()
    (path / "workflows/orders.yaml").write_text(orders_workflow(sink.url, wait=wait))
    (path / "workflows/hammer.yaml").write_text(breaker_workflow(sink.url))
    (path / "environments/dev.yaml").write_text(dev(ttl))
    commit_all(repo, "orders and hammer")
    return repo


def apply_source(kubectl: Kubectl, namespace: str, path: Path) -> None:
    kubectl.apply(source_manifest("runs", str(path)), namespace)
    for name in ("orders.dev", "hammer.dev"):
        poll(
            lambda name=name: kubectl.json("get", "wfd", "-n", namespace).get("items", []),
            lambda items, name=name: any(
                d["metadata"]["name"] == name and d.get("status", {}).get("phase") == "Verified"
                for d in items
            ),
            what=f"{name} Verified",
        )


def flowpin(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return kubectl.json("get", "wfr", name, "-n", namespace).get("status") or {}


def wait_run(
    kubectl: Kubectl, namespace: str, name: str, phase: str, timeout: float = 60
) -> dict[str, Any]:
    return poll(
        lambda: run_status(kubectl, namespace, name),
        lambda s: s.get("phase") == phase,
        timeout=timeout,
        what=f"run {name} {phase}",
    )


def start_run(namespace: str, *inputs: str, workflow: str = "orders") -> str:
    args = ["run", workflow, "--env", "dev", "-n", namespace]
    for pair in inputs:
        args += ["--input", pair]
    result = flowpin(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def step(status: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in status.get("steps") or [] if s["id"] == step_id)


def test_a_manual_run_goes_through_every_step_type(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, sink: HttpSink, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", sink)
    apply_source(kubectl, namespace, tmp_path / "repo")
    result = flowpin(
        "run", "orders", "--env", "dev", "--input", "order=7", "--wait", "-n", namespace
    )
    assert result.returncode == 0, result.stdout + result.stderr
    name = result.stdout.split()[0]
    assert "Succeeded" in result.stdout

    status = run_status(kubectl, namespace, name)
    assert status["version"] == "1.0.0"
    assert "active in dev" in status["versionReason"]
    assert [s["id"] for s in status["steps"]] == [
        "reserve",
        "pause",
        "check",
        "remember",
        "notify",
        "done",
    ]
    assert all(s["phase"] == "Succeeded" for s in status["steps"])
    assert status["vars"] == {"reserved": 7}
    assert step(status, "check")["output"] == {"result": True}
    assert step(status, "done")["output"] == {"message": "done 7"}
    assert step(status, "reserve")["output"]["status"] == 200

    [reserve] = sink.calls("/reserve")
    assert reserve.json() == {"order": 7}
    assert len(reserve.headers["idempotency-key"]) == 32
    [notify] = sink.calls("/notify")
    assert notify.body == b"order 7"

    printed = kubectl.run("get", "wfr", name, "-n", namespace).stdout
    assert printed.split("\n")[0].split()[:6] == [
        "NAME",
        "WORKFLOW",
        "ENV",
        "VERSION",
        "PHASE",
        "STEP",
    ]
    assert "orders" in printed and "Succeeded" in printed

    poll(
        lambda: (
            kubectl.json("get", "wfv", "orders.v1.0.0", "-n", namespace)
            .get("status", {})
            .get("runs")
        ),
        lambda runs: (
            bool(runs) and runs["total"] == 1 and runs["succeeded"] == 1 and runs["active"] == 0
        ),
        what="the version's run counts",
    )


def test_invalid_inputs_fail_the_run_naming_the_field(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, sink: HttpSink, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", sink)
    apply_source(kubectl, namespace, tmp_path / "repo")
    name = start_run(namespace, "order=seven")
    status = wait_run(kubectl, namespace, name, "Failed")
    assert "inputs.order" in status["message"] and "integer" in status["message"]
    assert sink.calls("/reserve") == []


def test_retries_then_dead_letter_then_retry_run(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, sink: HttpSink, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", sink)
    apply_source(kubectl, namespace, tmp_path / "repo")
    sink.set_script("/notify", [503])
    name = start_run(namespace, "order=1")
    status = wait_run(kubectl, namespace, name, "Failed", timeout=90)
    notify = step(status, "notify")
    assert notify["attempts"] == 4 and "answered 503" in notify["error"]
    assert "failed after 4 attempts" in status["message"]
    keys = {call.headers["idempotency-key"] for call in sink.calls("/notify")}
    assert len(sink.calls("/notify")) == 4 and len(keys) == 4  # one key per attempt

    listed = flowpin("runs", "--failed", "-n", namespace, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["name"] == name and row["step"] == "notify" and "503" in row["message"]

    sink.set_script("/notify", [200])
    resumed = flowpin("retry-run", name, "-n", namespace)
    assert resumed.returncode == 0, resumed.stderr
    wait_run(kubectl, namespace, name, "Succeeded")
    assert len(sink.calls("/reserve")) == 1  # resumed at the failed step, not from the start
    empty = flowpin("runs", "--failed", "-n", namespace)
    assert "no failed runs" in empty.stdout


def test_the_circuit_breaker_stops_hammering_a_failing_host(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, sink: HttpSink, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", sink)
    apply_source(kubectl, namespace, tmp_path / "repo")
    sink.set_script("/down", [503])
    name = start_run(namespace, workflow="hammer")
    poll(
        lambda: (
            step(run_status(kubectl, namespace, name), "call").get("error", "")
            if run_status(kubectl, namespace, name).get("steps")
            else ""
        ),
        lambda error: "circuit open" in error,
        timeout=60,
        what="the step to report the open circuit",
    )
    assert len(sink.calls("/down")) == 5


def test_a_run_survives_the_operator_killed_while_it_waits(
    kubectl: Kubectl, namespace: str, start_operator: StartOperator, sink: HttpSink, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", sink, wait="15s")  # outlasts the kill on a loaded machine
    first = start_operator((namespace,), identity="victim")
    first.wait_ready()
    apply_source(kubectl, namespace, tmp_path / "repo")
    name = start_run(namespace, "order=3")
    wait_run(kubectl, namespace, name, "Waiting")
    first.kill()
    second = start_operator((namespace,), identity="survivor")
    second.wait_ready(timeout=60)
    status = wait_run(kubectl, namespace, name, "Succeeded", timeout=90)
    assert len(sink.calls("/reserve")) == 1 and len(sink.calls("/notify")) == 1
    assert step(status, "pause")["phase"] == "Succeeded"
    poll(
        lambda: (
            kubectl.json("get", "wfv", "orders.v1.0.0", "-n", namespace)
            .get("status", {})
            .get("runs")
        ),
        lambda runs: bool(runs) and runs["total"] == 1 and runs["succeeded"] == 1,
        what="the run counted once",
    )


def test_cancel_stops_a_waiting_run(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, sink: HttpSink, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", sink, wait="1h")
    apply_source(kubectl, namespace, tmp_path / "repo")
    name = start_run(namespace, "order=5")
    status = wait_run(kubectl, namespace, name, "Waiting")
    assert status["currentStep"] == "pause" and status["wakeAt"]
    result = flowpin("cancel", name, "-n", namespace)
    assert result.returncode == 0, result.stderr
    status = wait_run(kubectl, namespace, name, "Cancelled")
    assert status["currentStep"] == "pause"
    assert sink.calls("/notify") == []


def test_finished_runs_expire_and_stay_counted(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, sink: HttpSink, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", sink, ttl=0)
    apply_source(kubectl, namespace, tmp_path / "repo")
    names = [start_run(namespace, f"order={i}") for i in range(3)]
    failed = start_run(namespace, "order=oops")
    poll(
        lambda: kubectl.json("get", "wfr", "-n", namespace)["items"],
        lambda items: items == [],
        timeout=90,
        what=f"runs {[*names, failed]} to finish and expire",
    )
    runs = poll(
        lambda: (
            kubectl.json("get", "wfv", "orders.v1.0.0", "-n", namespace)
            .get("status", {})
            .get("runs")
        ),
        lambda runs: bool(runs) and runs["total"] == 4,
        what="the counts of the deleted runs",
    )
    assert runs["succeeded"] == 3 and runs["failed"] == 1 and runs["active"] == 0
    assert runs["avgDurationSeconds"] > 0.5  # three of four wait a second
    deployment = poll(
        lambda: kubectl.json("get", "wfd", "orders.dev", "-n", namespace).get("status", {}),
        lambda status: (status.get("runs") or {}).get("total") == 4,
        what="the deployment's counts",
    )
    [active] = [v for v in deployment["versions"] if v["state"] == "Active"]
    assert active["version"] == "1.0.0"
    assert active["runs"]["succeeded"] == 3 and active["runs"]["failed"] == 1


def bump_orders(repo_path: Path, sink: HttpSink, version: str, wait: str) -> None:
    (repo_path / "workflows/orders.yaml").write_text(orders_workflow(sink.url, version, wait))
    commit_all(pygit2.Repository(str(repo_path)), f"orders {version}")


def deployment_versions(kubectl: Kubectl, namespace: str) -> list[tuple[str, str, int]]:
    status = kubectl.json("get", "wfd", "orders.dev", "-n", namespace).get("status") or {}
    return [
        (v["version"], v["state"], v.get("activeRuns", 0)) for v in status.get("versions") or []
    ]


def test_runs_finish_on_their_version_while_the_next_one_rolls_out(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, sink: HttpSink, tmp_path: Path
) -> None:
    # The old runs must still wait while 1.1.0 syncs and becomes Active, even on a loaded machine.
    make_repo(tmp_path / "repo", sink, wait="25s")
    apply_source(kubectl, namespace, tmp_path / "repo")
    old = [start_run(namespace, f"order={i}") for i in (1, 2)]
    for name in old:
        wait_run(kubectl, namespace, name, "Waiting")
    bump_orders(tmp_path / "repo", sink, "1.1.0", "1s")
    assert flowpin("sync", "runs", "-n", namespace).returncode == 0
    poll(
        lambda: deployment_versions(kubectl, namespace),
        lambda found: found[:2] == [("1.1.0", "Active", 0), ("1.0.0", "Draining", 2)],
        what="1.0.0 draining two runs",
    )
    status_view = flowpin("status", "orders", "-n", namespace)
    assert "1.0.0 Draining (2 runs)" in status_view.stdout, status_view.stdout
    new = start_run(namespace, "order=3")
    assert wait_run(kubectl, namespace, new, "Succeeded")["version"] == "1.1.0"
    for name in old:
        status = wait_run(kubectl, namespace, name, "Succeeded", timeout=60)
        assert status["version"] == "1.0.0"  # pinned to the version it started on
    poll(
        lambda: deployment_versions(kubectl, namespace),
        lambda found: ("1.0.0", "Drained", 0) in found,
        what="1.0.0 drained",
    )


def test_inflight_cancel_cancels_the_old_versions_runs(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, sink: HttpSink, tmp_path: Path
) -> None:
    repo_path = tmp_path / "repo"
    make_repo(repo_path, sink, wait="1h")
    dev_file = repo_path / "environments/dev.yaml"
    dev_file.write_text(dev_file.read_text() + "  inflight: cancel\n")
    commit_all(pygit2.Repository(str(repo_path)), "dev cancels in-flight runs")
    apply_source(kubectl, namespace, repo_path)
    name = start_run(namespace, "order=1")
    wait_run(kubectl, namespace, name, "Waiting")
    bump_orders(repo_path, sink, "1.1.0", "1s")
    assert flowpin("sync", "runs", "-n", namespace).returncode == 0
    status = wait_run(kubectl, namespace, name, "Cancelled")
    assert status["version"] == "1.0.0"


def test_two_replicas_advance_each_run_once_across_a_failover(
    kubectl: Kubectl, namespace: str, start_operator: StartOperator, sink: HttpSink, tmp_path: Path
) -> None:
    # The wait outlasts starting five runs one CLI call at a time on a loaded machine, so
    # every run is still parked when the leader dies; they wake under the new leader.
    make_repo(tmp_path / "repo", sink, wait="30s")
    first = start_operator((namespace,), identity="replica-a")
    first.wait_ready()
    second = start_operator((namespace,), identity="replica-b")
    second.wait_answering()
    assert second.leaderz() == 503  # a standby: only the leader runs the engine
    apply_source(kubectl, namespace, tmp_path / "repo")
    names = [start_run(namespace, f"order={i}") for i in range(5)]
    for name in names:
        wait_run(kubectl, namespace, name, "Waiting")
    first.kill()  # the standby takes over once the lease expires
    assert all(run_status(kubectl, namespace, name)["phase"] == "Waiting" for name in names)
    second.wait_ready(timeout=60)
    for name in names:
        wait_run(kubectl, namespace, name, "Succeeded", timeout=90)
    assert sorted(c.json()["order"] for c in sink.calls("/reserve")) == [0, 1, 2, 3, 4]
    assert len(sink.calls("/notify")) == 5  # each step of each run once


def start_runs(kubectl: Kubectl, namespace: str, path: Path, count: int) -> None:
    """`count` runs of orders in dev, created by one kubectl call: a `flowpin run` each would
    take longer than the runs' wait on a loaded machine."""
    at = datetime.datetime.now(datetime.UTC)
    runs = [run_object("orders", "dev", {"order": i}, None, at) for i in range(count)]
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": runs}))
    kubectl.run("create", "-f", str(path), "-n", namespace)


def run_counts(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    """The runs' phases and every count of them: the deployment's per-version entries and
    totals, and the version's own."""
    deployment = kubectl.json("get", "wfd", "orders.dev", "-n", namespace).get("status") or {}
    version = kubectl.json("get", "wfv", "orders.v1.0.0", "-n", namespace).get("status") or {}
    return {
        "phases": sorted(
            (run.get("status") or {}).get("phase", "Pending")
            for run in kubectl.json("get", "wfr", "-n", namespace)["items"]
        ),
        "versions": [
            (v["version"], v["state"], v.get("activeRuns", 0), v.get("runs") or {})
            for v in deployment.get("versions") or []
        ],
        "deployment": deployment.get("runs") or {},
        "version": version.get("runs") or {},
    }


def test_run_counts_converge_after_an_api_server_restart(
    kubectl: Kubectl,
    namespace: str,
    control_plane: ControlPlane,
    operator: OperatorProcess,
    sink: HttpSink,
    tmp_path: Path,
) -> None:
    # 20 s: every run is parked before the restart even on a loaded machine, and they wake
    # while the API server is away (15 s or more: it drains before it stops) or just after.
    runs = 25
    make_repo(tmp_path / "repo", sink, wait="20s")
    apply_source(kubectl, namespace, tmp_path / "repo")
    start_runs(kubectl, namespace, tmp_path / "runs.json", runs)
    poll(
        lambda: run_counts(kubectl, namespace),
        lambda found: (
            found["phases"] == ["Waiting"] * runs
            and [v[:3] for v in found["versions"]] == [("1.0.0", "Active", runs)]
        ),
        timeout=60,
        what=f"{runs} runs parked and counted active",
    )
    control_plane.restart_apiserver()

    def leading() -> int:
        # A leader cut off for longer than its renew deadline (10 s) exits, as
        # controller-runtime managers do, and its kubelet starts it again: so does this test.
        if operator.process is not None and operator.process.poll() is not None:
            operator.stop()
            operator.start()
        return operator.leaderz()

    poll(leading, lambda status: status == 200, timeout=90, what="the operator leading again")
    # Within 20 s of the operator's return every run has finished, and every count says so:
    # none active, each run counted once.
    done = {"total": runs, "succeeded": runs, "failed": 0, "active": 0}
    poll(
        lambda: run_counts(kubectl, namespace),
        lambda found: (
            found["phases"] == ["Succeeded"] * runs
            and [v[:3] for v in found["versions"]] == [("1.0.0", "Active", 0)]
            and all(
                {k: counts.get(k) for k in done} == done
                for counts in (found["versions"][0][3], found["deployment"], found["version"])
            )
        ),
        timeout=20,
        what="the counts of every finished run",
    )

"""Canary rollouts end to end: new runs split by weight, analysis on their outcomes, promotion
or an abort that holds the version; `flowpin abort` and `flowpin promote --full`."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.model.triggers import run_object
from controller.testing.cluster import Kubectl, OperatorProcess, poll, source_manifest
from controller.testing.gitrepo import commit_all
from tests.e2e.test_runs import flowpin

pytestmark = pytest.mark.e2e


def greeter(version: str, fails: bool = False) -> str:
    step = (
        '{id: hello, type: fail, fail: {message: "broken release"}}'
        if fails
        else '{id: hello, type: log, log: {message: "hello"}}'
    )
    return (
        "apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\nmetadata: {name: greeter}\nspec:\n"
        f"  version: {version}\n  triggers: [{{id: by-hand, type: manual}}]\n"
        f"  steps:\n    - {step}\n"
    )


CANARY = (
    "apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\n"
    "spec:\n  pins: {greeter: latest}\n"
    "  rollout:\n    strategy: canary\n"
    "    steps: [{weight: 50, pause: 2s}]\n"
    "    analysis: {minRuns: 6, successRate: 0.9}\n"
)


def setup(kubectl: Kubectl, namespace: str, path: Path) -> pygit2.Repository:
    repo = pygit2.init_repository(str(path), initial_head="main")
    (path / "workflows").mkdir(parents=True)
    (path / "environments").mkdir()
    (path / "workflows/greeter.yaml").write_text(greeter("1.0.0"))
    (path / "environments/dev.yaml").write_text(CANARY)
    commit_all(repo, "greeter 1.0.0")
    kubectl.apply(source_manifest("greet", str(path)), namespace)
    wait_deployment(kubectl, namespace, lambda s: s.get("activeVersion") == "1.0.0")
    return repo


def deployment(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    found = kubectl.json("get", "wfd", "-n", namespace).get("items", [])
    return next(
        (d.get("status") or {} for d in found if d["metadata"]["name"] == "greeter.dev"), {}
    )


def wait_deployment(
    kubectl: Kubectl,
    namespace: str,
    accept: Callable[[dict[str, Any]], bool],
    what: str = "greeter.dev",
    timeout: float = 60,
) -> dict[str, Any]:
    found: dict[str, Any] = poll(
        lambda: deployment(kubectl, namespace), accept, timeout=timeout, what=what
    )
    return found


def release(
    kubectl: Kubectl, namespace: str, repo: pygit2.Repository, path: Path, text: str
) -> None:
    (path / "workflows/greeter.yaml").write_text(text)
    commit_all(repo, "greeter release")
    synced = flowpin("sync", "greet", "-n", namespace)
    assert synced.returncode == 0, synced.stdout + synced.stderr


class Traffic:
    """Starts runs in small batches with unique names, as triggers would."""

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self.kubectl, self.namespace, self.count = kubectl, namespace, 0

    def send(self, count: int) -> None:
        at = datetime.datetime.now(datetime.UTC)
        items = []
        for _ in range(count):
            body = run_object("greeter", "dev", {}, None, at)
            del body["metadata"]["generateName"]
            body["metadata"]["name"] = f"greeter-{self.count:04d}"
            self.count += 1
            items.append(body)
        self.kubectl.run(
            "create", "-n", self.namespace, "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )  # fmt: skip

    def until(
        self, accept: Callable[[dict[str, Any]], bool], what: str, timeout: float = 90
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = deployment(self.kubectl, self.namespace)
            if accept(status):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; last: {status!r}")
            self.send(4)
            time.sleep(0.5)


def versions_of_runs(kubectl: Kubectl, namespace: str) -> dict[str, str]:
    return {
        r["metadata"]["name"]: (r.get("status") or {}).get("version", "")
        for r in kubectl.json("get", "wfr", "-n", namespace).get("items", [])
    }


def test_a_healthy_canary_is_promoted_after_its_analysis(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    path = tmp_path / "repo"
    repo = setup(kubectl, namespace, path)
    release(kubectl, namespace, repo, path, greeter("1.1.0"))
    status = wait_deployment(kubectl, namespace, lambda s: s.get("phase") == "Canary")
    assert status["activeVersion"] == "1.0.0"
    assert status["canary"]["version"] == "1.1.0" and status["canary"]["weight"] == 50
    wide = kubectl.run("get", "wfd", "greeter.dev", "-n", namespace, "-o", "wide").stdout
    header, row = wide.splitlines()[:2]
    assert "CANARY" in header and "WEIGHT" in header
    assert "1.1.0" in row.split() and "50" in row.split()

    traffic = Traffic(kubectl, namespace)
    done = traffic.until(
        lambda s: s.get("activeVersion") == "1.1.0" and s.get("phase") == "Verified",
        "the canary's promotion",
    )
    assert done["history"][0]["result"] == "Activated"
    assert "canary" not in done
    split = versions_of_runs(kubectl, namespace)
    on_canary = [n for n, v in split.items() if v == "1.1.0"]
    assert len(on_canary) >= 6  # the analysis's minRuns
    events = kubectl.run("get", "events", "-n", namespace).stdout
    assert "CanaryStarted" in events and "canary passed" in events


def test_a_failing_canary_rolls_back_by_itself_and_is_held(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    path = tmp_path / "repo"
    repo = setup(kubectl, namespace, path)
    release(kubectl, namespace, repo, path, greeter("2.0.0", fails=True))
    wait_deployment(kubectl, namespace, lambda s: s.get("phase") == "Canary")
    traffic = Traffic(kubectl, namespace)
    status = traffic.until(lambda s: s.get("phase") == "RolledBack", "the canary's abort")
    assert status["activeVersion"] == "1.0.0" and status["heldVersion"] == "2.0.0"
    assert status["canary"]["weight"] == 0 and status["canary"]["state"] == "Aborted"
    analysis = status["canary"]["analysis"]
    assert analysis["verdict"] == "Failed" and analysis["failed"] >= 1
    assert "below 90%" in status["message"]  # the figures are in the message
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"

    # Every new run goes to the stable version now, and the held version is not retried.
    before = set(versions_of_runs(kubectl, namespace))
    traffic.send(8)
    after = poll(
        lambda: versions_of_runs(kubectl, namespace),
        lambda found: all(found.get(n) for n in set(found) - before) and len(found) > len(before),
        what="the new runs' versions",
    )
    assert {after[n] for n in set(after) - before} == {"1.0.0"}
    assert deployment(kubectl, namespace)["phase"] == "RolledBack"


def test_abort_and_promote_full_take_manual_control(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    path = tmp_path / "repo"
    repo = setup(kubectl, namespace, path)
    release(kubectl, namespace, repo, path, greeter("1.1.0"))
    wait_deployment(kubectl, namespace, lambda s: s.get("phase") == "Canary")
    aborted = flowpin("abort", "greeter", "--env", "dev", "-n", namespace)
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    status = deployment(kubectl, namespace)
    assert status["phase"] == "RolledBack" and status["heldVersion"] == "1.1.0"
    assert status["activeVersion"] == "1.0.0"

    retried = flowpin("retry", "greeter", "--env", "dev", "-n", namespace)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    wait_deployment(
        kubectl,
        namespace,
        lambda s: s.get("phase") == "Canary" and s.get("canary", {}).get("state") == "Progressing",
        what="the canary restarted",
    )
    promoted = flowpin("promote", "greeter", "--to", "dev", "--full", "-n", namespace)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    status = wait_deployment(
        kubectl, namespace, lambda s: s.get("activeVersion") == "1.1.0", what="promoted"
    )
    assert status["phase"] == "Verified"
    meta = kubectl.json("get", "wfd", "greeter.dev", "-n", namespace)["metadata"]
    assert not any(
        key in (meta.get("annotations") or {})
        for key in ("flowpin.dev/abort", "flowpin.dev/promote-full", "flowpin.dev/retry-version")
    )  # one-shot requests are consumed
    nothing = flowpin("abort", "greeter", "--env", "dev", "-n", namespace)
    assert nothing.returncode == 1 and "no canary" in (nothing.stdout + nothing.stderr).lower()

"""The run controller's counts over an in-memory API: a run whose status write landed
although its answer was lost (an API server going away mid-request) is counted as it is
once the write's retry finds it changed, and the write's late watch event (an echo by then)
changes nothing; a run moved to another version counts on neither twice."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from controller.api import kinds
from controller.operator import runs
from controller.operator.runs import RunController
from tests.unit.engine import ScriptedHttp

NS = "ns"
Obj = dict[str, Any]
WAITING: Obj = {
    "phase": "Waiting",
    "version": "1.0.0",
    "currentStep": "pause",
    "startedAt": "2024-05-01T12:00:00Z",
    "wakeAt": "2024-05-01T12:00:20Z",
}
SUCCEEDED: Obj = {
    "phase": "Succeeded",
    "version": "1.0.0",
    "startedAt": "2024-05-01T12:00:00Z",
    "finishedAt": "2024-05-01T12:00:21Z",
}
DONE = {"total": 1, "succeeded": 1, "failed": 0, "active": 0, "avgDurationSeconds": 21.0}


def run(status: Obj, resource_version: str) -> Obj:
    return {
        "metadata": {
            "namespace": NS,
            "name": "orders-dev-x",
            "uid": "uid-x",
            "resourceVersion": resource_version,
            "finalizers": [kinds.FINALIZER_RUN_COUNTS],
        },
        "spec": {"workflow": "orders", "environment": "dev"},
        "status": copy.deepcopy(status),
    }


class MemoryKube:
    """The API server: holds the run and the version; refuses a status write computed from an
    older resourceVersion (409), as a guarded merge patch is."""

    def __init__(self, stored: Obj) -> None:
        self.run = stored
        self.versions: dict[str, Obj] = {
            name: {"metadata": {"namespace": NS, "name": name, "resourceVersion": "1"}}
            for name in ("orders.v1.0.0", "orders.v1.1.0")
        }

    def _object(self, kind: str, name: str) -> Obj:
        return self.versions[name] if kind == kinds.WORKFLOW_VERSION.kind else self.run

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return copy.deepcopy(self._object(kind, name))

    async def patch_status_at(
        self, kind: str, namespace: str, name: str, status: Obj, resource_version: str
    ) -> Obj | None:
        stored = self._object(kind, name)
        if stored["metadata"]["resourceVersion"] != resource_version:
            return None
        stored["status"] = {**stored.get("status", {}), **copy.deepcopy(status)}
        stored["metadata"]["resourceVersion"] = str(int(resource_version) + 1)
        return copy.deepcopy(stored)


def test_a_write_whose_answer_was_lost_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "STATS_DEBOUNCE", 0.01)
    # What the API server holds: our write that finished the run landed (resourceVersion 6),
    # but its answer never came back.
    landed = run(SUCCEEDED, "6")
    kube = MemoryKube(landed)
    told: list[tuple[str, str, str]] = []

    async def scenario() -> RunController:
        controller = RunController(
            kube,  # type: ignore[arg-type]
            ScriptedHttp(),
            deployment_of=lambda ns, name: None,
            environment_of=lambda ns, name: None,
        )
        controller.on_counts_changed = lambda ns, wf, env: told.append((ns, wf, env))
        waiting = run(WAITING, "5")
        controller.on_run("ADDED", waiting)
        await asyncio.sleep(0.1)  # the first count round: one run, active
        told.clear()
        # The worker's retry writes from what it holds: refused, the run is read again.
        assert await controller._save((NS, "orders-dev-x"), waiting, SUCCEEDED) is None
        controller.on_run("MODIFIED", landed)  # the landed write's watch event, late
        await asyncio.sleep(0.1)
        return controller

    controller = asyncio.run(scenario())
    assert told == [(NS, "orders", "dev")]  # the deployment is told to count again
    assert controller.counts_by_version(NS, "orders", "dev", {}) == {"1.0.0": DONE}
    assert kube.versions["orders.v1.0.0"]["status"]["runs"] == DONE


def test_a_moved_run_is_counted_off_the_version_it_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "STATS_DEBOUNCE", 0.01)
    kube = MemoryKube(run(WAITING, "5"))

    async def scenario() -> None:
        controller = RunController(
            kube,  # type: ignore[arg-type]
            ScriptedHttp(),
            deployment_of=lambda ns, name: None,
            environment_of=lambda ns, name: None,
        )
        waiting = run(WAITING, "5")
        controller.on_run("ADDED", waiting)
        await asyncio.sleep(0.1)  # counted active on 1.0.0
        moved = {**WAITING, "version": "1.1.0"}  # what a migration's move writes
        assert await controller._save((NS, "orders-dev-x"), waiting, moved) is not None
        await asyncio.sleep(0.1)

    asyncio.run(scenario())
    assert kube.versions["orders.v1.0.0"]["status"]["runs"]["active"] == 0
    assert kube.versions["orders.v1.1.0"]["status"]["runs"]["active"] == 1

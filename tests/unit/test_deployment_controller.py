"""The deployment controller's plumbing over an in-memory API: a version not cached yet is
read instead of waited for, and versions' `status.environments` are written once per
commit, after the deployments have settled."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from controller.operator import deployments
from controller.operator.deployments import DeploymentController

NS = "ns"
Obj = dict[str, Any]


class MemoryKube:
    def __init__(self, versions: dict[str, Obj]) -> None:
        self.versions = versions
        self.metrics = None
        self.writes = 0
        self.gets: list[str] = []
        self.status_patches: list[tuple[str, str, Obj]] = []
        self.events: list[str] = []

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        self.gets.append(name)
        found = self.versions.get(name) if kind == "WorkflowVersion" else None
        return copy.deepcopy(found) if found is not None else None

    async def patch_status(self, kind: str, namespace: str, name: str, status: Obj) -> None:
        self.writes += 1
        self.status_patches.append((kind, name, copy.deepcopy(status)))

    async def event(self, obj: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        self.writes += 1
        self.events.append(reason)


def version(workflow: str, number: str) -> Obj:
    return {
        "metadata": {"namespace": NS, "name": f"{workflow}.v{number}"},
        "spec": {"workflow": workflow, "version": number},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def deployment(workflow: str, environment: str, number: str, status: Obj | None = None) -> Obj:
    return {
        "metadata": {"namespace": NS, "name": f"{workflow}.{environment}", "generation": 1},
        "spec": {"workflow": workflow, "environment": environment, "version": number},
        "status": status or {},
    }


def environment(name: str) -> Obj:
    return {"metadata": {"namespace": NS, "name": name}, "spec": {"pins": {}}}


def test_a_version_not_seen_yet_is_read_not_waited_for() -> None:
    async def scenario() -> tuple[MemoryKube, DeploymentController]:
        kube = MemoryKube({"wf.v1.0.0": version("wf", "1.0.0")})
        controller = DeploymentController(kube)  # type: ignore[arg-type]
        controller.on_environment("ADDED", environment("dev"))
        controller.cache.deployments[(NS, "wf.dev")] = deployment("wf", "dev", "1.0.0")
        await controller.reconcile((NS, "wf.dev"))
        controller.cache.deployments[(NS, "gone.dev")] = deployment("gone", "dev", "1.0.0")
        await controller.reconcile((NS, "gone.dev"))
        return kube, controller

    kube, controller = asyncio.run(scenario())
    (_, name, status), (_, gone, blocked) = kube.status_patches
    assert (name, status["activeVersion"], status["phase"]) == ("wf.dev", "1.0.0", "Verified")
    assert (gone, blocked["reason"]) == ("gone.dev", "InvalidVersion")  # no grace period
    assert kube.gets == ["wf.v1.0.0", "gone.v1.0.0"]
    assert (NS, "wf.v1.0.0") in controller.cache.versions  # read once, kept for the next time


def test_a_version_without_its_status_yet_is_waited_for() -> None:
    async def scenario() -> MemoryKube:
        bare = {**version("wf", "1.0.0"), "status": {}}
        kube = MemoryKube({"wf.v1.0.0": bare})
        controller = DeploymentController(kube)  # type: ignore[arg-type]
        controller.on_environment("ADDED", environment("dev"))
        controller.cache.deployments[(NS, "wf.dev")] = deployment("wf", "dev", "1.0.0")
        await controller.reconcile((NS, "wf.dev"))
        return kube

    assert asyncio.run(scenario()).status_patches == []


def test_environments_are_written_once_after_the_deployments_settle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(deployments, "ENVIRONMENTS_QUIET", 0.2)
    environments = ("dev", "prod", "staging")

    async def scenario() -> MemoryKube:
        kube = MemoryKube({})
        controller = DeploymentController(kube)  # type: ignore[arg-type]
        controller.start()
        old = version("wf", "1.0.0")
        old["status"]["environments"] = [{"name": env, "state": "Active"} for env in environments]
        controller.on_version("ADDED", old)
        controller.on_version("ADDED", version("wf", "1.1.0"))
        for env in environments:
            controller.on_environment("ADDED", environment(env))
            verified = {"activeVersion": "1.0.0", "phase": "Verified"}
            controller.on_deployment("ADDED", deployment("wf", env, "1.0.0", verified))
        await asyncio.sleep(0.5)
        kube.status_patches.clear()
        # One commit moves the pin in every environment; the source writes the three
        # specs one after another, each sooner than the quiet period after the last.
        for env in environments:
            current = controller.cache.deployments[(NS, f"wf.{env}")]
            controller.on_deployment(
                "MODIFIED", {**current, "spec": {**current["spec"], "version": "1.1.0"}}
            )
            await asyncio.sleep(0.15)  # all three take longer than the quiet period
        await asyncio.sleep(0.6)
        await controller.stop()
        return kube

    kube = asyncio.run(scenario())
    versions = [
        (name, status) for kind, name, status in kube.status_patches if kind == "WorkflowVersion"
    ]
    assert versions == [
        ("wf.v1.0.0", {"environments": []}),
        ("wf.v1.1.0", {"environments": [{"name": env, "state": "Active"} for env in environments]}),
    ]

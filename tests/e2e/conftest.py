"""Fixtures for end-to-end tests against the real local control plane.

The control plane is started once per session. If it cannot be built or started, every e2e
test errors with the reason: these tests never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.testing.cluster import (
    Kubectl,
    OperatorProcess,
    install_flowpin,
    operator_kubeconfig,
)
from controller.testing.controlplane import ControlPlane

StartOperator = Callable[..., OperatorProcess]


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    plane = ControlPlane()
    plane.start()  # raises ControlPlaneError with the reason; never skipped
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """Admin kubectl with flowpin's CRDs and RBAC installed; `kubectl` on PATH points here."""
    tool = Kubectl(env=control_plane.env())
    install_flowpin(tool)
    os.environ["KUBECONFIG"] = str(control_plane.kubeconfig)
    bin_dir = str(Path(tool.binary).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return tool


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator_kubeconfig_path(
    control_plane: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Kubeconfig with a token of the manifests/ ServiceAccount: the operator's identity."""
    return operator_kubeconfig(
        control_plane, kubectl, tmp_path_factory.mktemp("operator") / "kubeconfig"
    )


@pytest.fixture
def start_operator(operator_kubeconfig_path: Path, tmp_path: Path) -> Iterator[StartOperator]:
    started: list[OperatorProcess] = []
    lease = f"test-{uuid.uuid4().hex[:8]}"

    def start(namespaces: tuple[str, ...], identity: str = "operator-0") -> OperatorProcess:
        process = OperatorProcess(
            kubeconfig=operator_kubeconfig_path,
            log_path=tmp_path / f"{identity}.log",
            identity=identity,
            namespaces=namespaces,
            lease_name=lease,
        ).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def operator(start_operator: StartOperator, namespace: str) -> OperatorProcess:
    """One operator, leading, watching the test's namespace."""
    process = start_operator((namespace,))
    process.wait_ready()
    return process

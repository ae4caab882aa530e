"""A WorkflowSource over ssh (a real ssh server on loopback) with the operator: synced with
the Secret's identity and known_hosts; an unknown host key stalls the source as AuthFailed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from controller.testing.cluster import Kubectl, OperatorProcess
from controller.testing.gitrepo import repo_from_directory
from controller.testing.sshgit import GitSshServer, new_key, public_key_text

from .test_sync import EXAMPLES, bump, flowpin_sync, names, ready, source_yaml, wait_reason


@pytest.fixture
def served(tmp_path: Path) -> pygit2.Repository:
    return repo_from_directory(EXAMPLES, tmp_path / "served" / "examples", "Served over ssh")


@pytest.fixture
def server(tmp_path: Path, served: pygit2.Repository) -> Iterator[GitSshServer]:
    with GitSshServer(tmp_path / "served") as running:
        yield running


def apply_secret(kubectl: Kubectl, namespace: str, identity: str, known_hosts: str) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "workflows-git"},
        "stringData": {"identity": identity, "known_hosts": known_hosts},
    }
    kubectl.apply(json.dumps(secret), namespace)


def test_a_source_over_ssh_is_synced(
    kubectl: Kubectl,
    namespace: str,
    operator: OperatorProcess,
    server: GitSshServer,
    served: pygit2.Repository,
) -> None:
    apply_secret(kubectl, namespace, server.identity, server.known_hosts(hashed=True))
    source = source_yaml("examples", server.url("examples"), secretRef={"name": "workflows-git"})
    kubectl.apply(source, namespace)
    condition = wait_reason(kubectl, namespace, "examples", "Succeeded")
    assert condition["status_obj"]["artifact"]["commit"] == str(served.head.target)
    assert names(kubectl, "wfv", namespace) == ["lead-nurture.v1.4.0", "onboarding.v2.1.3"]

    commit = bump(served, "1.5.0")
    result = flowpin_sync("examples", namespace)
    assert result.returncode == 0, result.stderr
    assert commit in result.stdout
    assert "lead-nurture.v1.5.0" in names(kubectl, "wfv", namespace)
    assert all(c.startswith("git-upload-pack") for c in server.commands)
    logs = operator.logs()
    assert server.identity.splitlines()[1] not in logs  # the key is never logged


def test_an_unknown_host_key_stalls_the_source_until_the_secret_is_fixed(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, server: GitSshServer
) -> None:
    impostor = f"{server.host_pattern} {public_key_text(new_key())}\n"
    apply_secret(kubectl, namespace, server.identity, impostor)
    source = source_yaml("examples", server.url("examples"), secretRef={"name": "workflows-git"})
    kubectl.apply(source, namespace)
    condition = wait_reason(kubectl, namespace, "examples", "AuthFailed")
    assert f"[127.0.0.1]:{server.port} does not match known_hosts" in condition["message"]
    assert "Secret workflows-git" in condition["message"]
    assert f"ssh-keyscan -p {server.port} 127.0.0.1" in condition["message"]
    stalled = condition["status_obj"]["conditions"]
    assert any(c["type"] == "Stalled" and c["status"] == "True" for c in stalled)
    assert names(kubectl, "wfv", namespace) == []
    assert server.commands == []  # nothing was asked of the impostor

    apply_secret(kubectl, namespace, server.identity, server.known_hosts())
    result = flowpin_sync("examples", namespace)
    assert result.returncode == 0, result.stderr
    assert ready(kubectl, namespace, "examples")["reason"] == "Succeeded"
    assert len(names(kubectl, "wfv", namespace)) == 2

"""Mirroring git into the cluster, against the real control plane and real git repositories:
what a user applying a WorkflowSource sees, and every fault the issue names."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.testing.cluster import Kubectl, OperatorProcess, poll, source_manifest
from controller.testing.controlplane import REPO_ROOT, ControlPlane
from controller.testing.githttp import GitHttpServer
from controller.testing.gitrepo import AUTHOR, commit_all, repo_from_directory

from .conftest import StartOperator

EXAMPLES = REPO_ROOT / "examples"
LEAD = "workflows/lead-nurture.yaml"


# ------------------------------------------------------------------ helpers


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    return repo_from_directory(EXAMPLES, tmp_path / "repo", "Add examples")


def workdir(repo: pygit2.Repository) -> Path:
    return Path(repo.workdir)


def source_yaml(name: str, url: str, **spec: Any) -> str:
    return source_manifest(name, url, **{"ref": {"branch": "main"}, **spec})


def ready(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    source = kubectl.json("get", "wfsrc", name, "-n", namespace)
    for condition in source.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return {**condition, "status_obj": source.get("status", {})}
    return {}


def wait_reason(
    kubectl: Kubectl, namespace: str, name: str, reason: str, timeout: float = 60
) -> dict[str, Any]:
    return poll(
        lambda: ready(kubectl, namespace, name),
        lambda c: c.get("reason") == reason,
        timeout=timeout,
        what=f"{name} Ready reason {reason}",
    )


def names(kubectl: Kubectl, kind: str, namespace: str) -> list[str]:
    items = kubectl.json("get", kind, "-n", namespace)["items"]
    return sorted(item["metadata"]["name"] for item in items)


def flowpin_sync(name: str, namespace: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "sync", name, "-n", namespace, "--timeout", "60s"],
        capture_output=True,
        text=True,
        timeout=90,
    )


def bump(repo: pygit2.Repository, version: str, message: str | None = None) -> str:
    file = workdir(repo) / LEAD
    text = file.read_text()
    current = text.split("version: ")[1].split("\n")[0]
    file.write_text(text.replace(f"version: {current}", f"version: {version}", 1))
    return commit_all(repo, message or f"lead-nurture {version}")


@pytest.fixture
def synced(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> pygit2.Repository:
    kubectl.apply(source_yaml("examples", str(workdir(repo))), namespace)
    wait_reason(kubectl, namespace, "examples", "Succeeded")
    return repo


# ------------------------------------------------------------------ the happy path


def test_a_source_mirrors_versions_environments_and_deployments(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    kubectl.run("wait", "--for=condition=Ready", "wfsrc/examples", "-n", namespace, "--timeout=30s")
    assert names(kubectl, "wfv", namespace) == ["lead-nurture.v1.4.0", "onboarding.v2.1.3"]
    assert names(kubectl, "wfenv", namespace) == ["dev", "prod", "staging"]
    assert names(kubectl, "wfd", namespace) == [
        f"{w}.{e}" for w in ("lead-nurture", "onboarding") for e in ("dev", "prod", "staging")
    ]
    version = kubectl.json("get", "wfv", "lead-nurture.v1.4.0", "-n", namespace)
    assert (
        version["metadata"]["labels"]
        == {
            "flowpin.dev/source": "examples",
            "flowpin.dev/workflow": "lead-nurture",
            "flowpin.dev/version": "1.4.0",
            "app.kubernetes.io/managed-by": "flowpin",
            "team": "growth",
        }
        or version["metadata"]["labels"]["flowpin.dev/workflow"] == "lead-nurture"
    )
    assert version["metadata"]["ownerReferences"][0]["kind"] == "WorkflowSource"
    assert version["spec"]["git"]["commit"] == str(synced.head.target)
    assert version["spec"]["git"]["path"] == LEAD
    assert version["spec"]["facts"] == {"changeClass": "initial", "valid": True, "problems": []}
    assert "changeClass" not in version.get("status", {})  # a new version: no status write
    printed_versions = kubectl.run("get", "wfv", "-n", namespace).stdout
    assert "initial" in printed_versions  # the Change column reads spec.facts
    deployment = kubectl.json("get", "wfd", "lead-nurture.dev", "-n", namespace)
    assert (deployment["spec"]["pin"], deployment["spec"]["version"]) == ("latest", "1.4.0")
    status = ready(kubectl, namespace, "examples")["status_obj"]
    assert status["artifact"]["commit"] == str(synced.head.target)
    assert status["counts"] == {"workflows": 2, "versions": 2, "environments": 3, "deployments": 6}
    printed = kubectl.run("get", "wfsrc", "-n", namespace).stdout
    assert str(synced.head.target) in printed and "True" in printed


def test_environments_report_their_deployments_and_can_be_waited_on(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    """Environment objects had no status: blank DEPLOYMENTS/READY columns and a `kubectl
    wait --for=condition=Ready wfenv/dev` that timed out (issue 14)."""
    kubectl.run("wait", "--for=condition=Ready", "wfenv/dev", "-n", namespace, "--timeout=60s")
    dev = kubectl.json("get", "wfenv", "dev", "-n", namespace)["status"]
    assert (dev["deployments"], dev["ready"]) == (2, 2)
    assert dev["observedGeneration"] == 1
    printed = kubectl.run("get", "wfenv", "dev", "-n", namespace).stdout.split("\n")[1].split()
    assert "2" in printed and "True" in printed  # DEPLOYMENTS and READY
    prod = poll(  # prod waits an hour of soak: the message says which and why
        lambda: kubectl.json("get", "wfenv", "prod", "-n", namespace).get("status") or {},
        lambda s: (s.get("deployments"), s.get("ready")) == (2, 0),
        timeout=60,
        what="prod's status",
    )
    ready_prod = next(c for c in prod["conditions"] if c["type"] == "Ready")
    assert (ready_prod["status"], ready_prod["reason"]) == ("False", "DeploymentsNotReady")
    assert ready_prod["message"].startswith("2 of 2 not ready: lead-nurture (")


def test_a_new_commit_arrives_with_flowpin_sync(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    commit = bump(synced, "1.5.0")
    result = flowpin_sync("examples", namespace)
    assert result.returncode == 0, result.stderr
    assert "Succeeded" in result.stdout and commit in result.stdout
    assert "lead-nurture.v1.5.0" in names(kubectl, "wfv", namespace)
    new = kubectl.json("get", "wfv", "lead-nurture.v1.5.0", "-n", namespace)
    assert new["spec"]["facts"]["previousVersion"] == "1.4.0"
    assert new["spec"]["facts"]["changeClass"] == "none"  # only the version changed
    dev = kubectl.json("get", "wfd", "lead-nurture.dev", "-n", namespace)
    assert dev["spec"]["version"] == "1.5.0"  # dev tracks latest
    staging = kubectl.json("get", "wfd", "lead-nurture.staging", "-n", namespace)
    assert staging["spec"]["version"] == "1.4.0"  # staging keeps its pin


def test_the_source_writes_only_into_its_own_namespace(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    uid = kubectl.json("get", "wfsrc", "examples", "-n", namespace)["metadata"]["uid"]
    owned = [
        (item["kind"], item["metadata"]["namespace"])
        for kind in ("wfv", "wfenv", "wfd")
        for item in kubectl.json("get", kind, "-A")["items"]
        if any(ref["uid"] == uid for ref in item["metadata"].get("ownerReferences", []))
    ]
    assert len(owned) == 11  # 2 versions, 3 environments, 6 deployments
    assert {found_namespace for _, found_namespace in owned} == {namespace}


# ------------------------------------------------------------------ bad input


def test_malformed_yaml_in_one_workflow_keeps_everything_else(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    (workdir(synced) / LEAD).write_text("apiVersion: flowpin.dev/v1alpha1\nspec: [unclosed\n")
    onboarding = workdir(synced) / "workflows/onboarding.yaml"
    onboarding.write_text(onboarding.read_text().replace("version: 2.1.3", "version: 2.2.0"))
    commit_all(synced, "Break lead-nurture, bump onboarding")
    assert flowpin_sync("examples", namespace).returncode == 1
    condition = ready(kubectl, namespace, "examples")
    assert condition["reason"] == "InvalidManifests"
    assert f"{LEAD}:2:" in condition["message"] or f"{LEAD}:" in condition["message"]
    (invalid,) = condition["status_obj"]["invalidFiles"]
    assert invalid["file"] == LEAD and invalid["line"] >= 1
    assert "onboarding.v2.2.0" in names(kubectl, "wfv", namespace)  # the others still sync
    assert "lead-nurture.v1.4.0" in names(kubectl, "wfv", namespace)  # nothing deleted
    assert len(names(kubectl, "wfd", namespace)) == 6


def test_a_key_yaml_reads_as_a_boolean_is_reported_on_the_source(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    """`on: error` in a step (the boolean key true in YAML 1.1) used to fail every sync
    while the source stayed Ready on its old commit, telling no one (issue 13)."""
    text = (workdir(synced) / LEAD).read_text()
    (workdir(synced) / LEAD).write_text(
        text.replace("version: 1.4.0", "version: 1.5.0").replace(
            "    - id: welcome\n", "    - id: welcome\n      on: error\n", 1
        )
    )
    onboarding = workdir(synced) / "workflows/onboarding.yaml"
    onboarding.write_text(onboarding.read_text().replace("version: 2.1.3", "version: 2.2.0"))
    commit = commit_all(synced, "on: error in lead-nurture, bump onboarding")
    flowpin_sync("examples", namespace)
    condition = wait_reason(kubectl, namespace, "examples", "InvalidManifests")
    assert "key `on` is not a string" in condition["message"]
    (invalid,) = condition["status_obj"]["invalidFiles"]
    assert (invalid["file"], invalid["field"]) == (LEAD, "spec.steps[0].on")
    assert condition["status_obj"]["artifact"]["commit"] == commit
    assert "onboarding.v2.2.0" in names(kubectl, "wfv", namespace)
    events = kubectl.json("get", "events", "-n", namespace)["items"]
    assert any(e["reason"] == "InvalidManifests" for e in events)


def test_a_source_deleted_and_applied_again_mirrors_at_once(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    """Owner GC deletes what the old object mirrored; the new object (another uid) must
    mirror everything on its first sync, not wait ten rounds (issue 14)."""
    kubectl.run("delete", "wfsrc", "examples", "-n", namespace)
    poll(
        lambda: names(kubectl, "wfv", namespace),
        lambda found: found == [],
        timeout=60,
        what="owner garbage collection of the versions",
    )
    kubectl.apply(source_yaml("examples", str(workdir(synced))), namespace)
    poll(
        lambda: names(kubectl, "wfv", namespace),
        lambda found: found == ["lead-nurture.v1.4.0", "onboarding.v2.1.3"],
        timeout=60,
        what="versions mirrored by the re-created source",
    )
    assert len(names(kubectl, "wfd", namespace)) == 6


def test_a_source_applied_again_before_garbage_collection_keeps_its_objects(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    """The race the test above waits out: `kubectl delete` returns before garbage
    collection runs, and the new object's first sync may list the old object's versions.
    They must end up owned by the new object and mirrored, without `flowpin sync`."""
    old_uid = kubectl.json("get", "wfsrc", "examples", "-n", namespace)["metadata"]["uid"]
    kubectl.run("delete", "wfsrc", "examples", "-n", namespace, "--wait=false")
    kubectl.apply(source_yaml("examples", str(workdir(synced))), namespace)
    new_uid = poll(
        lambda: kubectl.json("get", "wfsrc", "examples", "-n", namespace)["metadata"]["uid"],
        lambda uid: uid != old_uid,
        what="the new source object",
    )

    def owners() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for kind in ("wfv", "wfenv", "wfd"):
            for item in kubectl.json("get", kind, "-n", namespace)["items"]:
                refs = item["metadata"].get("ownerReferences") or []
                found[f"{kind}/{item['metadata']['name']}"] = {r["uid"] for r in refs}
        return found

    settled = poll(
        owners,
        lambda found: len(found) == 11 and all(uids == {new_uid} for uids in found.values()),
        timeout=90,
        what="every mirrored object owned by the new source",
    )
    assert len(settled) == 11  # 2 versions, 3 environments, 6 deployments


def test_a_deleted_workflow_file_keeps_its_versions(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    (workdir(synced) / LEAD).unlink()
    commit_all(synced, "Delete lead-nurture")
    flowpin_sync("examples", namespace)
    assert "lead-nurture.v1.4.0" in names(kubectl, "wfv", namespace)
    assert "lead-nurture.prod" in names(kubectl, "wfd", namespace)  # still pinned


def test_a_removed_pin_deletes_its_deployment_unless_runs_are_active(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    # onboarding 2.2.0 waits an hour: a run of it in staging stays in flight.
    onboarding = workdir(synced) / "workflows/onboarding.yaml"
    onboarding.write_text(
        "apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\nmetadata: {name: onboarding}\n"
        "spec:\n  version: 2.2.0\n  steps: [{id: hold, type: wait, wait: {duration: 1h}}]\n"
    )
    staging = workdir(synced) / "environments/staging.yaml"
    pins = "pins: {lead-nurture: 1.4.0, onboarding: 2.1.3}"
    staging.write_text(
        staging.read_text().replace(pins, "pins: {lead-nurture: 1.4.0, onboarding: 2.2.0}")
    )
    commit_all(synced, "onboarding 2.2.0 in staging")
    assert flowpin_sync("examples", namespace).returncode == 0
    poll(
        lambda: kubectl.json("get", "wfd", "onboarding.staging", "-n", namespace).get("status", {}),
        lambda status: status.get("activeVersion") == "2.2.0",
        what="onboarding 2.2.0 active in staging",
    )
    kubectl.apply(
        json.dumps(
            {
                "apiVersion": "flowpin.dev/v1alpha1",
                "kind": "WorkflowRun",
                "metadata": {"name": "still-running"},
                "spec": {"workflow": "onboarding", "environment": "staging"},
            }
        ),
        namespace,
    )
    poll(
        lambda: kubectl.json("get", "wfr", "still-running", "-n", namespace).get("status", {}),
        lambda status: status.get("phase") == "Waiting",
        what="the run to wait",
    )
    staging.write_text(
        staging.read_text().replace("pins: {lead-nurture: 1.4.0, onboarding: 2.2.0}", "pins: {}")
    )
    commit_all(synced, "Unpin staging")
    assert flowpin_sync("examples", namespace).returncode == 0
    remaining = names(kubectl, "wfd", namespace)
    assert "lead-nurture.staging" not in remaining  # no runs: deleted
    assert "onboarding.staging" in remaining  # a run is active: kept
    kubectl.run(
        "patch",
        "wfr",
        "still-running",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"cancel": true}}',
    )
    poll(
        lambda: kubectl.json("get", "wfr", "still-running", "-n", namespace).get("status", {}),
        lambda status: status.get("phase") == "Cancelled",
        what="the run to be cancelled",
    )
    assert flowpin_sync("examples", namespace).returncode == 0
    assert "onboarding.staging" not in names(kubectl, "wfd", namespace)  # no run left: deleted


def test_conflicting_sources_the_older_wins(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository, tmp_path: Path
) -> None:
    copy = repo_from_directory(EXAMPLES, tmp_path / "copy", "Same workflows elsewhere")
    kubectl.apply(source_yaml("newer", str(workdir(copy))), namespace)
    condition = wait_reason(kubectl, namespace, "newer", "Conflict")
    assert "older source examples" in condition["message"]
    version = kubectl.json("get", "wfv", "lead-nurture.v1.4.0", "-n", namespace)
    assert version["metadata"]["labels"]["flowpin.dev/source"] == "examples"


# ------------------------------------------------------------------ faults


def test_remote_unreachable_keeps_the_mirror(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository, tmp_path: Path
) -> None:
    moved = tmp_path / "moved"
    shutil.move(str(workdir(synced)), moved)
    assert flowpin_sync("examples", namespace).returncode == 1
    condition = ready(kubectl, namespace, "examples")
    assert condition["reason"] == "FetchFailed" and "does not exist" in condition["message"]
    assert "kept" in condition["message"]
    assert len(names(kubectl, "wfv", namespace)) == 2
    assert condition["status_obj"]["artifact"]["commit"]  # the last good commit stays


def test_a_deleted_branch_is_a_fetch_failure(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    kubectl.apply(source_yaml("examples", str(workdir(repo)), ref={"branch": "gone"}), namespace)
    condition = wait_reason(kubectl, namespace, "examples", "FetchFailed")
    assert "branch gone does not exist" in condition["message"]


def test_wrong_credentials_are_reported_and_stall(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    repo_from_directory(EXAMPLES, tmp_path / "served" / "examples", "Served over HTTP")
    with GitHttpServer(tmp_path / "served", password="right") as server:
        kubectl.run(
            "create", "secret", "generic", "git-creds", "-n", namespace,
            "--from-literal=username=flowpin", "--from-literal=password=wrong",
        )  # fmt: skip
        url = server.url("examples/.git")
        kubectl.apply(source_yaml("examples", url, secretRef={"name": "git-creds"}), namespace)
        condition = wait_reason(kubectl, namespace, "examples", "AuthFailed")
        assert "rejected" in condition["message"]
        stalled = kubectl.json("get", "wfsrc", "examples", "-n", namespace)["status"]
        assert any(c["type"] == "Stalled" and c["status"] == "True" for c in stalled["conditions"])
        assert "wrong" not in operator.logs()  # secrets never logged
        kubectl.run(
            "create", "secret", "generic", "git-creds", "-n", namespace,
            "--from-literal=username=flowpin", "--from-literal=password=right",
            "--dry-run=client", "-o", "yaml",
        )  # fmt: skip
        fixed = kubectl.run(
            "create", "secret", "generic", "git-creds", "-n", namespace,
            "--from-literal=username=flowpin", "--from-literal=password=right",
            "--dry-run=client", "-o", "json",
        ).stdout  # fmt: skip
        kubectl.run("apply", "-f", "-", input=fixed)
        assert flowpin_sync("examples", namespace).returncode == 0
        assert len(names(kubectl, "wfv", namespace)) == 2


def test_a_force_push_keeps_every_mirrored_version(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    root = synced.head.target
    bump(synced, "1.5.0")
    assert flowpin_sync("examples", namespace).returncode == 0
    synced.reset(root, pygit2.enums.ResetMode.HARD)
    bump(synced, "1.6.0", "Rewritten history")
    assert flowpin_sync("examples", namespace).returncode == 0
    condition = ready(kubectl, namespace, "examples")
    assert condition["reason"] == "HistoryRewritten"
    assert {"lead-nurture.v1.5.0", "lead-nurture.v1.6.0"} <= set(names(kubectl, "wfv", namespace))


def test_after_a_rewrite_latest_follows_git_and_old_versions_are_orphaned(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    """Force-push from 1.7.0 back to 1.5.0: dev (`latest`) stayed on 1.7.0 and the next sync
    said a plain Succeeded (issue 14). Now dev goes back to what git says, 1.7.0 is kept but
    orphaned, the source keeps saying so, and a version gone from git and deleted by hand is
    not brought back by a full sync."""
    bump(synced, "1.5.0")
    back_to = synced.head.target
    bump(synced, "1.6.0")
    bump(synced, "1.7.0")
    assert flowpin_sync("examples", namespace).returncode == 0
    poll(
        lambda: kubectl.json("get", "wfd", "lead-nurture.dev", "-n", namespace).get("status"),
        lambda s: (s or {}).get("activeVersion") == "1.7.0",
        timeout=60,
        what="dev on 1.7.0",
    )
    synced.reset(back_to, pygit2.enums.ResetMode.HARD)  # 1.6.0 and 1.7.0 are gone from git
    assert flowpin_sync("examples", namespace).returncode == 0
    dev = poll(
        lambda: kubectl.json("get", "wfd", "lead-nurture.dev", "-n", namespace),
        lambda d: d["spec"]["version"] == "1.5.0" and d["status"].get("activeVersion") == "1.5.0",
        timeout=60,
        what="dev back on 1.5.0",
    )
    assert dev["status"]["phase"] == "Verified"
    orphaned = poll(
        lambda: kubectl.json("get", "wfv", "lead-nurture.v1.7.0", "-n", namespace)["status"],
        lambda s: s.get("orphaned") is True,
        what="1.7.0 marked orphaned",
    )
    assert orphaned["orphaned"] is True
    fine = kubectl.json("get", "wfv", "lead-nurture.v1.5.0", "-n", namespace).get("status") or {}
    assert not fine.get("orphaned")
    printed = kubectl.run("get", "wfv", "-n", namespace).stdout
    assert "ORPHANED" in printed.split("\n")[0]
    command = ["versions", "lead-nurture", "--all", "--repo", str(workdir(synced))]
    listed = subprocess.run(
        [sys.executable, "-m", "controller.cli", *command, "-n", namespace, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    rows = {row["version"]: row["orphaned"] for row in json.loads(listed.stdout)["versions"]}
    assert rows == {"1.4.0": False, "1.5.0": False, "1.6.0": True, "1.7.0": True}
    condition = ready(kubectl, namespace, "examples")
    assert condition["reason"] == "HistoryRewritten"
    assert "2 versions exist only in the old history" in condition["message"]

    assert flowpin_sync("examples", namespace).returncode == 0  # a full sync ends the notice
    assert ready(kubectl, namespace, "examples")["reason"] == "Succeeded"

    kubectl.run("delete", "wfv", "lead-nurture.v1.6.0", "-n", namespace)
    assert flowpin_sync("examples", namespace).returncode == 0
    assert "lead-nurture.v1.6.0" not in names(kubectl, "wfv", namespace)  # not resurrected
    assert "lead-nurture.v1.7.0" in names(kubectl, "wfv", namespace)  # nothing else lost


def test_a_changed_version_without_a_bump_is_reported(
    kubectl: Kubectl, namespace: str, synced: pygit2.Repository
) -> None:
    file = workdir(synced) / LEAD
    file.write_text(file.read_text().replace("duration: 48h", "duration: 72h"))
    commit_all(synced, "Change without a bump")
    assert flowpin_sync("examples", namespace).returncode == 1
    condition = ready(kubectl, namespace, "examples")
    assert condition["reason"] == "VersionMutated" and "Bump spec.version" in condition["message"]
    version = kubectl.json("get", "wfv", "lead-nurture.v1.4.0", "-n", namespace)
    assert version["spec"]["definition"]["steps"][1]["wait"]["duration"] == "48h"


def big_repository(path: Path, workflows: int, versions: int) -> pygit2.Repository:
    """A repository with many versions, written straight into the object database."""
    repo = pygit2.init_repository(str(path), initial_head="main")
    template = (EXAMPLES / "workflows" / "onboarding.yaml").read_text()
    environment = (EXAMPLES / "environments" / "dev.yaml").read_text().split("pins:")[0]
    blobs: dict[str, pygit2.Oid] = {}
    parent: list[pygit2.Oid] = []
    for v in range(versions):
        for w in range(workflows):
            text = template.replace("name: onboarding", f"name: wf-{w:03d}").replace(
                "version: 2.1.3", f"version: 1.{v}.0"
            )
            blobs[f"wf-{w:03d}.yaml"] = repo.create_blob(text.encode())
        tree_builder = repo.TreeBuilder()
        for file_name, blob in sorted(blobs.items()):
            tree_builder.insert(file_name, blob, pygit2.enums.FileMode.BLOB)
        workflows_tree = tree_builder.write()
        env_builder = repo.TreeBuilder()
        env_blob = repo.create_blob((environment + "pins: {wf-000: latest}\n").encode())
        env_builder.insert("dev.yaml", env_blob, pygit2.enums.FileMode.BLOB)
        root = repo.TreeBuilder()
        root.insert("workflows", workflows_tree, pygit2.enums.FileMode.TREE)
        root.insert("environments", env_builder.write(), pygit2.enums.FileMode.TREE)
        commit = repo.create_commit(
            "refs/heads/main", AUTHOR, AUTHOR, f"version 1.{v}.0", root.write(), parent
        )
        parent = [commit]
    return repo


def test_an_operator_killed_mid_sync_completes_the_next_time(
    kubectl: Kubectl, namespace: str, start_operator: StartOperator, tmp_path: Path
) -> None:
    # Large enough that the kill lands mid-sync even when the first `kubectl get` is slow.
    big_repository(tmp_path / "big", workflows=80, versions=8)
    first = start_operator((namespace,), identity="victim")
    first.wait_ready()
    kubectl.apply(source_yaml("big", str(tmp_path / "big")), namespace)
    poll(
        lambda: len(kubectl.json("get", "wfv", "-n", namespace)["items"]),
        lambda count: count > 0,
        interval=0.05,
        what="the first versions of the sync",
    )
    first.kill()
    partial = len(kubectl.json("get", "wfv", "-n", namespace)["items"])
    second = start_operator((namespace,), identity="survivor")
    second.wait_ready(timeout=60)
    wait_reason(kubectl, namespace, "big", "Succeeded", timeout=120)
    versions = kubectl.json("get", "wfv", "-n", namespace)["items"]
    assert partial < 640
    assert len(versions) == 640 == len({v["metadata"]["name"] for v in versions})
    assert all(v["spec"].get("facts", {}).get("changeClass") for v in versions)  # facts all


def test_an_api_server_restart_during_a_sync(
    kubectl: Kubectl,
    namespace: str,
    control_plane: ControlPlane,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    big_repository(tmp_path / "big", workflows=30, versions=8)
    kubectl.apply(source_yaml("big", str(tmp_path / "big"), interval="5s"), namespace)
    poll(
        lambda: len(kubectl.json("get", "wfv", "-n", namespace)["items"]),
        lambda count: count > 0,
        interval=0.05,
        what="the first versions of the sync",
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
    wait_reason(kubectl, namespace, "big", "Succeeded", timeout=180)
    versions = kubectl.json("get", "wfv", "-n", namespace)["items"]
    assert len(versions) == 240
    assert all(v["spec"].get("facts", {}).get("changeClass") for v in versions)


def test_an_idle_source_writes_nothing(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    kubectl.apply(source_yaml("examples", str(workdir(repo)), interval="1s"), namespace)
    wait_reason(kubectl, namespace, "examples", "Succeeded")

    def versions_of_everything() -> dict[str, str]:
        found = {}
        for kind in ("wfsrc", "wfv", "wfenv", "wfd"):
            for item in kubectl.json("get", kind, "-n", namespace)["items"]:
                found[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
        return found

    poll(  # deployments settle too (dev, staging Verified; prod Blocked for an hour's soak)
        lambda: sorted(
            (d.get("status", {}).get("phase"), d.get("status", {}).get("reason"))
            for d in kubectl.json("get", "wfd", "-n", namespace)["items"]
        ),
        lambda found: found == [("Blocked", "SoakPending")] * 2 + [("Verified", "Verified")] * 4,
        what="deployments to settle",
    )
    poll(  # and the versions know where they run (written a second after, coalesced)
        lambda: [
            [e["name"] for e in v.get("status", {}).get("environments") or []]
            for v in kubectl.json("get", "wfv", "-n", namespace)["items"]
        ],
        lambda found: found == [["dev", "staging"]] * 2,
        what="versions to list their environments",
    )
    before = versions_of_everything()
    writes = operator.metric_sum("flowpin_api_writes_total")
    rounds = operator.metric_sum("flowpin_source_syncs_total")
    # Eleven more rounds (a full reconcile among them, every tenth) write nothing.
    poll(
        lambda: operator.metric_sum("flowpin_source_syncs_total") - rounds,
        lambda done: done >= 11,
        timeout=60,
        interval=0.5,
        what="eleven sync rounds",
    )
    assert operator.metric_sum("flowpin_api_writes_total") == writes
    assert versions_of_everything() == before


# ------------------------------------------------------------------ push webhook


def syncs_total(port: int) -> float:
    """`flowpin_source_syncs_total`, summed over results, from the operator's metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("flowpin_source_syncs_total")
    )


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/git", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def github_push(url: str) -> bytes:
    return json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": url}}).encode()


def signed(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_push_webhook_syncs_at_once_and_rejects_bad_input(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    kubectl.run(
        "create", "secret", "generic", "hook", "-n", namespace,
        "--from-literal=webhookSecret=topsecret",
    )  # fmt: skip
    url = str(workdir(repo))
    kubectl.apply(source_yaml("examples", url, secretRef={"name": "hook"}), namespace)
    wait_reason(kubectl, namespace, "examples", "Succeeded")
    # The source's creation also wakes its daemon (its spec is new), which may start a second
    # round after the first. A requested sync returns only after a round that began after the
    # request, so no round is under way or pending when the commit that only a push may bring
    # lands.
    assert flowpin_sync("examples", namespace).returncode == 0
    bump(repo, "1.5.0")
    body = github_push(url)
    json_headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}

    status, _ = post(
        operator.port, body, {**json_headers, "X-Hub-Signature-256": signed(body, "nope")}
    )
    assert status == 401
    assert "lead-nurture.v1.5.0" not in names(kubectl, "wfv", namespace)  # nothing happened

    unknown = github_push("https://example.invalid/other.git")
    status, _ = post(
        operator.port,
        unknown,
        {**json_headers, "X-Hub-Signature-256": signed(unknown, "topsecret")},
    )
    assert status == 404

    huge = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    status, _ = post(operator.port, huge, json_headers)
    assert status == 413

    status, answer = post(
        operator.port, body, {**json_headers, "X-Hub-Signature-256": signed(body, "topsecret")}
    )
    assert status == 202 and answer["sources"] == [f"{namespace}/examples"]
    poll(
        lambda: names(kubectl, "wfv", namespace),
        lambda found: "lead-nurture.v1.5.0" in found,
        timeout=20,
        what="the pushed version",
    )


def test_gitlab_token_and_generic_signature(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    kubectl.run(
        "create", "secret", "generic", "hook", "-n", namespace,
        "--from-literal=webhookSecret=topsecret",
    )  # fmt: skip
    url = str(workdir(repo))
    kubectl.apply(source_yaml("examples", url, secretRef={"name": "hook"}), namespace)
    wait_reason(kubectl, namespace, "examples", "Succeeded")
    gitlab = json.dumps({"ref": "refs/heads/main", "project": {"git_http_url": url}}).encode()
    status, _ = post(operator.port, gitlab, {"X-Gitlab-Token": "wrong"})
    assert status == 401
    status, _ = post(operator.port, gitlab, {"X-Gitlab-Token": "topsecret"})
    assert status == 202
    generic = json.dumps({"ref": "refs/heads/main", "repository": url}).encode()
    status, _ = post(operator.port, generic, {"X-Flowpin-Signature": signed(generic, "topsecret")})
    assert status == 202
    other_branch = json.dumps({"ref": "refs/heads/feature", "repository": url}).encode()
    status, answer = post(
        operator.port, other_branch, {"X-Flowpin-Signature": signed(other_branch, "topsecret")}
    )
    assert status == 200 and answer["status"] == "ignored"


# ------------------------------------------------------------------ retention


def test_retention_archives_old_unpinned_versions(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    for version in ("1.5.0", "1.6.0", "1.7.0"):
        bump(repo, version)
    kubectl.apply(
        source_yaml(
            "examples",
            str(workdir(repo)),
            retention={"keepVersions": 2, "archiveAfter": "1ms"},
        ),
        namespace,
    )
    wait_reason(kubectl, namespace, "examples", "Succeeded")
    assert flowpin_sync("examples", namespace).returncode == 0  # retention sees the statuses

    def phases() -> dict[str, str]:
        return {
            # A new version has no status: no phase means Available.
            v["spec"]["version"]: v.get("status", {}).get("phase", "Available")
            for v in kubectl.json(
                "get", "wfv", "-n", namespace, "-l", "flowpin.dev/workflow=lead-nurture"
            )["items"]
        }

    found = poll(phases, lambda p: p.get("1.5.0") == "Archived", timeout=30, what="archiving")
    # 1.7.0 and 1.6.0 are the newest two; 1.4.0 is pinned by staging and prod.
    assert found == {
        "1.4.0": "Available",
        "1.5.0": "Archived",
        "1.6.0": "Available",
        "1.7.0": "Available",
    }

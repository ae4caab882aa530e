"""Deployments and promotion against the real control plane: gates in order, activation,
rollback and release, status, history, events and the audit log — through kubectl and the
flowpin CLI, as a user would."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pygit2
import pytest

from controller.testing.cluster import Kubectl, OperatorProcess, poll, source_manifest
from controller.testing.controlplane import REPO_ROOT
from controller.testing.gitrepo import commit_all, repo_from_directory

EXAMPLES = REPO_ROOT / "examples"
LEAD = "workflows/lead-nurture.yaml"


def environment(name: str, spec: str) -> str:
    return (
        f"apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {name}}}\n"
        f"spec:\n{spec}"
    )


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    """The examples with quick gates: prod soaks 20 s (long enough to see on a loaded machine)
    and needs approval."""
    repo = repo_from_directory(EXAMPLES, tmp_path / "repo", "Add examples")
    work = Path(repo.workdir)
    (work / "environments/prod.yaml").write_text(
        environment(
            "prod",
            "  promotion: {from: staging, soak: 20s, approval: required}\n"
            "  pins: {lead-nurture: 1.4.0, onboarding: 2.1.3}  # pinned by PR\n",
        )
    )
    commit_all(repo, "Fast gates for tests")
    return repo


def apply_source(kubectl: Kubectl, namespace: str, repo: pygit2.Repository) -> None:
    kubectl.apply(source_manifest("examples", str(repo.workdir)), namespace)


def deployment(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    """The deployment, or {} before the first sync has created it."""
    result = kubectl.run("get", "wfd", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def wait_phase(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    phase: str,
    reason: str | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    return poll(
        lambda: deployment(kubectl, namespace, name).get("status") or {},
        lambda s: s.get("phase") == phase and (reason is None or s.get("reason") == reason),
        timeout=timeout,
        what=f"{name} {phase} {reason or ''}",
    )


def flowpin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args], capture_output=True, text=True, timeout=90
    )


def sync(namespace: str) -> None:
    result = flowpin("sync", "examples", "-n", namespace)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_version_walks_dev_staging_prod_through_every_gate(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    apply_source(kubectl, namespace, repo)
    dev = wait_phase(kubectl, namespace, "lead-nurture.dev", "Verified")
    assert dev["activeVersion"] == "1.4.0" and dev["verifiedAt"]
    kubectl.run(
        "wait", "--for=condition=Ready", "wfd/lead-nurture.dev", "-n", namespace, "--timeout=30s"
    )
    wait_phase(kubectl, namespace, "lead-nurture.staging", "Verified")
    soaking = wait_phase(kubectl, namespace, "lead-nurture.prod", "Blocked", "SoakPending")
    assert soaking["soakEndsAt"] and "soaking in staging until" in soaking["message"]
    assert [g["name"] for g in soaking["gates"]] == ["valid", "upstream", "soak", "approval"]
    waiting = wait_phase(
        kubectl, namespace, "lead-nurture.prod", "Blocked", "AwaitingApproval", timeout=90
    )
    assert "flowpin approve lead-nurture --env prod --version 1.4.0" in waiting["message"]
    blocked = next(c for c in waiting["conditions"] if c["type"] == "Blocked")
    assert blocked["status"] == "True" and blocked["reason"] == "AwaitingApproval"

    printed = kubectl.run("get", "wfd", "lead-nurture.prod", "-n", namespace).stdout
    header, row = printed.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "WORKFLOW",
        "ENV",
        "DESIRED",
        "ACTIVE",
        "PHASE",
        "REASON",
        "AGE",
    ]
    assert row.split()[1:6] == ["lead-nurture", "prod", "1.4.0", "Blocked", "AwaitingApproval"]

    approved = flowpin("approve", "lead-nurture", "--env", "prod", "-n", namespace)
    assert approved.returncode == 0, approved.stderr
    assert "Verified" in approved.stdout
    prod = wait_phase(kubectl, namespace, "lead-nurture.prod", "Verified")
    assert prod["activeVersion"] == "1.4.0"
    assert "(approved by " in prod["history"][0]["initiator"]

    history = flowpin(
        "history", "lead-nurture", "--env", "prod", "-n", namespace, "--format", "json"
    )
    assert json.loads(history.stdout)[0]["result"] == "Activated"
    poll(
        lambda: (
            kubectl.json("get", "wfv", "lead-nurture.v1.4.0", "-n", namespace)
            .get("status", {})
            .get("environments")
        ),
        lambda found: (
            found
            == [
                {"name": "dev", "state": "Active"},
                {"name": "prod", "state": "Active"},
                {"name": "staging", "state": "Active"},
            ]
        ),
        what="the version's environments",
    )
    events = kubectl.json(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.name=lead-nurture.prod",
    )["items"]
    assert {"Blocked", "Activated"} <= {e["reason"] for e in events}
    audit = [
        json.loads(line.split("[INFO    ] ", 1)[1])
        for line in operator.logs().splitlines()
        if "flowpin.audit" in line
    ]
    activated = [
        a for a in audit if a["deployment"] == "lead-nurture.prod" and a["result"] == "Activated"
    ]
    assert len(activated) == 1 and activated[0]["version"] == "1.4.0"
    status = flowpin("status", "-n", namespace)
    assert (
        status.returncode == 0 and "lead-nurture" in status.stdout and "Verified" in status.stdout
    )


def test_prod_pinned_before_staging_verified_waits_then_proceeds_by_itself(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    work = Path(repo.workdir)
    (work / "environments/prod.yaml").write_text(
        environment("prod", "  promotion: {from: staging}\n  pins: {lead-nurture: 1.4.0}\n")
    )
    commit_all(repo, "Prod without approval")
    apply_source(kubectl, namespace, repo)
    wait_phase(kubectl, namespace, "lead-nurture.prod", "Verified")
    lead = work / LEAD
    lead.write_text(lead.read_text().replace("version: 1.4.0", "version: 1.5.0"))
    staging = work / "environments/staging.yaml"
    staging.write_text(staging.read_text().replace("lead-nurture: 1.4.0", "lead-nurture: 1.4.0"))
    (work / "environments/prod.yaml").write_text(
        environment("prod", "  promotion: {from: staging}\n  pins: {lead-nurture: 1.5.0}\n")
    )
    commit_all(repo, "1.5.0, pinned in prod first")
    sync(namespace)
    blocked = wait_phase(kubectl, namespace, "lead-nurture.prod", "Blocked", "UpstreamNotVerified")
    assert "waiting for lead-nurture 1.5.0 to be Verified in staging" in blocked["message"]
    assert blocked["activeVersion"] == "1.4.0"  # still runs the old one
    staging.write_text(staging.read_text().replace("lead-nurture: 1.4.0", "lead-nurture: 1.5.0"))
    commit_all(repo, "Pin 1.5.0 in staging")
    sync(namespace)
    prod = wait_phase(kubectl, namespace, "lead-nurture.prod", "Verified")
    assert (prod["activeVersion"], prod["previousVersion"]) == ("1.5.0", "1.4.0")


def test_outside_the_window_says_when_it_opens(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)
    (Path(repo.workdir) / "environments/prod.yaml").write_text(
        environment(
            "prod",
            "  promotion: {windows: [{kind: allow, schedule: "
            f'"{later.minute} {later.hour} * * *",'
            " duration: 1h}]}\n  pins: {lead-nurture: 1.4.0}\n",
        )
    )
    commit_all(repo, "A window later today")
    apply_source(kubectl, namespace, repo)
    status = wait_phase(kubectl, namespace, "lead-nurture.prod", "Blocked", "OutsideWindow")
    opens = datetime.datetime.fromisoformat(status["nextWindowAt"].replace("Z", "+00:00"))
    assert abs((opens - later.replace(second=0, microsecond=0)).total_seconds()) < 1
    assert status["nextWindowAt"] in status["message"]


def test_rollback_holds_an_older_version_until_release(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    apply_source(kubectl, namespace, repo)
    wait_phase(kubectl, namespace, "lead-nurture.dev", "Verified")
    lead = Path(repo.workdir) / LEAD
    lead.write_text(lead.read_text().replace("version: 1.4.0", "version: 1.5.0"))
    commit_all(repo, "1.5.0")
    sync(namespace)
    dev = poll(
        lambda: deployment(kubectl, namespace, "lead-nurture.dev")["status"],
        lambda s: s.get("activeVersion") == "1.5.0",
        what="dev on 1.5.0",
    )
    assert dev["previousVersion"] == "1.4.0"
    missing = flowpin("rollback", "lead-nurture", "--env", "dev", "--to", "9.9.9", "-n", namespace)
    assert missing.returncode == 2, missing.stderr
    assert "lead-nurture has no version 9.9.9" in missing.stderr
    assert "1.4.0, 1.5.0" in missing.stderr and "Traceback" not in missing.stderr
    annotations = deployment(kubectl, namespace, "lead-nurture.dev")["metadata"].get("annotations")
    assert "flowpin.dev/hold-version" not in (annotations or {})
    rolled = flowpin("rollback", "lead-nurture", "--env", "dev", "-n", namespace)
    assert rolled.returncode == 0, rolled.stderr
    held = wait_phase(kubectl, namespace, "lead-nurture.dev", "Held")
    assert held["activeVersion"] == "1.4.0"
    drifted = next(c for c in held["conditions"] if c["type"] == "Drifted")
    assert drifted["status"] == "True" and "git pins 1.5.0, running 1.4.0" in drifted["message"]
    printed = kubectl.run("get", "wfd", "lead-nurture.dev", "-n", namespace).stdout
    assert "Held" in printed and "Rollback" in printed
    released = flowpin("release", "lead-nurture", "--env", "dev", "-n", namespace)
    assert released.returncode == 0, released.stderr
    back = wait_phase(kubectl, namespace, "lead-nurture.dev", "Verified")
    assert back["activeVersion"] == "1.5.0"
    assert [h["result"] for h in back["history"][:3]] == ["Activated", "Released", "RolledBack"]
    old_commit = kubectl.json("get", "wfv", "lead-nurture.v1.4.0", "-n", namespace)["spec"]["git"]
    assert back["history"][2]["commit"] == old_commit["commit"]  # the version that ran

    via_git = flowpin(
        "rollback", "lead-nurture", "--env", "dev", "--git", "--repo", repo.workdir, "-n", namespace
    )  # fmt: skip
    assert via_git.returncode == 0, via_git.stderr
    branch = repo.branches.local["rollback/lead-nurture-1.4.0-dev"]
    text = (repo[branch.target].tree / "environments" / "dev.yaml").data.decode()
    assert "pins: {lead-nurture: 1.4.0, onboarding: latest}" in text
    assert repo.head.shorthand == "main"  # the checkout is untouched


def test_a_pin_to_a_missing_version_is_blocked_and_says_why(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    staging = Path(repo.workdir) / "environments/staging.yaml"
    staging.write_text(staging.read_text().replace("lead-nurture: 1.4.0", "lead-nurture: 9.9.9"))
    commit_all(repo, "Pin a version that does not exist")
    apply_source(kubectl, namespace, repo)
    status = wait_phase(kubectl, namespace, "lead-nurture.staging", "Blocked", "InvalidVersion")
    assert "lead-nurture 9.9.9 is not mirrored from git" in status["message"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"


def test_an_upstream_that_does_not_exist_is_reported_on_the_source_and_stalls(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    """`promotion.from: uat` with no uat: the sync said Succeeded and the deployment sat
    Blocked UpstreamNotVerified forever, saying it "proceeds by itself" (issue 14)."""
    staging = Path(repo.workdir) / "environments/staging.yaml"
    staging.write_text(
        staging.read_text().replace("promotion: {from: dev}", "promotion: {from: uat}")
    )
    commit_all(repo, "Promote staging from an environment that does not exist")
    apply_source(kubectl, namespace, repo)
    status = wait_phase(kubectl, namespace, "lead-nurture.staging", "Blocked", "UpstreamNotFound")
    assert "staging promotes from uat, but there is no such environment" in status["message"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "UpstreamNotFound")
    source = poll(
        lambda: kubectl.json("get", "wfsrc", "examples", "-n", namespace).get("status") or {},
        lambda s: any(c.get("reason") == "InvalidManifests" for c in s.get("conditions", [])),
        what="the source reporting the unknown environment",
    )
    (invalid,) = source["invalidFiles"]
    assert (invalid["file"], invalid["field"]) == (
        "environments/staging.yaml",
        "spec.promotion.from",
    )
    assert "promotes from 'uat', but there is no such environment" in invalid["message"]


def test_promote_writes_a_branch_keeping_the_file_format(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    apply_source(kubectl, namespace, repo)
    wait_phase(kubectl, namespace, "lead-nurture.staging", "Verified")
    refused = flowpin(
        "promote", "lead-nurture", "--to", "prod", "--version", "1.3.0",
        "--repo", repo.workdir, "-n", namespace,
    )  # fmt: skip
    assert refused.returncode == 2 and "not Verified in staging" in refused.stderr
    promoted = flowpin(
        "promote", "onboarding", "--to", "prod", "--version", "2.1.3",
        "--repo", repo.workdir, "-n", namespace,
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    branch = repo.branches.local["promote/onboarding-2.1.3-prod"]
    text = (repo[branch.target].tree / "environments" / "prod.yaml").data.decode()
    assert "# pinned by PR" in text  # comments kept
    assert (
        text == (Path(repo.workdir) / "environments/prod.yaml").read_text()
    )  # same pin: same file


def test_promotions_are_recorded_as_git_notes_when_the_source_asks(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, repo: pygit2.Repository
) -> None:
    from controller.git.notes import read_records

    # A bare remote, as git hosts have (libgit2 cannot push into a non-bare repository).
    remote = str(Path(repo.workdir).parent / "remote.git")
    bare = pygit2.clone_repository(repo.workdir, remote, bare=True)
    kubectl.apply(source_manifest("examples", str(bare.path), audit={"gitNotes": True}), namespace)
    wait_phase(kubectl, namespace, "lead-nurture.dev", "Verified")
    commit = kubectl.json("get", "wfv", "lead-nurture.v1.4.0", "-n", namespace)["spec"]["git"][
        "commit"
    ]
    records = poll(
        lambda: read_records(pygit2.Repository(bare.path), commit),
        lambda found: any(
            r["environment"] == "dev" and r["workflow"] == "lead-nurture" for r in found
        ),
        what="a git note for the dev activation",
    )
    dev = next(r for r in records if r["environment"] == "dev" and r["workflow"] == "lead-nurture")
    assert (dev["result"], dev["version"]) == ("Activated", "1.4.0")

"""`make demo`: flowpin on the local control plane, told step by step.

It starts the control plane, installs the CRDs and the manifests/ RBAC, turns examples/ into
a real git repository, runs the operator with a token of its ServiceAccount and applies the
example WorkflowSource. Then the story of a change: dev tracks `latest`; a commit brings a
new version to dev; a pull request pins it in staging and prod; prod waits on its soak, then
on approval; approval; an emergency rollback and its release. Then runs parked on a version
that a breaking one replaces: a dry-run migration plan, a gradual migration, and a canary
that fails its analysis and rolls back by itself. kubectl views at each step.
At the end it lists everything with `kubectl get flowpin -A`, waits for Ctrl-C and stops
everything it started. `--no-wait` ends after the last step (tests use it).

Ctrl-C or SIGTERM at any step stops the demo within seconds: the operator, then the control
plane; its work directories are removed. Every child is SIGKILLed by the kernel if the demo
itself is killed (`die_with_parent`), and a later start removes the directories left behind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pygit2

from controller.testing import webhooks
from controller.testing.cluster import (
    Kubectl,
    OperatorProcess,
    install_flowpin,
    operator_kubeconfig,
    poll,
)
from controller.testing.controlplane import (
    REPO_ROOT,
    ControlPlane,
    ControlPlaneError,
    die_with_parent,
    owned_tempdir,
)
from controller.testing.gitrepo import commit_all, repo_from_directory
from controller.testing.httpsink import HttpSink
from controller.testing.signals import Stop, stop_on_signals

EXAMPLES = REPO_ROOT / "examples"
DEMO_NAMESPACE = "flowpin-demo"
WEBHOOK_SECRET = "demo-webhook-secret"
WORKDIR_PREFIX = "flowpin-demo-"


def say(step: str) -> None:
    print(f"\n==> {step}", flush=True)


def show(kubectl: Kubectl, *args: str) -> None:
    print(f"$ kubectl {' '.join(args)}", flush=True)
    print(kubectl.run(*args).stdout.rstrip(), flush=True)


def ready_reason(kubectl: Kubectl, source: str) -> str | None:
    """The Ready condition's reason once the source has been synced (not Unknown)."""
    status = kubectl.json("get", "wfsrc", source, "-n", DEMO_NAMESPACE).get("status", {})
    for condition in status.get("conditions", []):
        if condition["type"] == "Ready" and condition["status"] != "Unknown":
            return str(condition["reason"])
    return None


def show_deployments(kubectl: Kubectl) -> None:
    show(kubectl, "get", "wfd", "-n", DEMO_NAMESPACE)


def wait_for(kubectl: Kubectl, name: str, accept: Callable[[dict[str, Any]], bool]) -> None:
    poll(
        lambda: kubectl.json("get", "wfd", name, "-n", DEMO_NAMESPACE).get("status") or {},
        accept,
        timeout=90,
        what=f"{name} in the demo",
    )


def flowpin(plane: ControlPlane, *args: str) -> None:
    print(f"$ flowpin {' '.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", *args, "-n", DEMO_NAMESPACE],
        env=plane.env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=die_with_parent(),
    )
    print((result.stdout + result.stderr).rstrip(), flush=True)
    if result.returncode != 0:
        raise RuntimeError(f"flowpin {' '.join(args)} exited {result.returncode}")


def edit(repo: pygit2.Repository, path: str, old: str, new: str) -> None:
    file = Path(repo.workdir) / path
    text = file.read_text()
    assert old in text, f"{path} does not contain {old!r}"
    file.write_text(text.replace(old, new))


def runs(kubectl: Kubectl) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("get", "wfr", "-n", DEMO_NAMESPACE)["items"]
    return items


def post_signup(port: int, email: str) -> None:
    """A signed delivery to the signup webhook, as a form backend would send it."""
    body = json.dumps({"email": email}).encode()
    path = f"/hooks/{DEMO_NAMESPACE}/lead-nurture/dev/signup"
    status, answer = webhooks.deliver(port, path, body, WEBHOOK_SECRET)
    print(f"POST {path} {body.decode()}")
    print(f"  -> {status} {json.dumps(answer)}", flush=True)
    if status != 202:
        raise RuntimeError(f"the webhook answered {status}: {answer}")


def promotion_story(
    kubectl: Kubectl,
    repo: pygit2.Repository,
    plane: ControlPlane,
    mail: HttpSink,
    operator_port: int,
) -> None:
    say(
        "prod soaks 1h after staging, inside weekday windows, with approval. For the demo, "
        "a commit shortens its soak to 20s and drops the windows"
    )
    edit(repo, "environments/prod.yaml", "soak: 1h", "soak: 20s")
    edit(
        repo,
        "environments/prod.yaml",
        '    windows: [{kind: allow, schedule: "0 9 * * 1-5", duration: 8h, timezone: UTC}]\n',
        "",
    )
    commit_all(repo, "Demo: soak prod for 20s, no windows")
    flowpin(plane, "sync", "examples")

    say(
        "Runs. For the demo, lead-nurture 1.4.1 sends its mail to a local HTTP server, waits "
        "20s instead of two days, and its schedule fires every minute; dev runs it at once "
        "and from now on lets in-flight runs finish on their version (inflight: pin)"
    )
    edit(repo, "workflows/lead-nurture.yaml", "version: 1.4.0", "version: 1.4.1")
    edit(repo, "workflows/lead-nurture.yaml", "https://mail.example", mail.url)
    edit(repo, "workflows/lead-nurture.yaml", "duration: 48h", "duration: 20s")
    edit(
        repo,
        "workflows/lead-nurture.yaml",
        '"0 9 * * *", timezone: Europe/Berlin}',
        '"* * * * *", timezone: Europe/Berlin, inputs: {email: digest@example.org}}',
    )
    edit(repo, "environments/dev.yaml", "inflight: cancel", "inflight: pin")
    commit_all(
        repo,
        "lead-nurture 1.4.1: demo mail server, short wait, frequent schedule; "
        "dev keeps in-flight runs on their version",
    )
    flowpin(plane, "sync", "examples")
    wait_for(kubectl, "lead-nurture.dev", lambda s: s.get("activeVersion") == "1.4.1")

    say("Three sign-ups arrive through the signed webhook; the schedule starts a run too")
    for email in ("ada@example.org", "grace@example.org", "alan@example.org"):
        post_signup(operator_port, email)
    poll(  # the schedule fires at the next minute, not for a time before 1.4.1 was active
        lambda: [r for r in runs(kubectl) if r["spec"]["trigger"]["type"] == "schedule"],
        lambda found: len(found) >= 1,
        timeout=75,
        what="the schedule's run",
    )
    poll(
        lambda: [(r.get("status") or {}).get("phase") for r in runs(kubectl)],
        lambda phases: phases.count("Waiting") >= 1,
        what="a run to wait at wait-2d",
    )
    show(kubectl, "get", "wfr", "-n", DEMO_NAMESPACE)

    post_signup(operator_port, "edsger@example.org")  # a run surely still waiting on 1.4.1
    say("A commit brings lead-nurture 1.5.0: dev runs it at once; the runs on 1.4.1 stay there")
    edit(repo, "workflows/lead-nurture.yaml", "version: 1.4.1", "version: 1.5.0")
    edit(repo, "workflows/lead-nurture.yaml", "duration: 20s", "duration: 30s")
    commit_all(repo, "lead-nurture 1.5.0: wait a little longer")
    flowpin(plane, "sync", "examples")
    wait_for(kubectl, "lead-nurture.dev", lambda s: s.get("activeVersion") == "1.5.0")
    flowpin(plane, "status", "lead-nurture")
    show(kubectl, "get", "wfr", "-n", DEMO_NAMESPACE)

    say("The runs on 1.4.1 finish on 1.4.1: it is Drained")
    wait_for(
        kubectl,
        "lead-nurture.dev",
        lambda s: any(
            v.get("version") == "1.4.1" and v.get("state") == "Drained"
            for v in s.get("versions") or []
        ),
    )
    show(
        kubectl,
        "get",
        "wfd",
        "lead-nurture.dev",
        "-n",
        DEMO_NAMESPACE,
        "-o",
        "jsonpath={range .status.versions[*]}{.version}{'\\t'}{.state}{'\\t'}"
        "{.activeRuns}{'\\n'}{end}",
    )
    show(
        kubectl,
        "get",
        "wfv",
        "lead-nurture.v1.4.1",
        "-n",
        DEMO_NAMESPACE,
        "-o",
        "jsonpath={.status.runs}{'\\n'}",
    )
    print(f"the mail server received {len(mail.calls('/send'))} requests", flush=True)

    say("A pull request pins 1.5.0 in staging and in prod: staging verifies, prod soaks")
    edit(repo, "environments/staging.yaml", "lead-nurture: 1.4.0", "lead-nurture: 1.5.0")
    edit(repo, "environments/prod.yaml", "lead-nurture: 1.4.0", "lead-nurture: 1.5.0")
    commit_all(repo, "Promote lead-nurture 1.5.0 to staging and prod")
    flowpin(plane, "sync", "examples")
    wait_for(kubectl, "lead-nurture.staging", lambda s: s.get("activeVersion") == "1.5.0")
    wait_for(kubectl, "lead-nurture.prod", lambda s: s.get("reason") == "SoakPending")
    show_deployments(kubectl)

    say("Twenty seconds later the soak is over; prod waits for a person")
    wait_for(kubectl, "lead-nurture.prod", lambda s: s.get("reason") == "AwaitingApproval")
    flowpin(plane, "status", "lead-nurture")

    say("Approval")
    flowpin(plane, "approve", "lead-nurture", "--env", "prod")
    show_deployments(kubectl)

    say("Emergency: roll prod back to 1.4.0 (git still pins 1.5.0)")
    flowpin(plane, "rollback", "lead-nurture", "--env", "prod", "--to", "1.4.0")
    show(kubectl, "get", "wfd", "lead-nurture.prod", "-n", DEMO_NAMESPACE)
    show(
        kubectl,
        "get",
        "wfd",
        "lead-nurture.prod",
        "-n",
        DEMO_NAMESPACE,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Drifted')].message}{'\\n'}",
    )

    say(
        "Fixed: release the rollback, prod follows git again: 1.5.0 comes back through prod's "
        "canary (10% of new runs first)"
    )
    flowpin(plane, "release", "lead-nurture", "--env", "prod")
    flowpin(plane, "history", "lead-nurture", "--env", "prod")


VIP_ROUTE = """      next: route
    - id: route
      type: condition
      condition: {when: "inputs.email.endsWith('@vip.example')", then: wait-vip, else: wait-2d}
    - {id: wait-vip, type: wait, wait: {duration: 10m}, next: follow-up}
    - id: wait-2d"""


def migration_story(
    kubectl: Kubectl,
    repo: pygit2.Repository,
    plane: ControlPlane,
    mail: HttpSink,
    operator_port: int,
) -> None:
    say(
        "lead-nurture 1.6.0 sends VIP sign-ups down a path of their own; for the demo both "
        "waits last 10 minutes, so runs stay parked"
    )
    edit(repo, "workflows/lead-nurture.yaml", "version: 1.5.0", "version: 1.6.0")
    edit(repo, "workflows/lead-nurture.yaml", "duration: 30s", "duration: 10m")
    edit(repo, "workflows/lead-nurture.yaml", "      next: wait-2d\n    - id: wait-2d", VIP_ROUTE)
    commit_all(repo, "lead-nurture 1.6.0: a VIP path")
    flowpin(plane, "sync", "examples")
    wait_for(kubectl, "lead-nurture.dev", lambda s: s.get("activeVersion") == "1.6.0")
    emails = ["kay@example.org", "barbara@example.org", "john@example.org", "frances@example.org"]
    for email in [*emails, "radia@vip.example", "donald@vip.example"]:
        post_signup(operator_port, email)
    poll(
        lambda: [
            (r.get("status") or {}).get("currentStep")
            for r in runs(kubectl)
            if (r.get("status") or {}).get("version") == "1.6.0"
            and (r.get("status") or {}).get("phase") == "Waiting"
        ],
        lambda steps: steps.count("wait-2d") >= 4 and steps.count("wait-vip") == 2,
        what="six runs parked on 1.6.0",
    )

    say(
        "A breaking 2.0.0: wait-2d is renamed wait-nudge (a migration entry maps it), and the "
        "VIP path is gone. dev runs 2.0.0 for new runs; the parked ones stay on 1.6.0"
    )
    edit(repo, "workflows/lead-nurture.yaml", "version: 1.6.0", "version: 2.0.0")
    edit(
        repo,
        "workflows/lead-nurture.yaml",
        VIP_ROUTE,
        "      next: wait-nudge\n    - id: wait-nudge",
    )
    edit(
        repo,
        "workflows/lead-nurture.yaml",
        '{from: ">=1.0.0 <1.4.0", map: {wait-1d: wait-2d}}',
        '{from: ">=1.4.0 <2.0.0", map: {wait-2d: wait-nudge}}',
    )
    commit_all(repo, "lead-nurture 2.0.0: wait-nudge replaces wait-2d; no VIP path")
    flowpin(plane, "sync", "examples")
    wait_for(kubectl, "lead-nurture.dev", lambda s: s.get("activeVersion") == "2.0.0")
    flowpin(plane, "status", "lead-nurture")

    say("Dry run: where would the runs on 1.6.0 go? (nothing moves)")
    flowpin(
        plane, "migrate", "start", "lead-nurture", "--env", "dev", "--to", "2.0.0",
        "--from", "1.6.0", "--strategy", "gradual", "--batch-size", "2", "--interval", "15s",
        "--dry-run",
    )  # fmt: skip
    [migration] = kubectl.json("get", "wfmig", "-n", DEMO_NAMESPACE)["items"]
    name = migration["metadata"]["name"]

    say("Approved: a gradual migration moves two runs every 15 seconds")
    flowpin(plane, "migrate", "approve", name)
    poll(
        lambda: kubectl.json("get", "wfmig", name, "-n", DEMO_NAMESPACE).get("status") or {},
        lambda s: s.get("phase") == "Running" and bool((s.get("progress") or {}).get("migrated")),
        what="the first batch",
    )
    flowpin(plane, "migrate", "status", name)
    flowpin(plane, "migrate", "status", name, "--watch")
    show(kubectl, "get", "wfmig", "-n", DEMO_NAMESPACE)
    show(
        kubectl, "get", "wfr", "-n", DEMO_NAMESPACE,
        "-o", "custom-columns=RUN:.metadata.name,VERSION:.status.version,"
        "STEP:.status.currentStep,PHASE:.status.phase,MIGRATED-BY:.status.versionHistory[0].migration",
    )  # fmt: skip

    say(
        "dev now rolls out by canary: half of the new runs for 5s, then a verdict on at least "
        "4 of them; a second failed canary run aborts at once. lead-nurture 2.1.0 posts to a "
        "new mail endpoint, which is broken"
    )
    edit(
        repo,
        "environments/dev.yaml",
        "rollout: {strategy: immediate}",
        "rollout: {strategy: canary, steps: [{weight: 50, pause: 5s}],\n"
        "            analysis: {minRuns: 4, successRate: 0.9, maxFailedRuns: 1}}",
    )
    edit(repo, "workflows/lead-nurture.yaml", "version: 2.0.0", "version: 2.1.0")
    edit(
        repo,
        "workflows/lead-nurture.yaml",
        f'url: "{mail.url}/send", body',
        f'url: "{mail.url}/send-v2", body',
    )
    mail.set_script("/send-v2", [500])
    commit_all(repo, "lead-nurture 2.1.0: the new mail endpoint; dev rolls out by canary")
    flowpin(plane, "sync", "examples")
    wait_for(kubectl, "lead-nurture.dev", lambda s: s.get("phase") == "Canary")
    show(kubectl, "get", "wfd", "lead-nurture.dev", "-n", DEMO_NAMESPACE, "-o", "wide")

    say("Sign-ups keep coming; the canary's runs fail and the analysis rolls it back by itself")
    count = 0

    def rolled_back() -> bool:
        nonlocal count
        status = kubectl.json("get", "wfd", "lead-nurture.dev", "-n", DEMO_NAMESPACE)["status"]
        if status.get("phase") == "RolledBack":
            return True
        count += 1
        post_signup(operator_port, f"lead-{count}@example.org")
        return False

    poll(lambda: rolled_back(), lambda done: done, timeout=150, interval=1, what="the abort")
    show(kubectl, "get", "wfd", "lead-nurture.dev", "-n", DEMO_NAMESPACE, "-o", "wide")
    show(
        kubectl, "get", "wfd", "lead-nurture.dev", "-n", DEMO_NAMESPACE,
        "-o", "jsonpath={.status.message}{'\\n'}",
    )  # fmt: skip
    flowpin(plane, "history", "lead-nurture", "--env", "dev")


def run_demo(workdir: Path, wait: bool) -> None:
    say("Starting the local control plane (etcd, kube-apiserver, kube-controller-manager)")
    with ControlPlane() as plane:
        kubectl = Kubectl(env=plane.env())
        print(f"ready at {plane.server}; KUBECONFIG={plane.kubeconfig}")

        say("Installing the CRDs (crds/) and the operator's RBAC (manifests/)")
        install_flowpin(kubectl)
        show(kubectl, "api-resources", "--categories=flowpin")

        say("Turning examples/ into a git repository")
        repo_dir = workdir / "workflows-repo"
        repo = repo_from_directory(EXAMPLES, repo_dir, "Add lead-nurture and onboarding")
        print(f"{repo_dir} at {repo.head.target}")

        mail = HttpSink()
        say("Starting the operator as the flowpin-operator ServiceAccount")
        operator = OperatorProcess(
            kubeconfig=operator_kubeconfig(plane, kubectl, workdir / "operator-kubeconfig"),
            log_path=workdir / "operator.log",
            identity="demo-operator",
        )
        try:  # started inside: a Ctrl-C while they start stops them too
            mail.start()
            operator.start()
            operator.wait_ready()
            print(f"operator leading; logs in {operator.log_path}")

            say("Applying the example WorkflowSource")
            kubectl.run("create", "namespace", DEMO_NAMESPACE)
            manifest = (EXAMPLES / "cluster" / "source.yaml").read_text()
            kubectl.apply(manifest.replace("REPLACED_BY_THE_DEMO", str(repo_dir)))
            poll(
                lambda: ready_reason(kubectl, "examples"),
                lambda reason: reason is not None,
                what="the operator to sync the source",
            )
            show(kubectl, "get", "wfsrc", "-n", DEMO_NAMESPACE, "-o", "wide")
            wait_for(kubectl, "lead-nurture.prod", lambda s: s.get("phase") == "Blocked")
            say("Everything flowpin made of it: versions, environments, deployments")
            show(kubectl, "get", "flowpin", "-A")
            kubectl.run(
                "create", "secret", "generic", "lead-nurture-webhook",
                f"--from-literal=secret={WEBHOOK_SECRET}", "-n", DEMO_NAMESPACE,
            )  # fmt: skip
            promotion_story(kubectl, repo, plane, mail, operator.port)
            migration_story(kubectl, repo, plane, mail, operator.port)
            say("Everything flowpin in the cluster now")
            show(kubectl, "get", "flowpin", "-A")
            if wait:
                say("Running. Try kubectl yourself with the KUBECONFIG above; Ctrl-C stops all")
                wait_for_ctrl_c(operator)
        except Exception:
            print("\n--- operator log (last lines) ---", file=sys.stderr)
            print("\n".join(operator.logs().splitlines()[-40:]), file=sys.stderr)
            raise
        finally:
            operator.stop()
            mail.stop()
    say("Stopped the operator and the control plane")


def wait_for_ctrl_c(operator: OperatorProcess) -> None:
    """Until Ctrl-C or SIGTERM (or the operator dies, which ends the demo with its log)."""
    try:
        while True:
            if operator.process is not None and operator.process.poll() is not None:
                raise RuntimeError(f"the operator exited {operator.process.returncode}")
            time.sleep(1)
    except Stop:
        return


def main() -> int:
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--no-wait", action="store_true", help="exit after the last step")
    args = parser.parse_args()
    stop_on_signals()
    workdir: Path | None = None
    try:
        workdir = owned_tempdir(WORKDIR_PREFIX)
        run_demo(workdir, wait=not args.no_wait)
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Stop as stop:
        print("Stopped the operator and the control plane before the end", file=sys.stderr)
        return 128 + stop.signum
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

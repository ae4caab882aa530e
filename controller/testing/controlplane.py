"""A real local Kubernetes control plane for tests and the demo.

The binary comes from `tools/control-plane` (kube-apiserver, kube-controller-manager and an
embedded etcd built from Go modules) and is cached outside the clone, keyed by the hash of
go.mod and go.sum. It is started the way controller-runtime's envtest starts its binaries:
etcd on loopback with its data on tmpfs, a secure API server with RBAC and service-account
signing keys, and a controller manager with only the garbage-collector and namespace
controllers. Every process dies with its parent (PR_SET_PDEATHSIG), so a killed test run
leaves no orphans.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from controller.testing.pki import Pki, create_pki

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "tools" / "control-plane"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says why."""


@dataclass(frozen=True)
class ControlPlaneSettings:
    """Where the control plane is built and how long it may take to start."""

    module_dir: Path = MODULE_DIR
    """The Go module to build."""
    cache_dir: Path = field(
        default_factory=lambda: (
            Path(os.environ.get("FLOWPIN_CACHE", Path.home() / ".cache" / "flowpin"))
            / "control-plane"
        )
    )
    """Built binaries live in `<cache_dir>/<hash of go.mod and go.sum>/control-plane`."""
    start_timeout: float = 120.0
    """Seconds to wait for etcd and the API server to become ready."""
    controller_manager: bool = True
    """Run kube-controller-manager (garbage collection and namespace deletion)."""
    tmp_root: Path | None = None
    """Where data directories go; default /dev/shm (tmpfs) when it exists."""


def binary_path(settings: ControlPlaneSettings) -> Path:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((settings.module_dir / name).read_bytes())
    return settings.cache_dir / digest.hexdigest()[:16] / "control-plane"


def ensure_binary(settings: ControlPlaneSettings, log: Callable[[str], None] = print) -> Path:
    """Build the control-plane binary unless the cache already holds it."""
    target = binary_path(settings)
    if target.exists():
        return target
    if shutil.which("go") is None:
        raise ControlPlaneError("cannot build the control plane: `go` is not on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    log(f"building the control plane into {target} (first time only; takes minutes)")
    env = {**os.environ, "CGO_ENABLED": "0"}
    result = subprocess.run(
        ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(partial), "."],
        cwd=settings.module_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ControlPlaneError(
            f"`go build` of {settings.module_dir} failed ({result.returncode}):\n"
            f"{result.stderr[-4000:]}"
        )
    partial.rename(target)
    return target


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the parent process dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class _Component:
    name: str
    args: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None


class ControlPlane:
    """One running control plane. Use as a context manager, or call start() and stop()."""

    def __init__(self, settings: ControlPlaneSettings | None = None) -> None:
        self.settings = settings or ControlPlaneSettings()
        tmp_root = self.settings.tmp_root or (
            Path("/dev/shm") if Path("/dev/shm").is_dir() else None
        )
        self.workdir = Path(tempfile.mkdtemp(prefix="flowpin-cp-", dir=tmp_root))
        self.kubeconfig = self.workdir / "kubeconfig"
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self._components: dict[str, _Component] = {}
        self._pki: Pki | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ControlPlane:
        binary = ensure_binary(self.settings)
        self._pki = pki = create_pki(self.workdir / "pki")
        self._write_kubeconfig(pki)
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self._components = {
            "etcd": _Component(
                "etcd",
                [
                    str(binary),
                    "etcd",
                    f"--data-dir={self.workdir / 'etcd'}",
                    f"--listen-client-url={etcd_url}",
                    f"--listen-peer-url=http://127.0.0.1:{self.etcd_peer_port}",
                ],
                self.workdir / "etcd.log",
            ),
            "kube-apiserver": _Component(
                "kube-apiserver",
                [
                    str(binary),
                    "kube-apiserver",
                    f"--etcd-servers={etcd_url}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={self.apiserver_port}",
                    f"--cert-dir={self.workdir / 'apiserver-certs'}",
                    f"--tls-cert-file={pki.serving_cert}",
                    f"--tls-private-key-file={pki.serving_key}",
                    f"--client-ca-file={pki.ca_cert}",
                    "--authorization-mode=RBAC",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={pki.sa_pub}",
                    f"--service-account-signing-key-file={pki.sa_key}",
                    "--disable-admission-plugins=ServiceAccount",
                    "--allow-privileged=false",
                    "--endpoint-reconciler-type=none",
                    "--v=1",
                ],
                self.workdir / "kube-apiserver.log",
            ),
        }
        if self.settings.controller_manager:
            self._components["kube-controller-manager"] = _Component(
                "kube-controller-manager",
                [
                    str(binary),
                    "kube-controller-manager",
                    f"--kubeconfig={self.kubeconfig}",
                    "--controllers=garbagecollector,namespace",
                    "--leader-elect=false",
                    "--secure-port=0",
                    "--v=1",
                ],
                self.workdir / "kube-controller-manager.log",
            )
        try:
            self._launch("etcd")
            self._wait(self._etcd_ready, "etcd")
            self._launch("kube-apiserver")
            self._wait(self._apiserver_ready, "kube-apiserver")
            if self.settings.controller_manager:
                self._launch("kube-controller-manager")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for component in reversed(list(self._components.values())):
            self._terminate(component)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver alone (etcd keeps the data), for fault tests."""
        component = self._components["kube-apiserver"]
        self._terminate(component)
        self._launch("kube-apiserver")
        self._wait(self._apiserver_ready, "kube-apiserver")

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (kubectl, the operator) pointing at this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------ internals
    def _write_kubeconfig(self, pki: Pki) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "flowpin-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "flowpin-admin",
                    "user": {
                        "client-certificate": str(pki.admin_cert),
                        "client-key": str(pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "flowpin-local",
                    "context": {
                        "cluster": "flowpin-local",
                        "user": "flowpin-admin",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "flowpin-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def token_kubeconfig(self, token: str, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig that authenticates with a bearer token (a ServiceAccount's)."""
        assert self._pki is not None
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "flowpin-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self._pki.ca_cert),
                    },
                }
            ],
            "users": [{"name": "token", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "token",
                    "context": {
                        "cluster": "flowpin-local",
                        "user": "token",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "token",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _launch(self, name: str) -> None:
        component = self._components[name]
        component.log_file = open(component.log_path, "ab")  # noqa: SIM115 (closed in stop)
        component.process = subprocess.Popen(
            component.args,
            stdout=component.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    def _terminate(self, component: _Component) -> None:
        process = component.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        component.process = None
        if component.log_file is not None:
            component.log_file.close()
            component.log_file = None

    def _wait(self, ready: Callable[[], bool], name: str) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        component = self._components[name]
        while time.monotonic() < deadline:
            if component.process is not None and component.process.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {component.process.returncode}:\n"
                    f"{self.log_tail(name)}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{name} not ready after {self.settings.start_timeout:.0f}s:\n{self.log_tail(name)}"
        )

    def _etcd_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.etcd_port}/health", timeout=2
            ) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _apiserver_ready(self) -> bool:
        assert self._pki is not None
        context = ssl.create_default_context(cafile=str(self._pki.ca_cert))
        context.load_cert_chain(str(self._pki.admin_cert), str(self._pki.admin_key))
        try:
            with urllib.request.urlopen(
                f"{self.server}/readyz", timeout=2, context=context
            ) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

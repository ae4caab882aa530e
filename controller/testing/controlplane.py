"""A real local Kubernetes control plane for tests and the demo.

The binary comes from `tools/control-plane` (kube-apiserver, kube-controller-manager and an
embedded etcd built from Go modules) and is cached outside the clone, keyed by the hash of
go.mod and go.sum. It is started the way controller-runtime's envtest starts its binaries:
etcd on loopback with its data on tmpfs, a secure API server with RBAC and service-account
signing keys, and a controller manager with only the garbage-collector and namespace
controllers. Every process is killed when its parent dies (PR_SET_PDEATHSIG), so a killed test
run or demo leaves no orphans; the work directory (keys, etcd data) records its owner's pid, and
the next start removes the directories of owners that are gone.
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
WORKDIR_PREFIX = "flowpin-cp-"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says why."""


class PortTaken(ControlPlaneError):
    """A component found its port taken between `free_port` choosing it and the bind (another
    control plane starting at the same moment): the start is tried again on new ports."""


PORT_ATTEMPTS = 3


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


_libc = ctypes.CDLL(None, use_errno=True)  # looked up here: the forked child only calls it
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` for children that must not outlive this process.

    In the child, before exec: unblock every signal (a mask blocked by the parent, e.g. for
    `sigwait`, is inherited across exec and would make the child deaf to SIGTERM), then ask the
    kernel to SIGKILL it when the parent dies; if the parent died before that, exit at once.
    The kernel watches the thread that called Popen, so call it from a thread that lives as
    long as the child should (the main thread, in practice).
    """
    parent = os.getpid()

    def in_child() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return in_child


# ---------------------------------------------------------------------- owned directories
OWNER_FILE = "owner.pid"
_UNCLAIMED_GRACE = 600.0
"""Seconds a directory without an owner file is left alone (it may be being created)."""


def _process_start(pid: int) -> str | None:
    """The start time of a live process (clock ticks since boot), None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _owner_alive(path: Path) -> bool | None:
    """Whether the process that made `path` still runs; None if the directory names none."""
    try:
        pid, start = (path / OWNER_FILE).read_text().split()
        return _process_start(int(pid)) == start
    except (OSError, ValueError):
        return None


def _used_by_a_process(path: Path) -> bool:
    """Whether a live process names `path` on its command line (e.g. etcd's --data-dir)."""
    needle = str(path).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def sweep_stale_dirs(prefix: str, root: Path | None = None) -> list[Path]:
    """Remove this user's `<root>/<prefix>*` directories whose owner process is gone.

    Directories without an owner file (made by an older version, or being made right now) go
    only once they are older than a grace period and no live process names them."""
    removed: list[Path] = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            info = path.lstat()
        except OSError:
            continue
        if not path.is_dir() or path.is_symlink() or info.st_uid != os.getuid():
            continue
        alive = _owner_alive(path)
        if alive is None:
            if time.time() - info.st_mtime < _UNCLAIMED_GRACE or _used_by_a_process(path):
                continue
        elif alive:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def owned_tempdir(prefix: str, root: Path | None = None) -> Path:
    """`mkdtemp` that records this process as the owner, after sweeping stale ones."""
    sweep_stale_dirs(prefix, root)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    pid = os.getpid()
    (path / OWNER_FILE).write_text(f"{pid} {_process_start(pid)}\n")
    return path


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
        self.workdir = owned_tempdir(WORKDIR_PREFIX, tmp_root)
        self.kubeconfig = self.workdir / "kubeconfig"
        self._components: dict[str, _Component] = {}
        self._pki: Pki | None = None
        self._pick_ports()

    def _pick_ports(self) -> None:
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ControlPlane:
        try:
            for attempt in range(1, PORT_ATTEMPTS + 1):
                try:
                    self._start()
                    return self
                except PortTaken:
                    if attempt == PORT_ATTEMPTS:
                        raise
                    for component in reversed(list(self._components.values())):
                        self._terminate(component)
                    shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
                    self._pick_ports()
        except BaseException:  # also KeyboardInterrupt: nothing started may stay behind
            self.stop()
            raise
        return self

    def _start(self) -> None:
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
        self._launch("etcd")
        self._wait(self._etcd_ready, "etcd")
        self._launch("kube-apiserver")
        self._wait(self._apiserver_ready, "kube-apiserver")
        if self.settings.controller_manager:
            self._launch("kube-controller-manager")

    def stop(self) -> None:
        try:
            for component in reversed(list(self._components.values())):
                self._terminate(component)
        finally:
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
            preexec_fn=die_with_parent(),
            process_group=0,  # a terminal's Ctrl-C reaches the parent, which stops us in order
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
                tail = self.log_tail(name)
                error = PortTaken if "address already in use" in tail else ControlPlaneError
                raise error(f"{name} exited with code {component.process.returncode}:\n{tail}")
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

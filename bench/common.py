"""Shared by the benchmarks: every figure is printed as `name: value unit (workload)`."""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, config

from controller.testing.cluster import (
    Kubectl,
    OperatorProcess,
    install_flowpin,
    operator_kubeconfig,
    source_manifest,
)
from controller.testing.controlplane import ControlPlane


def report(name: str, value: float, unit: str, workload: str = "") -> None:
    text = f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    suffix = f" ({workload})" if workload else ""
    print(f"{name}: {text} {unit}{suffix}", flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(share * 100) - 1]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc)."""
    import os

    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_peak_rss_mib(pid: int) -> float:
    """Peak resident memory of one process (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True)
class BenchCluster:
    """A local control plane with flowpin installed and one operator (under the manifests/
    ServiceAccount's token) watching the benchmark's namespace."""

    plane: ControlPlane
    kubectl: Kubectl
    operator: OperatorProcess
    api: client.CustomObjectsApi

    def apply_local_source(self, namespace: str, name: str, path: Path) -> None:
        """A WorkflowSource reading a git repository on this machine."""
        self.kubectl.apply(source_manifest(name, str(path)), namespace)


@contextlib.contextmanager
def bench_cluster(
    workdir: Path, namespace: str, other_namespaces: tuple[str, ...] = ()
) -> Iterator[BenchCluster]:
    """Start everything; stop everything on the way out, whatever happens."""
    plane = ControlPlane().start()
    operator: OperatorProcess | None = None
    try:
        kubectl = Kubectl(env=plane.env())
        install_flowpin(kubectl)
        for name in (namespace, *other_namespaces):
            kubectl.run("create", "namespace", name)
        operator = OperatorProcess(
            kubeconfig=operator_kubeconfig(plane, kubectl, workdir / "operator.kubeconfig"),
            log_path=workdir / "operator.log",
            namespaces=(namespace,),
        ).start()
        operator.wait_ready(timeout=120)
        config.load_kube_config(str(plane.kubeconfig))
        yield BenchCluster(plane, kubectl, operator, client.CustomObjectsApi())
    finally:
        if operator is not None:
            operator.stop()
        plane.stop()

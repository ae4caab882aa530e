"""Control-plane figures: cold build time and peak memory of building tools/control-plane
from Go modules (empty build cache, module cache as it is), and warm start-to-ready time.

    python bench/control_plane.py [--skip-build] [--starts N]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from common import percentile, report

from controller.testing.controlplane import MODULE_DIR, ControlPlane


def cold_build() -> None:
    with tempfile.TemporaryDirectory(prefix="flowpin-bench-gocache-") as cache:
        output = Path(cache) / "control-plane"
        env = {**os.environ, "CGO_ENABLED": "0", "GOCACHE": cache}
        # Download modules first so that the figure measures compiling, not the network.
        subprocess.run(["go", "mod", "download"], cwd=MODULE_DIR, env=env, check=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.monotonic()
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(output), "."],
            cwd=MODULE_DIR,
            env=env,
            check=True,
        )
        elapsed = time.monotonic() - started
        peak_kib = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
        workload = (
            f"k8s.io/kubernetes v1.33.13 + etcd v3.5.21, empty GOCACHE, {os.cpu_count()} cores"
        )
        report("control_plane_cold_build", round(elapsed, 1), "s", workload)
        report("control_plane_build_peak_rss", round(peak_kib / 1024), "MiB", "largest process")
        report("control_plane_binary_size", round(output.stat().st_size / 2**20), "MiB")


def warm_starts(count: int) -> None:
    durations = []
    for _ in range(count):
        plane = ControlPlane()
        started = time.monotonic()
        plane.start()
        durations.append(time.monotonic() - started)
        plane.stop()
    workload = f"{count} starts, cached binary, etcd on tmpfs, to /readyz"
    report(
        "control_plane_warm_start_to_ready_p50", round(percentile(durations, 0.5), 2), "s", workload
    )
    report("control_plane_warm_start_to_ready_max", round(max(durations), 2), "s", workload)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-build", action="store_true", help="only the warm starts")
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    if not args.skip_build:
        cold_build()
    warm_starts(args.starts)


if __name__ == "__main__":
    main()

"""Run engine figures, with the real operator against a real control plane.

    python bench/runs.py [--quick]

1. N concurrent runs (default 1,000) of a workflow `http -> wait 30s -> http` against a real
   HTTP server on loopback: all created at once (the kubernetes client, 16 threads), then
   polled until every run has Succeeded. Figures: wall time, operator CPU seconds and peak
   RSS over the whole span, and steps/s sustained while the engine was busy (3 steps per
   run over the wall time minus the 30 s every run sleeps).
2. Webhooks: 200 signed deliveries one after the other to a one-step workflow: 202 latency
   p50 and p95. Then closed-loop load with 1, 2, 4, ... 32 concurrent senders for 10 s each,
   stopping at the first answer that is not 202: the highest rate sustained before it.

`--quick`: 100 runs with a 5 s wait, 50 latency samples, senders up to 8 for 5 s each.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pygit2
from common import (
    bench_cluster,
    percentile,
    process_cpu_seconds,
    process_peak_rss_mib,
    report,
)
from kubernetes import client

from controller.api import kinds
from controller.model.triggers import run_object
from controller.testing import webhooks
from controller.testing.cluster import (
    OperatorProcess,
    poll,
)
from controller.testing.gitrepo import commit_all
from controller.testing.httpsink import HttpSink

NAMESPACE = "bench-runs"
SECRET = "bench-secret"


@dataclass(frozen=True)
class Plan:
    runs: int
    wait_seconds: int
    latency_samples: int
    max_senders: int
    load_seconds: float


FULL = Plan(runs=1000, wait_seconds=30, latency_samples=200, max_senders=32, load_seconds=10)
QUICK = Plan(runs=100, wait_seconds=5, latency_samples=50, max_senders=8, load_seconds=5)


def log(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", flush=True)


def write_repository(path: Path, sink: str, wait_seconds: int) -> None:
    repo = pygit2.init_repository(str(path), initial_head="main")
    (path / "workflows").mkdir(parents=True)
    (path / "environments").mkdir()
    (path / "workflows/load.yaml").write_text(
        f"""\
apiVersion: flowpin.dev/v1alpha1
kind: Workflow
metadata: {{name: load}}
spec:
  version: 1.0.0
  steps:
    - {{id: first, type: http, http: {{method: POST, url: "{sink}/first"}}, next: pause}}
    - {{id: pause, type: wait, wait: {{duration: {wait_seconds}s}}, next: second}}
    - {{id: second, type: http, http: {{method: POST, url: "{sink}/second"}}}}
"""
    )
    (path / "workflows/hook.yaml").write_text(
        """\
apiVersion: flowpin.dev/v1alpha1
kind: Workflow
metadata: {name: hook}
spec:
  version: 1.0.0
  triggers: [{id: in, type: webhook, secretRef: {name: hook}}]
  steps: [{id: note, type: log, log: {message: "got ${ inputs.n }"}}]
"""
    )
    (path / "environments/dev.yaml").write_text(
        "apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\n"
        "spec:\n  pins: {load: latest, hook: latest}\n"
    )
    commit_all(repo, "bench workflows")


def phases(api: client.CustomObjectsApi) -> dict[str, int]:
    items = api.list_namespaced_custom_object(
        kinds.GROUP, kinds.VERSION, NAMESPACE, kinds.WORKFLOW_RUN.plural
    )["items"]
    found: dict[str, int] = {}
    for item in items:
        phase = (item.get("status") or {}).get("phase", "Pending")
        found[phase] = found.get(phase, 0) + 1
    return found


def concurrent_runs(plan: Plan, api: client.CustomObjectsApi, operator: OperatorProcess) -> None:
    pid = operator.process.pid if operator.process else 0
    cpu_before = process_cpu_seconds(pid)
    started = time.monotonic()
    body = run_object("load", "dev", {}, None, datetime.datetime.now(datetime.UTC))
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda _: api.create_namespaced_custom_object(
                    kinds.GROUP, kinds.VERSION, NAMESPACE, kinds.WORKFLOW_RUN.plural, body
                ),
                range(plan.runs),
            )
        )
    created = time.monotonic() - started
    log(f"{plan.runs} runs created in {created:.1f} s")
    last = poll(
        lambda: phases(api),
        lambda found: found.get("Succeeded", 0) + found.get("Failed", 0) >= plan.runs,
        timeout=plan.wait_seconds + 1800,
        interval=2,
        what="every run to finish",
    )
    wall = time.monotonic() - started
    cpu = process_cpu_seconds(pid) - cpu_before
    workload = f"{plan.runs} runs of http -> wait {plan.wait_seconds}s -> http"
    report("runs_concurrent_wall_time", round(wall, 1), "s", workload)
    report("runs_failed", last.get("Failed", 0), "runs", workload)
    report("runs_operator_cpu", round(cpu, 1), "s", workload)
    report("runs_operator_peak_rss", round(process_peak_rss_mib(pid), 1), "MiB", workload)
    busy = max(wall - plan.wait_seconds, 1e-3)
    report(
        "runs_sustained_steps_per_second",
        round(3 * plan.runs / busy, 1),
        "steps/s",
        f"{3 * plan.runs} steps over {busy:.1f} s (wall minus the wait)",
    )


def deliver(port: int, payload: dict[str, object]) -> int:
    body = json.dumps(payload).encode()
    status, _ = webhooks.deliver(port, f"/hooks/{NAMESPACE}/hook/dev/in", body, SECRET)
    return status


def closed_loop(port: int, senders: int, seconds: float) -> tuple[float, list[int]]:
    """Each sender posts its next delivery as soon as the last is answered; all stop at the
    first answer that is not 202. The rate of 202s, and the error statuses seen."""
    stop_at = time.monotonic() + seconds
    accepted = [0] * senders
    errors: list[int] = []

    def send(slot: int) -> None:
        while time.monotonic() < stop_at and not errors:
            status = deliver(port, {"n": slot})
            if status == 202:
                accepted[slot] += 1
            else:
                errors.append(status)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(accepted) / (time.monotonic() - started), errors


def webhook_figures(plan: Plan, port: int) -> None:
    latencies = []
    for n in range(plan.latency_samples):
        started = time.perf_counter()
        status = deliver(port, {"n": n})
        latencies.append(time.perf_counter() - started)
        if status != 202:
            raise SystemExit(f"webhook answered {status} in the latency run")
    workload = f"{plan.latency_samples} sequential signed deliveries"
    report(
        "webhook_accept_latency_p50", round(percentile(latencies, 0.5) * 1000, 1), "ms", workload
    )
    report(
        "webhook_accept_latency_p95", round(percentile(latencies, 0.95) * 1000, 1), "ms", workload
    )

    best = 0.0
    senders = 1
    first_error = ""
    while senders <= plan.max_senders and not first_error:
        rate, errors = closed_loop(port, senders, plan.load_seconds)
        log(f"{senders} senders: {rate:.1f} webhooks/s, errors {errors[:3]}")
        if errors:
            first_error = f"first error {errors[0]} with {senders} senders"
        else:
            best = max(best, rate)
        senders *= 2
    report(
        "webhook_sustained_rate",
        round(best, 1),
        "webhooks/s",
        first_error or f"no error up to {plan.max_senders} senders, {plan.load_seconds:g} s each",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100 runs, short load steps")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    workdir = Path(tempfile.mkdtemp(prefix="flowpin-bench-runs-"))
    sink = HttpSink().start()
    try:
        with bench_cluster(workdir, NAMESPACE) as cluster:
            cluster.kubectl.run(
                "create", "secret", "generic", "hook",
                f"--from-literal=secret={SECRET}", "-n", NAMESPACE,
            )  # fmt: skip
            write_repository(workdir / "repo", sink.url, plan.wait_seconds)
            cluster.apply_local_source(NAMESPACE, "bench", workdir / "repo")
            api = cluster.api
            poll(
                lambda: [
                    (d.get("status") or {}).get("phase")
                    for d in api.list_namespaced_custom_object(
                        kinds.GROUP, kinds.VERSION, NAMESPACE, kinds.WORKFLOW_DEPLOYMENT.plural
                    )["items"]
                ],
                lambda found: found == ["Verified", "Verified"],
                timeout=120,
                what="both deployments Verified",
            )
            concurrent_runs(plan, api, cluster.operator)
            webhook_figures(plan, cluster.operator.port)
    finally:
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report("runs_bench_cores", os.cpu_count() or 0, "cores", "machine")


if __name__ == "__main__":
    main()

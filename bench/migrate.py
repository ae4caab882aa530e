"""Migration figures, with the real operator against a real control plane.

    python bench/migrate.py [--quick]

Workflow `move` 1.0.0 parks every run at a one-hour wait (`hold`); 2.0.0 renames the step to
`park` and maps it (`migrations: [{from: "<2.0.0", map: {hold: park}, set: {moved: "true"}}]`).

1. N runs (default 10,000) are created on 1.0.0 (kubernetes client, 16 threads) and polled
   until every one is Waiting at `hold`.
2. Dry-run plan: the pure planner (`model.migration.plan_migration`) over the N run objects
   as listed from the API server: seconds (best of 3). Then a WorkflowMigration with
   `dryRun: true` is created: seconds until the operator shows phase Planned with the plan.
3. 2.0.0 is committed and synced; a WorkflowMigration with the `immediate` strategy (its
   default batch size) moves the N runs: seconds from its creation until phase Succeeded,
   runs per minute, and API writes per run (the operator's `flowpin_api_writes_total` over
   that span, every kind). Every run is then checked: on 2.0.0 at `park`, one versionHistory entry.
4. The API server's own ceiling for single-object patches, measured in the same run: merge
   patches of one annotation on N distinct WorkflowRuns in a namespace the operator does not
   watch, from 8 threads (the operator's own client concurrency) and from 32; the best rate.
   The migration's rate is printed as a share of it.

`--quick`: 1,000 runs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pygit2
from common import bench_cluster, process_cpu_seconds, report
from kubernetes import client

from controller.api import kinds
from controller.model.migration import plan_migration, run_facts
from controller.model.triggers import run_object
from controller.testing.cluster import OperatorProcess, poll
from controller.testing.gitrepo import commit_all

NAMESPACE = "bench-migrate"
CEILING_NAMESPACE = "bench-ceiling"  # not watched by the operator


def log(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", flush=True)


def workflow(version: str, step: str, migrations: str = "") -> str:
    return (
        "apiVersion: flowpin.dev/v1alpha1\nkind: Workflow\nmetadata: {name: move}\nspec:\n"
        f"  version: {version}\n  steps:\n"
        f"    - {{id: {step}, type: wait, wait: {{duration: 1h}}, next: done}}\n"
        '    - {id: done, type: log, log: {message: "done"}}\n'
        f"{migrations}"
    )


MIGRATIONS = '  migrations:\n    - {from: "<2.0.0", map: {hold: park}, set: {moved: "true"}}\n'


def create_runs(api: client.CustomObjectsApi, namespace: str, count: int) -> None:
    at = datetime.datetime.now(datetime.UTC)

    def create(index: int) -> None:
        body = run_object("move", "dev", {}, None, at)
        del body["metadata"]["generateName"]
        body["metadata"]["name"] = f"move-{index:05d}"
        api.create_namespaced_custom_object(
            kinds.GROUP, kinds.VERSION, namespace, kinds.WORKFLOW_RUN.plural, body
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(count)))


def list_runs(api: client.CustomObjectsApi, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.list_namespaced_custom_object(
        kinds.GROUP, kinds.VERSION, namespace, kinds.WORKFLOW_RUN.plural
    )["items"]
    return items


def migration_status(api: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    found: dict[str, Any] = api.get_namespaced_custom_object(
        kinds.GROUP, kinds.VERSION, NAMESPACE, kinds.WORKFLOW_MIGRATION.plural, name
    )
    return found.get("status") or {}


def create_migration(api: client.CustomObjectsApi, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": kinds.API_VERSION,
        "kind": kinds.WORKFLOW_MIGRATION.kind,
        "metadata": {"name": name},
        "spec": {"workflow": "move", "environment": "dev", "toVersion": "2.0.0", **spec},
    }
    api.create_namespaced_custom_object(
        kinds.GROUP, kinds.VERSION, NAMESPACE, kinds.WORKFLOW_MIGRATION.plural, body
    )


def wait_active(api: client.CustomObjectsApi, version: str) -> None:
    def status() -> dict[str, Any]:
        try:
            found: dict[str, Any] = api.get_namespaced_custom_object(
                kinds.GROUP, kinds.VERSION, NAMESPACE, kinds.WORKFLOW_DEPLOYMENT.plural, "move.dev"
            )
        except client.ApiException:
            return {}
        return found.get("status") or {}

    poll(
        status,
        lambda s: s.get("activeVersion") == version and s.get("phase") == "Verified",
        timeout=120,
        what=f"move.dev active at {version}",
    )


def dry_run_figures(api: client.CustomObjectsApi, count: int, target: dict[str, Any]) -> None:
    objects = list_runs(api, NAMESPACE)
    source = {"1.0.0": {"steps": [{"id": "hold", "type": "wait"}, {"id": "done", "type": "log"}]}}
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        plan = plan_migration("2.0.0", target, [run_facts(o) for o in objects], source)
        timings.append(time.perf_counter() - started)
    assert plan.eligible == count, plan.as_status()
    report("migrate_dry_run_plan", round(min(timings), 3), "s", f"pure planner, {count} runs")

    started = time.monotonic()
    create_migration(api, "dry-run", dryRun=True)
    status = poll(
        lambda: migration_status(api, "dry-run"),
        lambda s: s.get("phase") == "Planned",
        timeout=300,
        interval=0.05,
        what="the dry run's plan",
    )
    elapsed = time.monotonic() - started
    assert status["plan"]["eligible"] == count, status["plan"]
    report(
        "migrate_dry_run_in_operator", round(elapsed, 2), "s", f"create -> Planned, {count} runs"
    )


def migrate_figures(api: client.CustomObjectsApi, operator: OperatorProcess, count: int) -> float:
    writes_before = operator.metric_sum("flowpin_api_writes_total")
    pid = operator.process.pid if operator.process else 0
    cpu_before = process_cpu_seconds(pid)
    started = time.monotonic()
    create_migration(api, "all-at-once", strategy="immediate")
    status = poll(
        lambda: migration_status(api, "all-at-once"),
        lambda s: s.get("phase") in ("Succeeded", "Failed"),
        timeout=3600,
        interval=0.1,
        what="the migration to finish",
    )
    elapsed = time.monotonic() - started
    cpu = process_cpu_seconds(pid) - cpu_before
    time.sleep(2)  # the run counts it caused are written within a second (debounced)
    writes = operator.metric_sum("flowpin_api_writes_total") - writes_before
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["migrated"] == count, status["progress"]
    workload = f"{count} waiting runs, immediate strategy (default batches of 500)"
    rate = count / elapsed * 60
    report("migrate_wall_time", round(elapsed, 2), "s", workload)
    report("migrate_runs_per_minute", round(rate), "runs/min", workload)
    report("migrate_operator_cpu", round(cpu, 2), "s", f"{workload}, over {elapsed:.1f} s")
    report("migrate_api_writes_per_run", round(writes / count, 3), "writes/run", workload)

    moved = list_runs(api, NAMESPACE)
    wrong = [
        o["metadata"]["name"]
        for o in moved
        if (o.get("status") or {}).get("version") != "2.0.0"
        or (o.get("status") or {}).get("currentStep") != "park"
        or len((o.get("status") or {}).get("versionHistory") or []) != 1
    ]
    report("migrate_runs_not_moved_exactly_once", len(wrong), "runs", workload)
    return rate / 60


def patch_ceiling(api: client.CustomObjectsApi, count: int) -> float:
    """Single-object merge patches per second the API server takes from this client."""
    create_runs(api, CEILING_NAMESPACE, count)
    best = 0.0
    for threads in (8, 32):

        def patch(index: int, threads: int = threads) -> None:
            api.patch_namespaced_custom_object(
                kinds.GROUP,
                kinds.VERSION,
                CEILING_NAMESPACE,
                kinds.WORKFLOW_RUN.plural,
                f"move-{index:05d}",
                {"metadata": {"annotations": {"bench": str(threads)}}},
            )

        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(patch, range(count)))
        rate = count / (time.monotonic() - started)
        report(
            f"apiserver_patch_rate_{threads}_threads",
            round(rate, 1),
            "patches/s",
            f"{count} WorkflowRuns, one merge patch each",
        )
        best = max(best, rate)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 runs")
    args = parser.parse_args()
    count = 1000 if args.quick else 10_000
    workdir = Path(tempfile.mkdtemp(prefix="flowpin-bench-migrate-"))
    try:
        with bench_cluster(workdir, NAMESPACE, (CEILING_NAMESPACE,)) as cluster:
            path = workdir / "repo"
            repo = write_repository(path)
            cluster.apply_local_source(NAMESPACE, "bench", path)
            api = cluster.api
            wait_active(api, "1.0.0")

            started = time.monotonic()
            create_runs(api, NAMESPACE, count)
            poll(
                lambda: sum(
                    1
                    for o in list_runs(api, NAMESPACE)
                    if (o.get("status") or {}).get("phase") == "Waiting"
                ),
                lambda waiting: waiting == count,
                timeout=3600,
                interval=5,
                what=f"{count} runs Waiting",
            )
            log(f"{count} runs waiting after {time.monotonic() - started:.0f} s")

            (path / "workflows/move.yaml").write_text(workflow("2.0.0", "park", MIGRATIONS))
            commit_all(repo, "move 2.0.0")
            synced = subprocess.run(
                [sys.executable, "-m", "controller.cli", "sync", "bench", "-n", NAMESPACE],
                env={**os.environ, "KUBECONFIG": str(cluster.plane.kubeconfig)},
                capture_output=True,
                text=True,
                timeout=300,
            )
            if synced.returncode != 0:
                raise RuntimeError(synced.stdout + synced.stderr)
            wait_active(api, "2.0.0")
            target = api.get_namespaced_custom_object(
                kinds.GROUP, kinds.VERSION, NAMESPACE, kinds.WORKFLOW_VERSION.plural, "move.v2.0.0"
            )["spec"]["definition"]
            dry_run_figures(api, count, target)
            per_second = migrate_figures(api, cluster.operator, count)
            ceiling = patch_ceiling(api, count)
            report(
                "apiserver_single_patch_ceiling",
                round(ceiling, 1),
                "patches/s",
                "best of 8, 32 threads",
            )
            report(
                "migrate_share_of_patch_ceiling",
                round(100 * per_second / ceiling, 1),
                "%",
                "migration runs/s over the API server's single-patch ceiling",
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report("migrate_bench_cores", os.cpu_count() or 0, "cores", "machine")


def write_repository(path: Path) -> pygit2.Repository:
    repo = pygit2.init_repository(str(path), initial_head="main")
    (path / "workflows").mkdir(parents=True)
    (path / "environments").mkdir()
    (path / "workflows/move.yaml").write_text(workflow("1.0.0", "hold"))
    (path / "environments/dev.yaml").write_text(
        "apiVersion: flowpin.dev/v1alpha1\nkind: Environment\nmetadata: {name: dev}\n"
        "spec:\n  pins: {move: latest}\n"
    )
    commit_all(repo, "move 1.0.0")
    return repo


if __name__ == "__main__":
    main()

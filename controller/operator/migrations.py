"""The migration controller: moves the in-flight runs of each WorkflowMigration.

Thin, like the other controllers: a watch keeps a cache of migrations and queues their keys;
a worker plans with the pure `model.migration.plan_migration` over the run controller's
cache, asks `model.migration.next_step` what to do, writes that status, and hands each run
of the batch to the run controller (`RunController.move`), whose worker for that run applies
the move between steps. One worker handles one migration at a time.

Crash safety: the status names a batch (`currentBatch`) before any of it moves, and counts
its outcomes in the same write that names the next batch, so after a restart the batch
under way is settled first (a run that moved says so in its own `versionHistory`): every
eligible run ends counted once as migrated, skipped or failed, and moved at most once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Set
from typing import Any

import kopf

from controller.api import kinds
from controller.model import migration as model
from controller.model.migration import MigrationPlan, Outcome
from controller.operator.kube import Kube, Obj, merge_patch, writer
from controller.operator.metrics import Metrics
from controller.operator.runs import RunController
from controller.operator.watches import watch
from controller.operator.workqueue import WorkQueue, utcnow

logger = logging.getLogger("flowpin.migrations")
Key = tuple[str, str]


class Unplannable(Exception):
    """The migration names something that does not exist (its target version)."""


class MigrationController:
    def __init__(
        self, kube: Kube, runs: RunController, metrics: Metrics | None = None, workers: int = 4
    ) -> None:
        self.kube = kube
        self.runs = runs
        self.metrics = metrics or Metrics()
        self.cache: dict[Key, Obj] = {}
        self.queue: WorkQueue[Key] = WorkQueue(self._reconcile_key, workers, "migrations")
        self._created: set[Key] = set()  # created by this process, maybe not watched yet

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()

    # ------------------------------------------------------------------ events

    def on_migration(self, event_type: str, body: Obj) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if event_type == "DELETED":
            self.cache.pop(key, None)
            return
        self.cache[key] = body
        if (body.get("status") or {}).get("phase") not in model.FINAL_PHASES:
            self.queue.enqueue([key])

    def exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.cache or (namespace, name) in self._created

    async def create(self, namespace: str, body: Obj) -> None:
        """Create a migration (the deployment controller's `inflight: migrate`); idempotent."""
        key = (namespace, str(body["metadata"]["name"]))
        if self.exists(*key):
            return
        with writer("migrations"):
            await self.kube.create(kinds.WORKFLOW_MIGRATION.kind, namespace, body)
        self._created.add(key)
        logger.info("created migration %s/%s", *key)

    # ------------------------------------------------------------------ reconcile

    async def _reconcile_key(self, key: Key) -> None:
        with writer("migrations"):
            await self.reconcile(key)

    async def reconcile(self, key: Key) -> None:
        migration = self.cache.get(key)
        if migration is None:
            return
        status: Obj = dict(migration.get("status") or {})
        generation = int(migration["metadata"].get("generation") or 0)
        if status.get("phase") in model.FINAL_PHASES:
            return
        if (
            status.get("phase") in model.WAITING_PHASES
            and status.get("observedGeneration") == generation
            and not (migration.get("spec") or {}).get("cancel")
        ):
            return  # a plan shown for approval is a snapshot: a spec change moves it on
        try:
            plan = await self._plan(migration)
        except Unplannable as problem:
            await self._write(
                key, migration, model.fail(status, str(problem), generation, utcnow())
            )
            return
        handled: set[str] = set()
        if status.get("currentBatch"):
            # A batch cut short (a crash, a lost lease): settle it before anything else.
            outcomes = await self._settle(key, plan, list(status["currentBatch"]))
            status = model.finish_batch(status, outcomes, utcnow())
            handled |= _counted(outcomes)
        while True:
            migration = self.cache.get(key) or migration  # the spec may have changed
            generation = int(migration["metadata"].get("generation") or 0)
            step = model.next_step(
                migration.get("spec") or {}, status, plan, handled, generation, utcnow()
            )
            status = await self._write(key, migration, step.status)
            if step.wake_at is not None:
                self.queue.wake_at(step.wake_at, key)
            if not step.batch:
                return
            outcomes = await self._move(key, plan, step.batch)
            status = model.finish_batch(status, outcomes, utcnow())
            handled |= _counted(outcomes)
            stale = len(outcomes) > len(_counted(outcomes))
            if stale or not _still_ready(plan, handled | model.failed_runs(status)):
                plan, handled = await self._plan(migration), set()

    async def _plan(self, migration: Obj) -> MigrationPlan:
        namespace = migration["metadata"]["namespace"]
        spec = migration.get("spec") or {}
        workflow, environment = str(spec.get("workflow")), str(spec.get("environment"))
        target_version = str(spec.get("toVersion"))
        target = await self.runs.definition(namespace, workflow, target_version)
        if target is None:
            raise Unplannable(
                f"{workflow} has no version {target_version} "
                f"(no WorkflowVersion {kinds.version_object_name(workflow, target_version)})"
            )
        only = spec.get("fromVersion")
        runs = [
            run
            for run in self.runs.runs_of(namespace, workflow, environment)
            if not only or (run.get("status") or {}).get("version") == only
        ]
        versions = {str((r.get("status") or {}).get("version") or "") for r in runs}
        sources: dict[str, Any] = {}
        for version in sorted(versions - {"", target_version}):
            definition = await self.runs.definition(namespace, workflow, version)
            if definition is not None:
                sources[version] = definition
        facts = [
            model.run_facts(run, in_flight=self.runs.busy((namespace, run["metadata"]["name"])))
            for run in runs
        ]
        return model.plan_migration(target_version, target, facts, sources)

    async def _move(
        self, key: Key, plan: MigrationPlan, batch: Iterable[str]
    ) -> dict[str, tuple[Outcome, str]]:
        namespace, name = key
        items = [plan.by_run[run] for run in batch]
        results = await asyncio.gather(
            *(self.runs.move((namespace, item.run), item, name) for item in items)
        )
        for outcome, _ in results:
            self.metrics.inc("flowpin_migration_runs_total", outcome=outcome)
        return {item.run: result for item, result in zip(items, results, strict=True)}

    async def _settle(
        self, key: Key, plan: MigrationPlan, batch: list[str]
    ) -> dict[str, tuple[Outcome, str]]:
        """The outcomes of an interrupted batch: the runs the plan still moves are moved (or
        found moved), the others counted from their own status. A run the plan defers (its
        worker is busy, as every worker is just after a restart) is moved too: its worker
        applies the move between steps."""
        namespace, name = key
        movable = [run for run in batch if run in plan.by_run]
        outcomes = await self._move(key, plan, movable)
        for run in batch:
            if run not in outcomes:
                found = self.runs.cache.get((namespace, run))
                outcomes[run] = model.settled_outcome(
                    None if found is None else found.get("status") or {},
                    name,
                    plan.target_version,
                )
        return outcomes

    async def _write(self, key: Key, migration: Obj, status: Obj) -> Obj:
        current = migration.get("status") or {}
        if status != current:
            await self.kube.patch_status(
                kinds.WORKFLOW_MIGRATION.kind, key[0], key[1], merge_patch(current, status)
            )
            migration["status"] = status  # until the watch brings it
        return status


def _counted(outcomes: dict[str, tuple[Outcome, str]]) -> set[str]:
    return {run for run, (outcome, _) in outcomes.items() if outcome != "stale"}


def _still_ready(plan: MigrationPlan, done: Set[str]) -> bool:
    return any(run not in done for run in plan.ready)


def register(handlers: kopf.OperatorRegistry, controller: MigrationController) -> None:
    watch(
        handlers,
        kinds.WORKFLOW_MIGRATION,
        "cache-workflowmigration",
        controller.on_migration,
        controller.start,
    )

"""The run controller: pins each run to a version, advances it with the engine, holds it
until its outcome is counted, and deletes it after its environment's TTL.

Built like the deployment controller: kopf `on.event` feeds a cache and a keyed work queue
(`workqueue.py`), and a bounded pool of workers advances runs, one worker per run at a
time. Every write carries the resourceVersion it was computed from, so a stale writer (a
replica that has just lost the lease) is refused by the API server instead of overwriting
newer progress. Events caused by our own writes are recognised and not queued again.

Migrations (`migrations.py`) hand a run's move to this controller (`move`): the run's own
worker applies it before it advances the run, so a move never lands in the middle of a step
(an http call under way) and never races the engine's write.

Counting (`model/runstats.py`): live runs are counted from the cache; a run's finalizer
holds it until its outcome is in its version's ledger, so counts survive restarts and
deletions, nothing counted twice.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from controller.api import kinds
from controller.engine.breaker import CircuitBreakers
from controller.engine.runner import advance
from controller.engine.steps import HttpCaller, RunContext
from controller.model import canary, runstats
from controller.model import runs as machine
from controller.model.migration import MigrationRefused, Outcome, RunMove, apply_migration
from controller.operator.kube import Kube, Obj, merge_patch, writer
from controller.operator.metrics import Metrics
from controller.operator.watches import watch
from controller.operator.workqueue import WorkQueue, utcnow

logger = logging.getLogger("flowpin.runs")
Key = tuple[str, str]
StatsKey = tuple[str, str, str]  # (namespace, workflow, version)
Lookup = Callable[[str, str], Obj | None]

DEFAULT_TTL_SECONDS = 7 * 24 * 3600
# Triggered runs guard against replays by their names while they exist: twice the webhook
# timestamp skew (a sender whose clock runs ahead), more than the default schedule deadline.
TRIGGERED_MIN_TTL_SECONDS = 600
STATS_DEBOUNCE = 1.0  # seconds: many runs finishing at once cost one write per version
MOVE_TIMEOUT = 60.0  # seconds a migration waits for a run's worker before planning it again
MoveResult = tuple[Outcome, str]


class RunController:
    def __init__(
        self,
        kube: Kube,
        http: HttpCaller,
        deployment_of: Lookup,
        environment_of: Lookup,
        metrics: Metrics | None = None,
        workers: int = 64,
    ) -> None:
        self.kube = kube
        self.http = http
        self.deployment_of = deployment_of
        self.environment_of = environment_of
        self.metrics = metrics or Metrics()
        self.breakers = CircuitBreakers()
        self.cache: dict[Key, Obj] = {}
        self.queue: WorkQueue[Key] = WorkQueue(self.reconcile, workers, "runs")
        # Uids of runs whose deletion this process saw: only those leave a ledger's `recent`
        # (a run merely absent from a cache still filling up may yet be folded again).
        self._gone: collections.deque[str] = collections.deque(maxlen=10_000)
        self._definitions: dict[Key, Obj] = {}  # versions are immutable: cached for good
        self._stats_dirty: set[StatsKey] = set()
        self._deployments_dirty: set[tuple[str, str, str]] = set()  # (ns, workflow, env)
        self._stats_task: asyncio.Task[None] | None = None
        self.on_counts_changed: Callable[[str, str, str], None] = lambda ns, wf, env: None
        # Moves asked by migrations, applied by the run's worker: (item, migration, result).
        self._moves: dict[Key, tuple[RunMove, str, asyncio.Future[MoveResult]]] = {}

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        if self._stats_task is not None:
            self._stats_task.cancel()

    # ------------------------------------------------------------------ events

    def on_run(self, event_type: str, body: Obj) -> None:
        key = _key(body)
        previous = self.cache.get(key)
        if event_type == "DELETED":
            self.cache.pop(key, None)
            self._gone.append(str(body["metadata"].get("uid")))
            self._counts_changed(body)
            return
        if previous is not None and not _newer(body, previous):
            return  # an echo of our own write, or an event older than what we hold
        self.cache[key] = body
        if _phase(previous) != _phase(body) or _version(previous) != _version(body):
            self._counts_changed(body)
            if previous is not None:
                self._counts_changed(previous)
        self.queue.enqueue([key])

    def counts_by_version(
        self, namespace: str, workflow: str, environment: str, ledgers: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """Run counts per version in one deployment: its ledger plus its live runs."""
        live: dict[str, list[Obj]] = {}
        for run in self.runs_of(namespace, workflow, environment):
            version = _version(run)
            if version:
                live.setdefault(version, []).append(run)
        return {
            version: runstats.counts(dict(ledgers.get(version) or {}), live.get(version, []))
            for version in sorted(set(live) | set(ledgers))
        }

    async def cancel_runs(
        self, namespace: str, workflow: str, environment: str, versions: Iterable[str]
    ) -> int:
        """Cancel the unfinished runs of these versions (`inflight: cancel`)."""
        doomed = set(versions)
        cancelled = 0
        for run in self.runs_of(namespace, workflow, environment):
            if (
                _version(run) in doomed
                and not (run.get("spec") or {}).get("cancel")
                and not machine.is_terminal(run.get("status") or {})
            ):
                name = run["metadata"]["name"]
                await self.kube.patch_spec(
                    kinds.WORKFLOW_RUN.kind, namespace, name, {"cancel": True}
                )
                cancelled += 1
        return cancelled

    def runs_of(self, namespace: str, workflow: str, environment: str) -> list[Obj]:
        """The cached runs of one workflow in one environment."""
        return [
            run
            for (ns, _), run in self.cache.items()
            if ns == namespace
            and (run.get("spec") or {}).get("workflow") == workflow
            and (run.get("spec") or {}).get("environment") == environment
        ]

    def canary_runs(
        self, namespace: str, workflow: str, environment: str, version: str
    ) -> tuple[canary.CanaryRun, ...]:
        """(phase, finishedAt) of the runs of one version in one deployment."""
        return tuple(
            (
                str((run.get("status") or {}).get("phase") or "Pending"),
                _finished_at(run),
            )
            for run in self.runs_of(namespace, workflow, environment)
            if _version(run) == version
        )

    def busy(self, key: Key) -> bool:
        """Whether a worker is executing a step of this run right now."""
        return self.queue.busy(key)

    async def move(self, key: Key, item: RunMove, migration: str) -> MoveResult:
        """Migrate one run, through its own worker (see the module docstring). `stale` when
        the run changed since it was planned or its worker did not get to it in time: the
        migration plans it again."""
        if key not in self.cache:
            return "skipped", "the run no longer exists"
        future: asyncio.Future[MoveResult] = asyncio.get_running_loop().create_future()
        superseded = self._moves.get(key)
        if superseded is not None and not superseded[2].done():
            superseded[2].set_result(("stale", "superseded by a newer move"))
        self._moves[key] = (item, migration, future)
        self.queue.enqueue([key])
        try:
            return await asyncio.wait_for(asyncio.shield(future), MOVE_TIMEOUT)
        except TimeoutError:
            if self._moves.get(key, (None, None, None))[2] is future:
                del self._moves[key]
            return "stale", "the run's worker did not get to it in time"

    async def _apply_move(self, key: Key, run: Obj, item: RunMove, migration: str) -> MoveResult:
        try:
            moved = apply_migration(run.get("status") or {}, item, utcnow(), migration)
        except MigrationRefused as refused:
            return refused.outcome, refused.reason
        if moved is None:
            return "migrated", ""  # moved by this migration before a restart
        if await self._save(key, run, moved) is None:
            return "stale", "the run changed while it was being moved"
        self.metrics.inc("flowpin_runs_migrated_total")
        return "migrated", ""

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, key: Key) -> None:
        with writer("runs"):
            await self._reconcile(key)

    async def _reconcile(self, key: Key) -> None:
        run = self.cache.get(key)
        if run is None:
            return
        meta = run["metadata"]
        if meta.get("deletionTimestamp"):
            await self._release(run)
            return
        if kinds.FINALIZER_RUN_COUNTS not in (meta.get("finalizers") or []):
            finalizers = [*(meta.get("finalizers") or []), kinds.FINALIZER_RUN_COUNTS]
            updated = await self.kube.patch_metadata_at(
                kinds.WORKFLOW_RUN.kind,
                key[0],
                key[1],
                {"finalizers": finalizers},
                meta["resourceVersion"],
            )
            if updated is None:
                await self._reload(key)
                return
            self._remember(key, updated)
            run = updated
        pending = self._moves.pop(key, None)
        if pending is not None:
            item, migration, result = pending
            outcome: MoveResult = ("stale", "the move was interrupted")
            try:
                outcome = await self._apply_move(key, run, item, migration)
            finally:
                if not result.done():
                    result.set_result(outcome)
            current = self.cache.get(key)
            if current is None:
                return
            run = current  # as moved (or as reloaded after a conflict)
        status: Obj = run.get("status") or {}
        spec: Obj = run.get("spec") or {}
        now = utcnow()
        if machine.is_terminal(status):
            await self._finished(key, run)
            return
        if spec.get("cancel"):
            await self._save(key, run, machine.cancel(status, now))
            return
        if status.get("phase") in (None, "", "Pending"):
            started = await self._start(run, now)
            if machine.is_terminal(started):
                await self._save(key, run, started)
                return
            status = started
        definition = await self.definition(key[0], str(spec["workflow"]), str(status["version"]))
        if definition is None:
            message = f"version {status['version']} of {spec['workflow']} no longer exists"
            await self._save(key, run, machine.finish(status, "Failed", message, now))
            return
        try:
            deadline = machine.deadline(definition, status)
        except (ValueError, OverflowError) as error:  # a timeout too large for the calendar
            await self._save(
                key, run, machine.finish(status, "Failed", f"settings.timeout: {error}", now)
            )
            return
        if deadline is not None and now >= deadline:
            await self._save(key, run, machine.time_out(definition, status, now))
            return
        wake = machine.parse_time(status.get("wakeAt"))
        if wake is not None and wake > now:
            if status is not run.get("status"):
                await self._save(key, run, status)
            self.queue.wake_at(min(wake, deadline or wake), key)
            return
        context = RunContext(
            name=key[1],
            uid=str(meta.get("uid", "")),
            workflow=str(spec["workflow"]),
            environment=str(spec["environment"]),
            version=str(status["version"]),
            inputs=spec.get("inputs") or {},
        )
        try:
            advanced = await advance(definition, status, context, self.http, self.breakers)
        except ApiException:
            raise
        except Exception as error:  # an input the language allows but the engine cannot handle
            logger.exception("run %s/%s at step %s", *key, status.get("currentStep"))
            message = f"flowpin could not run step {status.get('currentStep')}: {error!r}"
            await self._save(key, run, machine.finish(status, "Failed", message, now))
            return
        steps_before = len(status.get("steps") or [])
        self.metrics.inc(
            "flowpin_run_steps_total", max(len(advanced.get("steps") or []) - steps_before, 0)
        )
        saved = await self._save(key, run, advanced)
        if saved is None or machine.is_terminal(advanced):
            return
        wake = machine.parse_time(advanced.get("wakeAt"))
        if wake is not None:
            self.queue.wake_at(min(wake, deadline or wake), key)
        else:
            self.queue.enqueue([key])  # more steps: back of the queue, fair to other runs

    async def _start(self, run: Obj, now: datetime.datetime) -> Obj:
        """Assign the version (requested, or the environment's active one) and check the
        inputs; a run that cannot start fails with the reason."""
        spec = run.get("spec") or {}
        status = copy.deepcopy(run.get("status") or {})
        workflow, environment = str(spec.get("workflow")), str(spec.get("environment"))
        version = spec.get("version")
        trigger = (spec.get("trigger") or {}).get("type")
        reason = "requested in spec.version"
        if trigger in ("webhook", "schedule"):  # the version the trigger chose for it
            found = self.deployment_of(
                run["metadata"]["namespace"], kinds.deployment_object_name(workflow, environment)
            )
            role = (
                "canary"
                if (((found or {}).get("status") or {}).get("canary") or {}).get("version")
                == version
                else "active"
            )
            reason = f"{role} in {environment} when the {trigger} trigger fired"
        if not version:
            name = kinds.deployment_object_name(workflow, environment)
            namespace = run["metadata"]["namespace"]
            # The cache may still be filling up after a restart: ask before failing the run.
            deployment = self.deployment_of(namespace, name) or await self.kube.get(
                kinds.WORKFLOW_DEPLOYMENT.kind, namespace, name
            )
            found = (deployment or {}).get("status") or {}
            # A canary in progress takes its share of new runs, by the run's name.
            version, reason = canary.assign(
                str(run["metadata"]["name"]),
                found.get("activeVersion"),
                found.get("canary") or {},
                environment,
            )
            if not version:
                message = (
                    f"{workflow} has no active version in environment {environment}; "
                    "pin one in git and let it become active, or set spec.version"
                )
                status.setdefault("startedAt", machine.rfc3339(now))
                return machine.finish(status, "Failed", message, now)
        definition = await self.definition(run["metadata"]["namespace"], workflow, str(version))
        if definition is None:
            missing = kinds.version_object_name(workflow, str(version))
            message = f"{workflow} has no version {version} (no WorkflowVersion {missing})"
            status.update(version=str(version))
            status.setdefault("startedAt", machine.rfc3339(now))
            return machine.finish(status, "Failed", message, now)
        started = machine.start(status, str(version), reason, definition, now)
        errors = machine.input_errors(definition.get("inputs"), spec.get("inputs") or {})
        if errors:
            failed = machine.finish(started, "Failed", "invalid inputs: " + "; ".join(errors), now)
            failed.pop("currentStep", None)  # nothing to resume: retry-run cannot fix inputs
            return failed
        return started

    async def _finished(self, key: Key, run: Obj) -> None:
        """A finished run: resume it when `flowpin retry-run` asked, else delete it when its
        TTL has passed (its finalizer keeps it until it is counted)."""
        meta, status = run["metadata"], run.get("status") or {}
        asked = (meta.get("annotations") or {}).get(kinds.ANNOTATION_RETRY_RUN)
        if asked and asked != status.get("lastHandledRetryAt"):
            resumed = machine.resume_failed(status, utcnow())
            if resumed is None:
                resumed = {**status, "lastHandledRetryAt": asked}
            resumed["lastHandledRetryAt"] = asked
            if await self._save(key, run, resumed) is not None and not machine.is_terminal(resumed):
                self.queue.enqueue([key])
            return
        environment = self.environment_of(key[0], str((run.get("spec") or {}).get("environment")))
        policy = ((environment or {}).get("spec") or {}).get("runs") or {}
        ttl = int(policy.get("ttlSecondsAfterFinished", DEFAULT_TTL_SECONDS))
        if ((run.get("spec") or {}).get("trigger") or {}).get("type") in ("webhook", "schedule"):
            # Their names guard against replays and double fires only while they exist.
            ttl = max(ttl, TRIGGERED_MIN_TTL_SECONDS)
        due = runstats.expired(status, ttl, utcnow())
        if due is None:
            return
        if due <= utcnow():
            await self.kube.delete(kinds.WORKFLOW_RUN.kind, key[0], key[1])
        else:
            self.queue.wake_at(due, key)

    async def _release(self, run: Obj) -> None:
        """Fold the deleted run into its version's ledger, then let it go."""
        meta = run["metadata"]
        key = _key(run)
        finalizers = meta.get("finalizers") or []
        if kinds.FINALIZER_RUN_COUNTS not in finalizers:
            return
        version = _version(run)
        workflow = str((run.get("spec") or {}).get("workflow"))
        if version:
            await self._fold(key[0], workflow, version, run)
            await self._fold_deployment(key[0], workflow, version, run)
        remaining = [f for f in finalizers if f != kinds.FINALIZER_RUN_COUNTS]
        updated = await self.kube.patch_metadata_at(
            kinds.WORKFLOW_RUN.kind,
            key[0],
            key[1],
            {"finalizers": remaining},
            meta["resourceVersion"],
        )
        if updated is None:
            await self._reload(key)

    async def _fold(self, namespace: str, workflow: str, version: str, run: Obj) -> None:
        name = kinds.version_object_name(workflow, version)
        existing = self._uids(namespace)
        for _ in range(10):  # optimistic concurrency: re-read on conflict
            obj = await self.kube.get(kinds.WORKFLOW_VERSION.kind, namespace, name)
            if obj is None:
                return  # the version is gone: nothing to count into
            ledger = (obj.get("status") or {}).get("runLedger") or {}
            folded = runstats.fold(ledger, run, existing)
            if folded is None:
                return
            status = {
                "runLedger": folded,
                "runs": runstats.counts(folded, self._live(namespace, workflow, version)),
            }
            written = await self.kube.patch_status_at(
                kinds.WORKFLOW_VERSION.kind,
                namespace,
                name,
                status,
                obj["metadata"]["resourceVersion"],
            )
            if written is not None:
                return
        raise RuntimeError(f"could not fold run {run['metadata']['name']} into {name}: conflicts")

    async def _fold_deployment(self, namespace: str, workflow: str, version: str, run: Obj) -> None:
        """The same fold into the deployment's ledger of that version."""
        environment = str((run.get("spec") or {}).get("environment"))
        name = kinds.deployment_object_name(workflow, environment)
        existing = self._uids(namespace)
        for _ in range(10):
            obj = await self.kube.get(kinds.WORKFLOW_DEPLOYMENT.kind, namespace, name)
            if obj is None:
                return
            ledgers = (obj.get("status") or {}).get("runLedger") or {}
            folded = runstats.fold(ledgers.get(version) or {}, run, existing)
            if folded is None:
                return
            written = await self.kube.patch_status_at(
                kinds.WORKFLOW_DEPLOYMENT.kind,
                namespace,
                name,
                {"runLedger": {version: folded}},
                obj["metadata"]["resourceVersion"],
            )
            if written is not None:
                return
        raise RuntimeError(f"could not fold run {run['metadata']['name']} into {name}: conflicts")

    # ------------------------------------------------------------------ statistics

    def _counts_changed(self, run: Obj) -> None:
        version = _version(run)
        spec = run.get("spec") or {}
        if not version:
            return
        namespace, workflow = run["metadata"]["namespace"], str(spec.get("workflow"))
        self._stats_dirty.add((namespace, workflow, version))
        self._deployments_dirty.add((namespace, workflow, str(spec.get("environment"))))
        if self._stats_task is None or self._stats_task.done():
            self._stats_task = asyncio.get_running_loop().create_task(self._flush_stats())

    async def _flush_stats(self) -> None:
        """Every STATS_DEBOUNCE while counts keep changing: tell the deployments, then write
        the versions' counts; ends when a round finds nothing to do."""
        with writer("runs"):
            await self._flush_stats_rounds()

    async def _flush_stats_rounds(self) -> None:
        while True:
            await asyncio.sleep(STATS_DEBOUNCE)
            if not (self._stats_dirty or self._deployments_dirty):
                return
            deployments, self._deployments_dirty = self._deployments_dirty, set()
            for namespace, workflow, environment in sorted(deployments):
                self.on_counts_changed(namespace, workflow, environment)
            batch, self._stats_dirty = self._stats_dirty, set()
            for namespace, workflow, version in sorted(batch):
                try:
                    await self._write_counts(namespace, workflow, version)
                except Exception:
                    logger.exception("run counts of %s %s", workflow, version)
                    self._stats_dirty.add((namespace, workflow, version))

    async def _write_counts(self, namespace: str, workflow: str, version: str) -> None:
        name = kinds.version_object_name(workflow, version)
        for _ in range(10):
            obj = await self.kube.get(kinds.WORKFLOW_VERSION.kind, namespace, name)
            if obj is None:
                return
            status = obj.get("status") or {}
            wanted = runstats.counts(
                status.get("runLedger") or {}, self._live(namespace, workflow, version)
            )
            if status.get("runs") == wanted:
                return
            written = await self.kube.patch_status_at(
                kinds.WORKFLOW_VERSION.kind,
                namespace,
                name,
                {"runs": wanted},
                obj["metadata"]["resourceVersion"],
            )
            if written is not None:
                return

    def _live(self, namespace: str, workflow: str, version: str) -> Iterable[Obj]:
        return [
            run
            for (ns, _), run in self.cache.items()
            if ns == namespace
            and (run.get("spec") or {}).get("workflow") == workflow
            and _version(run) == version
        ]

    def _uids(self, namespace: str) -> set[str]:
        return {
            str(run["metadata"].get("uid"))
            for (ns, _), run in self.cache.items()
            if ns == namespace
        }

    # ------------------------------------------------------------------ I/O helpers

    async def definition(self, namespace: str, workflow: str, version: str) -> Obj | None:
        key = (namespace, kinds.version_object_name(workflow, version))
        if key not in self._definitions:
            obj = await self.kube.get(kinds.WORKFLOW_VERSION.kind, *key)
            if obj is None:
                return None
            self._definitions[key] = (obj.get("spec") or {}).get("definition") or {}
        return self._definitions[key]

    async def _save(self, key: Key, run: Obj, status: Obj) -> Obj | None:
        """Write the status computed from `run`; None when the run changed meanwhile (it is
        reloaded and queued again)."""
        current = run.get("status") or {}
        if status == current:
            return run
        status = machine.with_conditions(
            status, int(run["metadata"].get("generation") or 0), utcnow()
        )
        patch = merge_patch(current, status)
        updated = None
        for delay in (0.5, 1.0, 2.0, 0.0):  # an API hiccup must not repeat the step's effect
            try:
                updated = await self.kube.patch_status_at(
                    kinds.WORKFLOW_RUN.kind,
                    key[0],
                    key[1],
                    patch,
                    run["metadata"]["resourceVersion"],
                )
                break
            except ApiException:
                if not delay:
                    raise
                await asyncio.sleep(delay)
        if updated is None:
            await self._reload(key)
            return None
        self._remember(key, updated)
        if machine.is_terminal(status) and not machine.is_terminal(current):
            self.metrics.inc("flowpin_runs_finished_total", phase=str(status.get("phase")))
            await self._finished(key, updated)
        return updated

    def _remember(self, key: Key, updated: Obj) -> None:
        previous = self.cache.get(key)
        if previous is not None and not _newer(updated, previous):
            return
        self.cache[key] = updated
        if _phase(previous) != _phase(updated) or _version(previous) != _version(updated):
            self._counts_changed(updated)
            if previous is not None:  # a move: the version it left counts one run fewer
                self._counts_changed(previous)

    async def _reload(self, key: Key) -> None:
        """After a refused write: the run changed meanwhile, or a write of ours landed though
        its answer was lost (an API server going away mid-request). Cached as any newer state
        is, counts included: the landed write's own watch event is an echo by then."""
        fresh = await self.kube.get(kinds.WORKFLOW_RUN.kind, *key)
        if fresh is None:
            self.cache.pop(key, None)
            return
        self._remember(key, fresh)
        self.queue.enqueue([key])


def _key(body: Obj) -> Key:
    return (body["metadata"]["namespace"], body["metadata"]["name"])


def _newer(body: Obj, than: Obj) -> bool:
    """Whether `body` is a later state of the object than `than`. resourceVersions are
    opaque to clients in general; etcd's are increasing integers, which this relies on,
    and a non-integer one counts as newer (never ignore what cannot be compared)."""
    mine, theirs = body["metadata"].get("resourceVersion"), than["metadata"].get("resourceVersion")
    if str(mine).isdigit() and str(theirs).isdigit():
        return int(str(mine)) > int(str(theirs))
    return bool(mine != theirs)


def _finished_at(run: Obj) -> datetime.datetime | None:
    try:
        return machine.parse_time((run.get("status") or {}).get("finishedAt"))
    except ValueError:
        return None


def _phase(run: Obj | None) -> str | None:
    return ((run or {}).get("status") or {}).get("phase")


def _version(run: Obj | None) -> str | None:
    value = ((run or {}).get("status") or {}).get("version")
    return str(value) if value else None


def register(handlers: kopf.OperatorRegistry, controller: RunController) -> None:
    watch(handlers, kinds.WORKFLOW_RUN, "cache-workflowrun", controller.on_run, controller.start)

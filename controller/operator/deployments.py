"""The deployment controller: converges each WorkflowDeployment to the version git pins.

Built the way controller-runtime controllers are: watch events (kopf `on.event`, which
writes nothing) keep an in-memory cache of deployments, environments and versions and put
the keys of affected deployments on a queue; workers reconcile one key at a time by calling
the pure `model.deployment.decide` and writing the status only when it changed. A gate that
opens at a known time (soak, window) schedules a wake-up for that moment; a gate that opens
when something else changes (upstream verification, approval, a new version) is re-checked
by the event that changes it. Nothing polls.

A deployment whose version is not in the cache yet (the watches of different kinds race)
reads that version from the API server once (a GET, no write) instead of waiting: the source
sync creates a version, and writes its status, before any deployment that refers to it.
`WorkflowVersion.status.environments` is written after the deployments have settled: once
the work queue has drained and no deployment changed for `ENVIRONMENTS_QUIET`, so one commit
moving a workflow in several environments writes each of its versions once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import kopf

from controller.api import kinds
from controller.model.canary import CanaryRun
from controller.model.deployment import (
    ANNOTATION_HOLD,
    DeploymentInputs,
    Transition,
    decide,
    total_counts,
    verified_at,
    version_entries,
    versions_to_cancel,
)
from controller.model.environment_status import environment_status
from controller.model.gates import VersionInfo, rfc3339, version_info
from controller.model.migration import automatic_migration
from controller.operator.kube import Kube, Obj, merge_patch, writer
from controller.operator.metrics import Metrics
from controller.operator.watches import watch
from controller.operator.workqueue import WorkQueue

logger = logging.getLogger("flowpin.deployments")
audit = logging.getLogger("flowpin.audit")
Key = tuple[str, str]  # (namespace, name)
NoteWriter = Callable[[str, str, str, dict[str, Any]], Coroutine[Any, Any, None]]
RunCanceller = Callable[[str, str, str, list[str]], Coroutine[Any, Any, int]]
RunCounter = Callable[[str, str, str, dict[str, Any]], dict[str, dict[str, Any]]]
MigrationCreator = Callable[[str, Obj], Coroutine[Any, Any, None]]
CanaryRuns = Callable[[str, str, str, str], tuple[CanaryRun, ...]]


async def _create_nothing(namespace: str, body: Obj) -> None:
    return None


async def _cancel_nothing(
    namespace: str, workflow: str, environment: str, versions: list[str]
) -> int:
    return 0


class Cache:
    """The last seen body of every object of the kinds the controller reads."""

    def __init__(self) -> None:
        self.deployments: dict[Key, Obj] = {}
        self.environments: dict[Key, Obj] = {}
        self.versions: dict[Key, Obj] = {}

    def deployments_where(self, namespace: str, **spec: str) -> list[Key]:
        return [
            key
            for key, obj in self.deployments.items()
            if key[0] == namespace
            and all((obj.get("spec") or {}).get(k) == v for k, v in spec.items())
        ]


class DeploymentController:
    def __init__(
        self,
        kube: Kube,
        metrics: Metrics | None = None,
        workers: int = 4,
        notes: NoteWriter | None = None,
    ) -> None:
        self.kube = kube
        self.notes = notes
        self.metrics = metrics or Metrics()
        self.cache = Cache()
        # Set by the run controller: run counts per version of (namespace, workflow,
        # environment) given the deployment's ledger, and how to cancel the runs of some
        # versions (`inflight: cancel`).
        self.run_counts: RunCounter = lambda ns, wf, env, ledgers: {}
        self.cancel_runs: RunCanceller = _cancel_nothing
        # Set by the migration controller: create a WorkflowMigration (`inflight: migrate`).
        self.create_migration: MigrationCreator = _create_nothing
        # Set by the run controller: (phase, finishedAt) of the runs of one version in one
        # deployment, the canary analysis's evidence.
        self.canary_runs: CanaryRuns = lambda ns, wf, env, version: ()
        self.queue: WorkQueue[Key] = WorkQueue(self._reconcile_key, workers, "deployments")
        self._notes_in_flight: set[asyncio.Task[None]] = set()
        self._environments_due: set[tuple[str, str]] = set()  # (namespace, workflow)
        self._statuses_due: set[tuple[str, str]] = set()  # (namespace, environment)
        self._environments_flush: asyncio.Task[None] | None = None
        self._last_activity = 0.0  # loop time of the last deployment event or reconcile
        if kube.metrics is None:
            kube.metrics = self.metrics  # the breakdown of writes by kind

    # ------------------------------------------------------------------ plumbing

    def enqueue(self, keys: Iterable[Key]) -> None:
        self._touch()
        self.queue.enqueue(keys)

    def wake_at(self, moment: datetime.datetime, key: Key) -> None:
        self.queue.wake_at(moment, key)

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        if self._environments_flush is not None:
            self._environments_flush.cancel()
            await asyncio.gather(self._environments_flush, return_exceptions=True)
        self._environments_flush = None

    async def _reconcile_key(self, key: Key) -> None:
        try:
            with writer("deployments"):
                await self.reconcile(key)
        finally:
            self._touch()

    # ------------------------------------------------------------------ events

    def on_deployment(self, event_type: str, body: Obj) -> None:
        self._touch()
        key = _key(body)
        if event_type == "DELETED":
            self.cache.deployments.pop(key, None)
            self._schedule_environment_status(key[0], (body.get("spec") or {}).get("environment"))
            return
        previous = self.cache.deployments.get(key)
        self.cache.deployments[key] = body
        if not _same_content(previous, body):  # not the echo of our own status write
            self.enqueue([key])
        # A change of what is verified here may open the upstream gate downstream.
        if _verified_changed((previous or {}).get("status") or {}, body.get("status") or {}):
            self.enqueue(self._downstream(body))

    def _downstream(self, deployment: Obj) -> list[Key]:
        namespace = deployment["metadata"]["namespace"]
        spec = deployment.get("spec") or {}
        keys = []
        for (ns, env_name), env in self.cache.environments.items():
            promotion = (env.get("spec") or {}).get("promotion") or {}
            if ns == namespace and promotion.get("from") == spec.get("environment"):
                keys.append((ns, kinds.deployment_object_name(str(spec.get("workflow")), env_name)))
        return keys

    def on_environment(self, event_type: str, body: Obj) -> None:
        key = _key(body)
        if event_type == "DELETED":
            self.cache.environments.pop(key, None)
        else:
            self.cache.environments[key] = body
            self._schedule_environment_status(*key)  # nothing is written if nothing changed
        self.enqueue(self.cache.deployments_where(key[0], environment=key[1]))
        # Environments that promote from this one: their upstream gate may open or close.
        for (ns, name), other in list(self.cache.environments.items()):
            promotion = (other.get("spec") or {}).get("promotion") or {}
            if ns == key[0] and promotion.get("from") == key[1]:
                self.enqueue(self.cache.deployments_where(ns, environment=name))

    def on_version(self, event_type: str, body: Obj) -> None:
        key = _key(body)
        previous = self.cache.versions.get(key)
        if event_type == "DELETED":
            self.cache.versions.pop(key, None)
        else:
            self.cache.versions[key] = body
        if event_type != "DELETED" and _same_facts(previous, body):
            return  # its run counts or environments changed: nothing a deployment decides on
        workflow = (body.get("spec") or {}).get("workflow")
        if workflow:
            self.enqueue(self.cache.deployments_where(key[0], workflow=str(workflow)))

    # ------------------------------------------------------------------ reconcile

    async def _environment_exists(self, namespace: str, name: str) -> bool:
        """From the cache; else from the API server (a read, no write): at start-up or in a
        sync, a deployment may be reconciled before its upstream's watch event arrives, and
        must not be called Stalled for that."""
        if (namespace, name) in self.cache.environments:
            return True
        obj = await self.kube.get("Environment", namespace, name)
        if obj is not None:
            self.cache.environments.setdefault((namespace, name), obj)
        return obj is not None

    async def _version_info(
        self, namespace: str, workflow: str, version: str | None
    ) -> VersionInfo | None:
        """What the gates need of a version: its `spec.facts` (written with its create); for
        a version created before facts, its status, and None while it has none yet (its
        watch event comes back here)."""
        if not version:
            return VersionInfo(False)
        key = (namespace, kinds.version_object_name(workflow, version))
        obj = self.cache.versions.get(key)
        if obj is None:
            # Not seen by the watch yet, or not there: ask the API server (a read, no write).
            obj = await self.kube.get("WorkflowVersion", *key)
            if obj is None:
                return VersionInfo(False)
            # The watch brings it too; until then (and never over what it brought) keep it.
            obj = self.cache.versions.setdefault(key, obj)
        return version_info(obj)

    async def reconcile(self, key: Key) -> None:
        deployment = self.cache.deployments.get(key)
        if deployment is None:
            return
        namespace = key[0]
        meta = deployment["metadata"]
        spec = deployment.get("spec") or {}
        workflow, environment = str(spec["workflow"]), str(spec["environment"])
        env = self.cache.environments.get((namespace, environment))
        if env is None:
            # Watches of different kinds race: the Environment's event enqueues this
            # deployment again. Deciding without its gates would skip them.
            return
        env_spec = env.get("spec") or {}
        info = await self._version_info(namespace, workflow, str(spec["version"]))
        annotations = meta.get("annotations") or {}
        hold = annotations.get(ANNOTATION_HOLD)
        hold_info = await self._version_info(namespace, workflow, hold) if hold else None
        if info is None or (hold and hold_info is None):
            return  # a version without its status yet: its status event enqueues this again
        upstream_name = (env_spec.get("promotion") or {}).get("from")
        upstream_verified = None
        upstream_exists = not upstream_name or await self._environment_exists(
            namespace, str(upstream_name)
        )
        if upstream_name:
            upstream = self.cache.deployments.get(
                (namespace, kinds.deployment_object_name(workflow, upstream_name))
            )
            if upstream is not None:
                upstream_verified = verified_at(upstream.get("status") or {}, str(spec["version"]))
        decision = decide(
            DeploymentInputs(
                workflow=workflow,
                environment=environment,
                desired=str(spec["version"]),
                commit=str(spec.get("commit", "")),
                author=str(spec.get("author", "")),
                generation=int(meta.get("generation") or 0),
                status=deployment.get("status") or {},
                annotations=annotations,
                environment_spec=env_spec,
                info=info,
                hold_info=hold_info,
                upstream_verified_at=upstream_verified,
                upstream_exists=upstream_exists,
                now=_now(),
                # The canary's evidence: a scan of the runs, only where a canary can run.
                canary_runs=self.canary_runs(namespace, workflow, environment, str(spec["version"]))
                if (env_spec.get("rollout") or {}).get("strategy") == "canary"
                else (),
            )
        )
        counts = self.run_counts(
            namespace, workflow, environment, decision.status.get("runLedger") or {}
        )
        decision.status["versions"] = version_entries(
            list(decision.status.get("versions") or []),
            decision.status.get("activeVersion"),
            counts,
            decision.status.get("canary"),
        )
        decision.status["runs"] = total_counts(counts)
        current = deployment.get("status") or {}
        if decision.status != current:
            await self.kube.patch_status(
                "WorkflowDeployment",
                namespace,
                meta["name"],
                merge_patch(current, decision.status),
            )
            # Until the watch brings the new status, reconcile from what was just written, so
            # a transition is never recorded twice.
            deployment["status"] = decision.status
            if current.get("activeVersion") != decision.status.get("activeVersion"):
                self._schedule_environments_update(namespace, workflow)
            if _ready_of(current) != _ready_of(decision.status):
                self._schedule_environment_status(namespace, environment)
            if _verified_changed(current, decision.status):
                # Downstream gates wait on this (the echo of this write finds the cache
                # already updated, so it is said here).
                self.enqueue(self._downstream(deployment))
        if decision.consumed_annotations:  # one-shot requests (abort, promote --full, retry)
            await self.kube.patch_metadata(
                "WorkflowDeployment",
                namespace,
                meta["name"],
                {"annotations": dict.fromkeys(decision.consumed_annotations)},
            )
            for used in decision.consumed_annotations:
                annotations.pop(used, None)  # until the watch brings the object back
        for transition in decision.transitions:
            await self._record(deployment, transition)
        moved = any(
            t.result in ("Activated", "RolledBack", "Released") for t in decision.transitions
        )
        doomed = (
            versions_to_cancel(
                str(env_spec.get("inflight", "pin")), decision.status.get("activeVersion"), counts
            )
            if moved
            else []  # a run started later on an older version on purpose is left alone
        )
        if doomed:
            await self.cancel_runs(namespace, workflow, environment, doomed)
        wanted = automatic_migration(workflow, environment, decision.status, counts, env_spec)
        if wanted is not None:  # every time, not only at the transition: a crash between
            await self.create_migration(namespace, wanted)  # the two must not lose it
        if decision.wake_at is not None:
            self.wake_at(decision.wake_at, key)

    def _touch(self) -> None:
        with contextlib.suppress(RuntimeError):  # no loop: called outside the operator
            self._last_activity = asyncio.get_running_loop().time()

    def _schedule_environments_update(self, namespace: str, workflow: str) -> None:
        """Coalesce: one commit moves many deployments, of a workflow in several environments,
        over a few seconds (the source writes their specs one after another); the versions'
        `status.environments` are written once, when that is over."""
        self._environments_due.add((namespace, workflow))
        self._start_flush()

    def _schedule_environment_status(self, namespace: str, environment: Any) -> None:
        """The Environment's own status (its deployments, how many are Ready), coalesced with
        the versions' environments."""
        if environment:
            self._statuses_due.add((namespace, str(environment)))
            self._start_flush()

    def _start_flush(self) -> None:
        if self._environments_flush is None:
            with contextlib.suppress(RuntimeError):  # no loop: called outside the operator
                self._environments_flush = asyncio.create_task(self._flush_environments())

    def _settled(self) -> bool:
        return len(self.queue) == 0

    async def _flush_environments(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            while loop.time() - started < ENVIRONMENTS_MAX_DELAY:
                quiet = loop.time() - self._last_activity
                if self._settled() and quiet >= ENVIRONMENTS_QUIET:
                    break
                await asyncio.sleep(max(ENVIRONMENTS_QUIET - quiet, 0.05))
        finally:
            self._environments_flush = None
        due, self._environments_due = self._environments_due, set()
        statuses, self._statuses_due = self._statuses_due, set()

        async def update(namespace: str, workflow: str) -> None:
            try:
                await self._update_version_environments(namespace, workflow)
            except Exception:  # the next activation writes it again
                logger.exception("updating environments of %s/%s", namespace, workflow)

        async def status(namespace: str, environment: str) -> None:
            try:
                await self._update_environment_status(namespace, environment)
            except Exception:  # the next change of a deployment there writes it again
                logger.exception("updating the status of environment %s/%s", namespace, environment)

        with writer("deployments"):  # concurrently, within the client's limit
            await asyncio.gather(
                *(update(ns, workflow) for ns, workflow in sorted(due)),
                *(status(ns, environment) for ns, environment in sorted(statuses)),
            )

    async def _update_environment_status(self, namespace: str, environment: str) -> None:
        obj = self.cache.environments.get((namespace, environment))
        if obj is None:
            return
        deployments = [
            (str(self.cache.deployments[key]["spec"].get("workflow")), status)
            for key in self.cache.deployments_where(namespace, environment=environment)
            for status in [self.cache.deployments[key].get("status") or {}]
        ]
        current = obj.get("status") or {}
        wanted = environment_status(
            current, int(obj["metadata"].get("generation") or 0), deployments, rfc3339(_now())
        )
        if wanted != current:
            await self.kube.patch_status(
                "Environment", namespace, environment, merge_patch(current, wanted)
            )
            obj["status"] = wanted  # until the watch brings it back

    async def _update_version_environments(self, namespace: str, workflow: str) -> None:
        """`WorkflowVersion.status.environments`: where each version of the workflow runs."""
        where: dict[str, list[dict[str, Any]]] = {}
        for key in self.cache.deployments_where(namespace, workflow=workflow):
            status = self.cache.deployments[key].get("status") or {}
            environment = str(self.cache.deployments[key]["spec"]["environment"])
            if status.get("activeVersion"):
                where.setdefault(str(status["activeVersion"]), []).append(
                    {"name": environment, "state": "Active"}
                )
            for entry in status.get("versions") or []:
                if entry.get("state") in ("Draining", "Canary") and entry.get("version"):
                    where.setdefault(str(entry["version"]), []).append(
                        {
                            "name": environment,
                            "state": entry["state"],
                            "activeRuns": int(entry.get("activeRuns") or 0),
                        }
                    )
        for (ns, name), version in list(self.cache.versions.items()):
            spec = version.get("spec") or {}
            if ns != namespace or spec.get("workflow") != workflow:
                continue
            wanted = sorted(where.get(str(spec.get("version")), []), key=lambda e: e["name"])
            if ((version.get("status") or {}).get("environments") or []) != wanted:
                await self.kube.patch_status("WorkflowVersion", ns, name, {"environments": wanted})
                version.setdefault("status", {})["environments"] = wanted

    async def _record(self, deployment: Obj, transition: Transition) -> None:
        meta = deployment["metadata"]
        spec = deployment.get("spec") or {}
        self.metrics.inc("flowpin_deployment_transitions_total", result=transition.result)
        audit.info(
            json.dumps(
                {
                    "time": _now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "namespace": meta["namespace"],
                    "deployment": meta["name"],
                    "workflow": spec.get("workflow"),
                    "environment": spec.get("environment"),
                    "version": transition.version,
                    "result": transition.result,
                    "reason": transition.reason,
                    "message": transition.message,
                    "initiator": transition.initiator,
                    "commit": transition.commit or spec.get("commit"),
                },
                sort_keys=True,
            )
        )
        await self.kube.event(
            {**deployment, "kind": kinds.WORKFLOW_DEPLOYMENT.kind},
            transition.result,
            f"{transition.version}: {transition.message}",
            "Warning" if transition.warning else "Normal",
        )
        if transition.result != "Blocked":
            self._note(deployment, transition)

    def _note(self, deployment: Obj, transition: Transition) -> None:
        """A git note on the version's commit (when the source asks for them), in the
        background: a slow or failing push never delays a promotion."""
        meta = deployment["metadata"]
        spec = deployment.get("spec") or {}
        version = self.cache.versions.get(
            (
                meta["namespace"],
                kinds.version_object_name(str(spec["workflow"]), transition.version),
            )
        )
        commit = ((version or {}).get("spec") or {}).get("git", {}).get("commit")
        if self.notes is None or not commit or not spec.get("source"):
            return
        now = _now()
        record = {
            "id": f"{meta['name']}/{transition.result}/{transition.version}/{now.isoformat()}",
            "environment": spec.get("environment"),
            "workflow": spec.get("workflow"),
            "version": transition.version,
            "result": transition.result,
            "reason": transition.reason,
            "initiator": transition.initiator,
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        task = asyncio.create_task(
            self.notes(meta["namespace"], str(spec["source"]), str(commit), record)
        )
        self._notes_in_flight.add(task)
        task.add_done_callback(self._notes_in_flight.discard)


ENVIRONMENTS_QUIET = 1.0  # seconds without a deployment event before versions are written
ENVIRONMENTS_MAX_DELAY = 60.0  # seconds: written by then even if deployments keep changing


def _key(body: Obj) -> Key:
    return (body["metadata"]["namespace"], body["metadata"]["name"])


def _verified_changed(before: Obj, after: Obj) -> bool:
    """Whether what is active and Verified changed: downstream upstream gates read it."""
    return bool(
        before.get("activeVersion") != after.get("activeVersion")
        or before.get("verifiedAt") != after.get("verifiedAt")
    )


def _same_content(previous: Obj | None, body: Obj) -> bool:
    """Whether an event brings nothing new to decide on: the same spec, status and
    annotations (the echo of a status this controller has just written and cached)."""
    if previous is None:
        return False
    return (
        previous.get("spec") == body.get("spec")
        and previous.get("status") == body.get("status")
        and previous["metadata"].get("annotations") == body["metadata"].get("annotations")
        and previous["metadata"].get("deletionTimestamp")
        == body["metadata"].get("deletionTimestamp")
    )


VERSION_COUNTS = ("runs", "runLedger", "environments")  # status a deployment does not read


def _same_facts(previous: Obj | None, body: Obj) -> bool:
    """Whether a WorkflowVersion event changes only what no deployment decides on: its run
    counts, ledger and environments (written every second while runs move)."""
    if previous is None or previous.get("spec") != body.get("spec"):
        return False
    before = {k: v for k, v in (previous.get("status") or {}).items() if k not in VERSION_COUNTS}
    after = {k: v for k, v in (body.get("status") or {}).items() if k not in VERSION_COUNTS}
    return before == after


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def register(handlers: kopf.OperatorRegistry, controller: DeploymentController) -> None:
    for kind, callback in (
        (kinds.WORKFLOW_DEPLOYMENT, controller.on_deployment),
        (kinds.ENVIRONMENT, controller.on_environment),
        (kinds.WORKFLOW_VERSION, controller.on_version),
    ):
        watch(handlers, kind, f"cache-{kind.singular}", callback, controller.start)


def _ready_of(status: Obj) -> tuple[Any, Any]:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status"), condition.get("reason")
    return None, None

"""One sync of a WorkflowSource: fetch, fold new commits, write what changed, report.

The decisions are pure functions in `controller.model` (`mirror`, `source_status`); this
module gathers their inputs and applies their outputs. Every step is idempotent, so a sync
interrupted by a crash or an API server restart completes on the next attempt.

Full and incremental syncs. A *full* sync lists every WorkflowVersion, Environment,
WorkflowDeployment, WorkflowSource and WorkflowRun of the namespace and plans the writes
against what it found. It runs for the first sync of a source after the operator starts,
after a sync that failed or was interrupted, after a change of the source's spec, when asked
for (`flowpin sync`, the `flowpin.dev/requestedAt` annotation), and every `full_every`-th
sync round. Every other sync that finds new commits is *incremental*: it plans against what
the source remembers (`SourceMemory.mirrored`: what the last full listing found, updated
with every write the source has made since), so its cost follows the change, not the
history. It lists WorkflowRuns only when it would delete a deployment.

What an incremental sync cannot see is what others changed since the last full listing:
an object a user deleted or edited by hand is recreated or repaired by the next full sync
(at the latest `full_every` intervals later, at once with `flowpin sync`), and versions are
archived by retention only in a full sync (an incremental one only makes an archived version
Available again when it is pinned). A create that finds its object already there (someone
else made it meanwhile) counts as done and makes the next sync a full one (a version is
created with its facts in its spec, and needs no status write). Memory is only trusted after
a sync that completed: a failure or a crash in the middle leaves none, so the next sync lists
everything again.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.api import kinds
from controller.git.fetch import (
    Credentials,
    FetchError,
    SourceRef,
    cache_path,
    fetch,
    prune_caches,
)
from controller.git.history import commit_meta, walk
from controller.model.durations import parse_duration
from controller.model.mirror import (
    Actual,
    Desired,
    Mirrored,
    Retention,
    SourceMeta,
    VersionFacts,
    Write,
    WritePlan,
    desired_objects,
    plan_writes,
    restore_writes,
    retention_writes,
)
from controller.model.source_status import SyncOutcome, source_status
from controller.model.versions import VersionIndex, index_from_json, index_to_json
from controller.operator.kube import Kube, Obj, writer
from controller.operator.metrics import Metrics

logger = logging.getLogger("flowpin.sync")

DEFAULT_INTERVAL = "1m"
SNAPSHOT_EVERY = 300.0  # seconds between index snapshots while commits keep coming
DEFAULT_TIMEOUT = "60s"
TERMINAL_RUN_PHASES = {"Succeeded", "Failed", "Cancelled"}
MAX_ERROR_CHARS = 300  # of an unexpected error, in the source's condition


def default_cache_root() -> Path:
    return Path(os.environ.get("FLOWPIN_CACHE", Path.home() / ".cache" / "flowpin")) / "sources"


@dataclass
class SourceMemory:
    """What one source's syncs remember between runs in this process: about one source
    object (its uid) reading one URL. A source deleted and created again under the same
    name is another object; it starts from nothing, with a full sync."""

    uid: str = ""
    url: str = ""
    synced_commit: str | None = None
    synced_generation: int | None = None
    clean: bool = False  # the last sync applied every write it planned
    since_full: int = 0  # sync rounds since the last full one (listing everything)
    index: VersionIndex | None = None  # kept between syncs; the snapshot file is for restarts
    saved_at: float = 0.0  # monotonic time of the last snapshot
    # What the namespace holds as far as this source knows (None: list it all next time).
    mirrored: Mirrored | None = None


@dataclass
class SyncReport:
    commit: str | None = None
    writes: int = 0
    reason: str = ""
    skipped_listing: bool = False
    full: bool = False  # listed every object (else: planned from memory, or nothing new)
    details: dict[str, Any] = field(default_factory=dict)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def read_credentials(kube: Kube, namespace: str, secret_ref: Obj | None) -> Credentials:
    if not secret_ref:
        return Credentials()
    data = await kube.secret(namespace, secret_ref["name"])
    if data is None:
        raise FetchError(
            "AuthFailed",
            f"Secret {secret_ref['name']} (spec.secretRef) does not exist in {namespace}",
        )
    return Credentials(
        username=data.get("username"),
        password=data.get("password"),
        ssh_identity=data.get("identity"),
        ssh_known_hosts=data.get("known_hosts"),
        secret=secret_ref["name"],
    )


def _write_note(cache: Path, commit: str, record: dict[str, Any], credentials: Credentials) -> None:
    import pygit2

    from controller.git.notes import append_record, push_notes

    repo = pygit2.Repository(str(cache))
    if append_record(repo, commit, record):
        push_notes(repo, credentials)


def _load_index(path: Path) -> VersionIndex | None:
    try:
        return index_from_json(path.read_text())
    except OSError:
        return None


def _save_index(path: Path, index: VersionIndex) -> None:
    """Atomically, so a crash leaves the old snapshot or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as handle:
        handle.write(index_to_json(index))
        partial = Path(handle.name)
    partial.replace(path)


class SourceSyncer:
    """Syncs sources; one instance per operator process."""

    def __init__(
        self,
        kube: Kube,
        cache_root: Path | None = None,
        full_every: int = 10,
        metrics: Metrics | None = None,
    ) -> None:
        self.kube = kube
        self.metrics = metrics or Metrics()
        self.cache_root = cache_root or default_cache_root()
        self.full_every = full_every
        self.memory: dict[tuple[str, str], SourceMemory] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        if kube.metrics is None:
            kube.metrics = self.metrics  # the breakdown of writes by kind

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    async def sync(self, namespace: str, name: str) -> SyncReport:
        async with self.lock(namespace, name):
            with writer("sync"):
                try:
                    report = await self._sync(namespace, name)
                except Exception as error:  # any fault reaches the source's status
                    report = await self._failed(namespace, name, error)
        self.metrics.inc("flowpin_source_syncs_total", result=report.reason or "Unknown")
        if report.full:
            self.metrics.inc("flowpin_source_full_syncs_total")  # listed every object
        return report

    async def _sync(self, namespace: str, name: str) -> SyncReport:
        writes_before = self.kube.writes
        source = await self.kube.get("WorkflowSource", namespace, name)
        if source is None:
            return SyncReport(reason="Gone")
        spec: Obj = source.get("spec") or {}
        meta: Obj = source["metadata"]
        generation = int(meta.get("generation") or 0)
        requested = (meta.get("annotations") or {}).get(kinds.ANNOTATION_REQUESTED_AT)
        handled = (source.get("status") or {}).get("lastHandledRequestedAt")
        interval = str(spec.get("interval", DEFAULT_INTERVAL))
        url = str(spec["url"])
        cache = cache_path(self.cache_root, namespace, name, meta["uid"], url)
        memory = self._memory(namespace, name, meta["uid"], url, cache)
        report = SyncReport()
        if spec.get("suspend"):
            report.reason = "Suspended"
            return report

        ref = SourceRef.from_spec(spec.get("ref"))
        index_file = cache.with_suffix(".index.json")
        try:
            credentials = await read_credentials(self.kube, namespace, spec.get("secretRef"))
            timeout = parse_duration(str(spec.get("timeout", DEFAULT_TIMEOUT))).total_seconds()
            repo, tip = await asyncio.to_thread(fetch, url, cache, ref, credentials, timeout)
        except FetchError as error:
            logger.warning("%s/%s: %s", namespace, name, error)
            outcome = SyncOutcome(
                generation=generation,
                interval=interval,
                fetch_failure=(error.reason, str(error)),
                requested_at=requested,
                now=now_rfc3339(),
            )
            await self._write_status(source, outcome)
            memory.clean = False
            report.reason = error.reason
            report.writes = self.kube.writes - writes_before
            return report

        tip_id = str(tip.id)
        report.commit = tip_id
        full = (
            memory.mirrored is None
            or not memory.clean
            or memory.synced_generation != generation
            or requested != handled
            or memory.since_full + 1 >= self.full_every
        )
        if not full and memory.synced_commit == tip_id:
            # Nothing new in git, nothing asked for, and the last sync completed: no need
            # to list every mirrored object again (a full pass runs every `full_every`).
            memory.since_full += 1
            report.skipped_listing = True
            report.reason = "UpToDate"
            return report

        index = memory.index or _load_index(index_file)
        result = await asyncio.to_thread(walk, repo, tip, str(spec.get("path", "")), index)
        memory.index = result.index

        me = SourceMeta(namespace, name, meta["uid"], meta.get("creationTimestamp", ""))
        desired = desired_objects(result.index, me)
        policy = Retention.from_spec(spec.get("retention"))
        if full or memory.mirrored is None:
            actual = await self._actual(namespace)
            mirrored = Mirrored.from_actual(actual)
            plan = plan_writes(desired, actual, me)
            retention = self._retention(name, policy, desired, actual)
        else:
            mirrored = memory.mirrored
            plan = await self._plan_from_memory(namespace, desired, mirrored, me)
            retention = restore_writes(desired, mirrored, me, policy)
        # Trusted again only once every write is done: a failure lists everything next time.
        memory.mirrored = None
        memory.clean = False
        surprises = await self._apply(namespace, plan.writes + retention, mirrored)
        memory.mirrored = None if surprises else mirrored
        for deployment in plan.kept_for_runs:
            logger.info("%s/%s: pin removed, kept while runs are active", namespace, deployment)

        outcome = SyncOutcome(
            generation=generation,
            interval=interval,
            commit=commit_meta(tip),
            invalid=result.index.invalid_files() + desired.findings,
            mutated=result.index.mutated(),
            conflicts=plan.conflicts,
            rewritten=result.rewritten,
            full=full,
            orphaned=len(result.index.orphaned()),
            counts={
                "workflows": len(result.index.versions),
                "versions": len(desired.versions),
                "environments": len(desired.environments),
                "deployments": len(desired.deployments),
            },
            requested_at=requested,
            now=now_rfc3339(),
        )
        await self._write_status(source, outcome)
        memory.synced_commit = tip_id
        memory.synced_generation = generation
        memory.clean = True
        memory.since_full = 0 if full else memory.since_full + 1
        if any(write.action == "adopt" for write in plan.writes):
            # What another object owned (a source deleted and created again) may still be
            # taken by garbage collection after this listing: list everything next time.
            memory.clean = False
        report.writes = self.kube.writes - writes_before
        report.reason = "Synced"
        report.full = full
        report.details = {
            "commits": result.commits,
            "planned": len(plan.writes) + len(retention),
            "full": full,
            "surprises": surprises,
        }

        clock = asyncio.get_running_loop().time()
        if index is None or (result.commits and clock - memory.saved_at > SNAPSHOT_EVERY):
            # A snapshot lets a restarted operator walk only the commits since it was taken;
            # writing one per commit would make every sync cost the size of the history. It
            # is written after the status, off the path from a push to its objects.
            await asyncio.to_thread(_save_index, index_file, result.index)
            memory.saved_at = clock
        return report

    def _memory(self, namespace: str, name: str, uid: str, url: str, cache: Path) -> SourceMemory:
        """This source object's memory; a new object (uid) or URL starts over, and the caches
        an earlier one left on disk are removed."""
        memory = self.memory.get((namespace, name))
        if memory is None or (memory.uid, memory.url) != (uid, url):
            memory = self.memory[(namespace, name)] = SourceMemory(uid=uid, url=url)
            for stale in prune_caches(cache):
                logger.info(
                    "%s/%s: removed %s (another source object or URL)", namespace, name, stale
                )
        return memory

    async def _failed(self, namespace: str, name: str, error: Exception) -> SyncReport:
        """A sync that broke after the fetch: say so on the source (Ready=False, SyncFailed,
        an Event) instead of leaving the last good status in place, and list everything on
        the next try. The mirror stays as it was; re-raised only when the status cannot be
        written either (the API server is away, and the caller retries)."""
        logger.error("%s/%s: sync failed", namespace, name, exc_info=error)
        self.memory.setdefault((namespace, name), SourceMemory()).clean = False
        status_code = getattr(error, "status", None)
        if isinstance(status_code, int):  # the API server's answer: its code and reason only
            detail = f"the API server answered {status_code} {getattr(error, 'reason', '')}"
        else:
            detail = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if len(detail) > MAX_ERROR_CHARS:
            detail = detail[: MAX_ERROR_CHARS - 1] + "…"
        try:
            source = await self.kube.get("WorkflowSource", namespace, name)
            if source is None:
                return SyncReport(reason="Gone")
            spec: Obj = source.get("spec") or {}
            outcome = SyncOutcome(
                generation=int(source["metadata"].get("generation") or 0),
                interval=str(spec.get("interval", DEFAULT_INTERVAL)),
                fetch_failure=("SyncFailed", f"The sync failed: {detail}"),
                # `flowpin sync` waits for its request to be handled, failed or not
                requested_at=(source["metadata"].get("annotations") or {}).get(
                    kinds.ANNOTATION_REQUESTED_AT
                ),
                now=now_rfc3339(),
            )
            await self._write_status(source, outcome)
        except Exception:
            raise error from None
        return SyncReport(reason="SyncFailed")

    async def record_note(
        self, namespace: str, name: str, commit: str, record: dict[str, Any]
    ) -> None:
        """Append an audit record as a git note on `commit` and push it, when the source has
        `audit.gitNotes`. Failures are logged, never raised: audit notes must not block a
        promotion."""
        source = await self.kube.get("WorkflowSource", namespace, name)
        if source is None or not ((source.get("spec") or {}).get("audit") or {}).get("gitNotes"):
            return
        spec = source["spec"]
        cache = cache_path(
            self.cache_root, namespace, name, source["metadata"]["uid"], str(spec["url"])
        )
        try:
            credentials = await read_credentials(self.kube, namespace, spec.get("secretRef"))
            async with self.lock(namespace, name):
                await asyncio.to_thread(_write_note, cache, commit, record, credentials)
        except Exception as error:
            logger.warning("git note on %s for %s/%s: %s", commit[:12], namespace, name, error)

    async def _actual(self, namespace: str) -> Actual:
        versions, environments, deployments, sources, active = await asyncio.gather(
            self.kube.list("WorkflowVersion", namespace),
            self.kube.list("Environment", namespace),
            self.kube.list("WorkflowDeployment", namespace),
            self.kube.list("WorkflowSource", namespace),
            self._active_runs(namespace),
        )
        return Actual(
            versions={v["metadata"]["name"]: v for v in versions},
            environments={e["metadata"]["name"]: e for e in environments},
            deployments={d["metadata"]["name"]: d for d in deployments},
            source_created={
                s["metadata"]["name"]: s["metadata"].get("creationTimestamp", "") for s in sources
            },
            active_runs=active,
        )

    async def _active_runs(self, namespace: str) -> dict[str, int]:
        """Deployment name → runs not finished on it."""
        active: dict[str, int] = {}
        for run in await self.kube.list("WorkflowRun", namespace):
            phase = (run.get("status") or {}).get("phase")
            if phase in TERMINAL_RUN_PHASES:
                continue
            run_spec = run.get("spec") or {}
            key = kinds.deployment_object_name(
                str(run_spec.get("workflow")), str(run_spec.get("environment"))
            )
            active[key] = active.get(key, 0) + 1
        return active

    async def _plan_from_memory(
        self, namespace: str, desired: Desired, mirrored: Mirrored, me: SourceMeta
    ) -> WritePlan:
        """The writes of an incremental sync, against what the source knows is there; the
        runs are read only when a deployment would be deleted (it is kept while they run)."""
        plan = plan_writes(desired, mirrored.actual(), me)
        if any(w.action == "delete" and w.kind == "WorkflowDeployment" for w in plan.writes):
            active = await self._active_runs(namespace)
            plan = plan_writes(desired, mirrored.actual(active), me)
        return plan

    def _retention(
        self, name: str, policy: Retention, desired: Desired, actual: Actual
    ) -> list[Write]:
        in_use: set[tuple[str, str]] = set()
        for deployment in [*desired.deployments.values(), *actual.deployments.values()]:
            workflow = deployment["spec"]["workflow"]
            status = deployment.get("status") or {}
            for version in (
                deployment["spec"].get("version"),
                status.get("activeVersion"),
                status.get("previousVersion"),
                (status.get("canary") or {}).get("version"),
            ):
                if version:
                    in_use.add((workflow, version))
            for entry in status.get("versions") or []:
                if entry.get("activeRuns"):
                    in_use.add((workflow, entry.get("version")))
        facts = []
        for obj_name, obj in actual.versions.items():
            labels = obj["metadata"].get("labels") or {}
            if labels.get(kinds.LABEL_SOURCE) != name:
                continue
            status = obj.get("status") or {}
            committed = obj["spec"].get("git", {}).get("time")
            if not committed:
                continue
            facts.append(
                VersionFacts(
                    name=obj_name,
                    workflow=obj["spec"]["workflow"],
                    version=obj["spec"]["version"],
                    committed_at=datetime.datetime.fromisoformat(committed.replace("Z", "+00:00")),
                    phase=status.get("phase", "Available"),
                    active_runs=int((status.get("runs") or {}).get("active") or 0),
                    orphaned=bool(status.get("orphaned")),
                )
            )
        return retention_writes(facts, in_use, policy, datetime.datetime.now(datetime.UTC))

    async def _apply(self, namespace: str, writes: list[Write], mirrored: Mirrored) -> int:
        """Versions first (created with their facts, validity included, in the spec;
        adopted; the status of a version from before facts repaired), then Environments,
        then WorkflowDeployments, deletes last; each group concurrently within the client's
        limit. A deployment is thus never written before the version it refers to is there.
        Every write done is remembered in `mirrored`. Returns how many creates found their
        object already there (not remembered: not ours to know); any other write of that
        object is then left to the next, full, sync."""
        action_order = {"create": 0, "adopt": 1, "patch-status": 2, "replace-spec": 3}
        kind_order = {"WorkflowVersion": 0, "Environment": 1, "WorkflowDeployment": 2}
        groups: dict[tuple[int, int, int], list[Write]] = {}
        for write in writes:
            if write.action == "delete":
                key = (1, kind_order[write.kind], 0)
            else:
                key = (0, kind_order[write.kind], action_order[write.action])
            groups.setdefault(key, []).append(write)
        existed: set[tuple[str, str]] = set()
        for key in sorted(groups):
            todo = [w for w in groups[key] if (w.kind, w.name) not in existed]
            done = await asyncio.gather(*(self._write(namespace, write) for write in todo))
            for write, new in zip(todo, done, strict=True):
                if new:
                    mirrored.record(write)
                else:
                    existed.add((write.kind, write.name))
        return len(existed)

    async def _write(self, namespace: str, write: Write) -> bool:
        """Apply one write; False for a create that found the object already there."""
        if write.action == "create":
            assert write.body is not None
            return await self.kube.create(write.kind, namespace, write.body)
        if write.action == "adopt":
            assert write.body is not None
            metadata = write.body["metadata"]
            await self.kube.patch_metadata(
                write.kind,
                namespace,
                write.name,
                {"labels": metadata["labels"], "ownerReferences": metadata["ownerReferences"]},
            )
        elif write.action == "patch-status":
            assert write.body is not None
            await self.kube.patch_status(write.kind, namespace, write.name, write.body)
        elif write.action == "replace-spec":
            assert write.body is not None
            await self.kube.replace_spec(write.kind, namespace, write.name, write.body)
        else:
            await self.kube.delete(write.kind, namespace, write.name)
        return True

    async def _write_status(self, source: Obj, outcome: SyncOutcome) -> None:
        current = source.get("status") or {}
        status = source_status(current, outcome)
        if status != current:
            meta = source["metadata"]
            await self.kube.patch_status("WorkflowSource", meta["namespace"], meta["name"], status)
            before = _ready(current)
            after = _ready(status)
            if before != after and after is not None:
                await self.kube.event(
                    source,
                    after["reason"],
                    after["message"],
                    "Normal" if after["status"] == "True" else "Warning",
                )


def _ready(status: Obj) -> Obj | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return {k: condition.get(k) for k in ("status", "reason", "message")}
    return None

"""kopf handlers for WorkflowSources: a daemon per source syncs it every `interval`, and
sooner when woken by the `flowpin.dev/requestedAt` annotation or a push webhook."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf

from controller.api import kinds
from controller.model.conditions import accepted_source_conditions
from controller.model.durations import parse_duration
from controller.operator.sync import DEFAULT_INTERVAL, SourceSyncer

logger = logging.getLogger("flowpin.sources")


@dataclass
class SourceEntry:
    namespace: str
    name: str
    url: str = ""
    branch: str | None = None
    secret: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class SourceRegistry:
    """The sources this replica syncs, for the webhook receiver to find and wake."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], SourceEntry] = {}

    def update(self, namespace: str, name: str, spec: dict[str, Any]) -> SourceEntry:
        entry = self.entries.setdefault((namespace, name), SourceEntry(namespace, name))
        entry.url = str(spec.get("url", ""))
        ref = spec.get("ref") or {}
        entry.branch = ref.get("branch") or (
            None if ref.get("tag") or ref.get("commit") else "main"
        )
        entry.secret = (spec.get("secretRef") or {}).get("name")
        return entry

    def remove(self, namespace: str, name: str) -> None:
        self.entries.pop((namespace, name), None)

    def wake(self, namespace: str, name: str) -> bool:
        entry = self.entries.get((namespace, name))
        if entry is None:
            return False
        entry.wake.set()
        return True


def register(
    handlers: kopf.OperatorRegistry, syncer: SourceSyncer, registry: SourceRegistry
) -> None:
    """Register the source handlers into `handlers` (one registry per operator run)."""
    resource = (kinds.GROUP, kinds.VERSION, kinds.WORKFLOW_SOURCE.plural)

    @kopf.on.resume(*resource, id="accepted", registry=handlers)
    @kopf.on.create(*resource, id="accepted", registry=handlers)
    def source_accepted(
        body: kopf.Body, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, **_: Any
    ) -> None:
        """Say at once that the source was seen, before its first sync finishes."""
        generation = int(meta.get("generation") or 0)
        existing = list(status.get("conditions") or [])
        conditions = accepted_source_conditions(existing, generation)
        if conditions != existing:
            patch.status["conditions"] = conditions
            patch.status["observedGeneration"] = generation

    # kopf types handlers as (*args, **kwargs) callables; named keyword parameters are how
    # its documentation writes them, so the decorators below ignore that mismatch.
    @kopf.daemon(*resource, id="sync", cancellation_timeout=30, registry=handlers)  # type: ignore[arg-type]
    async def source_daemon(
        name: str, namespace: str, spec: kopf.Spec, stopped: kopf.DaemonStopped, **_: Any
    ) -> None:
        entry = registry.update(namespace, name, dict(spec))
        try:
            while not stopped:
                entry.wake.clear()
                try:
                    report = await syncer.sync(namespace, name)
                    if report.reason not in ("UpToDate", "Suspended"):
                        logger.info(
                            "synced %s/%s: %s at %s, %d writes",
                            namespace,
                            name,
                            report.reason,
                            (report.commit or "-")[:12],
                            report.writes,
                        )
                except Exception:  # the API server may be restarting: try again next round
                    logger.exception("sync of %s/%s failed; retrying", namespace, name)
                entry = registry.update(namespace, name, dict(spec))
                try:
                    interval = parse_duration(str(spec.get("interval", DEFAULT_INTERVAL)))
                except ValueError:
                    interval = parse_duration(DEFAULT_INTERVAL)
                waits = [
                    asyncio.ensure_future(entry.wake.wait()),
                    asyncio.ensure_future(_until_stopped(stopped)),
                ]
                _done, pending = await asyncio.wait(
                    waits, timeout=interval.total_seconds(), return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
        finally:
            registry.remove(namespace, name)

    requested_at = ("metadata", "annotations", kinds.ANNOTATION_REQUESTED_AT)

    @kopf.on.field(*resource, id="refresh", field=requested_at, registry=handlers)  # type: ignore[arg-type]
    def refresh_requested(name: str, namespace: str, new: Any, **_: Any) -> None:
        if new:
            registry.wake(namespace, name)

    @kopf.on.field(*resource, id="spec", field="spec", registry=handlers)  # type: ignore[arg-type]
    def spec_changed(name: str, namespace: str, **_: Any) -> None:
        registry.wake(namespace, name)


async def _until_stopped(stopped: kopf.DaemonStopped) -> None:
    await stopped.wait()

"""The operator's Kubernetes API calls, behind one small async interface.

The official client is synchronous; calls run in threads. Every write is counted (the
benchmarks and the idle check read the counter), and creates treat "already exists" as
success, so a sync interrupted after a create resumes without duplicates.

`writes` is the total (served as `flowpin_api_writes_total`); with `metrics` set, every write
is also counted in `flowpin_api_writes_by_kind_total{by, kind, verb}`, where `by` is the part
of the operator that wrote (`sync`, `deployments`, set with `writer(...)`), so that a
benchmark can say whose writes of what kind a change cost.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import contextvars
import datetime
import logging
from collections.abc import Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.api import kinds
from controller.operator.metrics import Metrics

logger = logging.getLogger("flowpin.kube")
Obj = dict[str, Any]

PLURALS = {kind.kind: kind.plural for kind in kinds.ALL_KINDS}
WRITES_BY_KIND = "flowpin_api_writes_by_kind_total"
_writer: contextvars.ContextVar[str] = contextvars.ContextVar("flowpin_writer", default="other")


@contextlib.contextmanager
def writer(name: str) -> Iterator[None]:
    """Attribute the writes made in this context (and the tasks it starts) to `name`."""
    token = _writer.set(name)
    try:
        yield
    finally:
        _writer.reset(token)


def merge_patch(current: Obj, desired: Obj) -> Obj:
    """A JSON merge patch from `current` to `desired` at the top level (removed keys → null)."""
    patch: Obj = {k: v for k, v in desired.items() if current.get(k) != v}
    for key in current:
        if key not in desired:
            patch[key] = None
    return patch


class Kube:
    def __init__(
        self,
        api_client: client.ApiClient | None = None,
        concurrency: int = 8,
        metrics: Metrics | None = None,
    ) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.writes = 0
        self.metrics = metrics  # the breakdown by kind and verb, when set
        self._limit = asyncio.Semaphore(concurrency)

    def _count(self, kind: str, verb: str) -> None:
        self.writes += 1
        if self.metrics is not None:
            self.metrics.inc(WRITES_BY_KIND, by=_writer.get(), kind=kind, verb=verb)

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._limit:
            return await asyncio.to_thread(function, *args, **kwargs)

    async def _custom(
        self, function: Any, kind: str, namespace: str, *args: Any, absent: tuple[int, ...] = ()
    ) -> Any:
        """One call on flowpin's objects; None when the API server answers a status in
        `absent` (404 for "not there", 409 for "exists" or "changed since you read it")."""
        try:
            return await self._call(
                function, kinds.GROUP, kinds.VERSION, namespace, PLURALS[kind], *args
            )
        except ApiException as error:
            if error.status in absent:
                return None
            raise

    # ------------------------------------------------------------------ reads

    async def list(self, kind: str, namespace: str, label_selector: str | None = None) -> list[Obj]:
        result = await self._call(
            self.custom.list_namespaced_custom_object,
            kinds.GROUP,
            kinds.VERSION,
            namespace,
            PLURALS[kind],
            label_selector=label_selector or "",
        )
        items: builtins.list[Obj] = result.get("items", [])
        return items

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        result: Obj | None = await self._custom(
            self.custom.get_namespaced_custom_object, kind, namespace, name, absent=(404,)
        )
        return result

    async def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's data, decoded; None when it does not exist."""
        try:
            secret = await self._call(self.core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return {
            key: base64.b64decode(value).decode("utf-8", "replace")
            for key, value in (secret.data or {}).items()
        }

    # ------------------------------------------------------------------ writes

    async def create(self, kind: str, namespace: str, body: Obj) -> bool:
        """Create; False when it already existed (a resumed sync)."""
        self._count(kind, "create")
        created = await self._custom(
            self.custom.create_namespaced_custom_object, kind, namespace, body, absent=(409,)
        )
        return created is not None

    async def replace_spec(self, kind: str, namespace: str, name: str, body: Obj) -> None:
        """Set spec and labels exactly (a JSON patch replaces lists and drops removed keys)."""
        self._count(kind, "patch")
        patch = [
            {"op": "replace", "path": "/spec", "value": body["spec"]},
            {"op": "replace", "path": "/metadata/labels", "value": body["metadata"]["labels"]},
        ]
        await self._call(
            self.custom.patch_namespaced_custom_object,
            kinds.GROUP,
            kinds.VERSION,
            namespace,
            PLURALS[kind],
            name,
            patch,
            _content_type="application/json-patch+json",
        )

    async def patch_metadata(self, kind: str, namespace: str, name: str, metadata: Obj) -> None:
        self._count(kind, "patch-metadata")
        await self._custom(
            self.custom.patch_namespaced_custom_object,
            kind,
            namespace,
            name,
            {"metadata": metadata},
        )

    async def patch_status(self, kind: str, namespace: str, name: str, status: Obj) -> None:
        """A merge patch of status (lists such as conditions are replaced whole)."""
        self._count(kind, "patch-status")
        await self._custom(
            self.custom.patch_namespaced_custom_object_status,
            kind,
            namespace,
            name,
            {"status": status},
        )

    async def patch_spec(self, kind: str, namespace: str, name: str, fields: Obj) -> None:
        """A merge patch of some spec fields (`spec.cancel` of a run); gone is fine."""
        self._count(kind, "patch")
        await self._custom(
            self.custom.patch_namespaced_custom_object,
            kind,
            namespace,
            name,
            {"spec": fields},
            absent=(404,),
        )

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self._count(kind, "delete")
        await self._custom(
            self.custom.delete_namespaced_custom_object, kind, namespace, name, absent=(404,)
        )

    async def create_object(self, kind: str, namespace: str, body: Obj) -> Obj:
        """Create and return the object as stored (its generated name, uid)."""
        self._count(kind, "create")
        result: Obj = await self._custom(
            self.custom.create_namespaced_custom_object, kind, namespace, body
        )
        return result

    async def event(self, obj: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        """A Kubernetes Event on `obj` (what `kubectl describe` shows)."""
        self._count("Event", "create")
        meta = obj["metadata"]
        now = datetime.datetime.now(datetime.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{meta['name']}.", namespace=meta["namespace"]
            ),
            involved_object=client.V1ObjectReference(
                api_version=obj.get("apiVersion", kinds.API_VERSION),
                kind=obj.get("kind"),
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type=type_,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="flowpin"),
            reporting_component="flowpin.dev/operator",
            reporting_instance="flowpin-operator",
        )
        try:
            await self._call(self.core.create_namespaced_event, meta["namespace"], event)
        except ApiException as error:  # an event is worth a warning, never a failed sync
            logger.warning("event %s on %s: %s", reason, meta["name"], error.reason)

    # ------------------------------------------------------------------ guarded writes
    # Writes that must not overwrite what another writer did since we read: the
    # resourceVersion in a merge patch makes the API server refuse a stale one (409).

    async def patch_status_at(
        self, kind: str, namespace: str, name: str, status: Obj, resource_version: str
    ) -> Obj | None:
        """The object after the patch; None when it changed since `resource_version`."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        return await self._guarded(
            self.custom.patch_namespaced_custom_object_status, kind, namespace, name, body
        )

    async def patch_metadata_at(
        self, kind: str, namespace: str, name: str, metadata: Obj, resource_version: str
    ) -> Obj | None:
        body = {"metadata": {**metadata, "resourceVersion": resource_version}}
        return await self._guarded(
            self.custom.patch_namespaced_custom_object, kind, namespace, name, body
        )

    async def _guarded(
        self, call: Any, kind: str, namespace: str, name: str, body: Obj
    ) -> Obj | None:
        status = call == self.custom.patch_namespaced_custom_object_status
        self._count(kind, "patch-status" if status else "patch")
        result: Obj | None = await self._custom(
            call, kind, namespace, name, body, absent=(404, 409)
        )
        return result

    async def list_everywhere(
        self, kind: str, namespaces: tuple[str, ...] = ()
    ) -> builtins.list[Obj]:
        """Every object of `kind` in these namespaces, or in all of them when empty."""
        if namespaces:
            found: builtins.list[Obj] = []
            for namespace in namespaces:
                found.extend(await self.list(kind, namespace))
            return found
        result = await self._call(
            self.custom.list_cluster_custom_object, kinds.GROUP, kinds.VERSION, PLURALS[kind]
        )
        items: builtins.list[Obj] = result.get("items", [])
        return items

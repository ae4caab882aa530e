"""The operator's Kubernetes API calls, behind one small async interface.

The official client is synchronous; calls run in threads. Every write is counted (the
benchmarks and the idle check read the counter), and creates treat "already exists" as
success, so a sync interrupted after a create resumes without duplicates.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.api import kinds

logger = logging.getLogger("flowpin.kube")
Obj = dict[str, Any]

PLURALS = {kind.kind: kind.plural for kind in kinds.ALL_KINDS}


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None, concurrency: int = 8) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.writes = 0
        self._limit = asyncio.Semaphore(concurrency)

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._limit:
            return await asyncio.to_thread(function, *args, **kwargs)

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
        items: list[Obj] = result.get("items", [])
        return items

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            result: Obj = await self._call(
                self.custom.get_namespaced_custom_object,
                kinds.GROUP,
                kinds.VERSION,
                namespace,
                PLURALS[kind],
                name,
            )
            return result
        except ApiException as error:
            if error.status == 404:
                return None
            raise

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
        self.writes += 1
        try:
            await self._call(
                self.custom.create_namespaced_custom_object,
                kinds.GROUP,
                kinds.VERSION,
                namespace,
                PLURALS[kind],
                body,
            )
            return True
        except ApiException as error:
            if error.status == 409:
                return False
            raise

    async def replace_spec(self, kind: str, namespace: str, name: str, body: Obj) -> None:
        """Set spec and labels exactly (a JSON patch replaces lists and drops removed keys)."""
        self.writes += 1
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
        self.writes += 1
        await self._call(
            self.custom.patch_namespaced_custom_object,
            kinds.GROUP,
            kinds.VERSION,
            namespace,
            PLURALS[kind],
            name,
            {"metadata": metadata},
        )

    async def patch_status(self, kind: str, namespace: str, name: str, status: Obj) -> None:
        """A merge patch of status (lists such as conditions are replaced whole)."""
        self.writes += 1
        await self._call(
            self.custom.patch_namespaced_custom_object_status,
            kinds.GROUP,
            kinds.VERSION,
            namespace,
            PLURALS[kind],
            name,
            {"status": status},
        )

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self.writes += 1
        try:
            await self._call(
                self.custom.delete_namespaced_custom_object,
                kinds.GROUP,
                kinds.VERSION,
                namespace,
                PLURALS[kind],
                name,
            )
        except ApiException as error:
            if error.status != 404:
                raise

    async def event(self, obj: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        """A Kubernetes Event on `obj` (what `kubectl describe` shows)."""
        self.writes += 1
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

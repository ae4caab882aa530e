"""The one way the controllers follow a kind: a kopf `on.event` handler that writes nothing
and hands each event (type and a private copy of the object) to a callback."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import kopf

from controller.api import kinds

EventCallback = Callable[[str, dict[str, Any]], None]


def watch(
    handlers: kopf.OperatorRegistry,
    kind: kinds.Kind,
    handler_id: str,
    callback: EventCallback,
    start: Callable[[], None],
) -> None:
    """`start` runs first on every event (idempotent: it starts the controller's workers on
    kopf's event loop). The handler is async because kopf runs plain functions in threads,
    away from that loop."""

    @kopf.on.event(  # type: ignore[arg-type]
        kinds.GROUP, kinds.VERSION, kind.plural, id=handler_id, registry=handlers
    )
    async def on_event(event: dict[str, Any], **_: Any) -> None:
        start()
        callback(event.get("type") or "ADDED", private_copy(event["object"]))


def private_copy(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy the caches may change: kopf keeps the event's object. The objects are JSON
    from the API server, and a JSON round trip copies them several times faster than
    `copy.deepcopy`, which matters at a few hundred events a second."""
    copied: dict[str, Any] = json.loads(json.dumps(obj))
    return copied

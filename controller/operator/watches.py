"""The one way the controllers follow a kind: a kopf `on.event` handler that writes nothing
and hands each event (type and a private copy of the object) to a callback."""

from __future__ import annotations

import copy
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
        callback(event.get("type") or "ADDED", copy.deepcopy(event["object"]))

"""kopf handlers. Thin: read the object, call a pure function in `controller.model`, write.

The foundation registers one handler so that the operator's plumbing (watching, status
patches, events, RBAC) is exercised end to end; the sync, deployment and run controllers
arrive with their issues.
"""

from __future__ import annotations

from typing import Any

import kopf

from controller.api import kinds
from controller.model.conditions import accepted_source_conditions


@kopf.on.resume(kinds.GROUP, kinds.VERSION, kinds.WORKFLOW_SOURCE.plural)
@kopf.on.create(kinds.GROUP, kinds.VERSION, kinds.WORKFLOW_SOURCE.plural)
def source_accepted(
    body: kopf.Body, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, **_: Any
) -> None:
    generation = int(meta.get("generation") or 0)
    existing = list(status.get("conditions") or [])
    conditions = accepted_source_conditions(existing, generation)
    if conditions != existing:
        patch.status["conditions"] = conditions
        patch.status["observedGeneration"] = generation
        kopf.info(body, reason="Accepted", message="The source is queued for its first sync.")

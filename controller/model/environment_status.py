"""The status an Environment reports, as a pure function of its deployments.

An Environment is Ready when every WorkflowDeployment in it is Ready (an environment with
none is Ready too: nothing is waiting). Its message names the deployments that are not, with
their reasons, so `kubectl get wfenv` and `kubectl wait --for=condition=Ready wfenv/prod`
answer "is everything here where git says?" at one glance.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from controller.model.conditions import ConditionStatus, set_condition

LISTED = 3  # deployments named in the message; the count says how many more


def _condition(status: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for condition in status.get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == type_:
            return condition
    return {}


def environment_status(
    current: Mapping[str, Any],
    generation: int,
    deployments: Sequence[tuple[str, Mapping[str, Any]]],
    now: str,
) -> dict[str, Any]:
    """`deployments`: (workflow, deployment status) of each deployment in the environment."""
    waiting: list[str] = []
    stalled: list[str] = []
    reconciling = 0
    for workflow, deployment in sorted(deployments, key=lambda item: item[0]):
        if _condition(deployment, "Stalled").get("status") == "True":
            stalled.append(f"{workflow} ({_condition(deployment, 'Stalled').get('reason')})")
        if _condition(deployment, "Reconciling").get("status") == "True":
            reconciling += 1
        condition = _condition(deployment, "Ready")
        if condition.get("status") != "True":
            reason = condition.get("reason") or deployment.get("reason") or "Pending"
            waiting.append(f"{workflow} ({reason})")
    total = len(deployments)
    ready: ConditionStatus = "False" if waiting else "True"
    if waiting:
        more = f" and {len(waiting) - LISTED} more" if len(waiting) > LISTED else ""
        reason = "DeploymentsNotReady"
        message = f"{len(waiting)} of {total} not ready: {', '.join(waiting[:LISTED])}{more}"
    elif total:
        reason, message = "AllReady", f"all {total} deployments ready"
    else:
        reason, message = "NoDeployments", "no workflow is pinned here"
    status: dict[str, Any] = copy.deepcopy(dict(current))
    conditions = list(status.get("conditions") or [])
    conditions = set_condition(conditions, "Ready", ready, reason, message, generation, now)
    conditions = set_condition(
        conditions,
        "Reconciling",
        "True" if reconciling else "False",
        "DeploymentsProgressing" if reconciling else reason,
        f"{reconciling} of {total} on their way" if reconciling else "Up to date.",
        generation,
        now,
    )
    conditions = set_condition(
        conditions,
        "Stalled",
        "True" if stalled else "False",
        "DeploymentsStalled" if stalled else reason,
        f"stalled: {', '.join(stalled[:LISTED])}" if stalled else "Not stalled.",
        generation,
        now,
    )
    status.update(
        conditions=conditions,
        observedGeneration=generation,
        deployments=total,
        ready=total - len(waiting),
    )
    return status

"""Advance one run as far as it can go before its status must be saved.

Steps without outside effects (condition, set, log, noop) are chained in memory; an http
step's result is saved before the next step, so a crash repeats at most that one call
(at-least-once, with the same idempotency key); a wait or a retry backoff ends the advance
with `wakeAt`, so no worker is held while a run sleeps.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable

from controller.engine.breaker import CircuitBreakers
from controller.engine.steps import HttpCaller, RunContext, execute
from controller.model.runs import (
    Definition,
    Status,
    apply_outcome,
    bounded,
    current_attempt,
    finish,
    idempotency_key,
    is_terminal,
    parse_time,
    steps_of,
)

MAX_CHAINED_STEPS = 50  # pure steps run between two saves; bounds one worker's turn


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def advance(
    definition: Definition,
    status: Status,
    context: RunContext,
    http: HttpCaller,
    breakers: CircuitBreakers,
    clock: Callable[[], datetime.datetime] = _utcnow,
    draw: Callable[[], float] = random.random,
) -> Status:
    steps = steps_of(definition)
    for _ in range(MAX_CHAINED_STEPS):
        now = clock()
        if is_terminal(status):
            return status
        wake = parse_time(status.get("wakeAt"))
        if wake is not None and wake > now:
            return status
        step_id = str(status.get("currentStep"))
        if step_id not in steps:
            return finish(
                status, "Failed", f"step {step_id} does not exist in version {context.version}", now
            )
        visit, attempt = current_attempt(status)
        key = idempotency_key(context.uid, step_id, visit, attempt)
        outcome = await execute(definition, status, context, now, http, breakers, key)
        before, moment = status, clock()
        status = bounded(
            before, apply_outcome(definition, status, outcome, moment, draw()), step_id, moment
        )
        if steps[step_id]["type"] == "http" or status.get("wakeAt"):
            return status
    return status

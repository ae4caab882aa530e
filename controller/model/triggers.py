"""Pure decisions of the run triggers: webhook signatures, schedule catch-up, run names.

Run names are derived from what fired (the webhook delivery id, the schedule's fire time),
so the API server itself refuses a second run for the same event: a replayed delivery or a
fire seen by two replicas, or again after a restart, is one `AlreadyExists`, never a
duplicate run. This relies on the first run still existing: triggered runs are kept at
least 10 minutes after they finish, which covers the ±5-minute timestamp window of a
webhook and the default 5-minute catch-up window of a schedule (a longer
`startingDeadline` is covered while the operator runs, by its memory of the last fire);
older webhook replays are refused by the signature check anyway.

Webhook signature: `X-Flowpin-Signature: sha256=<hex>`, the HMAC-SHA256 with the trigger's
secret over `<delivery id>.<timestamp>.<path>.<body>`, where the path is
`/hooks/{namespace}/{workflow}/{environment}/{trigger}`. The delivery id and the timestamp
are signed, so neither can be changed to slip a replay through; the path is signed, so a
delivery captured for one trigger or environment cannot be replayed against another that
shares the Secret.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from typing import Any

from controller.api import kinds
from controller.model.schedule import next_fire

MAX_SKEW = datetime.timedelta(minutes=5)
DEFAULT_STARTING_DEADLINE = datetime.timedelta(minutes=5)
# Cron fires are searched ten years ahead at most; a longer deadline changes nothing, and
# `now - deadline` must stay a valid datetime.
MAX_STARTING_DEADLINE = datetime.timedelta(days=3660)


def webhook_path(namespace: str, workflow: str, environment: str, trigger: str) -> str:
    """The request path of a webhook trigger, as it is signed."""
    return f"/hooks/{namespace}/{workflow}/{environment}/{trigger}"


def sign(secret: str, delivery: str, timestamp: str, body: bytes, path: str) -> str:
    """`sha256=<hex>` over `<delivery>.<timestamp>.<path>.<body>`; `path` is the request
    path `/hooks/{namespace}/{workflow}/{environment}/{trigger}` (see `webhook_path`)."""
    signed = f"{delivery}.{timestamp}.{path}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def check_signature(
    secret: str,
    delivery: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    path: str,
    now: datetime.datetime,
) -> str | None:
    """None when the delivery is authentic and fresh; otherwise why not (for a 401)."""
    if not delivery or not timestamp or not signature:
        return "X-Flowpin-Delivery, X-Flowpin-Timestamp and X-Flowpin-Signature are required"
    expected = sign(secret, delivery, timestamp, body, path)
    if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
        return "signature does not match the trigger's secret"
    try:
        sent = datetime.datetime.fromtimestamp(int(timestamp), datetime.UTC)
    except (ValueError, OverflowError):
        return "X-Flowpin-Timestamp must be Unix seconds"
    if abs(now - sent) > MAX_SKEW:
        return "timestamp is more than 5 minutes from the server's clock"
    return None


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _prefix(workflow: str, environment: str) -> str:
    return f"{workflow}-{environment}"[:200]


def webhook_run_name(workflow: str, environment: str, trigger: str, delivery: str) -> str:
    return f"{_prefix(workflow, environment)}-{_short_hash(f'{trigger}/{delivery}')}"


def schedule_run_name(
    workflow: str, environment: str, trigger: str, fire: datetime.datetime
) -> str:
    stamp = fire.astimezone(datetime.UTC).strftime("%Y%m%d%H%M")
    return f"{_prefix(workflow, environment)}-{_short_hash(trigger)[:6]}-{stamp}"


def schedule_step(
    cron: str,
    timezone: str,
    deadline: datetime.timedelta,
    last_fired: datetime.datetime | None,
    now: datetime.datetime,
    *,
    not_before: datetime.datetime | None = None,
) -> tuple[datetime.datetime | None, datetime.datetime]:
    """(the fire to start now, if any; when to look again).

    Only the latest fire time not after `now` may start, and only when it is at most
    `deadline` old, newer than `last_fired` and after `not_before` (when the version became
    active: a schedule never fires for a time before it existed, as a CronJob): after
    downtime, one catch-up run at most, never a burst (as CronJob with
    startingDeadlineSeconds).
    """
    latest = _latest_fire(cron, timezone, now - min(deadline, MAX_STARTING_DEADLINE), now)
    floors = [moment for moment in (last_fired, not_before) if moment is not None]
    due = latest if latest is not None and all(latest > floor for floor in floors) else None
    return due, next_fire(cron, timezone, now)


def _latest_fire(
    cron: str, timezone: str, earliest: datetime.datetime, now: datetime.datetime
) -> datetime.datetime | None:
    """The latest fire time in [earliest, now], or None.

    Looks back over a window that doubles until it holds a fire, so the cost follows the
    schedule's spacing, not the deadline: "* * * * *" with a 30-day deadline would be 43,200
    fires one by one (seconds of a blocked event loop)."""
    span = datetime.timedelta(minutes=1)
    while True:
        start = max(now - span, earliest)
        latest: datetime.datetime | None = None
        fire = next_fire(cron, timezone, start - datetime.timedelta(microseconds=1))
        while fire <= now:
            latest = fire
            fire = next_fire(cron, timezone, fire)
        if latest is not None or start == earliest:
            return latest
        span *= 2


def run_object(
    workflow: str,
    env: str,
    inputs: dict[str, Any],
    version: str | None,
    at: datetime.datetime,
    trigger: str = "manual",
) -> dict[str, Any]:
    """The WorkflowRun a trigger creates when it fires `at`. The finalizer is set at
    creation, so counting the run costs no extra write (the controller adds it to runs
    created without it)."""
    spec: dict[str, Any] = {
        "workflow": workflow,
        "environment": env,
        "inputs": inputs,
        "trigger": {
            "type": trigger,
            "at": at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    if version:
        spec["version"] = version
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": kinds.WORKFLOW_RUN.kind,
        "metadata": {
            "generateName": f"{workflow}-{env}-"[:50],
            "labels": {kinds.LABEL_WORKFLOW: workflow, kinds.LABEL_ENVIRONMENT: env},
            "finalizers": [kinds.FINALIZER_RUN_COUNTS],
        },
        "spec": spec,
    }

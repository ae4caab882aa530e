"""Run triggers that live in the operator: the webhook receiver and the scheduler.

Webhook: `POST /hooks/{namespace}/{workflow}/{environment}/{trigger}` starts a run of the
environment's active version with the JSON body as inputs. Answers: 202 with the run's
name; 413 body over 1 MiB; 404 no webhook trigger at this path (unknown namespace,
workflow, environment or trigger, or no active version yet: one neutral answer, so an
unauthenticated caller learns nothing about what exists); 400 a delivery, timestamp or
signature header that is not printable ASCII; 401 bad signature or stale timestamp, or the
trigger's Secret is missing (the same answer; nothing else happens); 422 body not a JSON
object that `http.parse_json` accepts (nested at most 64 levels; no NaN, Infinity, 1e999
or lone surrogate), inputs not matching the inputs schema, or a run the API server refuses
as invalid (its reason is passed on: the sender's content, not worth a retry); 409 a
replayed delivery id; 503 the Kubernetes API failed or did not answer (try again). The
order of checks is size, existence, headers, signature, content, replay. Every answer is
JSON; a refusal is one log line, never a traceback. Secrets are read through a 30-second
cache, so unauthenticated requests do not cost an API call each.

Replays: a delivery is fresh for `MAX_SKEW` (5 minutes) either side of its timestamp, so
that is how long a replay could pass the signature check. `DeliveryLog` remembers each
accepted delivery id (per trigger path) until its timestamp leaves that window, whatever
happens to its run: a replay after the run was deleted is still a 409. It is kept in the
leader's memory, bounded (`DELIVERY_LOG_LIMIT` ids; past that the ids closest to expiry go
first); a new leader (an operator restart or a failover) starts with an empty log. The
second line, which survives restarts, is the run's name: it derives from the delivery id,
so the API server refuses a second run while the first exists (a triggered run is kept at
least 10 minutes after it finishes). Only a replay within 5 minutes of the timestamp, to a
new leader, after the run was deleted by hand, gets through both.

Scheduler: for every deployment with an active version, each schedule trigger of that
version fires at its cron times in its time zone, never for a time at or before the version
became active; `model/triggers.py` decides the catch-up after downtime and names the runs so
that a fire starts one run, whatever restarts or replicas do.
"""

from __future__ import annotations

import asyncio
import datetime
import heapq
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import kopf
import urllib3
from aiohttp import web
from kubernetes.client.exceptions import ApiException

from controller.api import kinds
from controller.model import canary
from controller.model.durations import parse_duration
from controller.model.runs import input_errors
from controller.model.triggers import (
    DEFAULT_STARTING_DEADLINE,
    MAX_SKEW,
    check_signature,
    run_object,
    schedule_run_name,
    schedule_step,
    webhook_path,
    webhook_run_name,
)
from controller.operator.http import (
    BadJson,
    ClientGone,
    Refused,
    non_ascii_header,
    parse_json,
    printable,
    read_body,
)
from controller.operator.kube import Kube, Obj
from controller.operator.runs import RunController
from controller.operator.watches import watch
from controller.operator.workqueue import WorkQueue, utcnow

logger = logging.getLogger("flowpin.triggers")
DEFAULT_SECRET_KEY = "secret"
SECRET_TTL = 30.0  # seconds a Secret's data is cached by the webhook receiver
NOT_FOUND = "no webhook trigger at this path"
UNAVAILABLE = "the Kubernetes API is not available; try again later"
ScheduleKey = tuple[str, str, str, str]  # namespace, workflow, environment, trigger id
# What the Kubernetes client raises when the API fails: an answer, or none at all.
API_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)
# Answers of the API server to a create that say the object is invalid: its content (the
# inputs a sender posted), not the server, is at fault, and a retry would fail the same way.
INVALID_OBJECT = frozenset({400, 422})
DELIVERY_HEADERS = ("X-Flowpin-Delivery", "X-Flowpin-Timestamp", "X-Flowpin-Signature")
DELIVERY_LOG_LIMIT = 100_000  # ids remembered at most (about 330 deliveries a second)
RETRY_AFTER = "5"


def api_error_reason(error: BaseException) -> str:
    """A failed API call in a few words: the status and reason of an answer, or the kind of
    failure when there was none (never the request, which may hold a secret)."""
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return type(error).__name__


def api_message(error: ApiException) -> str:
    """The `message` of the API server's Status answer (why it refused), shortened."""
    try:
        message = str(json.loads(error.body or "{}").get("message") or "")
    except (ValueError, AttributeError, TypeError):
        message = ""
    message = message or f"{error.status} {error.reason}"
    return message if len(message) <= 1000 else message[:1000] + "..."


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _create_run(controller: RunController, namespace: str, body: Obj) -> bool:
    """False when a run of that name exists: the same delivery or fire, seen again."""
    try:
        await controller.kube.create_object(kinds.WORKFLOW_RUN.kind, namespace, body)
        return True
    except ApiException as error:
        if error.status == 409:
            return False
        raise


class SecretCache:
    """Secrets' data per (namespace, name), kept `ttl` seconds, a missing Secret included
    (None); concurrent misses of one Secret share one read. Errors are not kept. Values are
    never logged."""

    def __init__(
        self, kube: Kube, ttl: float = SECRET_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kube = kube
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[tuple[str, str], tuple[float, dict[str, str] | None]] = {}
        self._reading: dict[tuple[str, str], asyncio.Future[dict[str, str] | None]] = {}
        self._warned: dict[tuple[str, str, str], float] = {}

    async def get(self, namespace: str, name: str) -> dict[str, str] | None:
        key = (namespace, name)
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and now < entry[0]:
            return entry[1]
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self.kube.secret(namespace, name))
            # Its error is retrieved even when every request waiting for it has gone.
            reading.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._reading[key] = reading
            try:
                data = await asyncio.shield(reading)
            finally:
                self._reading.pop(key, None)
            self._entries = {k: v for k, v in self._entries.items() if now < v[0]}
            self._entries[key] = (self.clock() + self.ttl, data)
            return data
        return await asyncio.shield(reading)

    def warn_once(self, namespace: str, name: str, key: str) -> bool:
        """True at most once per `ttl` for a Secret without its key: unauthenticated
        callers must not be able to flood the log."""
        now = self.clock()
        if now < self._warned.get((namespace, name, key), float("-inf")):
            return False
        self._warned = {k: v for k, v in self._warned.items() if now < v}
        self._warned[(namespace, name, key)] = now + self.ttl
        return True


class DeliveryLog:
    """The delivery ids accepted per trigger path, each until its timestamp leaves the
    replay window (`MAX_SKEW` after it; a replay later than that fails the timestamp
    check), in memory, at most `limit` of them (the ids closest to expiry go first). Times
    are Unix seconds of the clock the timestamp check uses. See the module docstring for
    what this does and does not cover."""

    def __init__(self, limit: int = DELIVERY_LOG_LIMIT) -> None:
        self.limit = limit
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []  # may hold stale entries
        self._warned_until = float("-inf")

    def __len__(self) -> int:
        return len(self._expiry)

    def claim(self, path: str, delivery: str, sent: float, now: float) -> bool:
        """Remember `delivery` at `path`, sent at `sent`; False when it is remembered
        already (a replay). No await inside: concurrent copies of a delivery, one wins."""
        self._expire(now)
        key = (path, delivery)
        if key in self._expiry:
            return False
        while self._expiry and len(self._expiry) >= self.limit:
            self._evict(now)
        expiry = sent + MAX_SKEW.total_seconds() + 1
        self._expiry[key] = expiry
        heapq.heappush(self._heap, (expiry, key))
        if len(self._heap) > 2 * max(self.limit, len(self._expiry)):
            self._heap = [(e, k) for k, e in self._expiry.items()]
            heapq.heapify(self._heap)
        return True

    def release(self, path: str, delivery: str) -> None:
        """Forget a claim whose run was not created (the sender may try again)."""
        self._expiry.pop((path, delivery), None)

    def _expire(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            expiry, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expiry:
                del self._expiry[key]

    def _evict(self, now: float) -> None:
        expiry, key = heapq.heappop(self._heap)
        if self._expiry.get(key) != expiry:
            return  # a stale entry: released, or claimed again since
        del self._expiry[key]
        if now >= self._warned_until:
            self._warned_until = now + MAX_SKEW.total_seconds()
            logger.warning(
                "more than %d webhook deliveries in %d minutes: the oldest delivery ids are "
                "forgotten before their replay window ends (a replay of one is refused only "
                "while its run exists)",
                self.limit, MAX_SKEW.total_seconds() // 60,
            )  # fmt: skip


def add_run_webhook_route(
    app: web.Application,
    controller: RunController,
    secrets_cache: SecretCache | None = None,
    deliveries: DeliveryLog | None = None,
) -> None:
    cache = secrets_cache or SecretCache(controller.kube)
    seen = deliveries if deliveries is not None else DeliveryLog()

    async def receive(request: web.Request) -> web.Response:
        response = await _answer(request, controller, cache, seen)
        controller.metrics.inc(
            "flowpin_webhook_requests_total", endpoint="run", code=str(response.status)
        )
        return response

    app.router.add_post("/hooks/{namespace}/{workflow}/{environment}/{trigger}", receive)


async def _answer(
    request: web.Request, controller: RunController, cache: SecretCache, seen: DeliveryLog
) -> web.Response:
    """The answer to one delivery, always JSON: a refusal is one log line, a failing
    Kubernetes API a 503."""
    path = printable(request.path)
    try:
        body = await read_body(request)
        return await _start_from_webhook(request, body, controller, cache, seen)
    except Refused as refused:
        if not isinstance(refused, ClientGone):  # read_body has logged that one
            logger.info("webhook %s: %d, %s", path, refused.status, refused.reason)
        return refused.response()
    except API_ERRORS as error:
        reason = api_error_reason(error)
        logger.warning("webhook %s: 503, the Kubernetes API failed: %s", path, reason)
        response = _error(503, UNAVAILABLE)
        response.headers["Retry-After"] = RETRY_AFTER
        return response
    except Exception:
        logger.exception("webhook %s: 500, unexpected error", path)
        return _error(500, "internal error")


async def _start_from_webhook(
    request: web.Request,
    body: bytes,
    controller: RunController,
    cache: SecretCache,
    seen: DeliveryLog,
) -> web.Response:
    namespace = request.match_info["namespace"]
    workflow = request.match_info["workflow"]
    environment = request.match_info["environment"]
    trigger_id = request.match_info["trigger"]
    path = webhook_path(namespace, workflow, environment, trigger_id)
    shown = printable(path)

    def not_found(reason: str) -> web.Response:
        logger.info("webhook %s: 404, %s", shown, printable(reason))
        return _error(404, NOT_FOUND)

    def refuse(status: int, reason: str, **extra: Any) -> web.Response:
        logger.info("webhook %s: %d, %s", shown, status, printable(reason))
        return _error(status, reason, **extra)

    deployment = controller.deployment_of(
        namespace, kinds.deployment_object_name(workflow, environment)
    )
    if deployment is None:
        return not_found(f"no deployment of {workflow} in environment {environment}")
    status = deployment.get("status") or {}
    stable = status.get("activeVersion")
    if not stable:
        return not_found(f"{workflow} has no active version in {environment} yet")
    # Checked once existence is (a 404 says nothing more to a caller than before), used
    # only once they are known to be ASCII (they are hashed and signed as bytes).
    bad_header = non_ascii_header(request, DELIVERY_HEADERS)
    delivery = "" if bad_header else request.headers.get("X-Flowpin-Delivery") or ""
    name = webhook_run_name(workflow, environment, trigger_id, delivery)
    # A canary in progress takes its share of webhook runs too, decided by the run's name as
    # for every new run; a canary version without this trigger leaves its runs to the stable.
    version, _ = canary.assign(name, str(stable), status.get("canary") or {}, environment)
    definition, trigger = await _webhook_trigger(
        controller, namespace, workflow, version, trigger_id
    )
    if trigger is None and version != stable:
        version = str(stable)
        definition, trigger = await _webhook_trigger(
            controller, namespace, workflow, version, trigger_id
        )
    if definition is None or trigger is None:
        return not_found(f"{workflow} {version} has no webhook trigger {trigger_id}")
    if bad_header is not None:
        return refuse(400, f"header {bad_header} must be printable ASCII")

    reference = trigger.get("secretRef") or {}
    secret_name = str(reference.get("name"))
    key = str(reference.get("key", DEFAULT_SECRET_KEY))
    data = await cache.get(namespace, secret_name)
    secret = (data or {}).get(key)
    if not secret:
        if cache.warn_once(namespace, secret_name, key):
            logger.warning(
                "webhook %s: Secret %s/%s %s; every delivery is refused with 401",
                shown, namespace, secret_name,
                "does not exist" if data is None else f"has no key {key!r}",
            )  # fmt: skip
        # Checked against a random secret, so the answer is that of a bad signature.
        secret = secrets.token_hex(32)
    timestamp = request.headers.get("X-Flowpin-Timestamp")
    now = utcnow()
    problem = check_signature(
        secret, delivery, timestamp, request.headers.get("X-Flowpin-Signature"), body, path, now
    )
    if problem is not None:
        return refuse(401, problem)

    try:
        inputs = parse_json(body) if body.strip() else {}
    except BadJson as error:
        return refuse(422, str(error))
    if not isinstance(inputs, dict):
        return refuse(422, "body must be a JSON object (the run's inputs)")
    errors = input_errors(definition.get("inputs"), inputs)
    if errors:
        return refuse(422, "inputs do not match the inputs schema", errors=errors)

    already = f"delivery {delivery} was already received"
    if not seen.claim(path, delivery, int(str(timestamp)), now.timestamp()):
        return refuse(409, already, run=name)
    run = run_object(workflow, environment, inputs, str(version), utcnow(), trigger="webhook")
    run["metadata"].pop("generateName")
    run["metadata"]["name"] = name
    run["spec"]["trigger"].update(id=trigger_id, deliveryId=delivery)
    try:
        created = await _create_run(controller, namespace, run)
    except ApiException as error:
        seen.release(path, delivery)
        if error.status in INVALID_OBJECT:
            return refuse(422, f"the API server refused the run: {api_message(error)}")
        raise
    except BaseException:
        seen.release(path, delivery)
        raise
    if not created:
        return refuse(409, already, run=name)
    controller.metrics.inc("flowpin_runs_started_total", trigger="webhook")
    return web.json_response({"run": name, "version": version}, status=202)


def _parse_time(text: Any) -> datetime.datetime | None:
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


async def _webhook_trigger(
    controller: RunController, namespace: str, workflow: str, version: str | None, trigger_id: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A version's definition and its webhook trigger of that id (None where missing)."""
    definition = await controller.definition(namespace, workflow, str(version))
    triggers = (definition or {}).get("triggers") or []
    trigger = next(
        (t for t in triggers if t.get("id") == trigger_id and t.get("type") == "webhook"), None
    )
    return definition, trigger


def activated_at(status: Obj) -> datetime.datetime | None:
    """When the deployment's active version became active: `verifiedAt`, or a later
    rollback to it (a rollback does not move `verifiedAt`)."""
    active = status.get("activeVersion")
    moments = [_parse_time(status.get("verifiedAt"))]
    moments += [
        _parse_time(item.get("finishedAt"))
        for item in status.get("history") or []
        if item.get("version") == active and item.get("result") == "RolledBack"
    ]
    found = [moment for moment in moments if moment is not None]
    return max(found) if found else None


class Scheduler:
    """Fires schedule triggers of active versions. Keys are (namespace, workflow,
    environment, trigger); each is woken at its next fire time by the work queue."""

    def __init__(self, controller: RunController) -> None:
        self.controller = controller
        self.active: dict[tuple[str, str], Obj] = {}  # deployment key → its body
        self.last_fired: dict[ScheduleKey, datetime.datetime] = {}
        self.armed: dict[ScheduleKey, datetime.datetime] = {}  # one timer per key
        self.queue: WorkQueue[ScheduleKey] = WorkQueue(self.handle, 4, "schedules")

    def on_deployment(self, event_type: str, body: Obj) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        before = ((self.active.get(key) or {}).get("status") or {}).get("activeVersion")
        spec = body.get("spec") or {}
        workflow, environment = str(spec.get("workflow")), str(spec.get("environment"))
        if event_type == "DELETED":
            self.active.pop(key, None)
            self._forget(key[0], workflow, environment)
            return
        self.active[key] = body
        after = (body.get("status") or {}).get("activeVersion")
        if after and after != before:
            self.queue.enqueue([(key[0], workflow, environment, "*")])

    def _forget(
        self, namespace: str, workflow: str, environment: str, keep: frozenset[str] = frozenset()
    ) -> None:
        """Drop what is remembered of a deployment's schedules, but those in `keep`."""
        for known in (self.armed, self.last_fired):
            for key in [
                k for k in known if k[:3] == (namespace, workflow, environment) and k[3] not in keep
            ]:
                del known[key]

    async def handle(self, key: ScheduleKey) -> None:
        namespace, workflow, environment, trigger_id = key
        deployment = self.active.get(
            (namespace, kinds.deployment_object_name(workflow, environment))
        )
        status = (deployment or {}).get("status") or {}
        version = status.get("activeVersion")
        if not version:
            self._forget(namespace, workflow, environment)
            return
        definition = await self.controller.definition(namespace, workflow, str(version))
        schedules = [
            t for t in (definition or {}).get("triggers") or [] if t.get("type") == "schedule"
        ]
        if trigger_id == "*":  # a new active version: (re)arm each of its schedules
            ids = [str(t["id"]) for t in schedules]
            self._forget(namespace, workflow, environment, keep=frozenset(ids))
            self.queue.enqueue([(namespace, workflow, environment, i) for i in ids])
            return
        trigger = next((t for t in schedules if t.get("id") == trigger_id), None)
        if trigger is None:  # the active version no longer has this schedule
            self.armed.pop(key, None)
            self.last_fired.pop(key, None)
            return
        deadline = (
            parse_duration(str(trigger["startingDeadline"]))
            if trigger.get("startingDeadline")
            else DEFAULT_STARTING_DEADLINE
        )
        now = utcnow()
        due, next_at = schedule_step(
            str(trigger["schedule"]),
            str(trigger.get("timezone", "UTC")),
            deadline,
            self.last_fired.get(key),
            now,
            # A newly active version does not fire for a time before it became active.
            not_before=activated_at(status),
        )
        if due is not None:
            run = run_object(
                workflow, environment, dict(trigger.get("inputs") or {}), None, due, "schedule"
            )
            run["metadata"].pop("generateName")
            run["metadata"]["name"] = schedule_run_name(workflow, environment, trigger_id, due)
            run["spec"]["trigger"]["id"] = trigger_id
            created = await _create_run(self.controller, namespace, run)
            self.controller.metrics.inc(
                "flowpin_schedule_fires_total", result="created" if created else "exists"
            )
            if created:
                self.controller.metrics.inc("flowpin_runs_started_total", trigger="schedule")
                logger.info(
                    "%s/%s: schedule %s fired for %s",
                    namespace,
                    run["metadata"]["name"],
                    trigger_id,
                    due,
                )
            self.last_fired[key] = due
        if self.armed.get(key) != next_at:
            self.armed[key] = next_at
            self.queue.wake_at(next_at, key)


def register(handlers: kopf.OperatorRegistry, scheduler: Scheduler) -> None:
    watch(
        handlers,
        kinds.WORKFLOW_DEPLOYMENT,
        "schedule-workflowdeployment",
        scheduler.on_deployment,
        scheduler.queue.start,
    )

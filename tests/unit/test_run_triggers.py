"""The operator's run triggers (controller.operator.triggers) over an in-memory API: what
the webhook receiver tells a caller without the secret, its Secret cache, its answers when
the API fails, a 4xx in JSON and one log line whatever a sender sends, replays refused
after their run is gone, and the scheduler's floor at activation and its bookkeeping."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import urllib3
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from kubernetes.client.exceptions import ApiException

from controller.api import kinds
from controller.model.canary import bucket
from controller.model.triggers import MAX_SKEW, schedule_run_name, sign
from controller.operator import triggers
from controller.operator.runs import RunController
from controller.operator.triggers import NOT_FOUND, Scheduler, SecretCache, activated_at
from tests.unit.engine import ScriptedHttp

NS = "ns"
SECRET = "topsecret"
Obj = dict[str, Any]
DEFINITION: Obj = {
    "inputs": {"type": "object", "properties": {"email": {"type": "string"}}},
    "triggers": [
        {"id": "form", "type": "webhook", "secretRef": {"name": "hook"}},
        {"id": "other", "type": "webhook", "secretRef": {"name": "hook", "key": "other"}},
        {"id": "gone", "type": "webhook", "secretRef": {"name": "missing"}},
        {"id": "sweep", "type": "schedule", "schedule": "* * * * *"},
    ],
    "steps": [{"id": "s", "type": "noop"}],
}


class MemoryKube:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {
            (NS, "hook"): {"secret": SECRET, "unrelated": "do-not-log-me"}
        }
        self.versions: dict[str, Obj] = {
            kinds.version_object_name("wf", "1.0.0"): {"spec": {"definition": DEFINITION}}
        }
        self.runs: dict[str, Obj] = {}
        self.secret_reads = 0
        self.secret_error: Exception | None = None
        self.create_error: Exception | None = None

    async def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        self.secret_reads += 1
        await asyncio.sleep(0.01)  # concurrent readers overlap
        if self.secret_error is not None:
            raise self.secret_error
        found = self.secrets.get((namespace, name))
        return dict(found) if found is not None else None

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        found = self.versions.get(name) if kind == kinds.WORKFLOW_VERSION.kind else None
        return copy.deepcopy(found) if found is not None else None

    async def create_object(self, kind: str, namespace: str, body: Obj) -> Obj:
        if self.create_error is not None:
            raise self.create_error
        name = body["metadata"]["name"]
        if name in self.runs:
            raise ApiException(status=409, reason="AlreadyExists")
        self.runs[name] = copy.deepcopy(body)
        return body


def deployment(environment: str, status: Obj | None = None, workflow: str = "wf") -> Obj:
    return {
        "metadata": {
            "namespace": NS,
            "name": kinds.deployment_object_name(workflow, environment),
        },
        "spec": {"workflow": workflow, "environment": environment},
        "status": {"activeVersion": "1.0.0"} if status is None else status,
    }


DEPLOYMENTS = {
    (NS, "wf.dev"): deployment("dev"),
    (NS, "wf.prod"): deployment("prod"),
    (NS, "wf.staging"): deployment("staging", {}),  # no active version yet
}


def controller_over(kube: MemoryKube) -> RunController:
    return RunController(
        kube,  # type: ignore[arg-type]
        ScriptedHttp(),
        lambda namespace, name: DEPLOYMENTS.get((namespace, name)),
        lambda namespace, name: None,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Post = Callable[..., Awaitable[tuple[int, Obj]]]


def with_receiver(
    scenario: Callable[[Post, MemoryKube, RunController, Clock], Awaitable[None]],
) -> None:
    async def main() -> None:
        kube, clock = MemoryKube(), Clock()
        controller = controller_over(kube)
        app = web.Application()
        triggers.add_run_webhook_route(app, controller, SecretCache(kube, clock=clock))  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:

            async def post(
                path: str = "wf/dev/form",
                body: bytes = b'{"email": "ada@example.org"}',
                *,
                secret: str = SECRET,
                delivery: str | None = None,
                signed_path: str | None = None,
                headers: bool = True,
            ) -> tuple[int, Obj]:
                delivery = delivery or f"d-{time.monotonic_ns()}"
                stamp = str(int(time.time()))
                full = f"/hooks/{NS}/{path}"
                sent = (
                    {
                        "X-Flowpin-Delivery": delivery,
                        "X-Flowpin-Timestamp": stamp,
                        "X-Flowpin-Signature": sign(
                            secret, delivery, stamp, body, signed_path or full
                        ),
                    }
                    if headers
                    else {}
                )
                response = await client.post(full, data=body, headers=sent)
                assert response.content_type == "application/json"  # never plain text
                return response.status, await response.json()

            await scenario(post, kube, controller, clock)

    asyncio.run(main())


# ------------------------------------------------------------- before authentication


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("wf/dev/nope", "wf 1.0.0 has no webhook trigger nope"),
        ("wf/dev/sweep", "wf 1.0.0 has no webhook trigger sweep"),  # a schedule trigger
        ("wf/qa/form", "no deployment of wf in environment qa"),
        ("nope/dev/form", "no deployment of nope in environment dev"),
        ("wf/staging/form", "wf has no active version in staging yet"),
    ],
)
def test_what_does_not_exist_is_one_neutral_404(
    path: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(post: Post, kube: MemoryKube, *_: Any) -> None:
        for kwargs in ({}, {"secret": "wrong"}, {"headers": False}):
            assert await post(path, **kwargs) == (404, {"error": NOT_FOUND})
        assert kube.secret_reads == 0 and kube.runs == {}

    with caplog.at_level(logging.INFO, "flowpin.triggers"):
        with_receiver(scenario)
    logged = [r for r in caplog.records if r.name == "flowpin.triggers"]
    assert logged and all(r.levelno == logging.INFO for r in logged)
    assert all(reason in r.getMessage() for r in logged)


def test_an_unknown_namespace_is_the_same_404() -> None:
    async def main() -> None:
        kube = MemoryKube()
        app = web.Application()
        triggers.add_run_webhook_route(app, controller_over(kube))
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/hooks/elsewhere/wf/dev/form", data=b"{}")
            assert (response.status, await response.json()) == (404, {"error": NOT_FOUND})

    asyncio.run(main())


def test_size_is_checked_before_existence() -> None:
    async def scenario(post: Post, *_: Any) -> None:
        big = b'{"email": "' + b"x" * (1 << 20) + b'"}'
        status, answer = await post("nope/dev/form", big)
        assert status == 413 and answer["error"]

    with_receiver(scenario)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("wf/dev/gone", "does not exist"),  # the Secret is missing
        ("wf/dev/other", "has no key 'other'"),  # the Secret has not the key
    ],
)
def test_a_missing_secret_answers_as_a_bad_signature(
    path: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(post: Post, kube: MemoryKube, *_: Any) -> None:
        for kwargs in ({}, {"secret": "guess"}, {"headers": False}):
            # the same answer as a wrong signature, or missing headers, on a sound trigger
            assert await post(path, **kwargs) == await post(
                "wf/dev/form", **({"secret": "wrong"} if kwargs.get("headers", True) else kwargs)
            )
        assert kube.runs == {}

    with caplog.at_level(logging.INFO, "flowpin.triggers"):
        with_receiver(scenario)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per cache period, not once per request
    secret_name = "missing" if path.endswith("gone") else "hook"
    assert f"Secret ns/{secret_name} {problem}" in warnings[0].getMessage()
    assert SECRET not in caplog.text and "do-not-log-me" not in caplog.text


def test_a_wrong_signature_answers_401_with_its_reason() -> None:
    async def scenario(post: Post, *_: Any) -> None:
        assert await post(secret="wrong") == (
            401,
            {"error": "signature does not match the trigger's secret"},
        )
        status, answer = await post(headers=False)
        assert status == 401 and "are required" in answer["error"]

    with_receiver(scenario)


# ------------------------------------------------------------------------ the path


@pytest.mark.parametrize(
    "signed_for",
    [
        "/hooks/ns/wf/prod/form",  # another environment with the same Secret
        "/hooks/ns/wf/dev/other",  # another trigger
        "/hooks/ns/other/dev/form",
        "/hooks/other/wf/dev/form",
    ],
)
def test_a_delivery_signed_for_another_path_is_refused(signed_for: str) -> None:
    async def scenario(post: Post, kube: MemoryKube, *_: Any) -> None:
        status, answer = await post("wf/dev/form", signed_path=signed_for, delivery="d-1")
        assert (status, answer) == (401, {"error": "signature does not match the trigger's secret"})
        assert kube.runs == {}
        status, answer = await post("wf/prod/form", signed_path="/hooks/ns/wf/prod/form")
        assert status == 202 and answer["version"] == "1.0.0"

    with_receiver(scenario)


# ------------------------------------------------------------------- the Secret cache


def test_secrets_are_read_once_per_30_seconds() -> None:
    async def scenario(post: Post, kube: MemoryKube, _: Any, clock: Clock) -> None:
        for _ in range(5):
            assert (await post(secret="wrong"))[0] == 401
        assert (await post())[0] == 202
        assert kube.secret_reads == 1
        clock.now += 29
        assert (await post())[0] == 202
        assert kube.secret_reads == 1
        kube.secrets[(NS, "hook")] = {"secret": "rotated"}
        clock.now += 2  # 31 s after the read: read again, the rotated secret applies
        assert (await post())[0] == 401
        assert (await post(secret="rotated"))[0] == 202
        assert kube.secret_reads == 2
        # a missing Secret is remembered too
        for _ in range(3):
            assert (await post("wf/dev/gone"))[0] == 401
        assert kube.secret_reads == 3

    with_receiver(scenario)


def test_concurrent_misses_share_one_read() -> None:
    async def scenario(post: Post, kube: MemoryKube, *_: Any) -> None:
        answers = await asyncio.gather(*(post(secret="wrong") for _ in range(10)))
        assert {status for status, _ in answers} == {401}
        assert kube.secret_reads == 1

    with_receiver(scenario)


def test_a_failed_read_is_not_cached() -> None:
    async def main() -> None:
        kube, clock = MemoryKube(), Clock()
        cache = SecretCache(kube, clock=clock)  # type: ignore[arg-type]
        kube.secret_error = ApiException(status=500, reason="Internal")
        with pytest.raises(ApiException):
            await cache.get(NS, "hook")
        kube.secret_error = None
        assert await cache.get(NS, "hook") == kube.secrets[(NS, "hook")]
        assert kube.secret_reads == 2

    asyncio.run(main())


# ---------------------------------------------------------------- the API failing


@pytest.mark.parametrize(
    "error",
    [
        ApiException(status=500, reason="Internal Server Error"),
        ApiException(status=403, reason="Forbidden"),
        ApiException(status=429, reason="Too Many Requests"),
        urllib3.exceptions.MaxRetryError(None, "/api", "refused"),  # type: ignore[arg-type]
        ConnectionRefusedError("refused"),
    ],
)
@pytest.mark.parametrize("where", ["secret", "create"])
def test_api_errors_answer_json_503(error: Exception, where: str) -> None:
    async def scenario(post: Post, kube: MemoryKube, controller: RunController, _: Any) -> None:
        setattr(kube, f"{where}_error", error)
        status, answer = await post()
        assert status == 503 and answer == {"error": triggers.UNAVAILABLE}
        metric = controller.metrics.value
        assert metric("flowpin_webhook_requests_total", endpoint="run", code="503") == 1
        setattr(kube, f"{where}_error", None)
        assert (await post())[0] == 202  # nothing was cached from the failure

    with_receiver(scenario)


# ----------------------------------------------------------------------- the order


def test_signature_then_content_then_replay() -> None:
    async def scenario(post: Post, kube: MemoryKube, controller: RunController, _: Any) -> None:
        assert (await post(body=b"{oops", secret="wrong"))[0] == 401
        assert (await post(body=b"{oops"))[0] == 422
        assert (await post(body=b'{"email": 7}'))[0] == 422
        status, first = await post(delivery="d-1")
        assert status == 202 and first["run"] in kube.runs
        assert (await post(body=b"[1]", delivery="d-1"))[0] == 422  # content before replay
        status, again = await post(delivery="d-1")
        assert status == 409 and again["run"] == first["run"]
        codes = {
            code: controller.metrics.value(
                "flowpin_webhook_requests_total", endpoint="run", code=code
            )
            for code in ("202", "401", "409", "422")
        }
        assert codes == {"202": 1, "401": 1, "409": 1, "422": 3}

    with_receiver(scenario)


def test_a_canary_takes_its_share_of_webhook_runs_by_name() -> None:
    canary = {"version": "1.1.0", "weight": 50, "state": "Progressing"}
    DEPLOYMENTS[(NS, "wf.qa")] = deployment("qa", {"activeVersion": "1.0.0", "canary": canary})

    async def scenario(post: Post, kube: MemoryKube, controller: RunController, _: Any) -> None:
        kube.versions[kinds.version_object_name("wf", "1.1.0")] = {
            "spec": {"definition": DEFINITION}
        }
        chosen = {}
        for index in range(40):
            status, answer = await post("wf/qa/form", delivery=f"d-{index}")
            assert status == 202
            chosen[answer["run"]] = answer["version"]
            assert kube.runs[answer["run"]]["spec"]["version"] == answer["version"]
        assert set(chosen.values()) == {"1.0.0", "1.1.0"}
        assert all(
            (v == "1.1.0") == (bucket(name) < 50) for name, v in chosen.items()
        )  # the same rule as for runs started without a version
        # A canary version without the trigger leaves every run to the stable version.
        kube.versions[kinds.version_object_name("wf", "1.1.0")] = {
            "spec": {"definition": {**DEFINITION, "triggers": []}}
        }
        controller._definitions.clear()
        versions = {(await post("wf/qa/form", delivery=f"e-{i}"))[1]["version"] for i in range(20)}
        assert versions == {"1.0.0"}

    try:
        with_receiver(scenario)
    finally:
        del DEPLOYMENTS[(NS, "wf.qa")]


# --------------------------------------------------------------------- the scheduler

KEY = (NS, "wf", "dev", "sweep")


def at(text: str) -> datetime:
    return datetime.fromisoformat(f"2024-05-01T{text}").replace(tzinfo=UTC)


def scheduled(status: Obj) -> tuple[MemoryKube, Scheduler]:
    kube = MemoryKube()
    scheduler = Scheduler(controller_over(kube))
    scheduler.on_deployment("ADDED", deployment("dev", status))
    return kube, scheduler


def step(
    scheduler: Scheduler, now: datetime, monkeypatch: pytest.MonkeyPatch, key: Any = KEY
) -> None:
    monkeypatch.setattr(triggers, "utcnow", lambda: now)
    asyncio.run(scheduler.handle(key))


def fire_times(kube: MemoryKube) -> list[str]:
    return sorted(run["spec"]["trigger"]["at"] for run in kube.runs.values())


def test_a_newly_active_version_fires_at_its_next_time(monkeypatch: pytest.MonkeyPatch) -> None:
    status = {"activeVersion": "1.0.0", "verifiedAt": "2024-05-01T12:00:30Z"}
    kube, scheduler = scheduled(status)
    step(scheduler, at("12:00:31"), monkeypatch)  # on activation: 12:00 was before it
    assert kube.runs == {} and scheduler.armed[KEY] == at("12:01:00")
    step(scheduler, at("12:01:00"), monkeypatch)
    assert fire_times(kube) == ["2024-05-01T12:01:00Z"]
    assert schedule_run_name("wf", "dev", "sweep", at("12:01:00")) in kube.runs
    step(scheduler, at("12:01:10"), monkeypatch)
    step(scheduler, at("12:02:00"), monkeypatch)
    assert fire_times(kube) == ["2024-05-01T12:01:00Z", "2024-05-01T12:02:00Z"]


def test_a_restarted_scheduler_catches_up_once_after_activation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status = {"activeVersion": "1.0.0", "verifiedAt": "2024-05-01T11:00:00Z"}
    kube, first = scheduled(status)
    step(first, at("12:03:00"), monkeypatch)
    second = Scheduler(first.controller)  # a restart: nothing remembered
    second.on_deployment("ADDED", deployment("dev", status))
    step(second, at("12:03:20"), monkeypatch)
    assert fire_times(kube) == ["2024-05-01T12:03:00Z"]  # one run, the second was "exists"
    metric = first.controller.metrics.value
    assert metric("flowpin_schedule_fires_total", result="created") == 1
    assert metric("flowpin_schedule_fires_total", result="exists") == 1


def test_a_rollback_counts_as_activation(monkeypatch: pytest.MonkeyPatch) -> None:
    status = {
        "activeVersion": "1.0.0",
        "verifiedAt": "2024-05-01T10:00:00Z",  # when 2.0.0 was activated
        "history": [
            {"version": "1.0.0", "result": "Activated", "finishedAt": "2024-05-01T09:00:00Z"},
            {"version": "2.0.0", "result": "Activated", "finishedAt": "2024-05-01T10:00:00Z"},
            {"version": "1.0.0", "result": "RolledBack", "finishedAt": "2024-05-01T12:00:30Z"},
        ],
    }
    assert activated_at(status) == at("12:00:30")
    kube, scheduler = scheduled(status)
    step(scheduler, at("12:00:40"), monkeypatch)
    assert kube.runs == {}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, None),
        ({"activeVersion": "1.0.0"}, None),
        ({"activeVersion": "1.0.0", "verifiedAt": "2024-05-01T12:00:30Z"}, "12:00:30"),
        ({"activeVersion": "1.0.0", "verifiedAt": "not a time"}, None),
        (
            {
                "activeVersion": "1.0.0",
                "verifiedAt": "2024-05-01T12:00:30Z",
                "history": [
                    {"version": "0.9.0", "result": "RolledBack", "finishedAt": "2024-05-01T13:00Z"}
                ],
            },
            "12:00:30",
        ),
    ],
)
def test_activated_at(status: Obj, expected: str | None) -> None:
    assert activated_at(status) == (at(expected) if expected else None)


def test_a_deleted_deployment_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    status = {"activeVersion": "1.0.0", "verifiedAt": "2024-05-01T11:00:00Z"}
    kube, scheduler = scheduled(status)
    scheduler.on_deployment("ADDED", deployment("prod", status))
    step(scheduler, at("12:03:00"), monkeypatch)
    step(scheduler, at("12:03:00"), monkeypatch, (NS, "wf", "prod", "sweep"))
    assert (
        set(scheduler.armed)
        == set(scheduler.last_fired)
        == {
            KEY,
            (NS, "wf", "prod", "sweep"),
        }
    )
    scheduler.on_deployment("DELETED", deployment("dev", status))
    assert set(scheduler.armed) == set(scheduler.last_fired) == {(NS, "wf", "prod", "sweep")}
    step(scheduler, at("12:04:00"), monkeypatch)  # its timer still goes off: nothing happens
    assert KEY not in scheduler.armed and len(kube.runs) == 2


def test_a_schedule_the_new_version_lacks_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    status = {"activeVersion": "1.0.0", "verifiedAt": "2024-05-01T11:00:00Z"}
    kube, scheduler = scheduled(status)
    step(scheduler, at("12:03:00"), monkeypatch)
    assert KEY in scheduler.armed and KEY in scheduler.last_fired
    without = {
        **DEFINITION,
        "triggers": [{"id": "nightly", "type": "schedule", "schedule": "0 9 * * *"}],
    }
    kube.versions[kinds.version_object_name("wf", "2.0.0")] = {"spec": {"definition": without}}
    new = {"activeVersion": "2.0.0", "verifiedAt": "2024-05-01T12:03:30Z"}
    scheduler.on_deployment("MODIFIED", deployment("dev", new))
    step(scheduler, at("12:03:31"), monkeypatch, (NS, "wf", "dev", "*"))
    assert KEY not in scheduler.armed and KEY not in scheduler.last_fired
    step(scheduler, at("12:03:31"), monkeypatch, (NS, "wf", "dev", "nightly"))
    assert set(scheduler.armed) == {(NS, "wf", "dev", "nightly")}
    step(scheduler, at("12:04:00"), monkeypatch)  # the old timer: nothing, nothing kept
    assert KEY not in scheduler.armed and KEY not in scheduler.last_fired
    assert len(kube.runs) == 1


def test_a_trigger_gone_from_the_active_version_is_forgotten_when_its_timer_fires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status = {"activeVersion": "1.0.0", "verifiedAt": "2024-05-01T11:00:00Z"}
    kube, scheduler = scheduled(status)
    ghost = (NS, "wf", "dev", "ghost")
    scheduler.armed[ghost] = scheduler.last_fired[ghost] = at("12:03:00")
    step(scheduler, at("12:03:00"), monkeypatch, ghost)
    assert ghost not in scheduler.armed and ghost not in scheduler.last_fired
    assert kube.runs == {}


# ------------------------------------------- whatever the input: a 4xx in JSON, one line


def quiet(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The receiver's log lines, after checking that none carries a traceback."""
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.name == "aiohttp.server"]
    return [r.getMessage() for r in caplog.records if r.name == "flowpin.triggers"]


def test_a_signed_deeply_nested_body_is_a_422_and_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(post: Post, kube: MemoryKube, controller: RunController, _: Any) -> None:
        for body in (
            b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            b'{"a": ' + b"[" * 500_000,
            b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        ):
            status, answer = await post(body=body)
            assert status == 422 and "nested deeper than 64 levels" in answer["error"]
        assert kube.runs == {}
        metric = controller.metrics.value
        assert metric("flowpin_webhook_requests_total", endpoint="run", code="422") == 3

    with caplog.at_level(logging.INFO):
        with_receiver(scenario)
    lines = quiet(caplog)
    assert len(lines) == 3 and all("422" in line for line in lines)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"email": NaN}', "NaN is not a JSON number"),
        (b'{"email": "a@b", "n": 1e999}', "the number 1e999 is out of range"),
        (b'{"email": "a@b", "n": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"email": "a@b", "n": 1' + b"0" * 320 + b"}", "is out of range"),
        (b'{"email": "\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"\\udc00": "a@b"}', "lone UTF-16 surrogate"),
        (b'{"email": "\xff"}', "not UTF-8"),
    ],
)
def test_a_signed_body_the_api_server_would_refuse_is_a_422_before_any_write(
    body: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, NaN reached the API server, whose 400 became a 503: retried forever."""

    async def scenario(post: Post, kube: MemoryKube, *_: Any) -> None:
        status, answer = await post(body=body)
        assert status == 422 and reason in answer["error"], answer
        assert kube.runs == {}

    with caplog.at_level(logging.INFO):
        with_receiver(scenario)
    assert len(quiet(caplog)) == 1


async def raw_post(port: int, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Any:
    """(status, JSON answer) of a POST whose header values are sent as these bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1"]
    head += [name + b": " + value for name, value in headers]
    head += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert b"content-type: application/json" in rest.lower(), answer
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def signed_headers(
    path: str, body: bytes, *, delivery: str = "d-1", stamp: str | None = None
) -> dict[str, bytes]:
    stamp = stamp or str(int(time.time()))
    signature = sign(SECRET, delivery, stamp, body, path)
    return {
        "X-Flowpin-Delivery": delivery.encode(),
        "X-Flowpin-Timestamp": stamp.encode(),
        "X-Flowpin-Signature": signature.encode(),
    }


@pytest.mark.parametrize("header", triggers.DELIVERY_HEADERS)
@pytest.mark.parametrize("value", [b"\xff\xfe", "d-\u00e9".encode(), b"1\x80"])
def test_a_delivery_header_that_is_not_ascii_is_a_400(
    header: str, value: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        kube = MemoryKube()
        controller = controller_over(kube)
        app = web.Application()
        triggers.add_run_webhook_route(app, controller)
        async with TestClient(TestServer(app)) as client:
            port = client.port
            assert port is not None
            body = b'{"email": "ada@example.org"}'
            path = f"/hooks/{NS}/wf/dev/form"
            try:  # signed as it is sent, where it can be (é is UTF-8, \xff is not)
                delivery = value.decode() if header == "X-Flowpin-Delivery" else "d-1"
            except UnicodeDecodeError:
                delivery = "d-1"
            sent = signed_headers(path, body, delivery=delivery)
            sent[header] = value
            headers = [(name.encode(), v) for name, v in sent.items()]
            assert await raw_post(port, path, headers, body) == (
                400,
                {"error": f"header {header} must be printable ASCII"},
            )
            # What does not exist is still the one neutral 404, whatever the headers.
            nowhere = f"/hooks/{NS}/wf/dev/nope"
            assert await raw_post(port, nowhere, headers, body) == (404, {"error": NOT_FOUND})
            assert kube.runs == {} and kube.secret_reads == 0
            metric = controller.metrics.value
            assert metric("flowpin_webhook_requests_total", endpoint="run", code="400") == 1

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    assert any(f"400, header {header}" in line for line in quiet(caplog))
    assert "\u00e9" not in caplog.text and "\\xff" not in caplog.text  # values never logged


def test_a_client_that_hangs_up_mid_body_is_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        kube = MemoryKube()
        app = web.Application()
        triggers.add_run_webhook_route(app, controller_over(kube))
        async with TestClient(TestServer(app)) as client:
            _, writer = await asyncio.open_connection("127.0.0.1", client.port)
            writer.write(
                f"POST /hooks/{NS}/wf/dev/form HTTP/1.1\r\nHost: x\r\n".encode()
                + b"Content-Length: 100\r\n\r\n"
                + b'{"email":'
            )
            await writer.drain()
            writer.close()
            deadline = asyncio.get_running_loop().time() + 10
            while "went away" not in caplog.text:
                assert asyncio.get_running_loop().time() < deadline, caplog.text
                await asyncio.sleep(0.01)
            assert kube.runs == {}

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    quiet(caplog)
    [gone] = [r.getMessage() for r in caplog.records if "went away" in r.getMessage()]
    assert gone.startswith(
        f"POST /hooks/{NS}/wf/dev/form: the client went away before sending the whole body"
    )


# ------------------------------------------------ the API server refusing the run


@pytest.mark.parametrize("code", [400, 422])
def test_the_api_server_refusing_the_run_as_invalid_is_the_senders_422(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    message = 'WorkflowRun.flowpin.dev "x" is invalid: spec.inputs: Invalid value'

    async def scenario(post: Post, kube: MemoryKube, controller: RunController, _: Any) -> None:
        kube.create_error = ApiException(status=code, reason="Invalid")
        kube.create_error.body = json.dumps({"kind": "Status", "message": message})
        status, answer = await post(delivery="d-1")
        assert (status, answer) == (422, {"error": f"the API server refused the run: {message}"})
        metric = controller.metrics.value
        assert metric("flowpin_webhook_requests_total", endpoint="run", code="503") == 0
        kube.create_error = None
        assert (await post(delivery="d-1"))[0] == 202  # the delivery id was not used up

    with caplog.at_level(logging.INFO):
        with_receiver(scenario)
    assert any("422, the API server refused the run" in line for line in quiet(caplog))


def test_an_api_failure_does_not_use_up_the_delivery_id() -> None:
    async def scenario(post: Post, kube: MemoryKube, *_: Any) -> None:
        kube.create_error = ApiException(status=500, reason="Internal Server Error")
        assert (await post(delivery="d-1"))[0] == 503
        kube.create_error = None
        assert (await post(delivery="d-1"))[0] == 202

    with_receiver(scenario)


# ---------------------------------------------------------------- replays


def test_a_replay_after_the_run_was_deleted_is_refused() -> None:
    async def scenario(post: Post, kube: MemoryKube, *_: Any) -> None:
        status, first = await post(delivery="d-1")
        assert status == 202
        del kube.runs[first["run"]]  # deleted by hand, or by its TTL
        status, again = await post(delivery="d-1")
        assert (status, again["run"]) == (409, first["run"])
        assert "already received" in again["error"]
        assert kube.runs == {}
        # the same id for another trigger is another delivery
        assert (await post("wf/prod/form", delivery="d-1"))[0] == 202

    with_receiver(scenario)


def test_concurrent_copies_of_a_delivery_start_one_run() -> None:
    async def scenario(post: Post, kube: MemoryKube, *_: Any) -> None:
        answers = await asyncio.gather(*(post(delivery="d-1") for _ in range(10)))
        assert sorted(status for status, _ in answers) == [202] + [409] * 9
        assert len(kube.runs) == 1

    with_receiver(scenario)


def test_the_delivery_log_forgets_an_id_when_its_replay_window_ends() -> None:
    log = triggers.DeliveryLog()
    window = MAX_SKEW.total_seconds()
    assert log.claim("/p", "d-1", sent=1000, now=1000)
    assert not log.claim("/p", "d-1", sent=1000, now=1000 + window)
    assert log.claim("/q", "d-1", sent=1000, now=1000)  # per path
    # A timestamp ahead of the clock is fresh until it is 5 minutes behind it.
    assert log.claim("/p", "d-2", sent=1250, now=1000)
    assert not log.claim("/p", "d-2", sent=1250, now=1250 + window)
    assert log.claim("/p", "d-1", sent=1000, now=1000 + window + 2)  # gone: fresh again
    assert len(log) == 2  # /p d-1 (again) and /p d-2; /q d-1 expired on the way
    assert log.claim("/p", "d-3", sent=2000, now=1250 + window + 2)
    assert len(log) == 1  # only d-3 is in its window
    log.release("/p", "d-3")
    assert log.claim("/p", "d-3", sent=2000, now=2000)
    assert not log.claim("/p", "d-3", sent=2000, now=2000)


def test_the_delivery_log_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    log = triggers.DeliveryLog(limit=100)
    with caplog.at_level(logging.WARNING):
        for index in range(250):
            assert log.claim("/p", f"d-{index}", sent=1000 + index, now=1000)
            assert len(log) <= 100
        for index in range(0, 100, 7):
            log.release("/p", f"d-{150 + index}")
        for index in range(250, 400):
            assert log.claim("/p", f"d-{index}", sent=1000 + index, now=1000)
    assert len(log) == 100
    assert not log.claim("/p", "d-399", sent=1399, now=1000)  # the newest are kept
    assert log.claim("/p", "d-0", sent=1000, now=1000)  # the oldest went first
    assert len(log._heap) <= 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "more than 100 webhook deliveries" in warnings[0].getMessage()

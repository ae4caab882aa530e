"""Tests of the run engine; the fakes below are shared by its test modules (no network,
no sleeps: a scripted `HttpCaller` and a clock the test moves)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from controller.engine.steps import HttpError, HttpRequest, HttpResponse, RunContext

T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
UID = "7d1c2a90-run-uid"
CONTEXT = RunContext(
    name="deploy-prod-abc",
    uid=UID,
    workflow="deploy",
    environment="prod",
    version="1.0.0",
    inputs={"id": 42, "name": "blue", "count": 0, "at": "2024-05-01T13:00:00Z"},
)


def response(
    status: int = 200, body: bytes | str = b"", headers: dict[str, str] | None = None
) -> HttpResponse:
    raw = body.encode() if isinstance(body, str) else body
    return HttpResponse(status, dict(headers or {}), raw)


class ScriptedHttp:
    """An `HttpCaller` that answers from a script: each item is an `HttpResponse` to
    return or an exception to raise; it records every request."""

    def __init__(self, script: Iterable[HttpResponse | Exception] = ()) -> None:
        self.script = list(script)
        self.requests: list[HttpRequest] = []

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        if not self.script:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def keys(self) -> list[str]:
        return [r.headers["Idempotency-Key"] for r in self.requests]


def refused(message: str = "connection refused") -> HttpError:
    return HttpError(message)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: Any) -> None:
        self.now += datetime.timedelta(**delta)

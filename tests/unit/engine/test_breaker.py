"""Circuit breakers per host (controller.engine.breaker), alone and behind http steps."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller.engine.breaker import CircuitBreakers
from controller.engine.steps import HttpResponse, execute
from controller.model.runs import Outcome, rfc3339
from tests.unit.engine import CONTEXT, T0, ScriptedHttp, refused, response

NAME = "api.example"
HOST = f"{NAME}:443"  # the breaker's key: host:port, the default port filled in
COOLDOWN = timedelta(seconds=30)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fail_times(breakers: CircuitBreakers, count: int, now: datetime = T0) -> None:
    for _ in range(count):
        breakers.record(HOST, False, now)


@pytest.mark.parametrize("threshold", [1, 2, 5])
def test_opens_after_threshold_consecutive_failures(threshold: int) -> None:
    breakers = CircuitBreakers(threshold=threshold, cooldown=COOLDOWN)
    fail_times(breakers, threshold - 1)
    assert breakers.check(HOST, T0) is None
    assert breakers.failures(HOST) == threshold - 1
    breakers.record(HOST, False, at(1))
    assert breakers.failures(HOST) == threshold
    assert breakers.check(HOST, at(2)) == at(1) + COOLDOWN
    assert breakers.check("other.example", at(2)) is None  # per host


def test_a_success_resets_the_count() -> None:
    breakers = CircuitBreakers(threshold=3, cooldown=COOLDOWN)
    for ok in (False, False, True, False, False):
        breakers.record(HOST, ok, T0)
    assert breakers.failures(HOST) == 2
    assert breakers.check(HOST, T0) is None


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # (seconds, "check" | "ok" | "fail") after opening at 0; expected check answers
        ([(10, "check")], [at(30)]),
        ([(29.9, "check")], [at(30)]),
        ([(30, "check")], [None]),  # half-open: the trial goes
        ([(30, "check"), (31, "check")], [None, at(60)]),  # one trial at a time
        ([(30, "check"), (31, "ok"), (32, "check"), (32, "check")], [None, None, None]),
        ([(30, "check"), (31, "fail"), (40, "check"), (61, "check")], [None, at(61), None]),
        # a trial whose answer never comes blocks for one cooldown, not forever
        (
            [(30, "check"), (59, "check"), (60, "check"), (61, "check")],
            [None, at(60), None, at(90)],
        ),
    ],
)
def test_half_open(events: list[tuple[float, str]], expected: list[datetime | None]) -> None:
    breakers = CircuitBreakers(threshold=2, cooldown=COOLDOWN)
    fail_times(breakers, 2)
    answers: list[datetime | None] = []
    for seconds, event in events:
        if event == "check":
            answers.append(breakers.check(HOST, at(seconds)))
        else:
            breakers.record(HOST, event == "ok", at(seconds))
    assert answers == expected


def test_closes_on_a_successful_trial() -> None:
    breakers = CircuitBreakers(threshold=2, cooldown=COOLDOWN)
    fail_times(breakers, 2)
    assert breakers.check(HOST, at(30)) is None
    breakers.record(HOST, True, at(31))
    assert breakers.failures(HOST) == 0
    assert [breakers.check(HOST, at(32)) for _ in range(3)] == [None, None, None]
    fail_times(breakers, 1, at(33))  # closed again: one failure does not open it
    assert breakers.check(HOST, at(34)) is None


# ------------------------------------------------------------- behind an http step

STEP = {"id": "call", "type": "http", "http": {"url": f"https://{NAME}/hook"}}
SPEC = {"steps": [STEP]}
STATUS = {"phase": "Running", "currentStep": "call"}


def call(
    http: ScriptedHttp, breakers: CircuitBreakers, now: datetime, step: dict[str, Any] = STEP
) -> Outcome:
    spec = {"steps": [step]}
    return asyncio.run(execute(spec, STATUS, CONTEXT, now, http, breakers, "key"))


def test_open_breaker_fails_fast_without_calling() -> None:
    breakers = CircuitBreakers(threshold=3, cooldown=COOLDOWN)
    http = ScriptedHttp([refused(), response(500), refused(), response(200)])
    for second in range(3):
        assert not call(http, breakers, at(second)).ok
    assert len(http.requests) == 3
    outcome = call(http, breakers, at(10))
    assert len(http.requests) == 3  # not called
    assert not outcome.ok and outcome.retryable
    assert outcome.error == (
        f"circuit open for {HOST} after 3 consecutive failures; next trial at {rfc3339(at(32))}"
    )
    assert outcome.not_before == at(32)
    # the trial after the cooldown goes through and closes the breaker
    assert call(http, breakers, at(32)).ok
    assert len(http.requests) == 4 and breakers.failures(HOST) == 0


@pytest.mark.parametrize(
    ("answer", "counts"),
    [
        (response(400), False),
        (response(401), False),
        (response(403), False),
        (response(404), False),
        (response(409), False),
        (response(422), False),
        (response(408), True),  # request timeout: the service is struggling
        (response(429), True),  # too many requests
        (response(500), True),
        (response(502), True),
        (response(503), True),
        (refused(), True),
    ],
)
def test_which_failures_count_for_the_breaker(
    answer: HttpResponse | Exception, counts: bool
) -> None:
    breakers = CircuitBreakers(threshold=2, cooldown=COOLDOWN)
    breakers.record(HOST, False, T0)  # one failure already
    outcome = call(ScriptedHttp([answer]), breakers, at(1))
    assert not outcome.ok  # the step fails either way (default expectStatus 2xx)
    assert breakers.failures(HOST) == (2 if counts else 0)
    assert (breakers.check(HOST, at(2)) is not None) == counts


def test_an_expression_error_does_not_take_the_trial() -> None:
    breakers = CircuitBreakers(threshold=1, cooldown=COOLDOWN)
    breakers.record(HOST, False, T0)
    broken = {
        "id": "call",
        "type": "http",
        "http": {"url": f"https://{NAME}/hook", "headers": {"X": "${ vars.missing }"}},
    }
    outcome = call(ScriptedHttp(), breakers, at(30), broken)
    assert not outcome.ok and not outcome.retryable
    assert outcome.error.startswith("expression:")
    http = ScriptedHttp([response(200)])
    assert call(http, breakers, at(31)).ok  # the trial is still free
    assert len(http.requests) == 1


def http_to(url: str) -> dict[str, Any]:
    return {"id": "call", "type": "http", "http": {"url": url}}


@pytest.mark.parametrize(
    ("urls", "key"),
    [
        # one destination however it is written: the default port, case, credentials,
        # paths and queries do not make another breaker
        (
            [
                "https://api.example/a",
                "https://api.example:443/b",
                "https://API.Example/c?token=1",
                "https://user:pass@api.example/d",
            ],
            "api.example:443",
        ),
        (["http://api.example/a", "http://api.example:80/b"], "api.example:80"),
        (["http://api.example:8080/a", "http://u@api.example:8080/b"], "api.example:8080"),
        (["http://[::1]/a", "http://[::1]:80/b"], "[::1]:80"),
    ],
)
def test_one_breaker_per_host_and_port(urls: list[str], key: str) -> None:
    breakers = CircuitBreakers(threshold=len(urls), cooldown=COOLDOWN)
    http = ScriptedHttp([refused() for _ in urls])
    for url in urls:
        assert not call(http, breakers, at(0), http_to(url)).ok
    assert breakers.failures(key) == len(urls)
    outcome = call(ScriptedHttp(), breakers, at(1), http_to(urls[0]))
    assert outcome.error == (
        f"circuit open for {key} after {len(urls)} consecutive failures; "
        f"next trial at {rfc3339(at(30))}"
    )


def test_http_and_https_of_one_host_are_two_breakers() -> None:
    breakers = CircuitBreakers(threshold=1, cooldown=COOLDOWN)
    assert not call(ScriptedHttp([refused()]), breakers, at(0), http_to("http://h/x")).ok
    assert breakers.check("h:80", at(1)) is not None
    assert breakers.check("h:443", at(1)) is None
    assert call(ScriptedHttp([response(200)]), breakers, at(1), http_to("https://h/x")).ok


def test_the_circuit_open_message_names_no_credentials() -> None:
    breakers = CircuitBreakers(threshold=1, cooldown=COOLDOWN)
    url = "https://bot:hunter2@api.example/hook?token=s3cr3t"
    call(ScriptedHttp([refused()]), breakers, at(0), http_to(url))
    outcome = call(ScriptedHttp(), breakers, at(1), http_to(url))
    assert outcome.error.startswith("circuit open for api.example:443 after 1 consecutive")
    for secret in ("bot", "hunter2", "s3cr3t", "token"):
        assert secret not in outcome.error


def test_a_url_without_a_host_has_no_breaker() -> None:
    breakers = CircuitBreakers(threshold=1, cooldown=COOLDOWN)
    for _ in range(3):  # fails each time (the call says why), never "circuit open"
        outcome = call(ScriptedHttp([refused("bad URL")]), breakers, at(0), http_to("nowhere"))
        assert outcome.error == "GET (a URL without a host): bad URL"

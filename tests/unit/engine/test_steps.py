"""One attempt of one step (controller.engine.steps.execute), with a scripted HttpCaller."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller.engine.breaker import CircuitBreakers
from controller.engine.steps import (
    DEFAULT_HTTP_TIMEOUT,
    OUTPUT_LIMIT,
    HttpResponse,
    activation,
    breaker_key,
    execute,
    response_output,
    shown_url,
)
from controller.model.runs import Outcome, apply_outcome, rfc3339, start, step_entry
from tests.unit.engine import CONTEXT, T0, ScriptedHttp, refused, response

KEY = "k" * 32


def run_step(
    step: dict[str, Any],
    status: dict[str, Any] | None = None,
    http: ScriptedHttp | None = None,
    now: datetime = T0,
    breakers: CircuitBreakers | None = None,
) -> Outcome:
    spec = {"steps": [step]}
    current = {"phase": "Running", "currentStep": step["id"], **(status or {})}
    return asyncio.run(
        execute(
            spec, current, CONTEXT, now, http or ScriptedHttp(), breakers or CircuitBreakers(), KEY
        )
    )


def http_step(**http: Any) -> dict[str, Any]:
    return {"id": "call", "type": "http", "http": {"url": "https://api.example/x", **http}}


# -------------------------------------------------------------------------- activation


def test_activation_sees_inputs_vars_steps_and_run() -> None:
    status = {
        "vars": {"v": 1},
        "steps": [{"id": "a", "output": {"o": 2}, "phase": "Succeeded", "attempts": 2}],
    }
    seen = activation(CONTEXT, status)
    assert seen["inputs"]["id"] == 42
    assert seen["vars"] == {"v": 1}
    assert seen["steps"] == {"a": {"output": {"o": 2}, "phase": "Succeeded", "attempts": 2}}
    assert seen["run"] == {
        "name": "deploy-prod-abc",
        "workflow": "deploy",
        "environment": "prod",
        "version": "1.0.0",
    }


# ---------------------------------------------------------------- condition, set, log


@pytest.mark.parametrize(
    ("condition", "goto", "result"),
    [
        ({"when": "inputs.id == 42", "then": "yes", "else": "no"}, "yes", True),
        ({"when": "inputs.id > 100", "then": "yes", "else": "no"}, "no", False),
        ({"when": "true"}, "end", True),  # then/else default to `end`
        ({"when": "false", "then": "yes"}, "end", False),
        ({"when": "vars.flag", "then": "yes"}, "yes", True),
    ],
)
def test_condition_branches(condition: dict[str, Any], goto: str, result: bool) -> None:
    step = {"id": "c", "type": "condition", "condition": condition}
    outcome = run_step(step, {"vars": {"flag": True}})
    assert outcome == Outcome(True, output={"result": result}, goto=goto)


@pytest.mark.parametrize("when", ["inputs.id", "'true'", "inputs.name", "[true]", "null"])
def test_condition_that_is_not_a_bool_is_a_permanent_error(when: str) -> None:
    outcome = run_step({"id": "c", "type": "condition", "condition": {"when": when}})
    assert not outcome.ok and not outcome.retryable and not outcome.fail_run
    assert "not a bool" in outcome.error


def test_set_assigns_vars_from_expressions() -> None:
    step = {"id": "s", "type": "set", "set": {"n": "vars.n + 1", "who": "inputs.name + '!'"}}
    outcome = run_step(step, {"vars": {"n": 1, "other": "kept"}})
    assert outcome.ok
    assert outcome.vars == {"n": 2, "who": "blue!"}
    assert outcome.output == outcome.vars


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"id": "s", "type": "set", "set": {"x": "vars.missing"}}, "expression: no such key"),
        ({"id": "s", "type": "set", "set": {"x": "1 / 0"}}, "expression: division by zero"),
        ({"id": "s", "type": "set", "set": {"x": "1 +"}}, "expression: invalid expression"),
        (
            {"id": "c", "type": "condition", "condition": {"when": "steps.nope.output"}},
            "expression: no such key",
        ),
        ({"id": "l", "type": "log", "log": {"message": "${ vars.missing }"}}, "expression:"),
        ({"id": "l", "type": "log", "log": {"message": "a ${ b"}}, "template:"),
        (http_step(url="https://x/${ vars.missing }"), "expression:"),
        (http_step(body={"a": "${ 1 / 0 }"}), "expression: division by zero"),
        ({"id": "w", "type": "wait", "wait": {"until": "${ vars.missing }"}}, "expression:"),
    ],
)
def test_expression_errors_are_not_retried(step: dict[str, Any], message: str) -> None:
    http = ScriptedHttp()
    outcome = run_step(step, {"vars": {}}, http)
    assert not outcome.ok and not outcome.retryable
    assert outcome.error.startswith(message), outcome.error
    assert http.requests == []


@pytest.mark.parametrize(
    ("message", "output"),
    [
        (None, None),
        ("", None),
        ("plain", {"message": "plain"}),
        ("id=${ inputs.id }", {"message": "id=42"}),
        ("${ inputs.count }", {"message": "0"}),  # a falsy value is still a message
        ("${ inputs.name }", {"message": "blue"}),
        ("cost $${ not a template }", {"message": "cost ${ not a template }"}),
    ],
)
def test_log(message: str | None, output: dict[str, str] | None) -> None:
    for kind in ("log", "noop"):
        step: dict[str, Any] = {"id": "l", "type": kind}
        if message is not None:
            step["log"] = {"message": message}
        assert run_step(step) == Outcome(True, output=output)


# ----------------------------------------------------------------------- fail, n8n


@pytest.mark.parametrize(
    ("fail", "error"),
    [
        (None, "failed by a fail step"),
        ({"message": "bad input ${ inputs.name }"}, "bad input blue"),
        ({"message": "${ inputs.id }"}, "42"),
    ],
)
def test_fail_step_fails_the_run(fail: dict[str, str] | None, error: str) -> None:
    step: dict[str, Any] = {"id": "f", "type": "fail", "onError": "continue"}
    if fail is not None:
        step["fail"] = fail
    outcome = run_step(step)
    assert outcome == Outcome(False, error=error, fail_run=True)


@pytest.mark.parametrize("message", ["${ vars.missing }", "broken ${ oops"])
def test_fail_step_with_a_broken_message_still_fails_the_run(message: str) -> None:
    step = {"id": "f", "type": "fail", "onError": "continue", "fail": {"message": message}}
    outcome = run_step(step, {"vars": {}})
    assert not outcome.ok and outcome.fail_run
    spec = {"steps": [step, {"id": "after", "type": "noop"}]}
    status = apply_outcome(spec, {"phase": "Running", "currentStep": "f"}, outcome, T0)
    assert status["phase"] == "Failed"  # onError: continue does not apply


def test_n8n_step_cannot_run() -> None:
    step = {"id": "n", "type": "n8n", "n8n": {"nodeType": "n8n-nodes-base.slack"}}
    outcome = run_step(step)
    assert not outcome.ok and outcome.fail_run
    assert "cannot run in flowpin" in outcome.error


# ------------------------------------------------------------------------------ wait


@pytest.mark.parametrize(
    ("wait", "sleep_until"),
    [
        ({"duration": "90s"}, T0 + timedelta(seconds=90)),
        ({"duration": "1h30m"}, T0 + timedelta(minutes=90)),
        ({"until": "2024-05-01T13:00:00Z"}, T0 + timedelta(hours=1)),
        ({"until": "2024-05-01T15:00:00+02:00"}, T0 + timedelta(hours=1)),
        ({"until": "${ inputs.at }"}, T0 + timedelta(hours=1)),
        ({"until": "${ timestamp(inputs.at) + duration('30m') }"}, T0 + timedelta(minutes=90)),
        ({"until": "2024-05-01T${ '13' }:00:00Z"}, T0 + timedelta(hours=1)),
    ],
)
def test_wait_sleeps_first(wait: dict[str, str], sleep_until: datetime) -> None:
    outcome = run_step({"id": "w", "type": "wait", "wait": wait})
    assert outcome == Outcome(True, sleep_until=sleep_until)


@pytest.mark.parametrize(
    "wait",
    [
        {"duration": "0s"},
        {"until": "2024-05-01T12:00:00Z"},  # exactly now
        {"until": "2020-01-01T00:00:00Z"},  # in the past
    ],
)
def test_wait_that_is_already_due_goes_on(wait: dict[str, str]) -> None:
    outcome = run_step({"id": "w", "type": "wait", "wait": wait})
    assert outcome == Outcome(True, output={"wokeAt": rfc3339(T0)})


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (T0 + timedelta(minutes=59), Outcome(True, sleep_until=T0 + timedelta(hours=1))),
        (T0 + timedelta(hours=1), Outcome(True, output={"wokeAt": "2024-05-01T13:00:00.000000Z"})),
        (T0 + timedelta(hours=2), Outcome(True, output={"wokeAt": "2024-05-01T14:00:00.000000Z"})),
    ],
)
def test_waiting_run_wakes_at_its_wake_time(now: datetime, expected: Outcome) -> None:
    """Once asleep, the saved wakeAt is the due time (a duration is not counted again)."""
    status = {"phase": "Waiting", "wakeAt": rfc3339(T0 + timedelta(hours=1))}
    step = {"id": "w", "type": "wait", "wait": {"duration": "1h"}}
    assert run_step(step, status, now=now) == expected


@pytest.mark.parametrize(
    "until",
    [
        "tomorrow",
        "2024-05-01",  # no time zone
        "2024-05-01T13:00:00",  # no time zone
        "${ inputs.id }",
        "${ inputs.name }",
        "2024-13-45T99:00:00Z",
    ],
)
def test_invalid_until_is_a_permanent_error(until: str) -> None:
    outcome = run_step({"id": "w", "type": "wait", "wait": {"until": until}})
    assert not outcome.ok and not outcome.retryable
    assert "not an RFC 3339 time" in outcome.error


def test_wait_sleeps_then_wakes_through_the_state_machine() -> None:
    step = {"id": "w", "type": "wait", "wait": {"duration": "10m"}, "next": "after"}
    spec = {"steps": [step, {"id": "after", "type": "noop"}]}
    status = start({}, "1.0.0", "active", spec, T0)
    outcome = asyncio.run(
        execute(spec, status, CONTEXT, T0, ScriptedHttp(), CircuitBreakers(), KEY)
    )
    status = apply_outcome(spec, status, outcome, T0)
    assert status["phase"] == "Waiting" and status["wakeAt"] == rfc3339(T0 + timedelta(minutes=10))
    later = T0 + timedelta(minutes=10)
    outcome = asyncio.run(
        execute(spec, status, CONTEXT, later, ScriptedHttp(), CircuitBreakers(), KEY)
    )
    status = apply_outcome(spec, status, outcome, later)
    assert status["phase"] == "Running" and status["currentStep"] == "after"
    assert "wakeAt" not in status
    entry = step_entry(status, "w")
    assert entry is not None and entry["output"] == {"wokeAt": rfc3339(later)}


# ------------------------------------------------------------------------------ http


@pytest.mark.parametrize(
    ("expect", "code", "ok"),
    [
        (None, 200, True),
        (None, 204, True),
        (None, 299, True),
        (None, 199, False),
        (None, 302, False),
        (None, 404, False),
        (None, 500, False),
        ([], 201, True),
        (["2xx"], 201, True),
        (["4xx"], 404, True),
        (["4xx"], 409, True),
        (["4xx"], 200, False),
        (["4xx"], 500, False),
        ([404], 404, True),
        ([404], 405, False),
        (["404"], 404, True),
        ([404], 200, False),
        ([200, "3xx"], 304, True),
        ([200, "3xx"], 201, False),
        (["5xx", 409], 503, True),
    ],
)
def test_expect_status(expect: list[Any] | None, code: int, ok: bool) -> None:
    extra = {} if expect is None else {"expectStatus": expect}
    http = ScriptedHttp([response(code, "x")])
    outcome = run_step(http_step(**extra), http=http)
    assert outcome.ok is ok
    assert outcome.retryable  # an unexpected status may be fixed by another attempt
    assert outcome.output is not None and outcome.output["status"] == code
    if not ok:
        assert outcome.error == f"GET https://api.example/x answered {code}"


def test_request_carries_method_headers_key_and_timeout() -> None:
    http = ScriptedHttp([response(200)])
    step = http_step(
        method="DELETE",
        url="https://api.example/items/${ inputs.id }?who=${ inputs.name }",
        headers={"X-Run": "${ run.name }", "X-Count": "${ inputs.id }"},
    )
    assert run_step(step, http=http).ok
    (request,) = http.requests
    assert request.method == "DELETE"
    assert request.url == "https://api.example/items/42?who=blue"
    assert request.headers == {"X-Run": "deploy-prod-abc", "X-Count": "42", "Idempotency-Key": KEY}
    assert request.body is None
    assert request.timeout == DEFAULT_HTTP_TIMEOUT.total_seconds()


@pytest.mark.parametrize(
    ("http_timeout", "step_timeout", "seconds"),
    [
        (None, None, 30.0),
        ("5s", None, 5.0),
        (None, "2m", 120.0),
        ("5s", "2s", 2.0),
        ("500ms", "10s", 0.5),
    ],
)
def test_request_timeout_is_the_shorter_one(
    http_timeout: str | None, step_timeout: str | None, seconds: float
) -> None:
    step = http_step(**({"timeout": http_timeout} if http_timeout else {}))
    if step_timeout:
        step["timeout"] = step_timeout
    http = ScriptedHttp([response(200)])
    run_step(step, http=http)
    assert http.requests[0].timeout == seconds


def test_a_given_idempotency_key_header_wins() -> None:
    http = ScriptedHttp([response(200)])
    run_step(http_step(headers={"idempotency-key": "mine"}), http=http)
    headers = http.requests[0].headers
    assert [k for k in headers if k.lower() == "idempotency-key"] == ["idempotency-key"]
    assert headers["idempotency-key"] == "mine"


@pytest.mark.parametrize(
    ("body", "sent", "content_type"),
    [
        (
            {"id": "${ inputs.id }", "name": "${ inputs.name }", "n": 1},
            {"id": 42, "name": "blue", "n": 1},
            "application/json",
        ),
        ([1, "${ inputs.count }"], [1, 0], "application/json"),
        (
            {"nested": {"list": ["a-${ inputs.id }"]}},
            {"nested": {"list": ["a-42"]}},
            "application/json",
        ),
        ("${ {'a': inputs.id} }", {"a": 42}, "application/json"),  # one template: its value
        ("id=${ inputs.id }&name=${ inputs.name }", "id=42&name=blue", None),
        ("plain text", "plain text", None),
    ],
)
def test_body(body: Any, sent: Any, content_type: str | None) -> None:
    http = ScriptedHttp([response(200)])
    assert run_step(http_step(method="POST", body=body), http=http).ok
    (request,) = http.requests
    assert request.body is not None
    if content_type is None:
        assert request.body.decode() == sent
        assert "Content-Type" not in request.headers
    else:
        assert json.loads(request.body) == sent
        assert request.headers["Content-Type"] == content_type


def test_a_given_content_type_is_kept_whatever_its_case() -> None:
    http = ScriptedHttp([response(200)])
    step = http_step(
        method="PATCH", body={"a": 1}, headers={"content-type": "application/merge-patch+json"}
    )
    run_step(step, http=http)
    headers = http.requests[0].headers
    assert [v for k, v in headers.items() if k.lower() == "content-type"] == [
        "application/merge-patch+json"
    ]


def test_no_response_is_a_retryable_failure() -> None:
    http = ScriptedHttp([refused("no answer within 30s")])
    outcome = run_step(http_step(method="POST"), http=http)
    assert outcome == Outcome(False, error="POST https://api.example/x: no answer within 30s")


# ------------------------------------------------------- URLs in errors and breakers


@pytest.mark.parametrize(
    ("url", "shown", "key"),
    [
        ("https://api.example/x", "https://api.example/x", "api.example:443"),
        ("https://api.example", "https://api.example", "api.example:443"),
        ("https://api.example:443/x", "https://api.example:443/x", "api.example:443"),
        ("http://api.example/x", "http://api.example/x", "api.example:80"),
        ("http://api.example:8080/x/y", "http://api.example:8080/x/y", "api.example:8080"),
        ("https://user:pass@api.example/x", "https://api.example/x", "api.example:443"),
        ("https://user@api.example:8443/x", "https://api.example:8443/x", "api.example:8443"),
        ("https://u:p@ss@api.example/x", "https://api.example/x", "api.example:443"),
        ("https://api.example/x?token=t0k3n&a=1", "https://api.example/x", "api.example:443"),
        ("https://api.example/x#frag", "https://api.example/x", "api.example:443"),
        ("https://API.Example/X", "https://API.Example/X", "api.example:443"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x", "[::1]:8080"),
        ("http://[::1]/x", "http://[::1]/x", "[::1]:80"),
        ("http://10.0.0.1/x", "http://10.0.0.1/x", "10.0.0.1:80"),
        ("ftp://files.example/x", "ftp://files.example/x", "files.example"),
        ("http://api.example:99999/x", "http://api.example:99999/x", None),
        ("not a url", "(a URL without a host)", None),
        ("user:pass@api.example/x", "(a URL without a host)", None),
        ("", "(a URL without a host)", None),
    ],
)
def test_urls_are_shown_without_credentials_or_query(url: str, shown: str, key: str | None) -> None:
    assert shown_url(url) == shown
    assert breaker_key(url) == key


SECRET_URL = "https://bot:hunter2@api.example/x?token=t0k3n"


def assert_no_secret(text: str) -> None:
    for secret in ("bot", "hunter2", "t0k3n", "token"):
        assert secret not in text, text


def test_an_unexpected_status_names_the_url_without_secrets() -> None:
    http = ScriptedHttp([response(500)])
    outcome = run_step(http_step(url=SECRET_URL, method="POST"), http=http)
    assert outcome.error == "POST https://api.example/x answered 500"
    assert http.requests[0].url == SECRET_URL  # the request itself is sent as written


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("no answer within 30s", "GET https://api.example/x: no answer within 30s"),
        # the HTTP client may quote the URL: it is shown without its secrets
        (SECRET_URL, "GET https://api.example/x: https://api.example/x"),
        (
            "Cannot connect to host api.example:443 ssl:default [refused]",
            "GET https://api.example/x: Cannot connect to host api.example:443 ssl:default "
            "[refused]",
        ),
        (
            "redirected to https://bot:hunter2@api.example/y?token=t0k3n",
            "GET https://api.example/x: redirected to https://api.example/y",
        ),
    ],
)
def test_a_failed_call_names_the_url_without_secrets(message: str, error: str) -> None:
    outcome = run_step(http_step(url=SECRET_URL), http=ScriptedHttp([refused(message)]))
    assert outcome.error == error
    assert_no_secret(outcome.error)


# ------------------------------------------------------------------ response output


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (response(200, '{"a": [1, 2]}', {"Content-Type": "application/json"}), {"a": [1, 2]}),
        (
            response(200, '{"a": 1}', {"content-type": "application/problem+json; charset=utf-8"}),
            {"a": 1},
        ),
        (response(200, "{not json", {"Content-Type": "application/json"}), "{not json"),
        (response(200, '{"a": 1}', {"Content-Type": "text/plain"}), '{"a": 1}'),
        (response(200, '{"a": 1}'), '{"a": 1}'),
        (response(200, b"\xff\xfe ok"), "\ufffd\ufffd ok"),
        (response(204), ""),
    ],
)
def test_response_output(answer: HttpResponse, body: Any) -> None:
    output, truncated = response_output(answer)
    assert output == {"status": answer.status, "headers": answer.headers, "body": body}
    assert not truncated


@pytest.mark.parametrize(
    "body",
    [
        "x" * 10_000,
        '"' * 10_000,  # each one doubles in JSON
        "\n\t" * 5_000,
        "ü" * 10_000,  # six characters each in ASCII JSON
        "😀" * 5_000,
        json.dumps({"items": list(range(5_000))}),
    ],
)
def test_response_output_is_cut_to_the_limit(body: str) -> None:
    answer = response(
        200,
        body,
        {"Content-Type": "application/json; charset=utf-8", "X-Big": "h" * 500, "X-Other": "1"},
    )
    output, truncated = response_output(answer)
    assert truncated
    assert len(json.dumps(output)) <= OUTPUT_LIMIT
    assert output["status"] == 200
    assert output["headers"] == {"Content-Type": "application/json; charset=utf-8"}
    assert isinstance(output["body"], str) and body.startswith(output["body"])
    assert len(output["body"]) > 200  # the cut keeps what fits, not next to nothing


def test_truncated_output_is_marked_on_the_step_entry() -> None:
    big = json.dumps({"data": "y" * 20_000})
    http = ScriptedHttp([response(200, big, {"Content-Type": "application/json"})])
    step = http_step()
    outcome = run_step(step, http=http)
    assert outcome.ok and outcome.truncated
    spec = {"steps": [step]}
    status = apply_outcome(spec, {"phase": "Running", "currentStep": "call"}, outcome, T0)
    entry = step_entry(status, "call")
    assert entry is not None and entry["outputTruncated"] is True
    assert len(json.dumps(entry["output"])) <= OUTPUT_LIMIT

"""One attempt of one step: evaluate its expressions, do its work, return an `Outcome`.

Only http steps do I/O, through the `HttpCaller` interface (`http.py` has the real one),
so every other step type and every error path is testable with plain data.

A step's URL may carry credentials (`user:pass@`) or tokens in its query: errors and
messages show `scheme://host[:port]/path` only (`shown_url`), and the circuit breaker is
keyed by `host:port` with the scheme's default port filled in (`breaker_key`).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from controller.engine.breaker import CircuitBreakers
from controller.model import cel
from controller.model.durations import parse_duration
from controller.model.runs import Definition, Outcome, Status, parse_time, rfc3339, steps_of
from controller.model.templates import TemplateSyntaxError, render

DEFAULT_HTTP_TIMEOUT = datetime.timedelta(seconds=30)
OUTPUT_LIMIT = 4096  # bytes of JSON per step output; the rest is cut and marked


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    timeout: float


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class HttpError(Exception):
    """The request did not produce a response (connection refused, timeout, bad URL)."""


class HttpCaller(Protocol):
    async def __call__(self, request: HttpRequest) -> HttpResponse: ...


@dataclass(frozen=True)
class RunContext:
    """Who is running: the parts of the run that expressions and idempotency keys see."""

    name: str
    uid: str
    workflow: str
    environment: str
    version: str
    inputs: Mapping[str, Any]


def activation(context: RunContext, status: Status) -> dict[str, Any]:
    """The variables CEL expressions see: inputs, vars, steps.<id>.output, run."""
    return {
        "inputs": dict(context.inputs),
        "vars": dict(status.get("vars") or {}),
        "steps": {
            entry["id"]: {
                "output": entry.get("output"),
                "phase": entry.get("phase"),
                "attempts": entry.get("attempts", 0),
            }
            for entry in status.get("steps") or []
        },
        "run": {
            "name": context.name,
            "workflow": context.workflow,
            "environment": context.environment,
            "version": context.version,
        },
    }


async def execute(
    definition: Definition,
    status: Status,
    context: RunContext,
    now: datetime.datetime,
    http: HttpCaller,
    breakers: CircuitBreakers,
    idempotency_key: str,
) -> Outcome:
    step = steps_of(definition)[str(status["currentStep"])]
    variables = activation(context, status)

    def evaluate(expression: str) -> Any:
        return cel.evaluate(expression, variables)

    kind = step["type"]
    try:
        if kind == "http":
            return await _http(step, evaluate, http, breakers, now, idempotency_key)
        if kind == "wait":
            return _wait(step, status, evaluate, now)
        if kind == "condition":
            spec = step["condition"]
            value = evaluate(spec["when"])
            if not isinstance(value, bool):
                return Outcome(
                    False, error=f"condition.when gave {value!r}, not a bool", retryable=False
                )
            return Outcome(
                True,
                output={"result": value},
                goto=str(spec.get("then" if value else "else", "end")),
            )
        if kind == "set":
            assigned = {name: evaluate(expression) for name, expression in step["set"].items()}
            return Outcome(True, output=assigned, vars=assigned)
        if kind == "fail":
            message = render(
                (step.get("fail") or {}).get("message", "failed by a fail step"), evaluate
            )
            return Outcome(False, error=_text(message), fail_run=True)
        if kind in ("log", "noop"):
            message = _text(render((step.get("log") or {}).get("message", ""), evaluate))
            return Outcome(True, output={"message": message} if message else None)
        if kind == "n8n":
            node = (step.get("n8n") or {}).get("nodeType", "?")
            return Outcome(
                False,
                error=f"n8n node {node} cannot run in flowpin; replace it with flowpin steps",
                fail_run=True,
            )
        return Outcome(False, error=f"unknown step type {kind}", fail_run=True)
    except cel.CelError as error:
        # A fail step fails the run even when its message cannot be rendered.
        return Outcome(
            False, error=f"expression: {error.message}", retryable=False, fail_run=kind == "fail"
        )
    except TemplateSyntaxError as error:
        return Outcome(False, error=f"template: {error}", retryable=False, fail_run=kind == "fail")


def _text(value: Any) -> str:
    """A rendered message as text (a template may give a number, a bool or a map)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _setdefault_header(headers: dict[str, str], name: str, value: str) -> None:
    """Add a header unless the step sets it already, in any letter case."""
    if not any(key.lower() == name.lower() for key in headers):
        headers[name] = value


def _wait(step: dict[str, Any], status: Status, evaluate: Any, now: datetime.datetime) -> Outcome:
    due = parse_time(status.get("wakeAt")) if status.get("phase") == "Waiting" else None
    if due is None:
        spec = step["wait"]
        if "duration" in spec:
            due = now + parse_duration(str(spec["duration"]))
        else:
            text = render(str(spec["until"]), evaluate)
            try:
                due = parse_time(str(text))
            except ValueError:
                due = None
            if due is None or due.tzinfo is None:
                return Outcome(
                    False, error=f"wait.until gave {text!r}, not an RFC 3339 time", retryable=False
                )
    if now < due:
        return Outcome(True, sleep_until=due)
    return Outcome(True, output={"wokeAt": rfc3339(now)})


DEFAULT_PORTS = {"http": 80, "https": 443}


def shown_url(url: str) -> str:
    """The URL as errors show it: `scheme://host[:port]/path`, without credentials, query
    or fragment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    if not parts.scheme or not host:
        return "(a URL without a host)"
    return f"{parts.scheme}://{host}{parts.path}"


def breaker_key(url: str) -> str | None:
    """`host:port` of the URL, the default port filled in (`h` and `h:443` are one
    destination over https); None when it names no host."""
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number in range
        return None
    if not host:
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = port or DEFAULT_PORTS.get(parts.scheme.lower())
    return f"{host}:{port}" if port else host


def _scrub(text: str, url: str) -> str:
    """`text` (an error of the HTTP client, which may quote the URL) without the URL's
    credentials or query."""
    parts = urlsplit(url)
    text = text.replace(url, shown_url(url))
    userinfo = parts.netloc.rpartition("@")[0]
    for secret in (userinfo and userinfo + "@", parts.query and "?" + parts.query):
        if secret:
            text = text.replace(secret, "")
    return text


def _status_matches(code: int, expected: list[Any] | None) -> bool:
    if not expected:
        return 200 <= code < 300
    for item in expected:
        text = str(item)
        if text.endswith("xx") and str(code)[0] == text[0]:
            return True
        if text == str(code):
            return True
    return False


async def _http(
    step: dict[str, Any],
    evaluate: Any,
    http: HttpCaller,
    breakers: CircuitBreakers,
    now: datetime.datetime,
    idempotency_key: str,
) -> Outcome:
    spec = step["http"]
    url = str(render(spec["url"], evaluate))
    shown = shown_url(url)
    host = breaker_key(url)
    # The whole request is built before the breaker is asked: an expression error must not
    # take the one trial call of a half-open breaker.
    headers = {str(k): _text(v) for k, v in render(spec.get("headers") or {}, evaluate).items()}
    _setdefault_header(headers, "Idempotency-Key", idempotency_key)
    body: bytes | None = None
    if "body" in spec:
        rendered = render(spec["body"], evaluate)
        if isinstance(rendered, str):
            body = rendered.encode()
        else:
            body = json.dumps(rendered).encode()
            _setdefault_header(headers, "Content-Type", "application/json")
    timeouts = [parse_duration(str(t)) for t in (spec.get("timeout"), step.get("timeout")) if t]
    timeout = min(timeouts) if timeouts else DEFAULT_HTTP_TIMEOUT
    request = HttpRequest(
        str(spec.get("method", "GET")), url, headers, body, timeout.total_seconds()
    )
    reopen = breakers.check(host, now) if host is not None else None
    if host is not None and reopen is not None:
        return Outcome(
            False,
            error=f"circuit open for {host} after {breakers.failures(host)} consecutive failures; "
            f"next trial at {rfc3339(reopen)}",
            not_before=reopen,
        )
    try:
        response = await http(request)
    except HttpError as error:
        if host is not None:
            breakers.record(host, False, now)
        return Outcome(False, error=f"{request.method} {shown}: {_scrub(str(error), url)}")
    ok = _status_matches(response.status, spec.get("expectStatus"))
    # A 4xx other than 408/429 is the caller's fault and does not open the breaker.
    if host is not None:
        breakers.record(
            host, ok or (400 <= response.status < 500 and response.status not in (408, 429)), now
        )
    output, truncated = response_output(response)
    if ok:
        return Outcome(True, output=output, truncated=truncated)
    return Outcome(
        False,
        output=output,
        truncated=truncated,
        error=f"{request.method} {shown} answered {response.status}",
    )


def response_output(response: HttpResponse) -> tuple[dict[str, Any], bool]:
    """Status, headers and body (JSON when it parses), cut to OUTPUT_LIMIT bytes of JSON."""
    text = response.body.decode("utf-8", "replace")
    body: Any = text
    content_type = next((v for k, v in response.headers.items() if k.lower() == "content-type"), "")
    if "json" in content_type.lower():
        try:
            body = json.loads(text)
        except ValueError:
            body = text
    output: dict[str, Any] = {
        "status": response.status,
        "headers": dict(response.headers),
        "body": body,
    }
    if len(json.dumps(output)) <= OUTPUT_LIMIT:
        return output, False
    output["headers"] = {k: v for k, v in response.headers.items() if k.lower() == "content-type"}
    if len(json.dumps({**output, "body": ""})) > OUTPUT_LIMIT:
        output["headers"] = {}

    def fits(length: int) -> bool:
        return len(json.dumps({**output, "body": text[:length]})) <= OUTPUT_LIMIT

    # The longest prefix whose JSON fits: escapes (quotes, control and non-ASCII characters)
    # take up to 12 bytes per character, so the length in characters is no guide.
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    output["body"] = text[:low]
    return output, True

"""`runner.advance`: how far one turn takes a run, with a scripted HttpCaller and a fake
clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from controller.engine.breaker import CircuitBreakers
from controller.engine.runner import MAX_CHAINED_STEPS, advance
from controller.model.runs import (
    idempotency_key,
    resume_failed,
    rfc3339,
    start,
    step_entry,
)
from tests.unit.engine import CONTEXT, T0, UID, Clock, ScriptedHttp, refused, response


def spec(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"version": "1.0.0", "steps": list(steps)}


def begin(definition: dict[str, Any]) -> dict[str, Any]:
    return start({}, "1.0.0", "active", definition, T0)


def turn(
    definition: dict[str, Any],
    status: dict[str, Any],
    http: ScriptedHttp,
    clock: Clock,
    breakers: CircuitBreakers | None = None,
    draw: float = 0.0,
) -> dict[str, Any]:
    return asyncio.run(
        advance(
            definition,
            status,
            CONTEXT,
            http,
            breakers or CircuitBreakers(),
            clock=clock,
            draw=lambda: draw,
        )
    )


def http(step_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "http",
        "http": {"url": f"https://api.example/{step_id}"},
        **fields,
    }


def test_pure_steps_chain_in_one_advance() -> None:
    definition = spec(
        {"id": "init", "type": "set", "set": {"n": "inputs.id"}, "next": "check"},
        {
            "id": "check",
            "type": "condition",
            "condition": {"when": "vars.n == 42", "then": "say", "else": "nope"},
        },
        {"id": "nope", "type": "fail"},
        {"id": "say", "type": "log", "log": {"message": "n=${ vars.n }"}, "next": "done"},
        {"id": "done", "type": "noop"},
    )
    calls = ScriptedHttp()
    status = turn(definition, begin(definition), calls, Clock())
    assert status["phase"] == "Succeeded" and calls.requests == []
    assert [e["id"] for e in status["steps"]] == ["init", "check", "say", "done"]
    assert status["vars"] == {"n": 42}
    entry = step_entry(status, "say")
    assert entry is not None and entry["output"] == {"message": "n=42"}


def test_stops_right_after_an_http_step() -> None:
    definition = spec(
        {"id": "init", "type": "set", "set": {"x": "1"}, "next": "call"},
        http("call", next="tell"),
        {
            "id": "tell",
            "type": "log",
            "log": {"message": "${ steps.call.output.body }"},
            "next": "again",
        },
        http("again"),
    )
    calls = ScriptedHttp([response(200, "hello"), response(201)])
    clock = Clock()
    status = turn(definition, begin(definition), calls, clock)
    assert len(calls.requests) == 1
    assert status["phase"] == "Running" and status["currentStep"] == "tell"
    assert "wakeAt" not in status  # due at once: the caller saves, then advances again
    status = turn(definition, status, calls, clock)  # tell, then again (the last step)
    assert len(calls.requests) == 2 and status["phase"] == "Succeeded"
    entry = step_entry(status, "tell")
    assert entry is not None and entry["output"] == {"message": "hello"}
    assert calls.keys() == [
        idempotency_key(UID, "call", 1, 1),
        idempotency_key(UID, "again", 1, 1),
    ]


def test_wait_step_sleeps_and_wakes() -> None:
    definition = spec(
        {"id": "pause", "type": "wait", "wait": {"duration": "10m"}, "next": "done"},
        {"id": "done", "type": "log", "log": {"message": "woke"}},
    )
    clock = Clock()
    status = turn(definition, begin(definition), ScriptedHttp(), clock)
    assert status["phase"] == "Waiting"
    assert status["wakeAt"] == rfc3339(T0 + timedelta(minutes=10))
    clock.advance(minutes=9, seconds=59)
    assert turn(definition, status, ScriptedHttp(), clock) == status  # not yet
    clock.advance(seconds=1)
    status = turn(definition, status, ScriptedHttp(), clock)
    assert status["phase"] == "Succeeded"
    entry = step_entry(status, "pause")
    assert entry is not None and entry["output"] == {"wokeAt": rfc3339(clock.now)}


def test_wait_until_from_inputs() -> None:
    definition = spec({"id": "pause", "type": "wait", "wait": {"until": "${ inputs.at }"}})
    clock = Clock()
    status = turn(definition, begin(definition), ScriptedHttp(), clock)
    assert status["phase"] == "Waiting" and status["wakeAt"] == "2024-05-01T13:00:00.000000Z"
    clock.advance(hours=1)
    assert turn(definition, status, ScriptedHttp(), clock)["phase"] == "Succeeded"


@pytest.mark.parametrize(
    ("until", "on_error", "phase", "current"),
    [
        ("not a time", "fail", "Failed", "pause"),
        ("${ inputs.name }", "continue", "Succeeded", None),
        ("2024-05-01", "goto:other", "Succeeded", None),
    ],
)
def test_invalid_until(until: str, on_error: str, phase: str, current: str | None) -> None:
    definition = spec(
        {
            "id": "pause",
            "type": "wait",
            "wait": {"until": until},
            "onError": on_error,
            "retry": {"limit": 3},
        },
        {"id": "other", "type": "noop"},
    )
    status = turn(definition, begin(definition), ScriptedHttp(), Clock())
    assert status["phase"] == phase and status.get("currentStep") == current
    entry = step_entry(status, "pause")
    assert entry is not None and entry["attempts"] == 1  # not retried
    assert "not an RFC 3339 time" in entry["error"]


def test_retry_waits_for_its_backoff_with_a_new_key() -> None:
    definition = spec(
        http("call", retry={"limit": 2, "initialDelay": "10s", "jitter": 0.5}, next="done"),
        {"id": "done", "type": "noop"},
    )
    calls = ScriptedHttp([response(503), refused(), response(200)])
    clock = Clock()
    status = turn(definition, begin(definition), calls, clock, draw=0.5)
    assert status["phase"] == "Running" and status["currentStep"] == "call"
    assert status["wakeAt"] == rfc3339(T0 + timedelta(seconds=12.5))
    clock.advance(seconds=12)
    assert turn(definition, status, calls, clock) == status  # backoff not over
    clock.advance(seconds=1)
    status = turn(definition, status, calls, clock, draw=0.0)
    assert status["wakeAt"] == rfc3339(clock.now + timedelta(seconds=10))
    clock.advance(seconds=10)
    status = turn(definition, status, calls, clock)
    assert status["phase"] == "Running" and status["currentStep"] == "done"
    status = turn(definition, status, calls, clock)
    assert status["phase"] == "Succeeded"
    assert calls.keys() == [idempotency_key(UID, "call", 1, n) for n in (1, 2, 3)]
    entry = step_entry(status, "call")
    assert entry is not None and entry["attempts"] == 3 and entry["visits"] == 1


@pytest.mark.parametrize(
    ("on_error", "phase", "current", "ran"),
    [
        ("fail", "Failed", "call", []),
        ("continue", "Succeeded", None, ["next"]),
        ("goto:rescue", "Succeeded", None, ["rescue"]),
    ],
)
def test_on_error_after_retries(
    on_error: str, phase: str, current: str | None, ran: list[str]
) -> None:
    definition = spec(
        http(
            "call",
            retry={"limit": 1, "initialDelay": "1s", "jitter": 0},
            onError=on_error,
            next="next",
        ),
        {"id": "next", "type": "log", "log": {"message": "next"}},
        {"id": "rescue", "type": "log", "log": {"message": "rescue"}},
    )
    calls = ScriptedHttp([response(500), response(500)])
    clock = Clock()
    status = turn(definition, begin(definition), calls, clock)
    clock.advance(seconds=1)
    status = turn(definition, status, calls, clock)  # the http step: stop after it
    assert len(calls.requests) == 2
    if phase != "Failed":
        assert status["phase"] == "Running"
        status = turn(definition, status, calls, clock)
    assert status["phase"] == phase and status.get("currentStep") == current
    entry = step_entry(status, "call")
    assert entry is not None and entry["phase"] == "Failed" and entry["attempts"] == 2
    assert [e["id"] for e in status["steps"] if e["id"] in ("next", "rescue")] == ran


def test_fail_step_ignores_on_error() -> None:
    definition = spec(
        {
            "id": "stop",
            "type": "fail",
            "fail": {"message": "no ${ inputs.name }"},
            "onError": "continue",
            "retry": {"limit": 3},
            "next": "after",
        },
        {"id": "after", "type": "noop"},
    )
    status = turn(definition, begin(definition), ScriptedHttp(), Clock())
    assert status["phase"] == "Failed" and status["message"] == "step stop: no blue"
    assert status["currentStep"] == "stop"


def test_a_repeated_attempt_after_a_crash_sends_the_same_key() -> None:
    definition = spec(http("call", retry={"limit": 1}))
    status = begin(definition)
    calls = ScriptedHttp([response(200), response(200)])
    turn(definition, status, calls, Clock())  # the result is lost: a crash before saving
    turn(definition, status, calls, Clock())
    first, again = calls.keys()
    assert first == again == idempotency_key(UID, "call", 1, 1)


def test_a_loop_through_a_wait_step_uses_a_new_key_per_visit() -> None:
    definition = spec(
        {"id": "init", "type": "set", "set": {"n": "0"}, "next": "pause"},
        {"id": "pause", "type": "wait", "wait": {"duration": "1m"}, "next": "call"},
        http("call", next="count"),
        {"id": "count", "type": "set", "set": {"n": "vars.n + 1"}, "next": "more"},
        {"id": "more", "type": "condition", "condition": {"when": "vars.n < 3", "then": "pause"}},
    )
    calls = ScriptedHttp([response(200)] * 3)
    clock = Clock()
    status = begin(definition)
    for _ in range(20):
        if status["phase"] == "Succeeded":
            break
        status = turn(definition, status, calls, clock)
        clock.advance(minutes=1)
    assert status["phase"] == "Succeeded" and status["vars"] == {"n": 3}
    assert calls.keys() == [idempotency_key(UID, "call", visit, 1) for visit in (1, 2, 3)]
    entries = {e["id"]: e for e in status["steps"]}
    assert entries["pause"]["visits"] == 3 and entries["call"]["visits"] == 3
    assert len(status["steps"]) == 5  # one entry per step, however long the loop


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"phase": "Running", "currentStep": "gone"}, "step gone does not exist in version 1.0.0"),
        ({"phase": "Running"}, "step None does not exist in version 1.0.0"),
    ],
)
def test_a_missing_current_step_fails_the_run(status: dict[str, Any], message: str) -> None:
    definition = spec({"id": "a", "type": "noop"})
    new = turn(definition, status, ScriptedHttp(), Clock())
    assert new["phase"] == "Failed" and new["message"] == message
    assert new["finishedAt"] == rfc3339(T0)


def test_a_branch_to_a_missing_step_fails_the_run() -> None:
    definition = spec(
        {"id": "a", "type": "condition", "condition": {"when": "true", "then": "removed"}}
    )
    status = turn(definition, begin(definition), ScriptedHttp(), Clock())
    assert status["phase"] == "Failed"
    assert status["message"] == "step removed does not exist in version 1.0.0"


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Cancelled"])
def test_a_finished_run_is_left_alone(phase: str) -> None:
    definition = spec(http("call"))
    status = {"phase": phase, "currentStep": "call"}
    assert turn(definition, status, ScriptedHttp(), Clock()) is status


def test_an_endless_pure_loop_yields_after_a_bounded_turn() -> None:
    definition = spec(
        {"id": "spin", "type": "condition", "condition": {"when": "true", "then": "spin"}}
    )
    status = turn(definition, begin(definition), ScriptedHttp(), Clock())
    assert status["phase"] == "Running" and status["currentStep"] == "spin"
    entry = step_entry(status, "spin")
    assert entry is not None and entry["visits"] == MAX_CHAINED_STEPS


def test_resume_failed_runs_the_failed_step_again() -> None:
    definition = spec(
        {"id": "init", "type": "set", "set": {"a": "1"}, "next": "call"},
        http("call", retry={"limit": 1, "jitter": 0}, next="done"),
        {"id": "done", "type": "noop"},
    )
    calls = ScriptedHttp([response(500), response(500), response(200)])
    clock = Clock()
    status = turn(definition, begin(definition), calls, clock)
    clock.advance(seconds=1)
    status = turn(definition, status, calls, clock)
    assert status["phase"] == "Failed" and status["currentStep"] == "call"

    resumed = resume_failed(status, clock.now)
    assert resumed is not None
    status = turn(definition, resumed, calls, clock)
    assert status["phase"] == "Running" and status["currentStep"] == "done"
    status = turn(definition, status, calls, clock)
    assert status["phase"] == "Succeeded"
    first, second, after_resume = calls.keys()
    assert after_resume not in (first, second)
    entry = step_entry(status, "call")
    assert entry is not None and entry["attempts"] == 1 and entry["phase"] == "Succeeded"
    assert [e["id"] for e in status["steps"]].count("init") == 1  # not run again

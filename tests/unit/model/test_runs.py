"""The run state machine (controller.model.runs): pure tables, no I/O, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.model.runs import (
    DEFAULT_MAX_DELAY,
    Outcome,
    apply_outcome,
    cancel,
    current_attempt,
    deadline,
    entry_step,
    finish,
    idempotency_key,
    input_errors,
    is_terminal,
    parse_time,
    resume_failed,
    retry_delay,
    rfc3339,
    start,
    step_entry,
    time_out,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
UID = "0b6f3c1e-run"


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def definition(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"version": "1.0.0", "steps": list(steps)}


def started(spec: dict[str, Any]) -> dict[str, Any]:
    return start({}, "1.0.0", "active", spec, T0)


# ------------------------------------------------------------------------ retry_delay


@pytest.mark.parametrize(
    ("policy", "failures", "share", "expected"),
    [
        # no policy, or limit 0: no retry at all
        (None, 1, 0.0, None),
        ({}, 1, 0.0, None),
        ({"limit": 0, "initialDelay": "5s"}, 1, 0.0, None),
        # fixed (the default): initialDelay (default 1s) every time
        ({"limit": 3}, 1, 0.0, seconds(1)),
        ({"limit": 3}, 3, 0.0, seconds(1)),
        ({"limit": 3, "backoff": "fixed", "initialDelay": "2s"}, 2, 0.0, seconds(2)),
        ({"limit": 5, "backoff": "fixed", "initialDelay": "10m"}, 4, 0.0, DEFAULT_MAX_DELAY),
        # exponential: initialDelay doubled per failure
        ({"limit": 9, "backoff": "exponential"}, 1, 0.0, seconds(1)),
        ({"limit": 9, "backoff": "exponential"}, 2, 0.0, seconds(2)),
        ({"limit": 9, "backoff": "exponential"}, 3, 0.0, seconds(4)),
        ({"limit": 9, "backoff": "exponential", "initialDelay": "500ms"}, 4, 0.0, seconds(4)),
        # ... capped at maxDelay (default 5m)
        (
            {"limit": 9, "backoff": "exponential", "initialDelay": "10s", "maxDelay": "30s"},
            2,
            0.0,
            seconds(20),
        ),
        (
            {"limit": 9, "backoff": "exponential", "initialDelay": "10s", "maxDelay": "30s"},
            3,
            0.0,
            seconds(30),
        ),
        ({"limit": 9, "backoff": "exponential", "initialDelay": "1m"}, 4, 0.0, DEFAULT_MAX_DELAY),
        # many failures never overflow: the delay stays at the cap
        ({"limit": 100, "backoff": "exponential"}, 100, 0.0, DEFAULT_MAX_DELAY),
        (
            {"limit": 100, "backoff": "exponential", "initialDelay": "2m"},
            60,
            0.0,
            DEFAULT_MAX_DELAY,
        ),
        (
            {"limit": 100, "backoff": "exponential", "initialDelay": "1d", "maxDelay": "2d"},
            100,
            0.0,
            timedelta(days=2),
        ),
        # jitter (default 0.1) adds share * jitter of the delay
        ({"limit": 1}, 1, 0.5, seconds(1.05)),
        ({"limit": 1, "initialDelay": "10s", "jitter": 0.5}, 1, 0.5, seconds(12.5)),
        ({"limit": 1, "initialDelay": "10s", "jitter": 0}, 1, 0.99, seconds(10)),
        ({"limit": 1, "initialDelay": "10s", "jitter": 1}, 1, 0.25, seconds(12.5)),
        # exhausted: `limit` retries after the first attempt
        ({"limit": 3}, 4, 0.0, None),
        ({"limit": 100, "backoff": "exponential"}, 101, 0.0, None),
    ],
)
def test_retry_delay(
    policy: dict[str, Any] | None, failures: int, share: float, expected: timedelta | None
) -> None:
    assert retry_delay(policy, failures, share) == expected


@pytest.mark.parametrize(
    "policy",
    [
        {"limit": 10},
        {"limit": 10, "jitter": 0.3, "initialDelay": "3s"},
        {"limit": 10, "backoff": "exponential", "jitter": 1, "maxDelay": "20s"},
        {"limit": 10, "backoff": "exponential", "jitter": 0},
    ],
)
@pytest.mark.parametrize("failures", [1, 2, 5, 10])
@pytest.mark.parametrize("share", [0.0, 0.1, 0.5, 0.999999])
def test_retry_delay_jitter_bounds(policy: dict[str, Any], failures: int, share: float) -> None:
    base = retry_delay(policy, failures, 0.0)
    delay = retry_delay(policy, failures, share)
    assert base is not None and delay is not None
    jitter = float(policy.get("jitter", 0.1))
    assert base <= delay <= base * (1 + jitter)
    if jitter and share:
        assert delay > base


# --------------------------------------------------------------- attempts and keys


def test_idempotency_key_shape_and_inputs() -> None:
    key = idempotency_key(UID, "call", 1, 1)
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)
    assert key == idempotency_key(UID, "call", 1, 1)
    others = {
        idempotency_key("other-uid", "call", 1, 1),
        idempotency_key(UID, "other", 1, 1),
        idempotency_key(UID, "call", 2, 1),
        idempotency_key(UID, "call", 1, 2),
    }
    assert key not in others and len(others) == 4


HTTP_WITH_RETRY = definition(
    {"id": "call", "type": "http", "http": {"url": "https://x"}, "retry": {"limit": 2}}
)


def test_attempt_repeated_after_a_crash_has_the_same_key() -> None:
    """A crash during an attempt leaves the status as it was: the repeated attempt is the
    same (visit, attempt), so the same idempotency key."""
    status = started(HTTP_WITH_RETRY)
    first = current_attempt(status)
    assert first == (1, 1)
    assert current_attempt(status) == first  # "crash": nothing saved, ask again
    failed_once = apply_outcome(HTTP_WITH_RETRY, status, Outcome(False, error="503"), T0)
    second = current_attempt(failed_once)
    assert second == (1, 2)
    assert current_attempt(failed_once) == second
    keys = {idempotency_key(UID, "call", *attempt) for attempt in (first, second)}
    assert len(keys) == 2


def test_attempts_count_per_attempt_then_restart_per_visit() -> None:
    spec = definition(
        {
            "id": "call",
            "type": "http",
            "http": {"url": "https://x"},
            "retry": {"limit": 1},
            "next": "again",
        },
        {"id": "again", "type": "condition", "condition": {"when": "true", "then": "call"}},
    )
    status = started(spec)
    seen: list[tuple[int, int]] = []
    for outcome in (Outcome(False, error="503"), Outcome(True)):
        seen.append(current_attempt(status))
        status = apply_outcome(spec, status, outcome, T0)
    assert status["currentStep"] == "again"
    status = apply_outcome(spec, status, Outcome(True, goto="call"), T0)
    seen.append(current_attempt(status))
    assert seen == [(1, 1), (1, 2), (2, 1)]
    assert len({idempotency_key(UID, "call", *s) for s in seen}) == 3


def test_loop_through_a_wait_step_counts_visits() -> None:
    spec = definition(
        {"id": "pause", "type": "wait", "wait": {"duration": "1m"}, "next": "call"},
        {"id": "call", "type": "http", "http": {"url": "https://x"}, "next": "pause"},
    )
    status = started(spec)
    keys: list[str] = []
    now = T0
    for visit in (1, 2, 3):
        assert current_attempt(status) == (visit, 1)
        status = apply_outcome(spec, status, Outcome(True, sleep_until=now + seconds(60)), now)
        assert status["phase"] == "Waiting"
        assert status["wakeAt"] == rfc3339(now + seconds(60))
        entry = step_entry(status, "pause")
        assert entry is not None and entry["phase"] == "Running" and entry["visits"] == visit
        assert current_attempt(status) == (visit, 1)  # asleep: still the same attempt
        now += seconds(60)
        status = apply_outcome(spec, status, Outcome(True, output={"wokeAt": "x"}), now)
        assert "wakeAt" not in status and status["currentStep"] == "call"
        visit_attempt = current_attempt(status)
        assert visit_attempt == (visit, 1)
        keys.append(idempotency_key(UID, "call", *visit_attempt))
        status = apply_outcome(spec, status, Outcome(True), now)
    assert len(set(keys)) == 3
    assert [e["id"] for e in status["steps"]] == ["pause", "call"]  # one entry per step


# ------------------------------------------------------------------ apply_outcome


def test_start_enters_the_first_step() -> None:
    spec = definition({"id": "a", "type": "noop"}, {"id": "b", "type": "noop"})
    status = start({"wakeAt": "x", "vars": {"k": 1}}, "1.2.0", "pinned", spec, T0)
    assert status["phase"] == "Running"
    assert status["currentStep"] == "a" == entry_step(spec)
    assert status["version"] == "1.2.0" and status["versionReason"] == "pinned"
    assert status["startedAt"] == rfc3339(T0) and status["steps"] == []
    assert status["vars"] == {"k": 1} and "wakeAt" not in status


@pytest.mark.parametrize(
    ("step", "outcome", "phase", "current"),
    [
        ({"next": "b"}, Outcome(True), "Running", "b"),
        ({}, Outcome(True), "Succeeded", None),
        ({"next": "end"}, Outcome(True), "Succeeded", None),
        ({"next": "b"}, Outcome(True, goto="c"), "Running", "c"),  # condition branch
        ({"next": "b"}, Outcome(True, goto="end"), "Succeeded", None),
    ],
)
def test_success_goes_on(
    step: dict[str, Any], outcome: Outcome, phase: str, current: str | None
) -> None:
    spec = definition(
        {"id": "a", "type": "noop", **step},
        {"id": "b", "type": "noop"},
        {"id": "c", "type": "noop"},
    )
    status = apply_outcome(spec, started(spec), outcome, T0 + seconds(1))
    assert status["phase"] == phase
    assert status.get("currentStep") == current
    entry = step_entry(status, "a")
    assert entry is not None
    assert entry["phase"] == "Succeeded" and entry["attempts"] == 1 and entry["visits"] == 1
    assert entry["finishedAt"] == rfc3339(T0 + seconds(1))
    if phase == "Succeeded":
        assert status["finishedAt"] == rfc3339(T0 + seconds(1))
        assert is_terminal(status)


def test_set_merges_vars() -> None:
    spec = definition(
        {"id": "s", "type": "set", "set": {}, "next": "t"}, {"id": "t", "type": "noop"}
    )
    status = {**started(spec), "vars": {"a": 1, "b": 2}}
    new = apply_outcome(spec, status, Outcome(True, vars={"b": 3, "c": 4}), T0)
    assert new["vars"] == {"a": 1, "b": 3, "c": 4}
    assert status["vars"] == {"a": 1, "b": 2}  # the input is not changed


def failing_step(**fields: Any) -> dict[str, Any]:
    return definition(
        {"id": "call", "type": "http", "http": {"url": "https://x"}, "next": "after", **fields},
        {"id": "after", "type": "noop"},
        {"id": "rescue", "type": "noop"},
    )


def fail_until_settled(
    spec: dict[str, Any], outcome: Outcome, limit: int = 20
) -> tuple[dict[str, Any], int]:
    """Fail the current step until the run leaves it; returns the status and attempts."""
    status = started(spec)
    now = T0
    for attempt in range(1, limit + 1):
        status = apply_outcome(spec, status, outcome, now)
        if status.get("currentStep") != "call" or status["phase"] != "Running":
            return status, attempt
        assert status["wakeAt"]  # a retry is scheduled
        now = parse_time(status["wakeAt"]) or now
    raise AssertionError("the step never settled")


@pytest.mark.parametrize(
    ("fields", "outcome", "attempts", "phase", "current"),
    [
        ({}, Outcome(False, error="boom"), 1, "Failed", "call"),
        (
            {"onError": "fail", "retry": {"limit": 2}},
            Outcome(False, error="boom"),
            3,
            "Failed",
            "call",
        ),
        (
            {"onError": "continue", "retry": {"limit": 2}},
            Outcome(False, error="boom"),
            3,
            "Running",
            "after",
        ),
        (
            {"onError": "goto:rescue", "retry": {"limit": 1}},
            Outcome(False, error="boom"),
            2,
            "Running",
            "rescue",
        ),
        ({"onError": "goto:end"}, Outcome(False, error="boom"), 1, "Succeeded", None),
        # a non-retryable error skips the retries and goes straight to onError
        (
            {"onError": "continue", "retry": {"limit": 5}},
            Outcome(False, error="expression: no such key", retryable=False),
            1,
            "Running",
            "after",
        ),
        ({"retry": {"limit": 5}}, Outcome(False, error="x", retryable=False), 1, "Failed", "call"),
        # a fail step fails the run whatever onError and retry say
        (
            {"onError": "continue", "retry": {"limit": 3}},
            Outcome(False, error="no", fail_run=True),
            1,
            "Failed",
            "call",
        ),
        (
            {"onError": "goto:rescue"},
            Outcome(False, error="no", fail_run=True),
            1,
            "Failed",
            "call",
        ),
    ],
)
def test_failure_paths(
    fields: dict[str, Any], outcome: Outcome, attempts: int, phase: str, current: str | None
) -> None:
    status, tried = fail_until_settled(failing_step(**fields), outcome)
    assert tried == attempts
    assert status["phase"] == phase
    assert status.get("currentStep") == current
    entry = step_entry(status, "call")
    assert entry is not None
    assert entry["phase"] == "Failed" and entry["attempts"] == attempts
    assert entry["error"] == outcome.error
    if phase == "Failed":
        assert outcome.error in status["message"] and "finishedAt" in status
        assert "wakeAt" not in status


def test_failed_message_counts_attempts() -> None:
    status, _ = fail_until_settled(failing_step(retry={"limit": 2}), Outcome(False, error="503"))
    assert status["message"] == "step call failed after 3 attempts: 503"
    status, _ = fail_until_settled(failing_step(), Outcome(False, error="503"))
    assert status["message"] == "step call failed after 1 attempt: 503"


@pytest.mark.parametrize(
    ("not_before", "share", "wake"),
    [
        (None, 0.0, T0 + seconds(10)),
        (None, 0.5, T0 + seconds(10.5)),  # default jitter 0.1
        (T0 + seconds(5), 0.0, T0 + seconds(10)),  # earlier than the backoff: backoff wins
        (T0 + seconds(30), 0.0, T0 + seconds(30)),  # an open breaker pushes the retry out
    ],
)
def test_retry_schedules_a_wake(not_before: datetime | None, share: float, wake: datetime) -> None:
    spec = failing_step(retry={"limit": 1, "initialDelay": "10s"})
    outcome = Outcome(False, error="503", not_before=not_before)
    status = apply_outcome(spec, started(spec), outcome, T0, share)
    assert status["phase"] == "Running" and status["currentStep"] == "call"
    assert status["wakeAt"] == rfc3339(wake)
    assert "retrying at" in status["message"]
    entry = step_entry(status, "call")
    assert entry is not None and entry["phase"] == "Retrying" and entry["attempts"] == 1


def test_output_and_truncation_follow_the_latest_attempt() -> None:
    spec = failing_step(retry={"limit": 2})
    status = started(spec)
    status = apply_outcome(
        spec, status, Outcome(False, error="500", output={"b": 1}, truncated=True), T0
    )
    entry = step_entry(status, "call")
    assert entry is not None and entry["output"] == {"b": 1} and entry["outputTruncated"]
    # the next attempt got no response at all: no stale output, no stale mark
    status = apply_outcome(spec, status, Outcome(False, error="refused"), T0)
    entry = step_entry(status, "call")
    assert entry is not None and "output" not in entry and "outputTruncated" not in entry
    status = apply_outcome(spec, status, Outcome(True, output={"ok": True}), T0)
    entry = step_entry(status, "call")
    assert entry is not None and entry["output"] == {"ok": True} and "error" not in entry


def test_sleep_outcome_waits() -> None:
    spec = definition({"id": "w", "type": "wait", "wait": {"duration": "1h"}})
    status = apply_outcome(spec, started(spec), Outcome(True, sleep_until=T0 + seconds(3600)), T0)
    assert status["phase"] == "Waiting"
    assert status["wakeAt"] == "2024-05-01T13:00:00.000000Z"
    assert status["currentStep"] == "w"
    entry = step_entry(status, "w")
    assert entry == {
        "id": "w",
        "visits": 1,
        "startedAt": rfc3339(T0),
        "phase": "Running",
        "attempts": 0,
    }


# ------------------------------------------------------ finish, cancel, resume_failed


@pytest.mark.parametrize(
    ("phase", "keeps_step"), [("Succeeded", False), ("Failed", True), ("Cancelled", True)]
)
def test_finish(phase: str, keeps_step: bool) -> None:
    status = {"phase": "Waiting", "currentStep": "w", "wakeAt": "x"}
    new = finish(status, phase, "m", T0)
    assert new["phase"] == phase and new["message"] == "m"
    assert new["finishedAt"] == rfc3339(T0) and "wakeAt" not in new
    assert ("currentStep" in new) == keeps_step
    assert is_terminal(new)


def test_cancel() -> None:
    new = cancel({"phase": "Running", "currentStep": "a"}, T0, who="flowpin cancel")
    assert new["phase"] == "Cancelled" and new["message"] == "cancelled (flowpin cancel)"


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "Running", "currentStep": "call"},
        {"phase": "Succeeded"},
        {"phase": "Cancelled", "currentStep": "call"},
        {"phase": "Failed"},  # failed before any step (invalid inputs)
    ],
)
def test_resume_failed_needs_a_failed_step(status: dict[str, Any]) -> None:
    assert resume_failed(status, T0) is None


def test_resume_failed_restarts_the_failed_step_with_fresh_attempts() -> None:
    spec = failing_step(retry={"limit": 2})
    status = started(spec)
    used: set[str] = set()
    now = T0
    while status["phase"] == "Running":
        used.add(idempotency_key(UID, "call", *current_attempt(status)))
        status = apply_outcome(spec, status, Outcome(False, error="503"), now)
        now += seconds(60)
    assert status["phase"] == "Failed" and len(used) == 3

    resumed = resume_failed(status, now)
    assert resumed is not None
    assert resumed["phase"] == "Running" and resumed["currentStep"] == "call"
    assert resumed["message"] == "resumed at step call"
    assert "finishedAt" not in resumed and "wakeAt" not in resumed
    visit, attempt = current_attempt(resumed)
    assert attempt == 1  # a fresh count of attempts ...
    assert idempotency_key(UID, "call", visit, attempt) not in used  # ... and a fresh key
    # and the retry policy applies afresh: two retries, then the run fails again
    again = resumed
    tries = 0
    while again["phase"] == "Running":
        again = apply_outcome(spec, again, Outcome(False, error="503"), now)
        tries += 1
    assert tries == 3 and again["phase"] == "Failed"
    # a success after the resume goes on
    ok = apply_outcome(spec, resumed, Outcome(True), now)
    assert ok["currentStep"] == "after"


def test_a_run_past_settings_timeout_fails_saying_where_it_was() -> None:
    definition = {"settings": {"timeout": "1h"}, "steps": [{"id": "a", "type": "noop"}]}
    status = {"phase": "Waiting", "currentStep": "a", "startedAt": "2026-01-01T00:00:00Z"}
    assert deadline(definition, status) == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert deadline({"steps": []}, status) is None
    failed = time_out(definition, status, datetime(2026, 1, 1, 1, tzinfo=UTC))
    assert failed["phase"] == "Failed" and "timed out at step a" in failed["message"]
    assert "1h (settings.timeout)" in failed["message"]


def test_input_errors_name_each_violation_by_path() -> None:
    schema = {
        "type": "object",
        "required": ["order"],
        "properties": {"order": {"type": "integer"}, "email": {"type": "string"}},
    }
    assert input_errors(schema, {"order": 7, "email": "a@b.example"}) == []
    assert input_errors(schema, {"order": "seven"}) == [
        "inputs.order: 'seven' is not of type 'integer'"
    ]
    assert input_errors(None, {"anything": 1}) == []


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("ops@example.com", []),
        ("not an address", ["inputs.email: 'not an address' is not a 'email'"]),
    ],
)
def test_input_format_is_asserted(value: str, errors: list[str]) -> None:
    """`format` narrows what a run accepts, as `flowpin diff` says when one is added."""
    schema = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}
    assert input_errors(schema, {"email": value}) == errors


def test_a_step_that_makes_the_state_too_large_fails_the_run_where_it_stood() -> None:
    """Found by the fuzz suite (issue 13): `set: {seen: inputs.email}` with 600 kB of inputs
    made a status etcd refuses; the run never got a phase and was retried forever."""
    import datetime as _dt

    from controller.model.runs import MAX_STATUS_BYTES, bounded

    now = _dt.datetime(2026, 12, 4, tzinfo=_dt.UTC)
    before = {"phase": "Running", "currentStep": "remember", "vars": {}}
    after = {**before, "vars": {"seen": "x" * MAX_STATUS_BYTES}}
    failed = bounded(before, after, "remember", now)
    assert failed["phase"] == "Failed" and failed["vars"] == {}
    assert "step remember made the run's state" in failed["message"]
    small = {**before, "vars": {"seen": "x"}}
    assert bounded(before, small, "remember", now) is small

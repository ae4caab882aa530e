"""The run state machine: pure functions from (definition, status, outcome, now) to status.

A run's `status` is its whole state, so any worker (after a crash, on another replica)
continues from what the API server holds. The step executors (`steps.py`) produce an
`Outcome`; this module decides what follows: the next step, a retry after a backoff, the
`onError` path, or the end of the run. Nothing here does I/O or reads the clock.

Step results are kept one entry per step id (the latest visit), so a loop through a wait
step does not grow the status without bound; `visits` counts the entries into a step and
is part of the idempotency key of http calls.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from controller.model.conditions import phase_conditions
from controller.model.durations import parse_duration

Status = dict[str, Any]
Definition = dict[str, Any]

TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Cancelled"})
END = "end"
DEFAULT_INITIAL_DELAY = datetime.timedelta(seconds=1)
DEFAULT_MAX_DELAY = datetime.timedelta(minutes=5)
DEFAULT_JITTER = 0.1
# A run's status (vars, step outputs): with its spec (inputs up to the receivers' 1 MiB) it
# must stay under etcd's 1.5 MiB request limit, or the run could never be saved again.
MAX_STATUS_BYTES = 256 * 1024


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a step did."""

    ok: bool
    output: Any = None
    error: str = ""
    goto: str | None = None  # condition steps: the branch taken (`end` ends the run)
    vars: dict[str, Any] = field(default_factory=dict)  # set steps: assignments
    sleep_until: datetime.datetime | None = None  # wait steps: not yet due
    retryable: bool = True  # false for errors that another attempt cannot fix
    fail_run: bool = False  # fail steps: the run fails, whatever onError says
    not_before: datetime.datetime | None = None  # e.g. an open circuit breaker
    truncated: bool = False  # the output was cut to fit


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def steps_of(definition: Definition) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in definition.get("steps") or []}


def entry_step(definition: Definition) -> str:
    return str((definition.get("steps") or [{}])[0].get("id", END))


def is_terminal(status: Status) -> bool:
    return status.get("phase") in TERMINAL_PHASES


def start(
    status: Status, version: str, reason: str, definition: Definition, now: datetime.datetime
) -> Status:
    """A run begins at the entry step of its version."""
    new = copy.deepcopy(status)
    new.update(
        phase="Running",
        message=f"started on version {version} ({reason})",
        version=version,
        versionReason=reason,
        currentStep=entry_step(definition),
        startedAt=rfc3339(now),
        steps=[],
        vars=new.get("vars") or {},
    )
    new.pop("wakeAt", None)
    return new


def finish(status: Status, phase: str, message: str, now: datetime.datetime) -> Status:
    new = copy.deepcopy(status)
    new.update(phase=phase, message=message, finishedAt=rfc3339(now))
    new.pop("wakeAt", None)
    if phase == "Succeeded":  # a failed or cancelled run keeps where it stopped
        new.pop("currentStep", None)
    return new


def bounded(before: Status, after: Status, step_id: str, now: datetime.datetime) -> Status:
    """`after`, or, when a step made the run's state larger than a run may hold, the run
    Failed where it stood before that step (a state that can still be saved), saying why."""
    size = len(json.dumps(after, separators=(",", ":"), default=str))
    if size <= MAX_STATUS_BYTES:
        return after
    return finish(
        before,
        "Failed",
        f"step {step_id} made the run's state {size} bytes, more than the {MAX_STATUS_BYTES} "
        "a run may hold (its vars and step outputs): keep large data out of vars and outputs",
        now,
    )


def step_entry(status: Status, step_id: str) -> dict[str, Any] | None:
    for entry in status.get("steps") or []:
        if entry.get("id") == step_id:
            return dict(entry)
    return None


def _put_entry(status: Status, entry: dict[str, Any]) -> None:
    steps = [e for e in status.get("steps") or [] if e.get("id") != entry["id"]]
    steps.append(entry)
    status["steps"] = steps


def current_attempt(status: Status) -> tuple[int, int]:
    """(visit, attempt) of the attempt about to run at the current step. A crash during an
    attempt leaves them unchanged, so the repeated attempt has the same idempotency key."""
    entry = step_entry(status, str(status.get("currentStep"))) or {}
    if entry.get("phase") in ("Running", "Retrying"):
        return int(entry.get("visits") or 1), int(entry.get("attempts") or 0) + 1
    return int(entry.get("visits") or 0) + 1, 1


def idempotency_key(run_uid: str, step_id: str, visit: int, attempt: int) -> str:
    raw = f"{run_uid}/{step_id}/{visit}/{attempt}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def retry_delay(
    policy: dict[str, Any] | None, failures: int, random_share: float
) -> datetime.timedelta | None:
    """Delay before the next attempt after `failures` failed attempts; None when retries are
    exhausted. `random_share` in [0, 1) is the caller's random draw (jitter), so this stays
    pure and tables can pin it."""
    policy = policy or {}
    if failures > int(policy.get("limit", 0)):
        return None
    initial = (
        parse_duration(str(policy["initialDelay"]))
        if "initialDelay" in policy
        else DEFAULT_INITIAL_DELAY
    )
    ceiling = parse_duration(str(policy["maxDelay"])) if "maxDelay" in policy else DEFAULT_MAX_DELAY
    delay = initial
    if policy.get("backoff") == "exponential":
        factor = 2 ** max(failures - 1, 0)
        # Compare before multiplying: initialDelay * 2**(limit) can exceed timedelta's range.
        delay = ceiling if initial and ceiling / initial < factor else initial * factor
    delay = min(delay, ceiling)
    jitter = float(policy.get("jitter", DEFAULT_JITTER))
    return delay + delay * (jitter * random_share)


def apply_outcome(
    definition: Definition,
    status: Status,
    outcome: Outcome,
    now: datetime.datetime,
    random_share: float = 0.0,
) -> Status:
    """The status after one attempt of the current step."""
    new = copy.deepcopy(status)
    step_id = str(new["currentStep"])
    step = steps_of(definition)[step_id]
    visit, attempt = current_attempt(status)
    entry = step_entry(new, step_id) or {"id": step_id}
    if visit != int(entry.get("visits") or 0):  # a new visit starts afresh
        entry = {"id": step_id, "visits": visit, "startedAt": rfc3339(now)}
    entry.setdefault("startedAt", rfc3339(now))
    new.pop("wakeAt", None)

    if outcome.sleep_until is not None:  # a wait step, not due yet
        entry.update(phase="Running", attempts=attempt - 1)
        _put_entry(new, entry)
        new.update(
            phase="Waiting",
            wakeAt=rfc3339(outcome.sleep_until),
            message=f"waiting at {step_id} until {rfc3339(outcome.sleep_until)}",
        )
        return new

    entry["attempts"] = attempt
    if outcome.output is not None:
        entry["output"] = outcome.output
    else:  # the entry shows the latest attempt: no stale output from an earlier one
        entry.pop("output", None)
    if outcome.truncated:
        entry["outputTruncated"] = True
    else:
        entry.pop("outputTruncated", None)
    if outcome.ok:
        entry.update(phase="Succeeded", finishedAt=rfc3339(now))
        entry.pop("error", None)
        _put_entry(new, entry)
        if outcome.vars:
            new["vars"] = {**(new.get("vars") or {}), **outcome.vars}
        target = outcome.goto if outcome.goto is not None else step.get("next", END)
        return _go(new, str(target), now)

    entry["error"] = outcome.error
    if outcome.fail_run:
        entry.update(phase="Failed", finishedAt=rfc3339(now))
        _put_entry(new, entry)
        return finish(new, "Failed", f"step {step_id}: {outcome.error}", now)
    delay = retry_delay(step.get("retry"), attempt, random_share) if outcome.retryable else None
    if delay is not None:
        wake = now + delay
        if outcome.not_before is not None and outcome.not_before > wake:
            wake = outcome.not_before
        entry["phase"] = "Retrying"
        _put_entry(new, entry)
        new.update(
            phase="Running",
            wakeAt=rfc3339(wake),
            message=f"step {step_id} attempt {attempt} failed: {outcome.error}; "
            f"retrying at {rfc3339(wake)}",
        )
        return new

    entry.update(phase="Failed", finishedAt=rfc3339(now))
    _put_entry(new, entry)
    tried = f"after {attempt} attempt{'s' if attempt != 1 else ''}"
    on_error = str(step.get("onError", "fail"))
    if on_error == "continue":
        return _go(new, str(step.get("next", END)), now)
    if on_error.startswith("goto:"):
        return _go(new, on_error.removeprefix("goto:"), now)
    return finish(new, "Failed", f"step {step_id} failed {tried}: {outcome.error}", now)


def _go(status: Status, target: str, now: datetime.datetime) -> Status:
    if target == END:
        return finish(status, "Succeeded", "all steps done", now)
    status.update(phase="Running", currentStep=target, message=f"at step {target}")
    return status


def cancel(status: Status, now: datetime.datetime, who: str = "spec.cancel") -> Status:
    return finish(status, "Cancelled", f"cancelled ({who})", now)


def resume_failed(status: Status, now: datetime.datetime) -> Status | None:
    """`flowpin retry-run`: a failed run continues at the step that failed, with a fresh
    count of attempts; None when there is nothing to resume."""
    if status.get("phase") != "Failed" or not status.get("currentStep"):
        return None
    new = copy.deepcopy(status)
    step_id = str(new["currentStep"])
    entry = step_entry(new, step_id)
    if entry is not None:
        # A new visit: attempts count afresh, and the idempotency keys differ from those of
        # the failed visit (a server that stored the failed answer would replay it).
        entry = {"id": step_id, "visits": int(entry.get("visits") or 1) + 1}
        entry["phase"] = "Retrying"
        entry["attempts"] = 0
        _put_entry(new, entry)
    new.update(phase="Running", message=f"resumed at step {step_id}", resumedAt=rfc3339(now))
    for key in ("finishedAt", "wakeAt"):
        new.pop(key, None)
    return new


def deadline(definition: Definition, status: Status) -> datetime.datetime | None:
    """When the run fails for taking too long (`settings.timeout`, counted from the start,
    or from the last `flowpin retry-run`), if it has a limit."""
    limit = (definition.get("settings") or {}).get("timeout")
    started = parse_time(status.get("resumedAt") or status.get("startedAt"))
    if not limit or started is None:
        return None
    return started + parse_duration(str(limit))


def time_out(definition: Definition, status: Status, now: datetime.datetime) -> Status:
    limit = (definition.get("settings") or {}).get("timeout")
    where = f" at step {status['currentStep']}" if status.get("currentStep") else ""
    return finish(
        status, "Failed", f"timed out{where}: runs may take {limit} (settings.timeout)", now
    )


def with_conditions(status: Status, generation: int, now: datetime.datetime) -> Status:
    """kstatus conditions from the phase, so `kubectl wait --for=condition=Ready` works:
    Ready once Succeeded; Reconciling while it runs or waits; Stalled when it failed or was
    cancelled (a person must act: `flowpin retry-run`, or nothing)."""
    phase = str(status.get("phase") or "Pending")
    conditions = phase_conditions(
        list(status.get("conditions") or []),
        phase,
        str(status.get("message") or phase),
        generation,
        rfc3339(now),
        reconciling=phase not in TERMINAL_PHASES,
        stalled=phase in ("Failed", "Cancelled"),
        idle=("Finished", "The run has finished."),
    )
    return {**status, "conditions": conditions, "observedGeneration": generation}


def input_errors(schema: dict[str, Any] | None, inputs: dict[str, Any]) -> list[str]:
    """Every violation of the version's inputs schema, as `inputs.<path>: message`. `format`
    is asserted (date, email, ipv4, ipv6, uuid, regex, …), so that adding one to an input is
    the narrowing `flowpin diff` calls breaking."""
    if not schema:
        return []
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    found = []
    for error in sorted(validator.iter_errors(inputs), key=lambda e: list(e.absolute_path)):
        path = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
        )
        found.append(f"inputs{path}: {error.message}")
    return found

"""Canary rollouts, as pure functions: which version a new run gets, what the canary runs
say, and what the rollout does next.

- **Assignment** (`bucket`, `assign`): a run's bucket in [0, 100) comes from the sha256 of its
  name, and it goes to the canary when its bucket is below the weight. The split is exact
  over many runs, the same run always gets the same answer (a restart changes nothing), and
  a run sent to the canary at 10% would still be sent there at 50%: raising the weight only
  adds runs to the canary.
- **Analysis** (`analyse`): over the canary runs finished since the canary started (or, with
  `analysis.window`, within that window when it is shorter). The evidence accumulates over
  the steps, because a run at 10% says as much about the version as one at 50%; `window`
  exists to look only at recent runs. `Succeeded` runs succeed; `Failed` and `Cancelled`
  runs fail. Defaults: `minRuns` 1 (no verdict without evidence; `minRuns: 0` makes a
  pause-only canary), `successRate` 0.95. `maxFailedRuns` is the most failed runs tolerated
  (as Argo Rollouts' `failureLimit`): one more aborts at once, so `maxFailedRuns: 0` aborts
  on the first failure.
- **Progress** (`progress`): start at step 0; stay while the step's pause runs; once it has
  run, Passed moves to the next step (after the last one, the canary is promoted), Pending
  waits for more runs and Failed aborts. Only failed runs beyond `maxFailedRuns` abort in
  the middle of a pause: a success rate over the first few runs is noise, so the rate is
  judged when the pause ends (until then the status shows the verdict as Pending, with the
  figures). `flowpin promote --full` and `flowpin abort` (annotations naming the canary
  version) act at once; abort wins when both are set, and `Progress.consumed` names the
  annotation acted on, for removal. Steps without a pause are judged at once; a canary with
  no steps (validation refuses it) is promoted at once; a step index beyond the steps (the
  Environment edited mid-canary) is judged as the last step. The status line
  (`Progress.message`) changes only when a run finishes or a pause ends, so a reconcile with
  nothing new writes nothing; `Progress.what` is the text of the Event.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Literal

from controller.api import kinds
from controller.model.durations import parse_duration
from controller.model.gates import rfc3339

Verdict = Literal["Pending", "Passed", "Failed"]
Action = Literal["start", "stay", "advance", "promote", "abort"]
CanaryRun = tuple[str, datetime.datetime | None]  # (phase, finishedAt) of a run

PROGRESSING = "Progressing"
ABORTED = "Aborted"
DEFAULT_MIN_RUNS = 1
DEFAULT_SUCCESS_RATE = 0.95
FAILED_PHASES = frozenset({"Failed", "Cancelled"})


def bucket(run_name: str) -> int:
    """A stable number in [0, 100) for a run: the same on every replica and after restarts."""
    digest = hashlib.sha256(run_name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def assign(
    run_name: str,
    stable: str | None,
    canary_status: Mapping[str, Any],
    environment: str = "",
) -> tuple[str | None, str]:
    """The version a new run gets and why (for `status.versionReason`): the canary while it
    is Progressing and the run's bucket is below its weight, else the stable version."""
    where = f" in {environment}" if environment else ""
    version = canary_status.get("version")
    weight = int(canary_status.get("weight") or 0)
    if version and canary_status.get("state") == PROGRESSING and bucket(run_name) < weight:
        return str(version), f"canary{where} ({weight}% of new runs)"
    return stable, f"active{where}"


def _percent(rate: float | Fraction) -> str:
    return f"{float(rate) * 100:.1f}".rstrip("0").rstrip(".") + "%"


@dataclass(frozen=True)
class Analysis:
    """The verdict on the canary runs, with the figures behind it."""

    finished: int
    succeeded: int
    failed: int
    verdict: Verdict
    message: str
    tripped: bool = False  # more failed runs than maxFailedRuns: abort without waiting

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.finished if self.finished else None

    def as_status(self) -> dict[str, Any]:
        """`status.canary.analysis` of a WorkflowDeployment."""
        status: dict[str, Any] = {
            "finished": self.finished,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "verdict": self.verdict,
            "message": self.message,
        }
        if self.success_rate is not None:
            status["successRate"] = round(self.success_rate, 4)
        return status

    def judged_at(self, moment: datetime.datetime) -> Analysis:
        """Before the pause ends a verdict is provisional: shown as Pending, with figures."""
        if self.verdict == "Pending" or self.tripped:
            return self
        return replace(
            self, verdict="Pending", message=f"{self.message}; judged at {rfc3339(moment)}"
        )


def analyse(
    runs: Iterable[CanaryRun],
    analysis: Mapping[str, Any],
    since: datetime.datetime,
    now: datetime.datetime,
) -> Analysis:
    """Count the canary runs finished at or after max(since, now - window) and judge them
    against `analysis` (see the module docstring for the defaults and the boundaries)."""
    start = since
    if analysis.get("window"):
        start = max(since, now - parse_duration(str(analysis["window"])))
    succeeded = failed = 0
    for phase, finished_at in runs:
        if finished_at is None or finished_at < start:
            continue
        if phase == "Succeeded":
            succeeded += 1
        elif phase in FAILED_PHASES:
            failed += 1
    finished = succeeded + failed
    min_runs = int(analysis.get("minRuns", DEFAULT_MIN_RUNS))
    threshold = Fraction(str(analysis.get("successRate", DEFAULT_SUCCESS_RATE)))
    max_failed = analysis.get("maxFailedRuns")
    figures = (
        f"{succeeded}/{finished} canary runs succeeded ({_percent(Fraction(succeeded, finished))})"
        if finished
        else "no canary run finished"
    )
    if max_failed is not None and failed > int(max_failed):
        return Analysis(
            finished,
            succeeded,
            failed,
            "Failed",
            f"{failed} canary runs failed, more than maxFailedRuns {max_failed}; {figures}",
            tripped=True,
        )
    if finished < min_runs:
        return Analysis(
            finished,
            succeeded,
            failed,
            "Pending",
            f"{finished} canary runs finished ({succeeded} succeeded); a verdict needs {min_runs}",
        )
    if not finished:
        return Analysis(0, 0, 0, "Passed", "no canary run finished; minRuns is 0")
    if Fraction(succeeded, finished) >= threshold:
        return Analysis(
            finished, succeeded, failed, "Passed", f"{figures}, at least {_percent(threshold)}"
        )
    return Analysis(
        finished, succeeded, failed, "Failed", f"{figures}, below {_percent(threshold)}"
    )


@dataclass(frozen=True)
class Progress:
    """What the canary does next, and the new `status.canary` ({} once promoted)."""

    action: Action
    canary: dict[str, Any]
    analysis: Analysis
    reason: str  # CanaryStarted, CanaryProgressing, CanaryAwaitingRuns, CanaryStepPassed,
    # CanaryPassed, PromotedFull, NoCanarySteps, CanaryFailed, CanaryAborted
    message: str  # the deployment's status line: the same until something changes
    initiator: str  # "controller", "flowpin promote --full" or "flowpin abort"
    wake_at: datetime.datetime | None = None  # when the current step's pause ends
    event: str = ""  # what happened, when the status line does not say it (start, step)
    consumed: tuple[str, ...] = ()  # annotations acted on: the operator removes them

    @property
    def what(self) -> str:
        """The text of the Event and the audit line of this move."""
        return self.event or self.message


def _time(text: Any) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _pause(step: Mapping[str, Any]) -> datetime.timedelta:
    return parse_duration(str(step["pause"])) if step.get("pause") else datetime.timedelta(0)


def progress(
    rollout: Mapping[str, Any],
    current: Mapping[str, Any],
    desired: str,
    stable: str,
    runs: Iterable[CanaryRun],
    annotations: Mapping[str, str],
    now: datetime.datetime,
) -> Progress:
    """The next move of the canary of `desired` against `stable`, given `status.canary`
    (`current`; anything but a Progressing canary of `desired` starts afresh), the canary
    runs (phase, finishedAt) and the `promote-full` / `abort` annotations."""
    steps: list[Mapping[str, Any]] = list(rollout.get("steps") or [])
    moment = now.replace(microsecond=0)  # to the second, as the status keeps times
    started = _time(current.get("startedAt"))
    step_started = _time(current.get("stepStartedAt"))
    fresh = current.get("version") != desired or current.get("state") != PROGRESSING
    if fresh or started is None or step_started is None:
        fresh, started, step_started = True, moment, moment
    since: datetime.datetime = started
    index = 0 if fresh else min(max(int(current.get("step") or 0), 0), max(len(steps) - 1, 0))
    result = analyse(runs, rollout.get("analysis") or {}, since, now)
    weight = int(steps[index].get("weight", 0)) if steps else 100
    where = f"{weight}% (step {index + 1}/{len(steps)})" if steps else f"{weight}%"

    def canary(
        state: str, step: int, weight: int, at: datetime.datetime, seen: Analysis
    ) -> dict[str, Any]:
        return {
            "version": desired,
            "weight": weight,
            "step": step,
            "state": state,
            "startedAt": rfc3339(since),
            "stepStartedAt": rfc3339(at),
            "analysis": seen.as_status(),
        }

    def provisional(pause_end: datetime.datetime) -> Analysis:
        return result.judged_at(pause_end) if now < pause_end else result

    aborted = annotations.get(kinds.ANNOTATION_ABORT) == desired
    full = annotations.get(kinds.ANNOTATION_PROMOTE_FULL) == desired
    if aborted:
        seen = replace(result, message=f"aborted by `flowpin abort`; {result.message}")
        return Progress(
            "abort",
            canary(ABORTED, index, 0, step_started, seen),
            seen,
            "CanaryAborted",
            f"canary {desired} aborted by `flowpin abort` at {where}: {result.message}; "
            f"every new run goes to {stable}",
            "flowpin abort",
            consumed=(kinds.ANNOTATION_ABORT,),
        )
    if full:
        return Progress(
            "promote",
            {},
            result,
            "PromotedFull",
            f"canary promoted by `flowpin promote --full` at {where} ({result.message}); "
            f"{desired} takes every new run",
            "flowpin promote --full",
            consumed=(kinds.ANNOTATION_PROMOTE_FULL,),
        )
    if not steps:  # validation refuses a canary without steps; never get stuck on one
        return Progress(
            "promote",
            {},
            result,
            "NoCanarySteps",
            f"the canary has no steps: {desired} takes every new run at once",
            "controller",
        )
    if result.tripped:
        return _abort(
            canary(ABORTED, index, 0, step_started, result), result, desired, stable, where
        )

    def line(step: int, pause_end: datetime.datetime) -> str:
        """The status line of a running canary; unchanged until a run finishes or the pause
        ends, so a reconcile with nothing new writes nothing."""
        text = (
            f"canary {desired} at {int(steps[step].get('weight', 0))}% (step {step + 1}/"
            f"{len(steps)}), {stable} the rest: {result.message}"
        )
        if now < pause_end:
            text += f"; the step's pause ends at {rfc3339(pause_end)}"
        return text

    if fresh:
        pause_end = step_started + _pause(steps[0])
        shown = provisional(pause_end)
        return Progress(
            "start",
            canary(PROGRESSING, 0, weight, step_started, shown),
            shown,
            "CanaryStarted",
            line(0, pause_end),
            "controller",
            pause_end if pause_end > now else None,
            f"canary {desired} started: {weight}% of new runs (step 1/{len(steps)}), "
            f"{stable} the rest",
        )
    pause_end = step_started + _pause(steps[index])
    if now < pause_end or result.verdict == "Pending":
        shown = provisional(pause_end)
        return Progress(
            "stay",
            canary(PROGRESSING, index, weight, step_started, shown),
            shown,
            "CanaryProgressing" if now < pause_end else "CanaryAwaitingRuns",
            line(index, pause_end),
            "controller",
            pause_end if pause_end > now else None,  # else a finishing run brings news
        )
    if result.verdict == "Failed":
        return _abort(
            canary(ABORTED, index, 0, step_started, result), result, desired, stable, where
        )
    if index + 1 >= len(steps):
        text = f"canary passed: {result.message}; {desired} takes every new run"
        return Progress("promote", {}, result, "CanaryPassed", text, "controller")
    following = int(steps[index + 1].get("weight", 0))
    pause_end = moment + _pause(steps[index + 1])
    shown = provisional(pause_end)
    return Progress(
        "advance",
        canary(PROGRESSING, index + 1, following, moment, shown),
        shown,
        "CanaryStepPassed",
        line(index + 1, pause_end),
        "controller",
        pause_end if pause_end > now else None,
        f"canary {desired} passed step {index + 1}/{len(steps)} ({result.message}): now "
        f"{following}% of new runs (step {index + 2}/{len(steps)})",
    )


def _abort(
    canary: dict[str, Any], result: Analysis, desired: str, stable: str, where: str
) -> Progress:
    return Progress(
        "abort",
        canary,
        result,
        "CanaryFailed",
        f"canary {desired} aborted at {where}: {result.message}; every new run goes to {stable}",
        "controller",
    )

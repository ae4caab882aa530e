"""The status a WorkflowSource reports after a sync, as a pure function.

One reason wins the Ready condition, in this order: FetchFailed / AuthFailed (nothing new
could be read) or SyncFailed (an unexpected error after the fetch; the mirror stays as it
was), Conflict, InvalidManifests, VersionMutated, HistoryRewritten, then Succeeded. Each
message says what to do. Timestamps change only when the mirrored state does, so an idle
source writes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.model.conditions import ConditionStatus, set_condition
from controller.model.findings import Finding
from controller.model.versions import CommitMeta

MAX_LISTED_FILES = 20


@dataclass(frozen=True)
class SyncOutcome:
    generation: int
    interval: str
    commit: CommitMeta | None = None  # the synced commit; None when the fetch failed
    # (FetchFailed | AuthFailed | SyncFailed, message): nothing of this sync was applied
    fetch_failure: tuple[str, str] | None = None
    invalid: Sequence[Finding] = ()
    mutated: Sequence[Finding] = ()
    conflicts: Sequence[str] = ()
    rewritten: bool = False  # this sync found the tracked history rewritten
    full: bool = False  # this sync listed everything (it ends an earlier rewrite's notice)
    orphaned: int = 0  # versions mirrored from a history rewritten away
    counts: dict[str, int] = field(default_factory=dict)
    requested_at: str | None = None
    now: str = ""


REWRITTEN = "HistoryRewritten"  # a condition type of its own, besides Ready's reason


def _rewritten_message(outcome: SyncOutcome) -> str:
    short = outcome.commit.id[:12] if outcome.commit else "?"
    orphans = (
        f" {outcome.orphaned} version{'s' if outcome.orphaned != 1 else ''} exist only in "
        "the old history: kept and marked orphaned, never chosen by `latest`; a pin may "
        "still name one."
        if outcome.orphaned
        else ""
    )
    return (
        f"History was rewritten (force-push); synced {short}. Versions mirrored from the "
        f"old history are kept.{orphans} This notice stays until the next full sync "
        "(`flowpin sync`)."
    )


def _ready(outcome: SyncOutcome, rewritten: bool) -> tuple[ConditionStatus, str, str]:
    """(status, reason, message) of the Ready condition."""
    if outcome.fetch_failure is not None:
        reason, message = outcome.fetch_failure
        return (
            "False",
            reason,
            f"{message}. Mirrored objects are kept as they were; flowpin retries every "
            f"{outcome.interval}.",
        )
    if outcome.conflicts:
        more = f" (and {len(outcome.conflicts) - 1} more)" if len(outcome.conflicts) > 1 else ""
        return "False", "Conflict", f"{outcome.conflicts[0]}{more}."
    if outcome.invalid:
        first = outcome.invalid[0]
        count = len({f.file for f in outcome.invalid})
        return (
            "False",
            "InvalidManifests",
            f"{count} invalid file{'s' if count != 1 else ''}, first {first.file}:{first.line}: "
            f"{first.message}. Everything else is synced and nothing was deleted; fix the "
            "file and commit (`flowpin validate` shows every finding).",
        )
    if outcome.mutated:
        mutated = outcome.mutated[0]
        return "False", "VersionMutated", f"{mutated.file}: {mutated.message}."
    short = outcome.commit.id[:12] if outcome.commit else "?"
    if rewritten:
        return "True", "HistoryRewritten", _rewritten_message(outcome)
    return "True", "Succeeded", f"Synced commit {short}."


def source_status(current: dict[str, Any], outcome: SyncOutcome) -> dict[str, Any]:
    status = copy.deepcopy(current)
    conditions = list(status.get("conditions") or [])
    # A rewrite is said until a later full sync that completed (or `flowpin sync`), not
    # only by the one sync that found it, in a condition of its own: a failed fetch, or a
    # reason that wins Ready (an invalid file), neither hides nor ends it.
    was_rewritten = any(
        c.get("type") == REWRITTEN and c.get("status") == "True" for c in conditions
    )
    rewritten = outcome.rewritten or (
        was_rewritten and not (outcome.full and outcome.commit is not None)
    )
    ready_status, reason, message = _ready(outcome, rewritten)
    g = outcome.generation
    if outcome.commit is not None:  # a failed fetch or sync leaves the notice as it was
        conditions = set_condition(
            conditions,
            REWRITTEN,
            "True" if rewritten else "False",
            "HistoryRewritten" if rewritten else "LinearHistory",
            _rewritten_message(outcome) if rewritten else "No rewrite since the last full sync.",
            g,
            outcome.now or None,
        )
    conditions = set_condition(
        conditions, "Ready", ready_status, reason, message, g, outcome.now or None
    )
    conditions = set_condition(
        conditions, "Reconciling", "False", reason, "Sync finished.", g, outcome.now or None
    )
    stalled = outcome.fetch_failure is not None and outcome.fetch_failure[0] == "AuthFailed"
    conditions = set_condition(
        conditions,
        "Stalled",
        "True" if stalled else "False",
        reason if stalled else "Succeeded" if ready_status == "True" else reason,
        message if stalled else "Not stalled.",
        g,
        outcome.now or None,
    )
    status["conditions"] = conditions
    status["observedGeneration"] = g
    if outcome.requested_at is not None:
        status["lastHandledRequestedAt"] = outcome.requested_at
    if outcome.commit is None:
        return status  # the fetch failed: the rest stays as the last good sync left it
    artifact = status.get("artifact") or {}
    if artifact.get("commit") != outcome.commit.id:
        status["artifact"] = {
            "commit": outcome.commit.id,
            "message": outcome.commit.message,
            "author": outcome.commit.author,
            "fetchedAt": outcome.now,
        }
        status["lastSyncedAt"] = outcome.now
    if outcome.counts:
        status["counts"] = dict(outcome.counts)
    status["invalidFiles"] = [
        {"file": f.file, "line": f.line, "field": f.path, "message": f.message}
        for f in list(outcome.invalid)[:MAX_LISTED_FILES]
    ]
    return status

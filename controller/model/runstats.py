"""Run statistics that stay exact across restarts.

A version's counts are the counts of its existing runs (computed from the watch cache)
plus a ledger of the runs already deleted. A run is added to the ledger exactly once, while
its finalizer still holds it: the ledger write records the run's uid in `recent`, so a fold
repeated after a crash (ledger written, finalizer not yet removed) is recognised and
skipped, and `counts` does not count a run both live and in the ledger. A uid leaves
`recent` only once the run's deletion has been seen; the list is bounded as a backstop.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from controller.model.runs import TERMINAL_PHASES, parse_time

Ledger = dict[str, Any]
RECENT_LIMIT = 2000  # runs folded but not yet seen deleted; a backstop bound


def duration_seconds(status: dict[str, Any]) -> float | None:
    started = parse_time(status.get("startedAt"))
    finished = parse_time(status.get("finishedAt"))
    if started is None or finished is None:
        return None
    return max((finished - started).total_seconds(), 0.0)


def fold(ledger: Ledger, run: dict[str, Any], gone_uids: set[str]) -> Ledger | None:
    """The ledger with `run` added; None when it is already in it. Uids in `gone_uids`
    (runs whose deletion has been seen) leave `recent`; no other rule may drop one, since
    a run absent from a cache that is still filling up may be folded again."""
    uid = run["metadata"]["uid"]
    recent = [u for u in ledger.get("recent") or [] if u not in gone_uids]
    if uid in (ledger.get("recent") or []):
        return None
    status = run.get("status") or {}
    phase = status.get("phase")
    new = {k: v for k, v in ledger.items() if k != "recent"}
    new["total"] = int(new.get("total") or 0) + 1
    outcome = {"Succeeded": "succeeded", "Failed": "failed"}.get(str(phase), "cancelled")
    new[outcome] = int(new.get(outcome) or 0) + 1
    seconds = duration_seconds(status) if phase in TERMINAL_PHASES else None
    if seconds is not None:
        new["finished"] = int(new.get("finished") or 0) + 1
        new["durationSeconds"] = round(float(new.get("durationSeconds") or 0.0) + seconds, 3)
    new["recent"] = [*recent, uid][-RECENT_LIMIT:]
    return new


def counts(ledger: Ledger, live: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """`runCounts` for a version: the ledger plus its existing runs not yet folded."""
    folded = set(ledger.get("recent") or [])
    total = int(ledger.get("total") or 0)
    succeeded = int(ledger.get("succeeded") or 0)
    failed = int(ledger.get("failed") or 0) + int(ledger.get("cancelled") or 0)
    finished = int(ledger.get("finished") or 0)
    seconds = float(ledger.get("durationSeconds") or 0.0)
    active = 0
    for run in live:
        if run["metadata"].get("uid") in folded:
            continue
        status = run.get("status") or {}
        total += 1
        phase = status.get("phase")
        if phase == "Succeeded":
            succeeded += 1
        elif phase in ("Failed", "Cancelled"):
            failed += 1
        else:
            active += 1
            continue
        duration = duration_seconds(status)
        if duration is not None:
            finished += 1
            seconds += duration
    result: dict[str, Any] = {
        "total": total,
        "succeeded": succeeded,
        "failed": failed,
        "active": active,
    }
    if finished:
        result["avgDurationSeconds"] = round(seconds / finished, 3)
    return result


def expired(
    status: dict[str, Any], ttl_seconds: int, now: datetime.datetime
) -> datetime.datetime | None:
    """When a finished run is due for deletion (None while it runs)."""
    finished = parse_time(status.get("finishedAt"))
    if status.get("phase") not in TERMINAL_PHASES or finished is None:
        return None
    return finished + datetime.timedelta(seconds=ttl_seconds)

"""Leader election over a coordination.k8s.io Lease, decided as a pure function.

With two operator replicas exactly one may act. kopf's peering pauses every operator of equal
priority, so flowpin elects a leader the way controller-runtime does: whoever holds an
unexpired Lease leads; a standby takes the Lease over only after it has expired.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from enum import Enum


class LeaseAction(Enum):
    ACQUIRE = "acquire"  # nobody holds it, or the holder's term ran out: take it
    RENEW = "renew"  # we hold it: extend it
    WAIT = "wait"  # somebody else holds an unexpired lease


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    renewed_at: datetime.datetime | None
    duration_seconds: int


def decide_lease(state: LeaseState | None, me: str, now: datetime.datetime) -> LeaseAction:
    if state is None or not state.holder:
        return LeaseAction.ACQUIRE
    if state.holder == me:
        return LeaseAction.RENEW
    if state.renewed_at is None:
        return LeaseAction.ACQUIRE
    expires = state.renewed_at + datetime.timedelta(seconds=state.duration_seconds)
    return LeaseAction.ACQUIRE if now >= expires else LeaseAction.WAIT

from __future__ import annotations

import datetime

import pytest

from controller.model.leases import LeaseAction, LeaseState, decide_lease

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def ago(seconds: int) -> datetime.datetime:
    return NOW - datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, LeaseAction.ACQUIRE),
        (LeaseState(holder=None, renewed_at=None, duration_seconds=15), LeaseAction.ACQUIRE),
        (LeaseState(holder="me", renewed_at=ago(1), duration_seconds=15), LeaseAction.RENEW),
        (LeaseState(holder="me", renewed_at=ago(100), duration_seconds=15), LeaseAction.RENEW),
        (LeaseState(holder="other", renewed_at=ago(1), duration_seconds=15), LeaseAction.WAIT),
        (LeaseState(holder="other", renewed_at=ago(14), duration_seconds=15), LeaseAction.WAIT),
        (LeaseState(holder="other", renewed_at=ago(15), duration_seconds=15), LeaseAction.ACQUIRE),
        (LeaseState(holder="other", renewed_at=None, duration_seconds=15), LeaseAction.ACQUIRE),
    ],
)
def test_decide_lease(state: LeaseState | None, expected: LeaseAction) -> None:
    assert decide_lease(state, "me", NOW) is expected

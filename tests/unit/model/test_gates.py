"""Each gate open and closed, their order, and the times they open."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from controller.model.gates import (
    GATE_ORDER,
    GateInputs,
    VersionInfo,
    evaluate_gates,
    first_closed,
    next_opening,
    version_info,
)

EXISTS = VersionInfo(True)
NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)  # a Monday, 12:00 UTC
HOUR = datetime.timedelta(hours=1)


def gates(
    promotion: dict[str, Any],
    info: VersionInfo = EXISTS,
    verified: datetime.datetime | None = None,
    approved: str | None = None,
    now: datetime.datetime = NOW,
) -> list[Any]:
    return evaluate_gates(
        GateInputs("wf", "prod", "1.4.0", info, promotion, verified, approved, now)
    )


PROD = {
    "from": "staging",
    "soak": "1h",
    "approval": "required",
    "windows": [{"kind": "allow", "schedule": "0 9 * * 1-5", "duration": "8h"}],
}


def test_no_policy_means_only_validity() -> None:
    result = gates({})
    assert [(g.name, g.open) for g in result] == [("valid", True)]
    assert first_closed(result) is None


@pytest.mark.parametrize(
    ("info", "reason"),
    [(VersionInfo(False), "InvalidVersion"), (VersionInfo(True, False, "bad"), "InvalidVersion")],
)
def test_invalid_version(info: VersionInfo, reason: str) -> None:
    closed = first_closed(gates({}, info))
    assert closed is not None and closed.reason == reason


def test_gates_come_in_order_and_all_are_reported() -> None:
    result = gates(PROD)
    assert [g.name for g in result] == list(GATE_ORDER)
    closed = first_closed(result)
    assert closed is not None and closed.reason == "UpstreamNotVerified"
    assert [g.open for g in result] == [True, False, False, True, False]


def test_soak_opens_one_hour_after_verification() -> None:
    verified = NOW - datetime.timedelta(minutes=20)
    result = gates({"from": "staging", "soak": "1h"}, verified=verified)
    closed = first_closed(result)
    assert closed is not None and closed.reason == "SoakPending"
    assert closed.opens_at == verified + HOUR
    assert next_opening(result) == verified + HOUR
    assert first_closed(gates({"from": "staging", "soak": "1h"}, verified=NOW - HOUR)) is None


def test_outside_the_window_says_when_it_opens() -> None:
    evening = NOW.replace(hour=18)
    result = gates({"windows": PROD["windows"]}, now=evening)
    closed = first_closed(result)
    assert closed is not None and closed.reason == "OutsideWindow"
    assert closed.opens_at == (evening + datetime.timedelta(days=1)).replace(hour=9)
    assert first_closed(gates({"windows": PROD["windows"]})) is None  # noon: inside


def test_deny_window_wins() -> None:
    windows = [
        {"kind": "allow", "schedule": "0 0 * * *", "duration": "24h"},
        {"kind": "deny", "schedule": "0 11 * * *", "duration": "2h"},
    ]
    closed = first_closed(gates({"windows": windows}))
    assert closed is not None and closed.reason == "OutsideWindow"
    assert closed.opens_at == NOW.replace(hour=13)


def test_approval_needs_the_same_version() -> None:
    assert first_closed(gates({"approval": "required"}, approved="1.3.0")).reason == (  # type: ignore[union-attr]
        "AwaitingApproval"
    )
    assert first_closed(gates({"approval": "required"}, approved="1.4.0")) is None


def test_everything_open() -> None:
    result = gates(PROD, verified=NOW - 2 * HOUR, approved="1.4.0")
    assert all(g.open for g in result)


def test_version_info_reads_spec_facts_first_then_the_status_of_older_versions() -> None:
    facts = {"changeClass": "initial", "valid": False, "problems": ["w.yaml:3: bad"]}
    assert version_info({"spec": {"facts": facts}}) == VersionInfo(
        True, False, "Invalid: w.yaml:3: bad"
    )
    valid = {"changeClass": "none", "valid": True, "problems": []}
    stale = {"conditions": [{"type": "Ready", "status": "False", "message": "old"}]}
    assert version_info({"spec": {"facts": valid}, "status": stale}) == VersionInfo(True)
    assert version_info({"spec": {}, "status": stale}) == VersionInfo(True, False, "old")
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert version_info({"spec": {}, "status": ready}) == VersionInfo(True)
    assert version_info({"spec": {}}) is None  # created before facts, its status not yet

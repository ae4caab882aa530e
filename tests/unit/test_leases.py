from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import threading
import time
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.model.leases import LeaseAction, LeaseState, decide_lease
from controller.operator.leader import ADDRESS_ANNOTATION, LeaderElector
from controller.operator.settings import OperatorSettings

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


# ------------------------------------------------------------------ the elector's I/O half


class FakeLeases:
    """A CoordinationV1Api holding one Lease in memory; `failure` (an exception, or a
    threading.Event to hang on) makes every call fail until it is cleared."""

    def __init__(self) -> None:
        self.lease: client.V1Lease | None = None
        self.failure: BaseException | threading.Event | None = None
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        failure = self.failure
        if isinstance(failure, threading.Event):
            failure.wait(10)
            raise urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out")  # type: ignore[arg-type]
        if failure is not None:
            raise failure

    def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> client.V1Lease:
        self._maybe_fail()
        if self.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.lease)

    def create_namespaced_lease(self, namespace: str, body: client.V1Lease, **_: Any) -> None:
        self._maybe_fail()
        self.lease = copy.deepcopy(body)

    def replace_namespaced_lease(
        self, name: str, namespace: str, body: client.V1Lease, **_: Any
    ) -> None:
        self._maybe_fail()
        self.lease = copy.deepcopy(body)


def elector(api: FakeLeases, duration: int = 1, renew: float = 0.1) -> LeaderElector:
    settings = OperatorSettings(
        identity="me",
        lease_namespace="flowpin-system",
        lease_duration_seconds=duration,
        lease_renew_seconds=renew,
    )
    return LeaderElector(api, settings)  # type: ignore[arg-type]


FAILURES = [
    pytest.param(
        urllib3.exceptions.MaxRetryError(None, "/apis/coordination.k8s.io"),  # type: ignore[arg-type]
        id="MaxRetryError",
    ),
    pytest.param(RuntimeError("boom"), id="RuntimeError"),
    pytest.param(ApiException(status=500, reason="Internal Server Error"), id="ApiException"),
    pytest.param(ConnectionRefusedError(111, "refused"), id="OSError"),
]


@pytest.mark.parametrize("failure", FAILURES)
def test_a_leader_that_cannot_renew_stops_leading_by_the_renew_deadline(
    failure: BaseException,
) -> None:
    async def scenario() -> float:
        api = FakeLeases()
        leader = elector(api)
        await leader.acquire()
        assert leader.is_leader
        api.failure = failure
        started = time.monotonic()
        await asyncio.wait_for(leader.keep(), timeout=5)  # returns, never raises
        assert not leader.is_leader
        return time.monotonic() - started

    elapsed = asyncio.run(scenario())
    assert elapsed < 1.0  # the renew deadline: 2/3 of the 1 s lease, well before it expires


def test_a_renewal_that_hangs_does_not_keep_a_replica_leading() -> None:
    async def scenario() -> None:
        api = FakeLeases()
        leader = elector(api)
        await leader.acquire()
        hang = threading.Event()
        api.failure = hang
        try:
            await asyncio.wait_for(leader.keep(), timeout=5)
            assert not leader.is_leader
        finally:
            hang.set()

    asyncio.run(scenario())


def test_a_transient_failure_is_retried_and_the_lease_kept() -> None:
    async def scenario() -> None:
        api = FakeLeases()
        leader = elector(api, duration=3, renew=0.1)
        await leader.acquire()
        keeping = asyncio.create_task(leader.keep())
        api.failure = urllib3.exceptions.MaxRetryError(None, "/")  # type: ignore[arg-type]
        await asyncio.sleep(0.5)
        assert leader.is_leader  # 0.5 s without renewal is within the 2 s deadline
        api.failure = None
        await asyncio.sleep(2.5)
        assert leader.is_leader and not keeping.done()
        keeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await keeping
        assert not leader.is_leader  # cancelled: no longer leading either

    asyncio.run(scenario())


def test_is_leader_expires_by_itself_when_nothing_renews() -> None:
    """A renewal task that died (or never ran) cannot leave a replica leading."""
    now = [100.0]
    api = FakeLeases()
    leader = LeaderElector(
        api,  # type: ignore[arg-type]
        OperatorSettings(identity="me", lease_namespace="ns", lease_duration_seconds=15),
        clock=lambda: now[0],
    )
    asyncio.run(leader.acquire())
    assert leader.is_leader and leader.connected
    now[0] += 9.9
    assert leader.is_leader
    now[0] += 0.2  # past 10 s, the renew deadline of a 15 s lease
    assert not leader.is_leader
    now[0] += 5
    assert not leader.connected


def test_acquire_survives_any_error_and_logs_no_detail(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        api = FakeLeases()
        api.failure = RuntimeError("Authorization: Bearer s3cr3t-token")
        leader = elector(api)
        acquiring = asyncio.create_task(leader.acquire())
        await asyncio.sleep(0.35)
        assert not acquiring.done() and api.calls >= 2
        api.failure = None
        await asyncio.wait_for(acquiring, timeout=2)
        assert leader.is_leader

    with caplog.at_level(logging.WARNING, logger="flowpin.leader"):
        asyncio.run(scenario())
    assert "RuntimeError" in caplog.text
    assert "s3cr3t" not in caplog.text


def test_a_standby_waits_while_another_replica_holds_the_lease() -> None:
    async def scenario() -> None:
        api = FakeLeases()
        other = elector(api)
        other.settings = OperatorSettings(
            identity="other", lease_namespace="ns", lease_duration_seconds=1
        )
        assert await asyncio.to_thread(other.try_once)
        me = elector(api)
        assert not await asyncio.to_thread(me.try_once)
        assert not me.is_leader and me.connected

    asyncio.run(scenario())


def test_the_leader_writes_its_address_on_the_lease_for_standbys() -> None:
    api = FakeLeases()
    leader = elector(api, duration=15)
    leader.advertise = "http://10.0.0.7:8080"
    assert leader.try_once()
    assert api.lease is not None
    assert api.lease.metadata.annotations == {ADDRESS_ANNOTATION: "http://10.0.0.7:8080"}
    assert leader.try_once()  # renewed: still there
    assert api.lease.metadata.annotations[ADDRESS_ANNOTATION] == "http://10.0.0.7:8080"
    standby = LeaderElector(
        api,  # type: ignore[arg-type]
        OperatorSettings(identity="other", lease_namespace="ns", lease_duration_seconds=15),
    )
    assert not standby.try_once()
    assert standby.leader_address == "http://10.0.0.7:8080"


def test_a_clean_stop_releases_the_lease_for_a_standby_to_take_at_once() -> None:
    api = FakeLeases()
    leader = elector(api, duration=15)
    leader.advertise = "http://10.0.0.7:8080"
    asyncio.run(leader.acquire())
    asyncio.run(leader.release())
    assert not leader.is_leader
    assert api.lease is not None and not api.lease.spec.holder_identity
    assert not (api.lease.metadata.annotations or {}).get(ADDRESS_ANNOTATION)
    standby = LeaderElector(
        api,  # type: ignore[arg-type]
        OperatorSettings(identity="other", lease_namespace="ns", lease_duration_seconds=15),
    )
    assert standby.try_once()  # no waiting for the 15 s lease to expire
    asyncio.run(leader.release())  # not the holder any more: leaves the Lease alone
    assert api.lease.spec.holder_identity == "other"


class SlowLeases(FakeLeases):
    """Writes that take `delay` seconds; counts how many are in flight at once."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0

    def create_namespaced_lease(self, namespace: str, body: client.V1Lease, **_: Any) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            super().create_namespaced_lease(namespace, body)
        finally:
            self.in_flight -= 1


def test_a_round_slower_than_its_bound_is_awaited_not_started_again() -> None:
    """Two rounds in flight would write the same resourceVersion; the loser's 409 would
    read as a takeover."""

    async def scenario() -> int:
        api = SlowLeases(delay=2.5)  # longer than the 2 s bound of one attempt
        leader = elector(api, duration=3, renew=0.1)
        await asyncio.wait_for(leader.acquire(), timeout=10)
        return api.most_in_flight

    assert asyncio.run(scenario()) == 1


def test_a_retried_api_request_is_a_warning_not_an_error() -> None:
    """A fresh operator logged `[ERROR] … storage is (re)initializing 429` (issue 14)."""
    import logging

    from controller.operator.main import RetriesAreWarnings

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf", logging.ERROR, __file__, 1, message, None, None)

    retried = record(
        "Request attempt 1 failed; will retry: GET /x -> 429 storage is (re)initializing"
    )
    assert RetriesAreWarnings().filter(retried) and retried.levelname == "WARNING"
    final = record("Request attempt 9 failed; escalating: GET /x -> 500")
    assert RetriesAreWarnings().filter(final) and final.levelname == "ERROR"

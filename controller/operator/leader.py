"""The I/O half of leader election: read and write the Lease; `model.leases` decides.

A leader leads only while its last successful renewal is younger than the renew deadline
(two thirds of the lease duration, as controller-runtime's 10 s of 15 s): `is_leader` checks
that clock itself, so no failure of the renewal task — an exception of any kind, a call that
hangs — can leave a replica believing it leads after a standby could have taken over.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.model.leases import LeaseAction, LeaseState, decide_lease
from controller.operator.settings import OperatorSettings

logger = logging.getLogger("flowpin.leader")
ADDRESS_ANNOTATION = "flowpin.dev/leader-address"
"""The leader's HTTP address (`http://<pod IP>:<port>`), written on the Lease, to which a
standby forwards the webhooks it receives."""
RETRY_AFTER_FAILURE = 1.0  # seconds between renewal attempts once one has failed


def _describe(error: BaseException) -> str:
    """What went wrong, without request headers or bodies (which may carry the token)."""
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return type(error).__name__


class LeaderElector:
    def __init__(
        self,
        api: client.CoordinationV1Api,
        settings: OperatorSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.settings = settings
        self.clock = clock
        self._leading = False
        self._renewed_at = float("-inf")  # clock() when the last successful write began
        self._contact_at = float("-inf")  # clock() when the API server last answered a read
        self.advertise: str | None = None  # this replica's HTTP address, written when leading
        self._leader_address: str | None = None
        self._leader_seen_at = float("-inf")
        self._round: asyncio.Future[bool] | None = None  # a Lease round still in its thread

    @property
    def renew_deadline(self) -> float:
        """Seconds after a successful renewal until this replica stops leading: before the
        lease expires for a standby, with margin for clock skew and the write's latency."""
        return self.settings.lease_duration_seconds * 2 / 3

    @property
    def connected(self) -> bool:
        """The API server answered a Lease round within the lease duration."""
        return self.clock() - self._contact_at < self.settings.lease_duration_seconds

    @property
    def leader_address(self) -> str | None:
        """Another replica's address while it holds an unexpired Lease, as last read."""
        if self.clock() - self._leader_seen_at >= self.settings.lease_duration_seconds:
            return None
        return self._leader_address

    @property
    def is_leader(self) -> bool:
        return self._leading and self.clock() - self._renewed_at < self.renew_deadline

    def _step_down(self) -> None:
        self._leading = False

    def _timeout(self) -> float:
        return max(1.0, min(self.renew_deadline, float(self.settings.connect_timeout)))

    def _read(self) -> Any | None:
        try:
            return self.api.read_namespaced_lease(
                self.settings.lease_name,
                self.settings.lease_namespace,
                _request_timeout=self._timeout(),
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def try_once(self) -> bool:
        """One round: take or renew the Lease if the decision says so. True when leading."""
        started = self.clock()
        now = datetime.datetime.now(datetime.UTC)
        lease = self._read()
        self._contact_at = started
        state = None
        if lease is not None and lease.spec is not None:
            state = LeaseState(
                holder=lease.spec.holder_identity,
                renewed_at=lease.spec.renew_time,
                duration_seconds=lease.spec.lease_duration_seconds
                or self.settings.lease_duration_seconds,
            )
        action = decide_lease(state, self.settings.identity, now)
        if action is LeaseAction.WAIT:
            metadata = lease.metadata if lease is not None else None
            annotations = (metadata.annotations if metadata is not None else None) or {}
            self._leader_address = annotations.get(ADDRESS_ANNOTATION)
            self._leader_seen_at = started
            return False
        self._leader_address = None
        spec = client.V1LeaseSpec(
            holder_identity=self.settings.identity,
            lease_duration_seconds=self.settings.lease_duration_seconds,
            renew_time=now,
            acquire_time=now
            if action is LeaseAction.ACQUIRE
            else (lease.spec.acquire_time if lease is not None else now),
            lease_transitions=(
                (lease.spec.lease_transitions or 0) + (1 if action is LeaseAction.ACQUIRE else 0)
                if lease is not None and lease.spec is not None
                else 0
            ),
        )
        try:
            if lease is None:
                body = client.V1Lease(
                    metadata=client.V1ObjectMeta(
                        name=self.settings.lease_name,
                        namespace=self.settings.lease_namespace,
                        annotations=self._annotations(None),
                    ),
                    spec=spec,
                )
                self.api.create_namespaced_lease(
                    self.settings.lease_namespace, body, _request_timeout=self._timeout()
                )
            else:
                lease.spec = spec  # resourceVersion kept: a concurrent writer gets 409
                if lease.metadata is not None:
                    lease.metadata.annotations = self._annotations(lease.metadata.annotations)
                self._replace(lease)
        except ApiException as error:
            if error.status in (409, 422):
                return False
            raise
        # The term runs from when this round began: renew_time is at most that late.
        self._renewed_at = started
        return True

    def _annotations(self, current: dict[str, str] | None) -> dict[str, str] | None:
        annotations = dict(current or {})
        if self.advertise:
            annotations[ADDRESS_ANNOTATION] = self.advertise
        else:
            annotations.pop(ADDRESS_ANNOTATION, None)
        return annotations or None

    def _release_once(self) -> bool:
        lease = self._read()
        if (
            lease is None
            or lease.spec is None
            or lease.spec.holder_identity != self.settings.identity
        ):
            return False
        lease.spec.holder_identity = None
        lease.spec.lease_duration_seconds = 1
        lease.spec.renew_time = datetime.datetime.now(datetime.UTC)
        if lease.metadata is not None:
            self.advertise = None
            lease.metadata.annotations = self._annotations(lease.metadata.annotations)
        self._replace(lease)
        return True

    def _replace(self, lease: client.V1Lease) -> None:
        """A PUT that carries the resourceVersion read: a concurrent writer gets 409."""
        self.api.replace_namespaced_lease(
            self.settings.lease_name,
            self.settings.lease_namespace,
            lease,
            _request_timeout=self._timeout(),
        )

    async def release(self) -> None:
        """On a clean stop, after everything that acts has stopped: give the Lease up so
        that a standby leads at once instead of after the lease expires. Best effort."""
        self._step_down()
        try:
            if await asyncio.wait_for(asyncio.to_thread(self._release_once), self._timeout()):
                logger.info("released the lease")
        except Exception as error:  # the lease then expires as it would after a crash
            logger.warning("lease release: %s", _describe(error))

    async def _attempt(self, timeout: float) -> bool | None:
        """One round in a thread, bounded by `timeout`: True leading, False another replica
        holds the Lease, None failed (any error, or no answer in time). A round that outlives
        its bound is awaited by the next attempt, not started again: two rounds in flight
        would write the same resourceVersion, and the loser's 409 would read as a takeover."""
        if self._round is None:
            self._round = asyncio.ensure_future(asyncio.to_thread(self.try_once))
        try:
            result = await asyncio.wait_for(asyncio.shield(self._round), max(timeout, 0.1))
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            if self._round.done():  # the round itself timed out (a socket timeout)
                self._round = None
            logger.warning("lease: no answer from the API server within %.1fs", timeout)
            return None
        except Exception as error:  # any failure is a failed round
            self._round = None
            logger.warning("lease: %s", _describe(error))
            return None
        self._round = None
        return result

    async def acquire(self) -> None:
        """Block until this replica leads."""
        announced = False
        while True:
            if await self._attempt(self._timeout()):
                self._leading = True
                logger.info("leading as %s", self.settings.identity)
                return
            if not announced:
                logger.info("standing by: another replica holds the lease")
                announced = True
            await asyncio.sleep(self.settings.lease_renew_seconds)

    async def keep(self) -> None:
        """Renew until the Lease is lost or cannot be renewed before the renew deadline; then
        stop leading and return. Never raises but for cancellation (then it stops leading
        too)."""
        try:
            await self._keep()
        finally:
            self._step_down()

    async def _keep(self) -> None:
        delay = self.settings.lease_renew_seconds
        while True:
            remaining = self._renewed_at + self.renew_deadline - self.clock()
            await asyncio.sleep(max(0.0, min(delay, remaining)))
            remaining = self._renewed_at + self.renew_deadline - self.clock()
            if remaining <= 0:
                logger.error(
                    "could not renew the lease within %.0fs; no longer leading",
                    self.renew_deadline,
                )
                return
            result = await self._attempt(remaining)
            if result is True:
                delay = self.settings.lease_renew_seconds
                continue
            if result is False:
                logger.error("lease taken over by another replica; no longer leading")
                return
            delay = min(RETRY_AFTER_FAILURE, self.settings.lease_renew_seconds)

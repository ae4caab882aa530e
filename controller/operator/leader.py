"""The I/O half of leader election: read and write the Lease; `model.leases` decides."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.model.leases import LeaseAction, LeaseState, decide_lease
from controller.operator.settings import OperatorSettings

logger = logging.getLogger("flowpin.leader")


class LeaderElector:
    def __init__(self, api: client.CoordinationV1Api, settings: OperatorSettings) -> None:
        self.api = api
        self.settings = settings
        self.is_leader = False

    def _read(self) -> Any | None:
        try:
            return self.api.read_namespaced_lease(
                self.settings.lease_name, self.settings.lease_namespace
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def try_once(self) -> bool:
        """One round: take or renew the Lease if the decision says so. True when leading."""
        now = datetime.datetime.now(datetime.UTC)
        lease = self._read()
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
            return False
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
                    ),
                    spec=spec,
                )
                self.api.create_namespaced_lease(self.settings.lease_namespace, body)
            else:
                lease.spec = spec  # resourceVersion kept: a concurrent writer gets 409
                self.api.replace_namespaced_lease(
                    self.settings.lease_name, self.settings.lease_namespace, lease
                )
        except ApiException as error:
            if error.status in (409, 422):
                return False
            raise
        return True

    async def acquire(self) -> None:
        """Block until this replica leads."""
        announced = False
        while True:
            try:
                if await asyncio.to_thread(self.try_once):
                    self.is_leader = True
                    logger.info("leading as %s", self.settings.identity)
                    return
            except ApiException as error:
                logger.warning("lease: %s %s", error.status, error.reason)
            if not announced:
                logger.info("standing by: another replica holds the lease")
                announced = True
            await asyncio.sleep(self.settings.lease_renew_seconds)

    async def keep(self) -> None:
        """Renew until the Lease is lost or cannot be renewed in time; then return."""
        last_renewed = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.settings.lease_renew_seconds)
            try:
                if await asyncio.to_thread(self.try_once):
                    last_renewed = asyncio.get_running_loop().time()
                    continue
                logger.error("lease taken over by another replica")
                break
            except ApiException as error:
                logger.warning("lease renewal failed: %s %s", error.status, error.reason)
            except OSError as error:
                logger.warning("lease renewal failed: %s", error)
            elapsed = asyncio.get_running_loop().time() - last_renewed
            if elapsed > self.settings.lease_duration_seconds:
                logger.error("could not renew the lease for %.0fs", elapsed)
                break
        self.is_leader = False

"""A circuit breaker per destination, so that a failing service is not hammered by every
run's retries at once. The key is the caller's: http steps use `host:port`, the default port
filled in (`steps.breaker_key`).

Closed: calls go through; `threshold` consecutive failures open it. Open: calls fail at
once for `cooldown`, with a message saying so. Then half-open: one call is let through; its
success closes the breaker, its failure opens it again. A trial whose result never comes
(the call was cancelled) holds the breaker for one more `cooldown`, then another trial may
go. The clock is passed in, so tables can drive it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field


@dataclass
class _HostState:
    failures: int = 0
    opened_at: datetime.datetime | None = None
    trial_started: datetime.datetime | None = None  # half-open: when the trial call went


@dataclass
class CircuitBreakers:
    threshold: int = 5
    cooldown: datetime.timedelta = datetime.timedelta(seconds=30)
    _hosts: dict[str, _HostState] = field(default_factory=dict)

    def check(self, host: str, now: datetime.datetime) -> datetime.datetime | None:
        """None when a call to `host` may go ahead; otherwise when the breaker lets the next
        trial call through."""
        state = self._hosts.get(host)
        if state is None or state.opened_at is None:
            return None
        reopen = state.opened_at + self.cooldown
        if now < reopen:
            return reopen
        if state.trial_started is not None and now < state.trial_started + self.cooldown:
            return state.trial_started + self.cooldown
        state.trial_started = now
        return None

    def record(self, host: str, ok: bool, now: datetime.datetime) -> None:
        state = self._hosts.setdefault(host, _HostState())
        state.trial_started = None
        if ok:
            state.failures = 0
            state.opened_at = None
            return
        state.failures += 1
        if state.failures >= self.threshold:
            state.opened_at = now

    def failures(self, host: str) -> int:
        state = self._hosts.get(host)
        return state.failures if state else 0

"""A keyed work queue with timers, as controller-runtime has: a key is queued at most once,
handled by one worker at a time (an event for a key being handled marks it dirty and it
runs again after), and can be woken at a moment. Workers are a bounded pool of tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import heapq
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
logger = logging.getLogger("flowpin.workqueue")
RETRY_AFTER_ERROR = datetime.timedelta(seconds=5)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class WorkQueue(Generic[K]):
    def __init__(self, handle: Callable[[K], Awaitable[None]], workers: int, name: str) -> None:
        self._handle = handle
        self._workers = workers
        self._name = name
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: list[tuple[datetime.datetime, int, K]] = []
        self._sequence = 0  # tie-breaker: keys need not be ordered
        self._timer_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def __len__(self) -> int:
        return len(self._queued) + len(self._processing)

    def busy(self, key: K) -> bool:
        """Whether a worker is handling `key` right now."""
        return key in self._processing

    def enqueue(self, keys: Iterable[K]) -> None:
        for key in keys:
            if key in self._processing:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._queue.put_nowait(key)

    def wake_at(self, moment: datetime.datetime, key: K) -> None:
        self._sequence += 1
        heapq.heappush(self._timers, (moment, self._sequence, key))
        self._timer_changed.set()

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._timer_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._processing.add(key)
            try:
                await self._handle(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # the API server may be restarting; retry a little later
                logger.exception("%s: handling %s failed; retrying soon", self._name, key)
                self.wake_at(utcnow() + RETRY_AFTER_ERROR, key)
            finally:
                self._processing.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.enqueue([key])

    async def _timer_loop(self) -> None:
        while True:
            self._timer_changed.clear()
            timeout = None
            now = utcnow()
            while self._timers and self._timers[0][0] <= now:
                _, _, key = heapq.heappop(self._timers)
                self.enqueue([key])
            if self._timers:
                timeout = (self._timers[0][0] - now).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_changed.wait(), timeout)

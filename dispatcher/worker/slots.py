"""Send slots whose number may change while some are taken: a semaphore with a movable limit."""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Slots"]


class Slots:
    """`acquire` waits until fewer than `limit` slots are taken; waiters go first come, first
    served. Lowering the limit takes no slot back: it only delays the next ones."""

    __slots__ = ("_limit", "_taken", "_waiters")

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._taken = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def taken(self) -> int:
        return self._taken

    @property
    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit: int) -> None:
        grew = limit > self._limit
        self._limit = max(1, limit)
        if grew:
            self._wake()

    async def acquire(self) -> None:
        if self._taken < self._limit and not self._waiters:
            self._taken += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._taken -= 1
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self._taken < self._limit:
            waiter = waiters.popleft()
            if not waiter.done():
                self._taken += 1  # taken on the waiter's behalf: nobody can jump the queue
                waiter.set_result(None)

"""A leaky bucket counted in recipients that can be re-rated while tasks wait and can run into debt.

Why our own and not aiolimiter's `AsyncLimiter`: pacing SES needs two things its public API does
not offer. The rate changes live (GetSendQuota, throttling, the share of several processes) and a
task already waiting must see the change at once; and a message may go as soon as ONE recipient
fits, then be charged all its recipients, past the bucket's size (a debt the next senders wait
out, as SES's own bucket does). `AsyncLimiter.acquire(n)` refuses n above its size and has no way
to change its rate. Earlier versions reached into aiolimiter's private attributes for both; this
is the small piece written out instead, with the arithmetic pure and the clock injectable.
aiolimiter itself paces SES's non-send actions through its public API (`dispatcher/ses/adapter.py`).
"""

from __future__ import annotations

import asyncio

from dispatcher.clock import Clock, loop_time

__all__ = ["LeakyBucket", "RecipientBucket"]

_EPSILON = 1e-9  # float dust left by leaking exactly the computed wait


class LeakyBucket:
    """The arithmetic, on times it is given: the level drains at `rate` down to zero; room is
    `capacity - level`; a charge may take the level past `capacity` (a debt)."""

    __slots__ = ("_last", "capacity", "level", "rate")

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.level = 0.0
        self._last: float | None = None  # time of the last leak; None before the first use

    def leak(self, now: float) -> None:
        """Drain what ran out since the last call."""
        last = self._last
        if last is not None and now > last:
            self.level = max(self.level - (now - last) * self.rate, 0.0)
        self._last = now  # also when earlier: a call made outside the loop used another clock

    def wait(self, now: float, room: float = 1.0) -> float:
        """Seconds until `room` fits (0 if it fits now)."""
        self.leak(now)
        over = self.level + room - self.capacity
        return over / self.rate if over > _EPSILON else 0.0

    def charge(self, amount: float, now: float) -> None:
        """Take `amount`, past capacity if need be."""
        self.leak(now)
        self.level += amount

    def rerate(self, rate: float, capacity: float, now: float) -> None:
        """Change rate and size, keeping the tokens saved so far (capped at the new size): a raise
        gives no instant extra burst, and a debt stays a debt, as in SES's own bucket."""
        self.leak(now)  # the time so far ran at the old rate
        tokens = min(self.capacity - self.level, capacity)
        self.rate = rate
        self.capacity = capacity
        self.level = capacity - tokens

    def spend_burst(self, now: float) -> None:
        """No tokens saved up: the next send waits for the steady rate."""
        self.leak(now)
        self.level = max(self.level, self.capacity)


class RecipientBucket:
    """Tasks wait their turn (first come, first served) for room for one recipient, then charge
    the message's recipients. Re-rating wakes the task at the head so it re-times its wait.

    `clock` must be on the event loop's scale (waits are loop timers); None = the loop's time.
    """

    __slots__ = ("_clock", "_queued", "_state", "_turn", "_waker")

    def __init__(self, rate: float, capacity: float, *, clock: Clock | None = None) -> None:
        self._state = LeakyBucket(rate, capacity)
        self._clock = clock
        # FIFO: asyncio.Lock hands itself to the longest waiter, so a 50-recipient message is
        # never starved by a stream of small ones.
        self._turn = asyncio.Lock()
        self._queued = 0  # tasks inside acquire(): none means the fast path cannot jump a queue
        self._waker: asyncio.Future[None] | None = None  # the head's wait, ended early on rerate

    @property
    def capacity(self) -> float:
        """Bucket size in recipients."""
        return self._state.capacity

    @property
    def rate(self) -> float:
        """Drain rate in recipients per second."""
        return self._state.rate

    async def acquire(self, recipients: float) -> None:
        """Wait until one recipient fits, then charge `recipients`."""
        if self._queued == 0 and self._state.wait(now := self._now()) == 0:
            self._state.charge(recipients, now)  # nobody waits and there is room: no lock
            return
        self._queued += 1
        try:
            await self._wait_turn(recipients)
        finally:
            self._queued -= 1

    async def _wait_turn(self, recipients: float) -> None:
        async with self._turn:
            loop = asyncio.get_running_loop()
            while (delay := self._state.wait(self._now())) > 0:
                waker = self._waker = loop.create_future()
                timer = loop.call_later(delay, _wake, waker)
                try:
                    await waker
                finally:
                    timer.cancel()
                    self._waker = None
            self._state.charge(recipients, self._now())

    def charge(self, amount: float) -> None:
        """Take `amount` without waiting (past capacity if need be)."""
        self._state.charge(amount, self._now())

    def rerate(self, rate: float, capacity: float) -> None:
        """Change the rate now; a task already waiting re-times its wait at once."""
        self._state.rerate(rate, capacity, self._now())
        if self._waker is not None:
            _wake(self._waker)

    def spend_burst(self) -> None:
        """Start without the saved-up burst."""
        self._state.spend_burst(self._now())

    def _now(self) -> float:
        return loop_time(self._clock)


def _wake(waker: asyncio.Future[None]) -> None:
    if not waker.done():
        waker.set_result(None)

"""SES's two sending limits as pure arithmetic on an injected clock: no I/O, no asyncio."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]

# Float slack so that a level refilled to 0.9999999999 still counts as one whole token.
_EPSILON = 1e-9


class RateBucket:
    """MaxSendRate as a token bucket counted in recipients.

    A message is let through when at least one token is left, and then costs one token per
    recipient, so the level may go below zero: SES lets a short burst pass (at 1/s a
    5-recipient message is accepted) and refuses the next sends until the debt is refilled.
    """

    __slots__ = ("_burst_seconds", "_capacity", "_clock", "_level", "_rate", "_updated")

    def __init__(self, rate: float, burst_seconds: float = 1.0, *, clock: Clock) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        if burst_seconds <= 0:
            raise ValueError(f"burst_seconds must be > 0, got {burst_seconds!r}")
        self._clock = clock
        self._rate = rate
        self._burst_seconds = burst_seconds
        self._capacity = max(rate * burst_seconds, 1.0)
        self._level = self._capacity  # starts full
        self._updated = clock()  # clock reading the level was last brought up to date at

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def capacity(self) -> float:
        return self._capacity

    def level(self) -> float:
        """Tokens available now (negative while a burst is being paid back)."""
        self._refill()
        return self._level

    def try_take(self, n: int) -> bool:
        """Charge `n` recipients if at least one token is left; False (nothing taken) if not."""
        self._refill()
        if self._level < 1.0 - _EPSILON:
            return False
        self._level -= n
        return True

    def retry_after(self) -> float:
        """Seconds until one token is available again (0 if one is now)."""
        self._refill()
        missing = 1.0 - self._level
        return missing / self._rate if missing > _EPSILON else 0.0

    def set_rate(self, rate: float, burst_seconds: float | None = None) -> None:
        """Change the rate at runtime; tokens earned so far are kept, capped at the new capacity."""
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        if burst_seconds is not None:
            if burst_seconds <= 0:
                raise ValueError(f"burst_seconds must be > 0, got {burst_seconds!r}")
            self._burst_seconds = burst_seconds
        self._refill()  # settle what was earned at the old rate first
        self._rate = rate
        self._capacity = max(rate * self._burst_seconds, 1.0)
        self._level = min(self._level, self._capacity)

    def refill_full(self) -> None:
        self._level = self._capacity
        self._updated = self._clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            level = self._level + elapsed * self._rate
            self._level = level if level < self._capacity else self._capacity
        self._updated = now


class RollingQuota:
    """Max24HourSend: recipients accepted within the last `window` seconds; max < 0 = unlimited.

    Sends are kept as [time, count] entries, oldest first. Entries closer together than
    `window / _SLOTS` are merged into the newest one's time, which bounds memory at about
    _SLOTS entries however fast the sends come, and makes expiry at most one slot late (never
    early: the quota frees no sooner than SES's would).
    """

    __slots__ = ("_clock", "_entries", "_max", "_slot", "_sum", "_window")

    _SLOTS = 10_000

    def __init__(self, max_sends: float, window: float = 86400.0, *, clock: Clock) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0, got {window!r}")
        self._clock = clock
        self._max = max_sends
        self._window = window
        self._slot = window / self._SLOTS
        # [start of slot, time of newest send merged in, recipients]; expiry uses the newest time.
        self._entries: deque[list[float]] = deque()
        self._sum = 0.0

    @property
    def max_sends(self) -> float:
        return self._max

    @property
    def window(self) -> float:
        return self._window

    @property
    def unlimited(self) -> bool:
        return self._max < 0

    def sent_in_window(self) -> float:
        """Recipients accepted within the last `window` seconds (SentLast24Hours)."""
        self._expire(self._clock())
        return self._sum

    def allows(self, n: int) -> bool:
        """Whether `n` more recipients fit in the window now; charges nothing."""
        if self._max < 0:
            return True
        self._expire(self._clock())
        return self._sum + n <= self._max

    def record(self, n: int) -> None:
        """Count `n` accepted recipients at the current time."""
        if n <= 0:
            return
        now = self._clock()
        entries = self._entries
        if entries and now - entries[-1][0] < self._slot:
            last = entries[-1]
            last[1] = now
            last[2] += n
        else:
            entries.append([now, now, float(n)])
        self._sum += n

    def try_take(self, n: int) -> bool:
        """allows() then record() in one step."""
        if not self.allows(n):
            return False
        self.record(n)
        return True

    def configure(self, max_sends: float | None = None, window: float | None = None) -> None:
        """Change the limit or the window at runtime; what was sent stays counted."""
        if max_sends is not None:
            self._max = max_sends
        if window is not None:
            if window <= 0:
                raise ValueError(f"window must be > 0, got {window!r}")
            self._window = window
            self._slot = window / self._SLOTS

    def clear(self) -> None:
        self._entries.clear()
        self._sum = 0.0

    def _expire(self, now: float) -> None:
        entries = self._entries
        horizon = now - self._window
        while entries and entries[0][1] <= horizon:
            self._sum -= entries.popleft()[2]
        if not entries:
            self._sum = 0.0  # drop accumulated float drift


class ActionLimit:
    """SES's limit on non-send API actions: `rate` requests per second, one bucket per action.

    Per action, not one bucket for them all: AWS says each action "is throttled at one request
    per second" and does not say they share a budget (not confirmed either way); the shared
    reading would refuse a GetSendQuota because a CreateEmailTemplate came first.
    """

    __slots__ = ("_buckets", "_clock", "_rate")

    def __init__(self, rate: float, *, clock: Clock) -> None:
        self._clock = clock
        self._rate = rate
        self._buckets: dict[str, RateBucket] = {}

    def allow(self, action: str, rate: float | None = None) -> bool:
        """Charge one request of `action`; False if it came too soon. rate <= 0: no limit."""
        if rate is not None and rate != self._rate:
            self._rate = rate
            self._buckets.clear()  # a changed limit starts afresh
        if self._rate <= 0:
            return True
        bucket = self._buckets.get(action)
        if bucket is None:
            bucket = self._buckets[action] = RateBucket(self._rate, 1.0, clock=self._clock)
        return bucket.try_take(1)

    def clear(self) -> None:
        self._buckets.clear()

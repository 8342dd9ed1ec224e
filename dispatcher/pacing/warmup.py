"""Warm-up: a daily cap by sending day that ramps a new account up. Pure: no I/O, time passed in.

The day count and each day's sends live in Postgres (migration 0018, `warmup_days`): processes
take room from the day's row in chunks under its lock (dispatcher.worker.warmup_store), so all
of them together stop at the cap. Here: the schedule, the decision a bounce or complaint spike
holds the ramp, and `WarmupGate`, the room this process holds, which the governor admits against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from dispatcher.errors import ConfigError
from dispatcher.feedback.guard import Counts, Thresholds, verdict

__all__ = [
    "DEFAULT_RAMP",
    "MemoryDays",
    "WarmupDay",
    "WarmupGate",
    "WarmupSettings",
    "cap_for",
    "grant",
    "parse_schedule",
    "spike_reason",
]

# Daily caps (recipients) by sending day: the generic dedicated-IP warm-up schedule Twilio
# SendGrid publishes ("IP warmup schedule": 50, 100, 500, 1,000, 5,000 ... 4,000,000 over 17
# days). After its last day the warm-up is over and only SES's own quota applies.
DEFAULT_RAMP: tuple[int, ...] = (
    50,
    100,
    500,
    1_000,
    5_000,
    10_000,
    20_000,
    40_000,
    70_000,
    100_000,
    150_000,
    250_000,
    400_000,
    600_000,
    1_000_000,
    2_000_000,
    4_000_000,
)


def parse_schedule(text: str) -> tuple[int, ...]:
    """`"100, 500, 1000"` -> (100, 500, 1000); "" -> DEFAULT_RAMP. ConfigError if malformed."""
    if not text.strip():
        return DEFAULT_RAMP
    caps: list[int] = []
    for i, part in enumerate(text.split(","), start=1):
        item = part.strip().replace("_", "")
        if not item.isdigit() or int(item) < 1:
            raise ConfigError(
                f"warmup.schedule: day {i} is {part.strip()!r}; write the daily caps as whole "
                'numbers of recipients separated by commas, e.g. "100, 500, 2000"'
            )
        caps.append(int(item))
    return tuple(caps)


@dataclass(frozen=True, slots=True)
class WarmupSettings:
    """The warm-up (section `warmup`); off by default: an account already warm needs none."""

    enabled: bool = False
    # Daily caps by sending day, comma-separated; "" is DEFAULT_RAMP. After the last day, no cap.
    schedule: str = ""
    # A spike at or above these rates (account-wide, over guard.window_hours) holds the ramp:
    # the day does not count, so tomorrow's cap stays at today's. Below the guard's pause levels.
    hold_bounce_rate: float = 0.02
    hold_complaint_rate: float = 0.0005
    min_volume: int = 50  # recipients sent in the window before the rates are judged
    check_interval: float = 30.0  # seconds between spike checks
    chunk: int = 50  # recipients a process takes from the day's row at a time (>= 50: a message)

    def __post_init__(self) -> None:
        parse_schedule(self.schedule)
        for key, value in (
            ("hold_bounce_rate", self.hold_bounce_rate),
            ("hold_complaint_rate", self.hold_complaint_rate),
        ):
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"warmup.{key} must be in (0, 1], e.g. 0.02 for 2 %, got {value}")
        if self.min_volume < 1:
            raise ConfigError(f"warmup.min_volume must be >= 1, got {self.min_volume}")
        if not (math.isfinite(self.check_interval) and self.check_interval > 0):
            raise ConfigError(
                f"warmup.check_interval must be > 0 seconds, got {self.check_interval}"
            )
        if not 50 <= self.chunk <= 100_000:
            raise ConfigError(
                f"warmup.chunk must be in [50, 100000] (a message has up to 50 recipients), "
                f"got {self.chunk}"
            )

    @property
    def caps(self) -> tuple[int, ...]:
        return parse_schedule(self.schedule)


def cap_for(caps: tuple[int, ...], day: int) -> int | None:
    """The cap of sending day `day` (1-based); None once the schedule is over (no cap)."""
    if day < 1:
        raise ValueError(f"sending days count from 1, got {day}")
    return caps[day - 1] if day <= len(caps) else None


def grant(cap: int | None, taken: float, want: float) -> float:
    """What a take of `want` gets from a day with `taken` given out already (no cap: nothing to
    take, the gate admits all)."""
    return 0.0 if cap is None else max(0.0, min(want, cap - taken))


class MemoryDays:
    """In-memory twin of the `warmup_days` rows (warmup.sql), for tests in virtual time."""

    def __init__(self, caps: tuple[int, ...]) -> None:
        self.caps = caps
        self.rows: dict[date, list[Any]] = {}  # day -> [taken, held_reason]

    def take(self, today: date, want: float) -> WarmupDay:
        row = self.rows.setdefault(today, [0.0, None])
        day_no = 1 + sum(1 for d, r in self.rows.items() if d < today and r[0] > 0 and r[1] is None)
        cap = cap_for(self.caps, day_no)
        granted = grant(cap, row[0], want)
        row[0] += granted
        sent = [d for d, r in self.rows.items() if r[0] > 0]
        return WarmupDay(today, day_no, cap, row[0], granted, row[1], min(sent, default=None))

    def hold(self, today: date, reason: str) -> bool:
        row = self.rows.setdefault(today, [0.0, None])
        if row[1] is not None:
            return False
        row[1] = reason
        return True


def spike_reason(counts: Counts, settings: WarmupSettings) -> str | None:
    """Why the warm-up must hold today (a bounce or complaint spike), or None."""
    th = Thresholds(settings.hold_bounce_rate, settings.hold_complaint_rate, settings.min_volume)
    why = verdict(counts, th, "account")
    return None if why is None else "warm-up held: " + why.removeprefix("guard: ")


@dataclass(frozen=True, slots=True)
class WarmupDay:
    """The day's row as a take (or a look) left it."""

    today: date  # UTC calendar day
    day: int  # sending day number (1 = the first)
    cap: int | None  # None: the schedule is over
    taken: float  # recipients given out today by all processes (this grant included)
    granted: float  # given to this process by this take
    held_reason: str | None  # today's hold, if any (the ramp does not advance for today)
    first_day: date | None  # the first sending day (None: nothing sent yet)

    @property
    def room(self) -> float | None:
        """What is left of today's cap in Postgres; None: no cap."""
        return None if self.cap is None else max(0.0, self.cap - self.taken)


class WarmupGate:
    """This process's part of today's warm-up cap; the governor admits against it.

    `left` is room taken from the day's row and not used yet; when it runs short the gate asks
    its refill loop (`on_short`) for more; when the row has no room either, today is spent and
    mail waits for tomorrow.
    """

    __slots__ = ("_day", "_left", "_want", "on_short")

    def __init__(self) -> None:
        self._day: WarmupDay | None = None
        self._left = 0.0
        self._want = 0  # the largest message refused for want of room in hand
        self.on_short: Callable[[], None] | None = None  # wakes the refill loop

    def apply(self, day: WarmupDay) -> None:
        """A take (or a look) answered: add the grant; a new day drops what was left of the old."""
        if self._day is not None and self._day.today != day.today:
            self._left = 0.0
        self._day = day
        self._left += day.granted
        self._want = 0

    def use(self, recipients: int) -> None:
        self._left = max(0.0, self._left - recipients)

    def give_back(self) -> tuple[date, float] | None:
        """What to return to its day's row at exit (room taken, not used)."""
        if self._day is None or self._left <= 0:
            return None
        left, self._left = self._left, 0.0
        return self._day.today, left

    @property
    def left(self) -> float:
        return self._left

    @property
    def day(self) -> WarmupDay | None:
        return self._day

    def needs(self, chunk: int) -> int:
        """Recipients to ask the day's row for now (0: enough in hand, or no cap)."""
        day = self._day
        if day is None:
            return chunk
        if day.cap is None or day.room == 0 or self._left >= max(chunk / 2, self._want):
            return 0
        return chunk  # >= 50: covers any one message

    def refusal(self, recipients: int) -> tuple[str, bool] | None:
        """None if `recipients` fit; else (reason, spent): spent = today's cap is reached."""
        day = self._day
        if day is None:
            return "warm-up: today's room not read from the database yet", False
        if day.cap is None or recipients <= self._left:
            return None
        room = day.room or 0.0
        if recipients <= self._left + room:
            self._want = max(self._want, recipients)
            if self.on_short is not None:
                self.on_short()
            return "warm-up: taking more of today's room", False
        return self.spent_reason(day), True

    @property
    def spent(self) -> str | None:
        """Why nothing more goes out today (the cap is reached), or None."""
        day = self._day
        if day is None or day.cap is None or self._left >= 1 or (day.room or 0) >= 1:
            return None
        return self.spent_reason(day)

    @staticmethod
    def spent_reason(day: WarmupDay) -> str:
        held = f"; {day.held_reason}" if day.held_reason else ""
        return (
            f"warm-up day {day.day}: today's cap of {day.cap:,} recipients is reached; "
            f"the rest waits for the next day (UTC){held}"
        )

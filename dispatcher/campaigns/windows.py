"""Send windows: the weekdays and hours a campaign's recipients may receive its mail, in a time
zone (the campaign's, or each recipient's own). Pure: no I/O, the time is passed in.

A window is wall-clock time in its zone, so across a DST change it stays "09:00 local" while
its UTC instant moves; every instant is computed with zoneinfo for that very date. A start in
the gap of a spring-forward change (02:30 that does not exist) opens at the same instant as
its pre-change reading (03:30 local); in a repeated fall-back hour the first one counts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatcher.campaigns.recipients import RecipientRow, RejectedRow
from dispatcher.errors import InputError

__all__ = ["SendWindow", "check_zones", "parse_window", "zone"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"^\s*(?:(?P<days>[A-Za-z]{3}(?:\s*[-,]\s*[A-Za-z]{3})*)\s+)?"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$"
)
_EXAMPLE = "e.g. 'Mon-Fri 09:00-18:00', 'Mon,Wed,Sat 10:00-12:30' or '08:00-20:00' (every day)"


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Weekdays (0 = Monday) and the local hours [start, end) mail may go out."""

    days: frozenset[int]
    start: time
    end: time | None  # None: until midnight (written 24:00)

    def next_open(self, tz: ZoneInfo, now: datetime) -> datetime | None:
        """None if the window is open at `now` (aware) in `tz`, else when it next opens (UTC)."""
        local_day = now.astimezone(tz).date()
        for offset in range(-1, 8):  # from yesterday: a window's day is its local start date
            day = local_day + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens = datetime.combine(day, self.start, tzinfo=tz).astimezone(UTC)
            if self.end is None:
                nxt = day + timedelta(days=1)
                closes = datetime.combine(nxt, time(0), tzinfo=tz).astimezone(UTC)
            else:
                closes = datetime.combine(day, self.end, tzinfo=tz).astimezone(UTC)
            if opens <= now < closes:
                return None
            if now < opens:
                return opens
        raise AssertionError("a window with at least one weekday opens within a week")


def _clock(text: str, what: str, given: str) -> time | None:
    hours, minutes = (int(x) for x in text.split(":"))
    if (hours, minutes) == (24, 0) and what == "end":
        return None
    if hours > 23 or minutes > 59:
        raise InputError(f"--window {given!r}: {what} {text} is not a time of day (00:00-23:59)")
    return time(hours, minutes)


def _days(text: str | None, given: str) -> frozenset[int]:
    if text is None:
        return frozenset(range(7))
    out: set[int] = set()
    for part in re.split(r"\s*,\s*", text.strip()):
        ends = [p.strip().lower() for p in part.split("-")]
        for name in ends:
            if name not in DAYS:
                raise InputError(
                    f"--window {given!r}: {name!r} is not a weekday; use Mon Tue Wed Thu Fri Sat "
                    f"Sun, {_EXAMPLE}"
                )
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        span = (last - first) % 7  # Fri-Mon wraps over the weekend
        out.update((first + i) % 7 for i in range(span + 1))
    return frozenset(out)


def parse_window(text: str) -> SendWindow:
    """`'Mon-Fri 09:00-18:00'` -> SendWindow; InputError saying what to fix."""
    match = _WINDOW.match(text)
    if match is None:
        raise InputError(
            f"--window {text!r} is not a send window; write days and hours, {_EXAMPLE}"
        )
    start = _clock(match["start"], "start", text)
    end = _clock(match["end"], "end", text)
    assert start is not None  # 24:00 is only an end
    if end is not None and end <= start:
        raise InputError(
            f"--window {text!r}: the end must be after the start (a window over midnight is "
            "not supported: end it at 24:00 and start the next day's at 00:00)"
        )
    return SendWindow(_days(match["days"], text), start, end)


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; InputError (one line) if there is none of that name."""
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InputError(
            f"{name!r} is not a time zone; use an IANA name such as Europe/Berlin, "
            "America/New_York or UTC"
        ) from None


def check_zones(
    rows: Iterable[RecipientRow | RejectedRow], column: str
) -> Iterator[RecipientRow | RejectedRow]:
    """The rows, a recipient whose `column` names no time zone rejected (an empty cell is the
    campaign's zone)."""
    for row in rows:
        if isinstance(row, RecipientRow) and (name := row.variables.get(column, "")):
            try:
                zone(name)
            except InputError as exc:
                yield RejectedRow(row.line, row.email, f"column {column!r}: {exc}")
                continue
        yield row

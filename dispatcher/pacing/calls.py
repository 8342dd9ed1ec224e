"""SES's limit on SendBulkEmail calls: whether a campaign's next group may be one bulk call.

SES allows one request a second on its API actions other than SendEmail, SendRawEmail and
SendTemplatedEmail, and that includes the bulk sends (../shared/SES-FACTS.md, "Quotas and
rate"). A bulk group waits for nothing: when no call is free, its recipients go one by one as
templated SendEmail calls, which only MaxSendRate limits. Pure: times are given.

A process alone calls at most once per `interval`. Several processes of one account take
turns by the wall clock: time is cut into slots of `interval` seconds, slot k belongs to the
process ranked k mod n among the n that send, and a call goes only in the first `window` seconds
of its slot. Two calls of the account are then at least interval - window seconds apart
whichever processes make them (a second or more, SES's bucket holds one request), where pacing
each process at its share alone let two calls land a moment apart and SES refuse one (429
"Rate exceeded"). Hosts' clocks must agree within the margin (0.05 s at the defaults; NTP keeps
them within milliseconds); a refused call (a clock off, processes joining) holds this process's
calls for HOLD_SLOTS slots.
"""

from __future__ import annotations

import math

from dispatcher.domain.quota import API_CALL_INTERVAL

__all__ = ["BULK_CALL_INTERVAL", "BULK_CALL_WINDOW", "HOLD_SLOTS", "CallPacer"]

# Seconds between bulk calls of the whole account: SES's 1 request/s with its margin.
BULK_CALL_INTERVAL = API_CALL_INTERVAL
# Seconds at the start of a slot when its call may go: calls stay >= 1.05 s apart.
BULK_CALL_WINDOW = 0.2
HOLD_SLOTS = 4  # a refused call: this process's calls wait this many slots (5 s at the defaults)


class CallPacer:
    """At most one call per `interval` seconds of the account, in this process's turns."""

    __slots__ = ("_held_until", "_interval", "_last_at", "_n", "_rank", "_refused", "_window")

    def __init__(self, interval: float = BULK_CALL_INTERVAL, window: float = BULK_CALL_WINDOW):
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        if not 0 < window <= interval:
            raise ValueError(f"window must be in (0, interval], got {window!r}")
        self._interval = interval
        self._window = window
        self._rank, self._n = 0, 1
        self._last_at = -math.inf  # when our last call went
        self._refused = -math.inf  # ... the last call SES refused (counted once per call)
        self._held_until = -math.inf

    def set_turn(self, rank: int, n: int) -> None:
        """This process is `rank` (0-based) of the `n` processes of the account that send."""
        n = max(n, 1)
        self._rank, self._n = min(max(rank, 0), n - 1), n

    def take(self, now: float) -> bool:
        """True (and the call is counted) if a call may go now; `now`: wall-clock seconds."""
        if now < self._held_until or now - self._last_at < self._interval:
            return False
        slot = math.floor(now / self._interval)
        if self._n > 1:
            if slot % self._n != self._rank:
                return False
            if now - slot * self._interval >= self._window:
                return False  # late in the slot: the next one's call could follow too closely
        self._last_at = now
        return True

    def refused(self, now: float) -> None:
        """SES refused our last call as over its call rate (a clock off, or processes
        re-ranking): no call for HOLD_SLOTS slots. Every recipient of the call reports it;
        it counts once."""
        if self._last_at != self._refused:
            self._refused = self._last_at
            self._held_until = now + HOLD_SLOTS * self._interval

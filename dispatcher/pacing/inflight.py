"""How many SES calls may be on the wire: the call rate x how long a call holds its send slot.

Little's law: calls in flight = calls per second x seconds each call holds a slot. A fixed limit
caps the rate once MaxSendRate rises or SES answers slower (64 slots / 0.15 s = ~430 calls/s); a
limit far above the need leaves more sends in doubt after a crash than it had to. So the limit
follows both: this process's send rate, turned into calls by the recipients a call carries,
times a high percentile of recent slot times, times a margin, between a floor and a ceiling
(`delivery.max_in_flight`). Pure: times are given.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = [
    "FLOOR",
    "MARGIN",
    "PERCENTILE",
    "PRIOR_SECONDS",
    "InFlightLimit",
]

FLOOR = 8  # never fewer slots (unless the ceiling is lower): a wrong estimate costs little
MARGIN = 1.5  # on top of the percentile: the rate's bursts and a latency rise in progress
PERCENTILE = 0.95  # of recent slot times: the tail holds slots too, not only the median
PRIOR_SECONDS = 0.25  # slot time assumed before any call came back: SES from another region
WINDOW_SECONDS = 10.0  # slot times older than this no longer count
SAMPLES = 512  # at most this many recent slot times (at 1,000 calls/s: the last half second)
REFRESH_SECONDS = 0.25  # the percentile is recomputed at most this often
_RECIPIENTS_WEIGHT = 1 / 16  # EWMA weight of one call in the recipients-per-call estimate


class InFlightLimit:
    """The number of send slots for a rate, learnt from the slot times of answered calls."""

    __slots__ = (
        "_ceiling",
        "_floor",
        "_latency",
        "_margin",
        "_per_call",
        "_refresh_at",
        "_samples",
        "_stale",
    )

    def __init__(
        self,
        ceiling: int,
        *,
        floor: int = FLOOR,
        margin: float = MARGIN,
        prior: float = PRIOR_SECONDS,
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"ceiling must be >= 1, got {ceiling}")
        if floor < 1 or margin <= 0 or prior <= 0:
            raise ValueError(f"floor >= 1, margin > 0, prior > 0; got {floor}, {margin}, {prior}")
        self._ceiling = ceiling
        self._floor = min(floor, ceiling)
        self._margin = margin
        self._latency = prior  # seconds: the percentile of the window, as last computed
        self._per_call = 1.0  # recipients per call (bulk calls carry up to 50)
        # (answered at, seconds the slot was held); bounded in count and, at refresh, in age.
        self._samples: deque[tuple[float, float]] = deque(maxlen=SAMPLES)
        self._refresh_at = float("-inf")
        self._stale = False  # samples came in since the last refresh

    @property
    def ceiling(self) -> int:
        return self._ceiling

    @property
    def latency(self) -> float:
        """The slot time (seconds) the limit is computed from."""
        return self._latency

    def observe(self, seconds: float, recipients: int, now: float) -> None:
        """A call answered after holding its slot `seconds`, for `recipients` recipients."""
        self._samples.append((now, max(seconds, 0.0)))
        self._per_call += (max(recipients, 1) - self._per_call) * _RECIPIENTS_WEIGHT
        self._stale = True

    def limit(self, recipients_per_second: float, now: float) -> int:
        """Slots to allow now for sending at `recipients_per_second`."""
        if now >= self._refresh_at:
            self._refresh(now)
        calls = max(recipients_per_second, 0.0) / self._per_call
        need = calls * self._latency * self._margin
        if need >= self._ceiling:  # also an unlimited rate (inf)
            return self._ceiling
        return max(self._floor, math.ceil(need - 1e-6))  # 18.000004 is 18 slots

    def _refresh(self, now: float) -> None:
        self._refresh_at = now + REFRESH_SECONDS
        samples = self._samples
        horizon = now - WINDOW_SECONDS
        while samples and samples[0][0] < horizon:
            samples.popleft()
        if not self._stale or not samples:
            return  # idle: keep the last estimate (a stale one beats the prior)
        self._stale = False
        ordered = sorted(s for _, s in samples)
        self._latency = ordered[min(len(ordered) - 1, int(PERCENTILE * len(ordered)))]

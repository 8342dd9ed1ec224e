"""Latency and injected faults as pure decisions on an injected random source and clock.

The server's middleware (and the front, for the send routes) asks, per API request: how long
to wait (sends only), whether to fail it (HTTP 500 / 503, connection reset, no answer at all)
and, for sends, whether to throttle it anyway (at a rate, or because a throttling storm is on).
"""

from __future__ import annotations

import math
import random
import time

from dispatcher.sim.limits import Clock
from dispatcher.sim.settings import SimSettings

FAULT_500 = "500"
FAULT_503 = "503"
FAULT_RESET = "reset"
FAULT_TIMEOUT = "timeout"

_Z99 = 2.3263478740408408  # the standard normal's 99th percentile


class Faults:
    """Decides latency and faults for one simulator; `settings` is read at every call."""

    __slots__ = ("_clock", "_origin", "_quiet_for", "_rng", "_storm_until")

    def __init__(self, *, rng: random.Random | None = None, clock: Clock = time.monotonic) -> None:
        self._rng = rng or random.Random()
        self._clock = clock
        self._origin = clock()  # periodic storms count from here
        self._storm_until = -math.inf
        self._quiet_for: tuple[SimSettings | None, bool] = (None, True)

    def quiet(self, settings: SimSettings) -> bool:
        """True when nothing is injected at all: the middleware's fast path."""
        cached, quiet = self._quiet_for
        if cached is not settings:
            quiet = (
                settings.latency_ms == 0
                and settings.fault_500_rate == 0
                and settings.fault_503_rate == 0
                and settings.fault_reset_rate == 0
                and settings.fault_timeout_rate == 0
                and settings.fault_throttle_rate == 0
                and settings.storm_interval_seconds == 0
            )
            self._quiet_for = (settings, quiet)
        return quiet and self._clock() >= self._storm_until

    def latency(self, settings: SimSettings) -> float:
        """Seconds to hold a send before answering."""
        median = settings.latency_ms / 1000.0
        if median <= 0:
            return 0.0
        if settings.latency_model == "fixed":
            return median
        p99 = (settings.latency_p99_ms or settings.latency_ms * 4) / 1000.0
        sigma = math.log(p99 / median) / _Z99 if p99 > median else 0.0
        return median * math.exp(sigma * self._rng.gauss(0.0, 1.0))

    def fault(self, settings: SimSettings) -> str | None:
        """One of FAULT_* for this request, or None; one draw against the summed rates."""
        total = (
            settings.fault_500_rate
            + settings.fault_503_rate
            + settings.fault_reset_rate
            + settings.fault_timeout_rate
        )
        if total <= 0:
            return None
        draw = self._rng.random()
        for name, rate in (
            (FAULT_500, settings.fault_500_rate),
            (FAULT_503, settings.fault_503_rate),
            (FAULT_RESET, settings.fault_reset_rate),
            (FAULT_TIMEOUT, settings.fault_timeout_rate),
        ):
            if draw < rate:
                return name
            draw -= rate
        return None

    def throttle(self, settings: SimSettings) -> bool:
        """Whether a send is refused as over the rate regardless of the bucket."""
        if self.in_storm(settings):
            return True
        rate = settings.fault_throttle_rate
        return rate > 0 and self._rng.random() < rate

    def in_storm(self, settings: SimSettings) -> bool:
        now = self._clock()
        if now < self._storm_until:
            return True
        interval = settings.storm_interval_seconds
        if interval <= 0:
            return False
        # A storm starts at the end of each interval and lasts storm_duration_seconds.
        phase = (now - self._origin) % interval
        return phase >= interval - min(settings.storm_duration_seconds, interval)

    def start_storm(self, seconds: float) -> None:
        """Refuse every send for the next `seconds` (admin: POST /_sim/storm)."""
        self._storm_until = self._clock() + seconds

    def stop_storm(self) -> None:
        self._storm_until = -math.inf

"""Adaptive send rate: cut on throttling, ramp linearly back to the allowed rate. Pure."""

from __future__ import annotations

from dispatcher.pacing.settings import PacingSettings


class RateController:
    """The effective send rate (recipients/s) given the allowed rate and recent throttling.

    A throttled response cuts the effective rate by `throttle_decrease_factor` (at most once per
    `throttle_cut_interval`, so one burst of failures counts once), never below the floor. From
    the last cut the rate climbs on a straight line and is back at the allowed rate
    `throttle_recovery_seconds` later. Time is always passed in.
    """

    __slots__ = (
        "_allowed",
        "_anchor_at",
        "_anchor_rate",
        "_full_at",
        "_last_cut_at",
        "_settings",
    )

    def __init__(self, allowed: float, settings: PacingSettings | None = None) -> None:
        _check_rate(allowed)
        self._settings = settings if settings is not None else PacingSettings()
        self._allowed = float(allowed)
        # The recovery line runs from (_anchor_at, _anchor_rate) to (_full_at, _allowed);
        # _full_at None means no recovery in progress: the effective rate is the allowed rate.
        self._anchor_at = 0.0
        self._anchor_rate = self._allowed
        self._full_at: float | None = None
        # When the last cut happened, to fold a burst of throttled responses into one cut.
        self._last_cut_at: float | None = None

    @property
    def allowed(self) -> float:
        """The ceiling: MaxSendRate x rate_headroom."""
        return self._allowed

    @property
    def floor(self) -> float:
        """The lowest rate a cut can reach."""
        s = self._settings
        return min(
            self._allowed, max(self._allowed * s.throttle_min_rate_fraction, s.throttle_min_rate)
        )

    def recovering(self, now: float) -> bool:
        """True while the effective rate is below the allowed rate."""
        return self._full_at is not None and now < self._full_at

    def current(self, now: float) -> float:
        """The effective rate at `now`."""
        full_at = self._full_at
        if full_at is None:
            return self._allowed
        if now >= full_at:
            self._full_at = None  # recovered: later calls take the short path
            return self._allowed
        span = full_at - self._anchor_at
        progress = max(0.0, now - self._anchor_at) / span
        return self._anchor_rate + (self._allowed - self._anchor_rate) * progress

    def on_throttled(self, now: float) -> bool:
        """SES said we send too fast: cut the rate. Returns False if folded into the last cut."""
        s = self._settings
        last = self._last_cut_at
        if last is not None and 0.0 <= now - last < s.throttle_cut_interval:
            return False
        new_rate = max(self.floor, self.current(now) * s.throttle_decrease_factor)
        self._last_cut_at = now
        self._anchor_at = now
        self._anchor_rate = new_rate
        self._full_at = now + s.throttle_recovery_seconds
        return True

    def set_allowed(self, allowed: float, now: float) -> None:
        """MaxSendRate changed: move the ceiling; a recovery in progress ends on time."""
        _check_rate(allowed)
        if self.recovering(now):
            # Restart the line from where we are now (clamped to the new ceiling) so the rate
            # neither jumps nor stays above the ceiling, and still reaches it at _full_at.
            self._anchor_rate = min(self.current(now), float(allowed))
            self._anchor_at = now
        else:
            self._full_at = None
        self._allowed = float(allowed)


def _check_rate(rate: float) -> None:
    if not rate > 0 or rate == float("inf"):
        raise ValueError(f"send rate must be a finite number > 0 recipients per second, got {rate}")

"""Every knob of pacing: send rate headroom, throttle back-off, daily-quota headroom, polling."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from dispatcher.errors import ConfigError

MIN_POLL_INTERVAL = 1.0  # seconds: AWS asks for at most one GetSendQuota call per second


class PacingConfigError(ConfigError, ValueError):
    """A pacing setting is out of range; a ValueError too, so plain callers can catch that."""


@dataclass(frozen=True, slots=True)
class PacingSettings:
    """Pacing settings (config section `pacing`); defaults suit a fresh production account."""

    # Fraction of MaxSendRate we aim for. 1.0: SES tolerates short bursts above the rate, and the
    # adaptive cut below handles the rest; lower it if other senders share the account.
    rate_headroom: float = 1.0
    # Seconds of rate we may send in one burst after an idle spell. Below SES's own tolerance
    # (about 1 s), so SES keeps slack for requests that arrive bunched up or out of order.
    burst_seconds: float = 0.5
    # Fraction of Max24HourSend we allow ourselves: 2 % is left for concurrent checks racing
    # ahead of record_sent, other senders on the account and the staleness of a reading.
    quota_headroom: float = 0.98
    # Seconds between GetSendQuota calls in the normal case.
    poll_interval: float = 60.0
    # Seconds between calls when paused or past `near_limit_fraction` of the allowed quota.
    poll_interval_near_limit: float = 5.0
    # Share of the allowed daily quota after which we poll at the faster interval.
    near_limit_fraction: float = 0.9
    # First wait after a failed GetSendQuota call; doubles per failure up to the maximum.
    poll_failure_backoff: float = 2.0
    poll_failure_backoff_max: float = 60.0
    # Seconds a GetSendQuota call may take before it counts as failed.
    poll_timeout: float = 10.0
    # Multiplicative cut of the effective send rate on a throttled response.
    throttle_decrease_factor: float = 0.7
    # The cut never goes below max(allowed * fraction, throttle_min_rate) (nor above allowed).
    throttle_min_rate_fraction: float = 0.1
    throttle_min_rate: float = 0.5
    # Throttled responses closer together than this are one burst and cut the rate once: a
    # burst of in-flight sends all fail for the same moment of overload.
    throttle_cut_interval: float = 1.0
    # Seconds after the last cut at which the rate is back at the allowed rate (linear ramp).
    throttle_recovery_seconds: float = 10.0
    # While recovering, how often the limiter re-applies the ramped rate to the bucket.
    recovery_refresh_interval: float = 0.25

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PacingConfigError(f"pacing.{f.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise PacingConfigError(f"pacing.{f.name} must be a finite number, got {value}")
        _in_range("rate_headroom", self.rate_headroom, 0.0, 1.0, "(0, 1]")
        _in_range("quota_headroom", self.quota_headroom, 0.0, 1.0, "(0, 1]")
        _in_range("near_limit_fraction", self.near_limit_fraction, 0.0, 1.0, "(0, 1]")
        _in_range("throttle_min_rate_fraction", self.throttle_min_rate_fraction, 0.0, 1.0, "(0, 1]")
        if not 0.0 < self.throttle_decrease_factor < 1.0:
            raise PacingConfigError(
                "pacing.throttle_decrease_factor must be in (0, 1) (e.g. 0.7 cuts the rate by "
                f"30 %), got {self.throttle_decrease_factor}"
            )
        if self.poll_interval < MIN_POLL_INTERVAL:
            raise PacingConfigError(
                f"pacing.poll_interval must be >= {MIN_POLL_INTERVAL} seconds (AWS allows one "
                f"GetSendQuota call per second), got {self.poll_interval}"
            )
        if not MIN_POLL_INTERVAL <= self.poll_interval_near_limit <= self.poll_interval:
            raise PacingConfigError(
                f"pacing.poll_interval_near_limit must be in [{MIN_POLL_INTERVAL}, poll_interval="
                f"{self.poll_interval}] seconds, got {self.poll_interval_near_limit}"
            )
        if self.poll_failure_backoff < MIN_POLL_INTERVAL:
            raise PacingConfigError(
                f"pacing.poll_failure_backoff must be >= {MIN_POLL_INTERVAL} seconds, "
                f"got {self.poll_failure_backoff}"
            )
        if self.poll_failure_backoff_max < self.poll_failure_backoff:
            raise PacingConfigError(
                "pacing.poll_failure_backoff_max must be >= poll_failure_backoff="
                f"{self.poll_failure_backoff} seconds, got {self.poll_failure_backoff_max}"
            )
        _positive("poll_timeout", self.poll_timeout, "seconds")
        _positive("throttle_min_rate", self.throttle_min_rate, "recipients per second")
        _positive("throttle_recovery_seconds", self.throttle_recovery_seconds, "seconds")
        _positive("recovery_refresh_interval", self.recovery_refresh_interval, "seconds")
        _positive("burst_seconds", self.burst_seconds, "seconds")
        if self.throttle_cut_interval < 0:
            raise PacingConfigError(
                "pacing.throttle_cut_interval must be >= 0 seconds, "
                f"got {self.throttle_cut_interval}"
            )


def _in_range(name: str, value: float, low: float, high: float, shown: str) -> None:
    if not low < value <= high:
        raise PacingConfigError(f"pacing.{name} must be in {shown}, got {value}")


def _positive(name: str, value: float, unit: str) -> None:
    if not value > 0:
        raise PacingConfigError(f"pacing.{name} must be > 0 {unit}, got {value}")

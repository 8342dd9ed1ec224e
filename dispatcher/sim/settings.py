"""The simulated account's limits and behaviour as data: validated once, replaced at runtime."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

UNLIMITED = -1.0  # Max24HourSend value that SES uses for "no daily quota"


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Limits of one simulated SES account (see shared/SES-FACTS.md, "Quotas and rate")."""

    max_send_rate: float = 14.0  # recipients per second
    max_24_hour_send: float = 50000.0  # recipients per rolling window; -1 = unlimited
    burst_seconds: float = 1.0  # the bucket holds max(rate * burst_seconds, 1) tokens
    quota_window_seconds: float = 86400.0  # SES: 24 h; tests shrink it to watch the quota free up
    latency_ms: float = 0.0  # fixed delay added to every send
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        _positive("max_send_rate", self.max_send_rate)
        _number("max_24_hour_send", self.max_24_hour_send)
        if self.max_24_hour_send < 0 and self.max_24_hour_send != UNLIMITED:
            raise ValueError(
                f"max_24_hour_send must be >= 0 or -1 (unlimited), got {self.max_24_hour_send!r}"
            )
        _positive("burst_seconds", self.burst_seconds)
        _positive("quota_window_seconds", self.quota_window_seconds)
        if _number("latency_ms", self.latency_ms) < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms!r}")
        if not isinstance(self.region, str) or not self.region:
            raise ValueError(f"region must be a non-empty string, got {self.region!r}")

    @property
    def unlimited(self) -> bool:
        return self.max_24_hour_send < 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, changes: Mapping[str, Any]) -> SimSettings:
        """A copy with `changes` applied; unknown names and bad values raise ValueError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        coerced: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "region":
                coerced[name] = value
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            else:
                coerced[name] = float(value)
        return dataclasses.replace(self, **coerced)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _positive(name: str, value: object) -> None:
    if _number(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")

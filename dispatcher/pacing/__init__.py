"""Pacing: per-recipient send rate (adaptive on throttling) and the daily-quota governor."""

from __future__ import annotations

from dispatcher.pacing.bucket import RecipientLimiter
from dispatcher.pacing.control import RateController
from dispatcher.pacing.governor import ADMITTED, Admission, QuotaGovernor, QuotaView
from dispatcher.pacing.settings import MIN_POLL_INTERVAL, PacingConfigError, PacingSettings

__all__ = [
    "ADMITTED",
    "MIN_POLL_INTERVAL",
    "Admission",
    "PacingConfigError",
    "PacingSettings",
    "QuotaGovernor",
    "QuotaView",
    "RateController",
    "RecipientLimiter",
]

"""What to do with an event after one POST: delivered, retried later, or given up. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from dispatcher.webhooks.settings import WebhookSettings

__all__ = ["Verdict", "judge", "retry_delay"]

ERROR_CHARS = 300  # what is kept of an error or response for `dispatcher webhooks`


@dataclass(frozen=True, slots=True)
class Verdict:
    """The event's next state; `delay` (seconds) until the next attempt when pending."""

    state: Literal["delivered", "pending", "given_up"]
    delay: float = 0.0
    error: str | None = None


def retry_delay(attempts: int, settings: WebhookSettings, rand: float) -> float:
    """Exponential backoff with equal jitter after `attempts` failed POSTs (>= 1), capped.

    `rand` is uniform in [0, 1): half the delay is fixed, half random, so receivers that come
    back are not hit by every sender's retries in the same second.
    """
    exp = min(settings.retry_max, settings.retry_base * 2.0 ** min(attempts - 1, 32))
    return exp / 2.0 + exp / 2.0 * rand


def judge(
    status: int | None,
    error: str | None,
    *,
    attempts: int,
    created_at: datetime,
    now: datetime,
    settings: WebhookSettings,
    rand: float,
) -> Verdict:
    """A 2xx answer delivers; anything else (another status, a timeout, no connection) is
    retried with backoff, the last time `give_up_hours` after the event was made."""
    if status is not None and 200 <= status < 300:
        return Verdict("delivered")
    if status is None:
        reason = error or "no answer"
    else:
        reason = f"HTTP {status}" + (f": {error}" if error else "")
    reason = reason[:ERROR_CHARS]
    left = (created_at + timedelta(hours=settings.give_up_hours) - now).total_seconds()
    if left <= 0:
        return Verdict("given_up", 0.0, reason)
    # The last attempt falls on the deadline itself, not a backoff step before it.
    return Verdict("pending", min(retry_delay(attempts, settings, rand), left), reason)

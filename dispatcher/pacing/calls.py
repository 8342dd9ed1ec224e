"""SES's limit on SendBulkEmail calls: whether a campaign's next group may be one bulk call.

SES allows one request a second on its API actions other than SendEmail, SendRawEmail and
SendTemplatedEmail, and that includes the bulk sends (../shared/SES-FACTS.md, "Quotas and
rate"). A bulk group waits for nothing: when no call is free, its recipients go one by one as
templated SendEmail calls, which only MaxSendRate limits. Pure: times are given.
"""

from __future__ import annotations

from dispatcher.domain.quota import API_CALL_INTERVAL

__all__ = ["BULK_CALL_INTERVAL", "CallPacer"]

# Seconds between bulk calls of the whole account: SES's 1 request/s with its margin.
BULK_CALL_INTERVAL = API_CALL_INTERVAL


class CallPacer:
    """At most one call per `interval` seconds of the account, of which this process has `share`."""

    __slots__ = ("_interval", "_next")

    def __init__(self, interval: float = BULK_CALL_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        self._interval = interval
        self._next = float("-inf")

    def take(self, now: float, share: float = 1.0) -> bool:
        """True (and the call is counted) if a call may go now; several processes each take
        calls at `share` of the account's pace, so together they keep to it."""
        if now < self._next:
            return False
        self._next = now + self._interval / max(share, 1e-6)
        return True

"""Daily-quota governor: admit sends while the rolling 24 h quota has room. Pure, time passed in.

Between two GetSendQuota readings it adds what this process sent to the reading's
SentLast24Hours, so it never lets more through than the reading plus local sends allow. A pause
ends by itself: a later reading, in which SES's rolling window has freed room, admits again.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.domain.quota import Quota
from dispatcher.pacing.settings import MIN_POLL_INTERVAL, PacingSettings


@dataclass(frozen=True, slots=True)
class Admission:
    """The governor's answer: send now, or wait until `retry_at` (on the governor's clock)."""

    allowed: bool
    reason: str | None = None
    retry_at: float | None = None


ADMITTED = Admission(True)


@dataclass(frozen=True, slots=True)
class QuotaView:
    """Snapshot for `dispatcher status` / `dispatcher quota`."""

    limit: float | None  # Max24HourSend; None before the first reading; -1 = unlimited
    headroom: float  # share of the limit we allow ourselves
    sent_last_24h: float | None  # SentLast24Hours of the last reading
    sent_since_reading: float  # recipients this process sent since that reading
    remaining: float | None  # recipients still admitted; None if unlimited or unknown
    paused: bool
    reason: str | None
    last_reading_age: float | None  # seconds; None before the first reading
    max_send_rate: float | None  # MaxSendRate of the last reading


class QuotaGovernor:
    """Decides whether a message to N recipients fits in the daily sending quota.

    Call `check()` and then `record_sent()` with no `await` in between (or `reserve()`, which
    does both), so that concurrent senders cannot all pass on the same room.
    """

    __slots__ = (
        "_daily_error_at",
        "_poll_started_at",
        "_quota",
        "_reading_at",
        "_sent_during_poll",
        "_sent_since_reading",
        "_settings",
    )

    def __init__(self, settings: PacingSettings | None = None) -> None:
        self._settings = settings if settings is not None else PacingSettings()
        self._quota: Quota | None = None
        self._reading_at = 0.0  # when the last reading arrived (meaningless while _quota is None)
        self._sent_since_reading = 0.0
        # A GetSendQuota call in flight started at _poll_started_at; what we send meanwhile may
        # be missing from its answer, so it is kept in _sent_during_poll and survives observe().
        self._poll_started_at: float | None = None
        self._sent_during_poll = 0.0
        # SES refused a send for the daily quota at this time; only a later reading lifts it.
        self._daily_error_at: float | None = None

    # -- inputs -------------------------------------------------------------------------------

    def begin_poll(self, now: float) -> None:
        """A GetSendQuota call starts now (sends from here on may be missing from its answer)."""
        self._poll_started_at = now
        self._sent_during_poll = 0.0

    def observe(self, quota: Quota, now: float) -> None:
        """A fresh GetSendQuota reading arrived at `now`."""
        started = self._poll_started_at
        self._quota = quota
        self._reading_at = now
        # Count again only what was sent after the call started: conservative, since SES may
        # have counted some of it already.
        self._sent_since_reading = self._sent_during_poll if started is not None else 0.0
        self._poll_started_at = None
        self._sent_during_poll = 0.0
        taken_at = started if started is not None else now
        if self._daily_error_at is not None and taken_at > self._daily_error_at:
            self._daily_error_at = None  # a reading taken after the refusal decides from here

    def record_sent(self, recipients: int, now: float) -> None:
        """This process handed a message to `recipients` recipients to SES."""
        self._sent_since_reading += recipients
        started = self._poll_started_at
        if started is not None and now >= started:
            self._sent_during_poll += recipients

    def on_daily_quota_error(self, now: float) -> None:
        """SES refused a send because the daily quota is spent: pause at once."""
        self._daily_error_at = now

    # -- decisions ----------------------------------------------------------------------------

    def check(self, recipients: int, now: float) -> Admission:
        """May a message to `recipients` recipients be sent now? Charges nothing."""
        quota = self._quota
        if quota is None:
            return Admission(False, "no GetSendQuota reading yet", now + MIN_POLL_INTERVAL)
        if self._daily_error_at is not None:
            return Admission(False, self._daily_error_reason(), self._retry_at(now))
        if quota.max_24_hour_send < 0:
            return ADMITTED
        allowed = quota.max_24_hour_send * self._settings.quota_headroom
        used = quota.sent_last_24_hours + self._sent_since_reading
        if used + recipients > allowed:
            return Admission(False, self._over_reason(quota, used), self._retry_at(now))
        return ADMITTED

    def reserve(self, recipients: int, now: float) -> Admission:
        """check(), and if admitted record_sent() right away (release nothing if the send fails)."""
        admission = self.check(recipients, now)
        if admission.allowed:
            self.record_sent(recipients, now)
        return admission

    @property
    def paused(self) -> bool:
        """True when not even a one-recipient message would be admitted."""
        return self.pause_reason is not None

    @property
    def pause_reason(self) -> str | None:
        """Why sending is paused (a sentence for the operator), or None."""
        quota = self._quota
        if quota is None:
            return "no GetSendQuota reading yet"
        if self._daily_error_at is not None:
            return self._daily_error_reason()
        if quota.max_24_hour_send < 0:
            return None
        used = quota.sent_last_24_hours + self._sent_since_reading
        if used + 1 > quota.max_24_hour_send * self._settings.quota_headroom:
            return self._over_reason(quota, used)
        return None

    @property
    def quota(self) -> Quota | None:
        """The last reading, or None."""
        return self._quota

    def remaining(self) -> float | None:
        """Recipients still admitted before the headroom; None if unlimited or unknown."""
        quota = self._quota
        if quota is None or quota.max_24_hour_send < 0:
            return None
        allowed = quota.max_24_hour_send * self._settings.quota_headroom
        return max(0.0, allowed - quota.sent_last_24_hours - self._sent_since_reading)

    def poll_interval(self) -> float:
        """Seconds between readings in the current state (shorter when paused or near the limit)."""
        s = self._settings
        quota = self._quota
        if quota is None:
            return MIN_POLL_INTERVAL
        if self._daily_error_at is not None:
            return s.poll_interval_near_limit
        if quota.max_24_hour_send < 0:
            return s.poll_interval
        allowed = quota.max_24_hour_send * s.quota_headroom
        used = quota.sent_last_24_hours + self._sent_since_reading
        if used >= allowed * s.near_limit_fraction:
            return s.poll_interval_near_limit
        return s.poll_interval

    def next_poll_at(self) -> float:
        """When the next reading is due (-inf before the first one): last reading + interval."""
        if self._quota is None:
            return float("-inf")
        return self._reading_at + self.poll_interval()

    def next_poll_in(self, now: float) -> float:
        """Seconds until the next GetSendQuota call; never below 1 s (AWS's limit)."""
        return max(MIN_POLL_INTERVAL, self.next_poll_at() - now)

    def view(self, now: float) -> QuotaView:
        quota = self._quota
        return QuotaView(
            limit=quota.max_24_hour_send if quota is not None else None,
            headroom=self._settings.quota_headroom,
            sent_last_24h=quota.sent_last_24_hours if quota is not None else None,
            sent_since_reading=self._sent_since_reading,
            remaining=self.remaining(),
            paused=self.paused,
            reason=self.pause_reason,
            last_reading_age=now - self._reading_at if quota is not None else None,
            max_send_rate=quota.max_send_rate if quota is not None else None,
        )

    # -- helpers ------------------------------------------------------------------------------

    def _retry_at(self, now: float) -> float:
        # Only a new reading can change the answer: retry when it is due (at least 1 s ahead).
        return now + self.next_poll_in(now)

    def _over_reason(self, quota: Quota, used: float) -> str:
        return (
            f"daily sending quota nearly spent: {used:.0f} of {quota.max_24_hour_send:.0f} "
            f"recipients in the last 24 h (we stop at {self._settings.quota_headroom:.0%}); "
            "sending resumes as the 24 h window frees room"
        )

    @staticmethod
    def _daily_error_reason() -> str:
        return (
            "SES refused a send: daily sending quota exceeded; "
            "waiting for a GetSendQuota reading that shows room"
        )

"""Daily-quota governor: admit sends while the rolling 24 h quota has room. Pure, time passed in.

Between two GetSendQuota readings it adds what this process sent to the reading's
SentLast24Hours, so it never lets more through than the reading plus local sends allow. A pause
ends by itself: a later reading, in which SES's rolling window has freed room, admits again.

Several processes on one account share one reading (see `dispatcher.worker.shared_quota`). Each
counts what it sent per *epoch*: a send counts into the epoch current when SES answered it (one
still unanswered is *pending*, in no reading yet). A reading is taken only once every process
counts into its epoch, so it includes every send counted into an earlier one; `adopt()` then
admits against reading + our pending and later-epoch sends + the others' (as they reported them).
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.domain.quota import Quota
from dispatcher.pacing.settings import MIN_POLL_INTERVAL, PacingSettings
from dispatcher.pacing.warmup import WarmupGate


@dataclass(frozen=True, slots=True)
class Admission:
    """The governor's answer: send now, or wait until `retry_at` (on the governor's clock)."""

    allowed: bool
    reason: str | None = None
    retry_at: float | None = None
    # Not the day's quota but our share of its room, used up until the next sync brings the
    # others' sends: worth a short wait, not the end of a drain.
    until_sync: bool = False


ADMITTED = Admission(True)

# The epoch under which a process reports its pending sends: above any real one, so every
# reading counts them until they are answered and move to a real epoch.
PENDING_EPOCH = 2**62

# Seconds to wait when our share of the room is used: about one sync of the shared quota.
SHARE_RETRY = 0.25
# Seconds to wait for the warm-up's refill loop, and to look again once today's cap is reached.
WARMUP_REFILL_RETRY = 0.05
WARMUP_SPENT_RETRY = 60.0


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
        "_counting",
        "_daily_error_at",
        "_epoch",
        "_others",
        "_own_at_sync",
        "_pending",
        "_quota",
        "_reading_at",
        "_room_at_sync",
        "_sent_since_reading",
        "_settings",
        "_share",
        "_spent",
        "warmup",
    )

    def __init__(self, settings: PacingSettings | None = None) -> None:
        self._settings = settings if settings is not None else PacingSettings()
        self._quota: Quota | None = None
        self._reading_at = 0.0  # when the last reading arrived (meaningless while _quota is None)
        self._sent_since_reading = 0.0
        # SES refused a send for the daily quota at this time; only a later reading lifts it.
        self._daily_error_at: float | None = None
        # A reading shared by several processes: the published epoch we hold (None: our own
        # reading, or none), the epoch we count into and since when, recipients admitted whose
        # send SES has not answered yet, what was answered per epoch, what the others sent since
        # our reading, and our part of the room left (1 / processes sending).
        self._epoch: int | None = None
        self._counting: tuple[int, float] | None = None
        self._pending = 0.0
        self._spent: dict[int, float] = {}
        self._others = 0.0
        self._share = 1.0
        # At the last reading or sync: the room left of the allowed quota (everyone's sends as
        # known then), and what we had sent. Our share is taken of that room, not of a room
        # that shrinks only by our own sends (taking half of what is left again and again
        # would take it all before the others' sends are heard of).
        self._room_at_sync = 0.0
        self._own_at_sync = 0.0
        # The warm-up's daily cap, when one applies: admitted against besides SES's quota.
        self.warmup: WarmupGate | None = None

    # -- inputs -------------------------------------------------------------------------------

    def observe(self, quota: Quota, now: float) -> None:
        """A fresh GetSendQuota reading arrived at `now`."""
        self._quota = quota
        self._reading_at = now
        self._sent_since_reading = 0.0
        if self._daily_error_at is not None and now > self._daily_error_at:
            self._daily_error_at = None  # a reading after the refusal decides from here
        self._mark_sync(quota)

    def record_sent(self, recipients: int, now: float) -> None:
        """This process handed a message to `recipients` recipients to SES (or is about to);
        call `answered()` when SES has answered it."""
        self._sent_since_reading += recipients
        self._pending += recipients
        if self.warmup is not None:
            self.warmup.use(recipients)

    def on_daily_quota_error(self, now: float) -> None:
        """SES refused a send because the daily quota is spent: pause at once."""
        self._daily_error_at = now

    def answered(self, recipients: int) -> None:
        """SES answered a send recorded with `record_sent` (whatever the answer: counting a
        refused one errs on the safe side): it counts into the current epoch from now."""
        self._pending = max(0.0, self._pending - recipients)
        if self._counting is not None:
            epoch = self._counting[0]
            self._spent[epoch] = self._spent.get(epoch, 0.0) + recipients

    # -- a reading shared by several processes ---------------------------------------------

    def follow(self, polling_epoch: int, now: float) -> None:
        """The shared reading being taken is `polling_epoch`: count what SES answers into it."""
        if self._counting is None or polling_epoch > self._counting[0]:
            self._counting = (polling_epoch, now)
            self._spent.setdefault(polling_epoch, 0.0)

    def adopt(self, epoch: int, quota: Quota | None, others: float, age: float, now: float) -> None:
        """The published reading is `epoch` (`quota`, taken `age` seconds ago; None: none yet),
        and the other processes sent `others` recipients it does not include."""
        # Nobody has read GetSendQuota for all yet (quota None): our own reading stands, but
        # the others' sends count already (some twice, if our reading came after them: the
        # safe side).
        self._others = max(0.0, others)
        if quota is not None and epoch != self._epoch:
            self._take(epoch, quota, age, now)
        self._mark_sync(self._quota)

    def _take(self, epoch: int, quota: Quota, age: float, now: float) -> None:
        """A new published reading replaces ours."""
        self._epoch = epoch
        self._quota = quota
        self._reading_at = now - max(0.0, age)
        self._spent = {e: v for e, v in self._spent.items() if e >= epoch}
        self._sent_since_reading = sum(self._spent.values()) + self._pending
        if self._daily_error_at is not None and self._counting is not None:
            counting, began = self._counting
            if counting == epoch and began > self._daily_error_at:
                self._daily_error_at = None  # begun after SES's refusal: it decides from here

    def set_share(self, share: float) -> None:
        """Our part of the room left (1 / processes sending): see `_our_room`."""
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self._share = share

    def spent_by_epoch(self) -> dict[int, float]:
        """What the other processes must count of ours: per epoch, and the pending sends under
        PENDING_EPOCH (no reading includes them yet)."""
        return {**self._spent, PENDING_EPOCH: self._pending}

    @property
    def counting_epoch(self) -> int | None:
        """The epoch our sends count into (None before the first shared reading)."""
        return self._counting[0] if self._counting is not None else None

    @property
    def epoch(self) -> int | None:
        """The shared reading we hold (None: our own reading, or none)."""
        return self._epoch

    # -- decisions ----------------------------------------------------------------------------

    def check(self, recipients: int, now: float) -> Admission:
        """May a message to `recipients` recipients be sent now? Charges nothing."""
        quota = self._quota
        if quota is None:
            return Admission(False, "no GetSendQuota reading yet", now + MIN_POLL_INTERVAL)
        if self._daily_error_at is not None:
            return Admission(False, self._daily_error_reason(), self._retry_at(now))
        if quota.max_24_hour_send < 0:
            return self._warmup_check(recipients, now)
        used = self._used(quota)
        if recipients > self._our_room(quota, used):
            return Admission(False, self._over_reason(quota, used), self._retry_at(now))
        if recipients > self._share_left():
            reason = "our share of the daily quota's room is used until the next sync"
            return Admission(False, reason, now + SHARE_RETRY, until_sync=True)
        return self._warmup_check(recipients, now)

    def _warmup_check(self, recipients: int, now: float) -> Admission:
        """min(SES quota, warm-up cap): the cap spent is a pause like the quota's (mail waits
        for the next day); room not yet taken from the day's row is a short wait."""
        if self.warmup is None or (refused := self.warmup.refusal(recipients)) is None:
            return ADMITTED
        reason, spent = refused
        if spent:
            return Admission(False, reason, now + WARMUP_SPENT_RETRY)
        return Admission(False, reason, now + WARMUP_REFILL_RETRY, until_sync=True)

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
        if quota.max_24_hour_send >= 0:
            used = self._used(quota)
            if self._our_room(quota, used) < 1:
                return self._over_reason(quota, used)
        return self.warmup.spent if self.warmup is not None else None

    @property
    def quota(self) -> Quota | None:
        """The last reading, or None."""
        return self._quota

    @property
    def reading_at(self) -> float | None:
        """When the last reading was taken (on the governor's clock), or None."""
        return self._reading_at if self._quota is not None else None

    def remaining(self) -> float | None:
        """Recipients still admitted before the headroom; None if unlimited or unknown."""
        quota = self._quota
        if quota is None or quota.max_24_hour_send < 0:
            return None
        allowed = quota.max_24_hour_send * self._settings.quota_headroom
        return max(0.0, allowed - self._used(quota))

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
        used = self._used(quota)
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
            sent_since_reading=self._sent_since_reading + self._others,
            remaining=self.remaining(),
            paused=self.paused,
            reason=self.pause_reason,
            last_reading_age=now - self._reading_at if quota is not None else None,
            max_send_rate=quota.max_send_rate if quota is not None else None,
        )

    # -- helpers ------------------------------------------------------------------------------

    def _our_room(self, quota: Quota, used: float) -> float:
        """Recipients we may send at most before a new reading: what is left of the allowed
        quota, and no more than our share (as of the rate) of the room at the last sync."""
        allowed = quota.max_24_hour_send * self._settings.quota_headroom
        return min(allowed - used, self._room_at_sync * self._share)

    def _share_left(self) -> float:
        """Our share of the room at the last sync, less what we sent since: with several
        processes, what ones that have not yet seen each other's sends may take together is
        the room they all saw."""
        return self._room_at_sync * self._share - (self._sent_since_reading - self._own_at_sync)

    def _mark_sync(self, quota: Quota | None) -> None:
        if quota is None or quota.max_24_hour_send < 0:
            return
        allowed = quota.max_24_hour_send * self._settings.quota_headroom
        self._room_at_sync = max(0.0, allowed - self._used(quota))
        self._own_at_sync = self._sent_since_reading

    def _used(self, quota: Quota) -> float:
        """Recipients counted against the quota: the reading, ours since, the others' since."""
        return quota.sent_last_24_hours + self._sent_since_reading + self._others

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

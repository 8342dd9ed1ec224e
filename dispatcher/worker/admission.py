"""What a message, or a bulk group, passes before it is sent: holds, the daily quota, a send slot,
the campaign's share of the rate and the rate itself; and what each SES answer teaches them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from dispatcher.clock import Clock
from dispatcher.domain.jobs import ClaimedJob, recipients_of
from dispatcher.domain.outcome import Outcome, SendResult
from dispatcher.domain.retry import RetryPolicy
from dispatcher.pacing import QuotaGovernor, RecipientLimiter
from dispatcher.pacing.calls import CallPacer
from dispatcher.pacing.inflight import InFlightLimit
from dispatcher.pacing.settings import PacingSettings
from dispatcher.worker.holds import Holds, sender_key
from dispatcher.worker.slots import Slots

__all__ = ["Admission", "Refused"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Refused:
    """Not now: the account is paused, the sender is held, the daily quota is spent, or our
    share of its room is used until the next sync (`share`: a short wait, nothing given back)."""

    why: Literal["account", "sender", "quota", "share"]
    wait: float  # seconds until it may be tried again
    reason: str | None = None


class Admission:
    """Owns the holds, the send slots and the buckets; one `admit` per message or bulk group."""

    def __init__(
        self,
        limiter: RecipientLimiter,
        governor: QuotaGovernor,
        retry: RetryPolicy,
        *,
        max_in_flight: int,
        campaign_rate_share: float = 1.0,
        pacing: PacingSettings | None = None,
        wall: Clock = time.time,
    ) -> None:
        self.limiter = limiter
        self.governor = governor
        self.holds = Holds()
        self._retry = retry
        # Send slots follow rate x SES latency; max_in_flight is their ceiling.
        self._in_flight = InFlightLimit(max_in_flight)
        self._slots = Slots(max_in_flight)
        self.bulk_calls = CallPacer()  # SES: one SendBulkEmail a second, for the account
        self._wall = wall  # the bulk calls' turns: on the wall clock, shared by hosts
        self._campaign_share = campaign_rate_share
        # Campaign mail also passes this bucket when it may use only a share of the rate.
        self._campaign_limiter: RecipientLimiter | None = None
        if campaign_rate_share < 1.0:
            self._campaign_limiter = RecipientLimiter(
                limiter.max_send_rate * campaign_rate_share, pacing
            )

    async def admit(self, group: Sequence[ClaimedJob]) -> Refused | None:
        """Wait for a slot and the rate; None when the group may go (a slot is then held until
        `answered`), or why it may not go now (nothing held)."""
        lead = group[0]
        now = asyncio.get_running_loop().time()
        if wait := self.holds.account(now):
            return Refused("account", wait)
        if wait := self.holds.sender(lead.message, now):
            return Refused("sender", wait)
        recipients = recipients_of(group)
        admission = self.governor.reserve(recipients, now)
        if not admission.allowed:
            if admission.until_sync and admission.retry_at is not None:
                return Refused("share", max(0.0, admission.retry_at - now), admission.reason)
            retry_at = admission.retry_at if admission.retry_at is not None else now + 1.0
            return Refused("quota", max(1.0, retry_at - now), admission.reason)
        self._slots.set_limit(self._in_flight.limit(self.limiter.allowed_rate, now))
        await self._slots.acquire()
        try:
            if lead.campaign_id is not None:
                await self._campaign_pace(recipients)
            await self.limiter.acquire(recipients)
        except BaseException:
            self.answered(recipients)
            raise
        return None

    def bulk_call(self) -> bool:
        """May the next campaign group be one SendBulkEmail call now (our share of SES's one
        a second)? Otherwise its mail goes as templated SendEmail calls."""
        return self.bulk_calls.take(self._wall())

    def answered(self, recipients: int, held: float | None = None) -> None:
        """SES answered (or the send was abandoned): the slot and the reservation go back.
        `held`: seconds the answered call held its slot, which sizes the slots."""
        self._slots.release()
        self.governor.answered(recipients)
        if held is not None:
            now = asyncio.get_running_loop().time()
            self._in_flight.observe(held, recipients, now)
            # Also here: a send waiting for a slot gets one as soon as the limit grows.
            self._slots.set_limit(self._in_flight.limit(self.limiter.allowed_rate, now))

    @property
    def slots(self) -> tuple[int, int]:
        """(send slots taken, the limit now)."""
        return self._slots.taken, self._slots.limit

    def learn(self, job: ClaimedJob, result: SendResult, bulk: bool = False) -> str | None:
        """Pacing and holds that follow from one SES answer (`bulk`: to a SendBulkEmail call).
        Returns a reason to pause the job's campaign when the error is shared by all its
        recipients."""
        outcome = result.outcome
        if outcome is Outcome.SENT:  # the common case: nothing to learn
            return None
        now = asyncio.get_running_loop().time()
        if outcome is Outcome.THROTTLED:
            if bulk and call_rate_refusal(result):
                self.bulk_calls.refused(self._wall())  # the call rate, not MaxSendRate
            else:
                self.limiter.on_throttled()
        elif outcome is Outcome.DAILY_QUOTA:
            self.governor.on_daily_quota_error(now)
        elif outcome is Outcome.ACCOUNT_PAUSED:
            delay = self._retry.account_paused_delay
            if self.holds.hold_account(now, delay):
                log.error("account.paused", reason=result.reason, code=result.code, hold=delay)
        elif outcome is Outcome.CONFIG_ERROR:
            delay = self._retry.config_error_delay
            if self.holds.hold_sender(job.message, now, delay):
                from_addr, config_set = sender_key(job.message)
                log.error(
                    "sender.held",
                    from_addr=from_addr,
                    configuration_set=config_set,
                    code=result.code,
                    reason=result.reason,
                    hold=delay,
                )
            if job.campaign_id is not None:
                return f"SES configuration error: {result.code}: {result.reason}"
        return None

    def close(self) -> None:
        """Stop the buckets' recovery timers."""
        self.limiter.close()
        if self._campaign_limiter is not None:
            self._campaign_limiter.close()

    async def _campaign_pace(self, recipients: int) -> None:
        """Campaign mail: stay within `campaign_rate_share` of the (current) account rate."""
        bucket = self._campaign_limiter
        if bucket is None:
            return
        share = self.limiter.max_send_rate * self.limiter.share * self._campaign_share
        if abs(bucket.max_send_rate - share) > 1e-9:
            bucket.set_max_send_rate(share)  # MaxSendRate changed: follow it
        await bucket.acquire(recipients)


def call_rate_refusal(result: SendResult) -> bool:
    """A throttled SendBulkEmail call SES refused as a whole for its one request a second: no
    per-entry status, and not the text of MaxSendRate's throttle (SES-FACTS: only the text tells
    the two apart; a bulk call may also exceed MaxSendRate, which then slows the sending)."""
    reason = (result.reason or "").lower()
    return result.code != "ACCOUNT_THROTTLED" and "maximum sending rate" not in reason

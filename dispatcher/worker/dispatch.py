"""The dispatch loop: take the next job, plan it (campaigns), admit it, hand it to sending.

When the account is paused or the day's quota is spent it gives back all it holds and waits
(draining: ends the run); a sender held by a configuration error gets its mail back with a delay.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Protocol

import structlog

from dispatcher.domain.jobs import ClaimedJob, Settlement
from dispatcher.domain.plan import Fail, GiveBack, Plan, Send, SendBulk, Wait
from dispatcher.queue.store import JobStore
from dispatcher.worker.admission import Admission, Refused
from dispatcher.worker.counters import EXIT_HELD, EXIT_QUOTA_SPENT, Counters
from dispatcher.worker.intake import Intake
from dispatcher.worker.ledger import Ledger
from dispatcher.worker.sending import BULK_ENTRIES, Sending

__all__ = ["Campaigns", "Dispatch"]

log = structlog.get_logger()


class Campaigns(Protocol):
    """What the worker needs for campaign mail (dispatcher.campaigns.sending.CampaignSender)."""

    async def plan(self, job: ClaimedJob) -> Plan: ...

    async def pause(self, campaign_id: int, reason: str) -> None: ...

    async def finish_done(self) -> list[int]: ...

    async def materialise(self, stop: asyncio.Event, rate: Callable[[], float]) -> None:
        """Until `stop`: keep running campaigns' recipients ahead of the sending as jobs."""


class Dispatch:
    """Moves jobs from the intake through admission to sending, one message or group at a time."""

    def __init__(
        self,
        store: JobStore,
        owner: uuid.UUID,
        intake: Intake,
        admission: Admission,
        sending: Sending,
        ledger: Ledger,
        counters: Counters,
        *,
        campaigns: Campaigns | None,
        drain: bool,
        end: Callable[[int, str], None],
    ) -> None:
        self._store = store
        self._owner = owner
        self._intake = intake
        self._admission = admission
        self._sending = sending
        self._ledger = ledger
        self._counters = counters
        self._campaigns = campaigns
        self._drain = drain
        self._end = end

    async def run(self) -> None:
        """Until the intake runs dry (the run ends)."""
        while (job := await self._intake.next()) is not None:
            if self._intake.lanes is not None and not await self._lane_entry(job):
                continue  # parked in its provider's lane, or back to the queue for later
            if job.campaign_id is None or self._campaigns is None:
                await self._admit_and_send([job], None)  # a single message: nothing to plan
                continue
            plan = await self._plan(job)
            if isinstance(plan, Fail):
                await self._fail_job(plan)
            elif isinstance(plan, GiveBack):
                await self._give_back([job], 0.0)  # the pause holds it (requeue_state)
            elif isinstance(plan, Wait):
                await self._give_back([job], plan.delay, scheduled=True)  # its window opens
            elif isinstance(plan, SendBulk):
                # SendBulkEmail takes no ListManagementOptions (sesv2 model): SendEmail each.
                if plan.job.message.list_management is None and self._admission.bulk_call():
                    group = await self._bulk_group(plan)
                    await self._admit_and_send(group, plan.template)
                else:  # no bulk call free this second: a templated SendEmail of its own
                    await self._admit_and_send([plan.job], plan.template)
            else:
                await self._admit_and_send([plan.job], None)

    async def _plan(self, job: ClaimedJob) -> Plan:
        if job.campaign_id is None or self._campaigns is None:
            return Send(job)
        plan = await self._campaigns.plan(job)
        if plan.job is not job:
            self._intake.swap(job, plan.job)
        return plan

    async def _bulk_group(self, lead: SendBulk) -> list[ClaimedJob]:
        """Up to 50 jobs of the lead's campaign for one SendBulkEmail call."""
        group = [lead.job]
        campaign_id = lead.job.campaign_id
        assert campaign_id is not None
        while len(group) < BULK_ENTRIES:
            job = self._intake.next_of_campaign(campaign_id)
            if job is None:
                break
            if self._intake.lanes is not None and not await self._lane_entry(job):
                continue
            plan = await self._plan(job)  # headers only (the campaign's row is cached)
            if isinstance(plan, Fail):
                await self._fail_job(plan)  # a recipient whose URL cannot be rendered fails alone
            elif isinstance(plan, Wait):
                await self._give_back([plan.job], plan.delay, scheduled=True)
            else:
                group.append(plan.job)
        return group

    async def _lane_entry(self, job: ClaimedJob) -> bool:
        """True if the job's provider lanes let it go now (charged); else it is parked in its
        lane (still claimed by us) or given back to the queue for later."""
        assert self._intake.lanes is not None
        entry = self._intake.lanes.enter(job)
        if entry.what == "go":
            return True
        if entry.what == "parked":
            self._intake.handed_over([job])  # the lanes hold it now
        else:
            await self._give_back([job], entry.delay, scheduled=entry.spent)
        return False

    async def _admit_and_send(self, group: list[ClaimedJob], template: str | None) -> None:
        refused = await self._admission.admit(group)
        if refused is None:
            self._sending.start(group, template)  # tracked by the ledger from here on
            self._intake.handed_over(group)
            self._lanes_done(group)
        elif refused.why == "share":
            self._intake.put_back(group)  # ours again once the next sync shows the others' sends
            await asyncio.sleep(refused.wait)
        elif refused.why == "sender":
            self._counters.held += len(group)
            await self._give_back(group, refused.wait)
        else:
            await self._pause_sending(group, refused)

    async def _pause_sending(self, group: list[ClaimedJob], refused: Refused) -> None:
        """The account is paused or the day's quota spent: give back all we hold, then wait
        (or, draining, end)."""
        self._intake.put_back(group)
        held = self._intake.take_all()
        if refused.why == "account":
            await self._give_back(held, refused.wait)
            code, reason = EXIT_HELD, "SES reports the account's sending is paused"
            reason += "; mail stays queued"
        else:
            await self._give_back(held, 0.0)
            code = EXIT_QUOTA_SPENT
            reason = f"daily sending quota spent with mail still queued: {refused.reason}"
        if self._drain:
            await self._ledger.wait()
            self._end(code, reason)
            return
        if refused.why == "quota":
            log.warning("worker.quota_wait", reason=refused.reason, retry_in=round(refused.wait, 1))
        self._intake.pause(refused.wait)
        await asyncio.sleep(refused.wait)

    async def _fail_job(self, plan: Fail) -> None:
        """A job that can never be sent (SES not asked)."""
        job = plan.job
        settlement = Settlement(
            job.id, job.token, "failed", outcome=plan.outcome, error=plan.reason, attempt_used=True
        )
        await self._ledger.settle([settlement])
        self._intake.handed_over([job])
        self._lanes_done([job])
        self._counters.failed += 1
        log.warning("message.render_failed", message_id=job.id, error=plan.reason)

    async def _give_back(
        self, jobs: list[ClaimedJob], delay: float, *, scheduled: bool = False
    ) -> None:
        if jobs:
            await self._store.release(self._owner, [j.id for j in jobs], delay, scheduled=scheduled)
        self._intake.handed_over(jobs)
        self._lanes_done(jobs)

    def _lanes_done(self, jobs: list[ClaimedJob]) -> None:
        """Jobs charged to their provider lanes left our hands (put back ones stay charged)."""
        if self._intake.lanes is not None:
            self._intake.lanes.forget(jobs)

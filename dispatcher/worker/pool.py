"""The worker pool: claim jobs, pace them, hand them to SES, record what happened.

One dispatch loop takes claimed jobs in order, admits each through the quota governor and the
recipient token bucket, and starts a send task for it (at most `max_in_flight` at once). A job
becomes `in_flight` (launch, batched) only once its tokens are granted, right before the SES
call, so a crash leaves in doubt only the sends that were actually on the wire. Results are
written back in batches with the lease's fencing token.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.outcome import Outcome, SendResult
from dispatcher.domain.quota import Quota
from dispatcher.domain.retry import RetryPolicy, decide
from dispatcher.domain.validate import suppression_key
from dispatcher.errors import DatabaseError, InputError
from dispatcher.pacing import QuotaGovernor, RecipientLimiter
from dispatcher.pacing.settings import PacingSettings
from dispatcher.queue.outage import connection_lost, while_down
from dispatcher.queue.quota import QUOTA_CHANNEL, LeaderLock, SharedQuotaStore
from dispatcher.queue.repository import ClaimedJob, Queue, Settlement, SettleState
from dispatcher.ses.errors import SesError
from dispatcher.worker.batcher import Batcher
from dispatcher.worker.listener import Listener
from dispatcher.worker.shared_quota import apply_reading, run_quota_leader, run_quota_sync

log = structlog.get_logger()
_R = TypeVar("_R")

EXIT_OK = 0
EXIT_QUOTA_SPENT = 3
EXIT_HELD = 4


class Sender(Protocol):
    """What the pool needs of the SES adapter."""

    async def send(self, msg: OutgoingMessage) -> SendResult: ...

    async def get_send_quota(self) -> Quota: ...

    async def send_bulk(
        self, template_name: str, messages: list[tuple[OutgoingMessage, dict[str, str]]]
    ) -> list[SendResult]: ...


class Campaigns(Protocol):
    """What the pool needs for campaign mail (dispatcher.campaigns.sending.CampaignSender)."""

    async def prepare(self, job: ClaimedJob) -> ClaimedJob: ...

    async def pause(self, campaign_id: int, reason: str) -> None: ...

    async def bulk_template(self, campaign_id: int) -> str | None: ...

    async def finish_done(self) -> list[int]: ...


BULK_ENTRIES = 50  # SendBulkEmail's limit per call
SHARE_INTERVAL = 0.25  # seconds between rate-share updates (several processes, one account)
SHARE_TTL = 1.0  # seconds an active mark lasts: a dead process's part comes back this soon
SHARE_CHANNEL = "dispatcher_share"  # NOTIFYed when a worker starts sending (rate_share)
WAKE_CHANNEL = "dispatcher_jobs"  # NOTIFYed by every statement that inserts jobs (0006_outbox)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How the pool claims, sends and shuts down (from the [queue] and [delivery] config)."""

    claim_batch: int = 100
    max_in_flight: int = 64
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    poll_interval: float = 0.5
    listen: bool = True  # wake on NOTIFY dispatcher_jobs instead of waiting for the next poll
    shutdown_grace: float = 20.0
    settle_batch: int = 200
    settle_interval: float = 0.05
    campaign_rate_share: float = 1.0  # of the send rate; the rest is kept for other mail
    outage_timeout: float = 120.0  # seconds of Postgres outage ridden out before stopping
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(slots=True)
class Counters:
    """What this process did; read by the progress display and the final report."""

    attempts: int = 0  # messages handed to SES
    ses_calls: int = 0  # SendEmail / SendBulkEmail requests made
    sent: int = 0
    recipients_sent: int = 0
    throttled: int = 0
    daily_quota: int = 0
    failed: int = 0
    retried: int = 0
    in_doubt: int = 0
    held: int = 0
    lease_lost: int = 0
    first_send_at: float | None = None
    last_send_at: float | None = None


@dataclass(frozen=True, slots=True)
class RunReport:
    """How a run ended: the exit code the CLI returns and a sentence for the operator."""

    exit_code: int
    reason: str
    counters: Counters
    elapsed: float


class WorkerPool:
    """Runs until `stop` is set, or (drain mode) until nothing is left to send."""

    def __init__(
        self,
        queue: Queue,
        ses: Sender,
        limiter: RecipientLimiter,
        governor: QuotaGovernor,
        settings: PoolSettings,
        *,
        stop: asyncio.Event,
        drain: bool = False,
        pacing: PacingSettings | None = None,
        rand: Callable[[], float] = random.random,
        campaigns: Campaigns | None = None,
    ) -> None:
        self.queue = queue
        self.campaigns = campaigns
        self.ses = ses
        self.limiter = limiter
        self.governor = governor
        self.settings = settings
        self.stop = stop
        self.drain = drain
        self.pacing = pacing if pacing is not None else PacingSettings()
        self.owner = uuid.uuid4()
        self.counters = Counters()
        self._rand = rand
        self._buffer: deque[ClaimedJob] = deque()
        self._buffer_ready = asyncio.Event()  # set when the buffer has jobs or the run ends
        self._buffer_low = asyncio.Event()  # set when the claimer should top the buffer up
        self._current: ClaimedJob | None = None  # taken from the buffer, not yet launched
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._sends: set[asyncio.Task[None]] = set()
        self._on_wire: dict[int, ClaimedJob] = {}
        self._hold_all_until = 0.0  # account paused: no sends before this (loop time)
        self._held: dict[tuple[str, str | None], float] = {}  # sender / config set held until
        self._claim_paused_until = 0.0  # loop time; the claimer sleeps until then
        self._side_tasks: set[asyncio.Task[object]] = set()  # e.g. pausing a campaign
        self._current_group: list[ClaimedJob] = []  # a bulk group being admitted
        self._wake = asyncio.Event()  # set by NOTIFY dispatcher_jobs: new mail to claim
        self._share_wake = asyncio.Event()  # set by NOTIFY dispatcher_share: recount now
        self._quota_store = SharedQuotaStore(queue.pool)
        self._quota_wake = asyncio.Event()  # set by NOTIFY dispatcher_quota: sync now
        self._listener: Listener | None = None
        if settings.listen:
            wakes = {
                WAKE_CHANNEL: self._wake,
                SHARE_CHANNEL: self._share_wake,
                QUOTA_CHANNEL: self._quota_wake,
            }
            self._listener = Listener(queue.pool, wakes)
        # Campaign mail also passes this bucket when it may use only a share of the rate.
        self._campaign_limiter: RecipientLimiter | None = None
        if settings.campaign_rate_share < 1.0:
            self._campaign_limiter = RecipientLimiter(
                limiter.max_send_rate * settings.campaign_rate_share, self.pacing
            )
        self._claiming: asyncio.Future[list[ClaimedJob]] | None = None  # a claim in progress
        self._finish: tuple[int, str] | None = None
        self._fatal: BaseException | None = None
        self._launcher: Batcher[ClaimedJob, bool] = Batcher(
            self._launch_batch, max_batch=1000, name="launch"
        )
        self._settler: Batcher[Settlement, bool] = Batcher(
            self._settle_batch,
            max_batch=settings.settle_batch,
            linger=settings.settle_interval,
            name="settle",
        )

    # -- running --------------------------------------------------------------------------

    async def run(self) -> RunReport:
        """Send until stopped or drained; always leaves every claimed job settled or released."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        s = self.settings
        await self.queue.register_worker(self.owner, s.lease_seconds)
        log.info(
            "worker.started",
            worker_id=str(self.owner),
            max_in_flight=s.max_in_flight,
            rate=round(self.limiter.rate, 3),
            drain=self.drain,
        )
        # Our part of the account's rate before the first send: a process that starts while
        # others send must not burst at the whole rate (its bucket starts full).
        await self._update_share(busy=True, joining=True)
        # The account's daily quota as every process counts it (reading + all sends since).
        reading = await self._db(
            "quota sync", lambda: self._quota_store.sync(self.owner, self.governor.spent_by_epoch())
        )
        apply_reading(self.governor, self.limiter, reading, loop.time())
        self._launcher.start()
        self._settler.start()
        internal_stop = asyncio.Event()
        background = [
            self._background(self._heartbeat_loop(internal_stop), "heartbeat"),
            self._background(self._share_loop(internal_stop), "rate-share"),
            self._background(
                run_quota_sync(
                    self._quota_store,
                    self.owner,
                    self.governor,
                    self.limiter,
                    internal_stop,
                    wake=self._quota_wake,
                ),
                "quota-sync",
            ),
            self._background(
                run_quota_leader(
                    LeaderLock(self.queue.pool),
                    self._quota_store,
                    self.owner,
                    self.ses.get_send_quota,
                    self.governor,
                    self.limiter,
                    internal_stop,
                    settings=self.pacing,
                ),
                "quota-leader",
            ),
        ]
        claimer = self._background(self._claim_loop(), "claimer")
        dispatch = asyncio.create_task(self._dispatch_loop(), name="dispatch")
        stop_wait = asyncio.create_task(self.stop.wait(), name="stop-wait")
        try:
            await asyncio.wait({dispatch, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
            if not dispatch.done():
                log.info("worker.stopping", in_flight=len(self._sends))
                dispatch.cancel()
            try:
                await dispatch
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                log.error("worker.task_failed", task="dispatch", error=repr(exc))
                self._fail(exc)
            claimer.cancel()  # a claim statement already running finishes (shielded)
            await asyncio.gather(claimer, return_exceptions=True)
            await self._shutdown()
            # Our last sends, for the processes that go on (before our part of the rate lapses).
            await self._quietly(
                "quota sync", self._quota_store.sync(self.owner, self.governor.spent_by_epoch())
            )
            if self.campaigns is not None:  # a drain that sent the last of a campaign ends it
                await self._quietly("finish campaigns", self.campaigns.finish_done())
            if self._side_tasks:
                await asyncio.gather(*self._side_tasks, return_exceptions=True)
            internal_stop.set()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self.limiter.close()
            if self._campaign_limiter is not None:
                self._campaign_limiter.close()
            if self._listener is not None:
                await self._listener.close()
            with contextlib.suppress(Exception):
                await self.queue.unregister_worker(self.owner)
        if self._fatal is not None:
            raise self._fatal
        code, reason = self._finish if self._finish is not None else (EXIT_OK, "stopped")
        elapsed = loop.time() - started
        c = self.counters
        log.info(
            "worker.stopped",
            reason=reason,
            exit_code=code,
            sent=c.sent,
            failed=c.failed,
            throttled=c.throttled,
            in_doubt=c.in_doubt,
            elapsed=round(elapsed, 3),
        )
        return RunReport(code, reason, c, elapsed)

    def _background(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                log.error("worker.task_failed", task=name, error=repr(exc))
                self._fail(exc)

        return asyncio.create_task(guarded(), name=name)

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = database_refusal(exc)
        self._end(1, f"stopped on an error: {exc}")
        self.stop.set()

    def _end(self, code: int, reason: str) -> None:
        if self._finish is None:
            self._finish = (code, reason)
        self._buffer_ready.set()

    # -- the dispatch loop ----------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            job = await self._next_job()
            if job is None:
                return
            self._current = job
            if job.campaign_id is not None and self.campaigns is not None:
                template = await self._bulk_template(job)
                if template == "":
                    continue  # the campaign was paused: the job went back
                prepared = await self._prepare(job)
                if prepared is None:
                    self._current = None
                    continue
                job = self._current = prepared
                if template is not None:
                    await self._dispatch_bulk(job, template)
                    continue
            if not await self._admit([job]):
                continue
            task = asyncio.create_task(self._send(job))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _admit(self, group: list[ClaimedJob]) -> bool:
        """What a message, or a bulk group led by its first job, passes before it is sent: the
        account and sender holds, the daily quota, a send slot, the campaign share and the rate.
        False: it was given back (or waits out a pause); nothing to send now."""
        lead = group[0]
        now = asyncio.get_running_loop().time()
        recipients = sum(j.message.recipient_count for j in group)
        if self._hold_all_until > now:
            self._give_back_rest(group)
            await self._account_pause(lead, self._hold_all_until - now)
            return False
        hold = self._held.get(_sender_key(lead.message), 0.0) - now
        if hold > 0:
            self.counters.held += len(group)
            await self._release(group, hold)
            self._current_group = []
            return False
        admission = self.governor.reserve(recipients, now)
        if not admission.allowed:
            self._give_back_rest(group)
            await self._quota_pause(lead, admission.reason, admission.retry_at)
            return False
        await self._slots.acquire()
        try:
            if lead.campaign_id is not None:
                await self._campaign_pace(recipients)
            await self.limiter.acquire(recipients)
        except BaseException:
            self._slots.release()
            self.governor.answered(recipients)
            raise
        self._current = None
        self._current_group = []
        return True

    def _give_back_rest(self, group: list[ClaimedJob]) -> None:
        """A bulk group that cannot go now: all but its lead back to the front of the buffer
        (the lead is released by the pause that follows)."""
        self._buffer.extendleft(reversed(group[1:]))
        self._current_group = []

    async def _next_job(self) -> ClaimedJob | None:
        while not self._buffer:
            if self._finish is not None:
                return None
            self._buffer_ready.clear()
            self._buffer_low.set()
            await self._buffer_ready.wait()
        job = self._buffer.popleft()
        if len(self._buffer) <= self._low_water():
            self._buffer_low.set()
        return job

    def _target(self) -> int:
        """Jobs to keep claimed ahead: about two seconds of sending, at most 2 x claim_batch."""
        want = max(16, math.ceil(self.limiter.rate * 2.0))
        return min(2 * self.settings.claim_batch, want)

    def _low_water(self) -> int:
        return self._target() // 2

    async def _campaign_pace(self, recipients: int) -> None:
        """Campaign mail: stay within `campaign_rate_share` of the (current) account rate."""
        bucket = self._campaign_limiter
        if bucket is None:
            return
        share = self.limiter.max_send_rate * self.limiter.share * self.settings.campaign_rate_share
        if abs(bucket.max_send_rate - share) > 1e-9:
            bucket.set_max_send_rate(share)  # MaxSendRate changed: follow it
        await bucket.acquire(recipients)

    async def _bulk_template(self, job: ClaimedJob) -> str | None:
        """The campaign's SES template when it sends in bulk; a template SES refuses pauses it.

        Returns "" when the campaign was paused for that (the job is given back).
        """
        assert self.campaigns is not None and job.campaign_id is not None
        try:
            return await self.campaigns.bulk_template(job.campaign_id)
        except SesError as exc:
            reason = f"SES refused the campaign's template: {exc}"
            await self.campaigns.pause(job.campaign_id, reason)
            await self._release([job], 0.0)  # the pause holds it (requeue_state)
            return ""

    async def _dispatch_bulk(self, job: ClaimedJob, template: str) -> None:
        """Up to 50 jobs of one campaign in one SendBulkEmail call, paced per recipient."""
        group = self._current_group = [job]
        while (
            len(group) < BULK_ENTRIES
            and self._buffer
            and self._buffer[0].campaign_id == job.campaign_id
        ):
            # Headers only (List-Unsubscribe): the campaign's row is cached, so this does not
            # wait; a recipient whose URL cannot be rendered fails alone.
            prepared = await self._prepare(self._buffer.popleft())
            if prepared is not None:
                group.append(prepared)
        self._current_group = group
        if not await self._admit(group):
            return
        task = asyncio.create_task(self._send_bulk(group, template))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send_bulk(self, group: list[ClaimedJob], template: str) -> None:
        slot_held = True
        recipients = sum(j.message.recipient_count for j in group)  # as admitted
        try:
            for j in group:
                self._on_wire[j.message.id] = j
            launched = await asyncio.gather(*(self._launcher.submit(j) for j in group))
            sendable = []
            for j, ok in zip(group, launched, strict=True):
                if ok:
                    sendable.append(j)
                else:
                    self._on_wire.pop(j.message.id, None)
                    self.counters.lease_lost += 1
            if not sendable:
                return
            now = time.monotonic()
            if self.counters.first_send_at is None:
                self.counters.first_send_at = now
            self.counters.last_send_at = now
            self.counters.ses_calls += 1
            try:
                results = await self.ses.send_bulk(
                    template,
                    [
                        (j.message, {"email": j.message.to[0], **(j.variables or {})})
                        for j in sendable
                    ],
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                results = [SendResult(Outcome.IN_DOUBT, reason=f"unexpected error: {exc!r}")] * len(
                    sendable
                )
            self._slots.release()
            slot_held = False
            self.governor.answered(recipients)
            settlements = []
            for j, result in zip(sendable, results, strict=True):
                self._on_wire.pop(j.message.id, None)
                self._react(j, result)
                decision = decide(result, j.attempts, self.settings.retry, self._rand())
                self._count(j.message, decision.state, result)
                settlements.append(
                    Settlement(
                        id=j.message.id,
                        token=j.token,
                        state=decision.state,
                        ses_message_id=result.ses_message_id,
                        outcome=decision.outcome,
                        error=decision.error,
                        attempt_used=decision.attempt_used,
                        delay=decision.delay,
                    )
                )
            await asyncio.shield(asyncio.gather(*(self._settler.submit(st) for st in settlements)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("worker.send_task_failed", bulk=len(group), error=repr(exc))
            self._fail(exc)
        finally:
            if slot_held:  # not sent, or cut off: counted as answered (the safe side)
                self._slots.release()
                self.governor.answered(recipients)

    async def _prepare(self, job: ClaimedJob) -> ClaimedJob | None:
        """Render a campaign job; one that cannot be rendered fails (no send, SES not asked)."""
        assert self.campaigns is not None
        try:
            return await self.campaigns.prepare(job)
        except InputError as exc:
            await self._settler.submit(
                Settlement(
                    id=job.message.id,
                    token=job.token,
                    state="failed",
                    outcome="render_error",
                    error=str(exc),
                    attempt_used=True,
                )
            )
            self.counters.failed += 1
            log.warning("message.render_failed", message_id=job.message.id, error=str(exc))
            return None

    async def _account_pause(self, job: ClaimedJob, wait: float) -> None:
        """SES says the account is paused: hand everything back and stop claiming for a while."""
        held = [job, *self._buffer]
        self._buffer.clear()
        await self._release(held, wait)
        if self.drain:
            await self._wait_sends()
            self._end(EXIT_HELD, "SES reports the account's sending is paused; mail stays queued")
            return
        self._claim_paused_until = asyncio.get_running_loop().time() + wait
        await asyncio.sleep(wait)

    async def _quota_pause(
        self, job: ClaimedJob, reason: str | None, retry_at: float | None
    ) -> None:
        """The daily quota (x headroom) is spent: give back what we hold, wait or end."""
        loop = asyncio.get_running_loop()
        held = [job, *self._buffer]
        self._buffer.clear()
        wait = max(1.0, (retry_at or loop.time() + 1.0) - loop.time())
        await self._release(held, 0.0)
        if self.drain:
            await self._wait_sends()
            self._end(
                EXIT_QUOTA_SPENT,
                f"daily sending quota spent with mail still queued: {reason}",
            )
            return
        log.warning("worker.quota_wait", reason=reason, retry_in=round(wait, 1))
        self._claim_paused_until = loop.time() + wait
        await asyncio.sleep(wait)

    # -- one send -------------------------------------------------------------------------

    async def _send(self, job: ClaimedJob) -> None:
        msg = job.message
        slot_held = True
        try:
            # Tracked from before the launch: if shutdown cancels us mid-launch, it cannot know
            # whether the launch committed, and settles it accordingly (see _shutdown).
            self._on_wire[msg.id] = job
            if not await self._launcher.submit(job):
                self._on_wire.pop(msg.id, None)
                self.counters.lease_lost += 1
                log.warning("message.lease_lost", message_id=msg.id)
                return
            # Launch times, not completion times, measure the pace (latency shifts both ends).
            now = time.monotonic()
            if self.counters.first_send_at is None:
                self.counters.first_send_at = now
            self.counters.last_send_at = now
            self.counters.ses_calls += 1
            try:
                result = await self.ses.send(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the adapter classifies; anything else is a bug: in doubt
                result = SendResult(Outcome.IN_DOUBT, reason=f"unexpected error: {exc!r}")
            # max_in_flight bounds SES calls on the wire: writing the result (group commit,
            # up to settle_interval of linger) must not keep the next send waiting.
            self._slots.release()
            slot_held = False
            self.governor.answered(msg.recipient_count)
            self._react(job, result)
            decision = decide(result, job.attempts, self.settings.retry, self._rand())
            settlement = Settlement(
                id=msg.id,
                token=job.token,
                state=decision.state,
                ses_message_id=result.ses_message_id,
                outcome=decision.outcome,
                error=decision.error,
                attempt_used=decision.attempt_used,
                delay=decision.delay,
            )
            # The result is known from here on: shutdown must record it, not mark it in doubt.
            self._on_wire.pop(msg.id, None)
            self._count(msg, decision.state, result)
            # shield: a send that went out must get its result written even during shutdown.
            await asyncio.shield(self._settler.submit(settlement))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("worker.send_task_failed", message_id=msg.id, error=repr(exc))
            self._fail(exc)
        finally:
            if slot_held:  # not sent, or cut off: counted as answered (the safe side)
                self._slots.release()
                self.governor.answered(msg.recipient_count)

    def _react(self, job: ClaimedJob, result: SendResult) -> None:
        """Pacing and holds that follow from one result (the job's own fate is decide()'s)."""
        now = asyncio.get_running_loop().time()
        outcome = result.outcome
        c = self.counters
        c.attempts += 1
        if outcome is Outcome.THROTTLED:
            c.throttled += 1
            self.limiter.on_throttled()
        elif outcome is Outcome.DAILY_QUOTA:
            c.daily_quota += 1
            self.governor.on_daily_quota_error(now)
        elif outcome is Outcome.ACCOUNT_PAUSED:
            delay = self.settings.retry.account_paused_delay
            if self._hold_all_until < now:
                log.error("account.paused", reason=result.reason, code=result.code, hold=delay)
            self._hold_all_until = now + delay
        elif outcome is Outcome.CONFIG_ERROR:
            if job.campaign_id is not None and self.campaigns is not None:
                # Shared by every recipient: pause the campaign rather than fail them one by one.
                reason = f"SES configuration error: {result.code}: {result.reason}"
                task = asyncio.create_task(self.campaigns.pause(job.campaign_id, reason))
                self._side_tasks.add(task)
                task.add_done_callback(self._side_tasks.discard)
            key = _sender_key(job.message)
            delay = self.settings.retry.config_error_delay
            if self._held.get(key, 0.0) < now:
                log.error(
                    "sender.held",
                    from_addr=key[0],
                    configuration_set=key[1],
                    code=result.code,
                    reason=result.reason,
                    hold=delay,
                )
            self._held[key] = now + delay

    def _count(self, msg: OutgoingMessage, state: str, result: SendResult) -> None:
        c = self.counters
        msg_id = msg.id
        if state == "sent":
            c.sent += 1
            c.recipients_sent += msg.recipient_count
        elif state == "failed":
            c.failed += 1
            log.warning("message.failed", message_id=msg_id, code=result.code, reason=result.reason)
        elif state == "unknown":
            c.in_doubt += 1
            log.warning("message.in_doubt", message_id=msg_id, reason=result.reason)
        elif result.outcome is Outcome.TRANSIENT or result.outcome is Outcome.IN_DOUBT:
            c.retried += 1

    # -- database batches -----------------------------------------------------------------

    async def _launch_batch(self, jobs: Sequence[ClaimedJob]) -> list[bool]:
        launched = await self._db("launch", lambda: self.queue.launch(self.owner, jobs))
        return [job.message.id in launched for job in jobs]

    async def _settle_batch(self, settlements: Sequence[Settlement]) -> list[bool]:
        recorded = await self._db("settle", lambda: self.queue.settle(settlements))
        lost = [s.id for s in settlements if s.id not in recorded]
        if lost:
            self.counters.lease_lost += len(lost)
            log.warning("message.result_not_recorded", message_ids=lost[:20], count=len(lost))
        return [s.id in recorded for s in settlements]

    async def _release(self, jobs: Sequence[ClaimedJob], delay: float) -> None:
        if jobs:
            ids = [j.message.id for j in jobs]
            await self._db("release", lambda: self.queue.release(self.owner, ids, delay))
        if any(j is self._current for j in jobs):
            self._current = None

    # -- background loops -----------------------------------------------------------------

    async def _claim_loop(self) -> None:
        """Keep the buffer topped up; in drain mode, notice when nothing is left."""
        s = self.settings
        loop = asyncio.get_running_loop()
        while self._finish is None:
            await self._buffer_low.wait()
            self._buffer_low.clear()
            pause = self._claim_paused_until - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
                self._buffer_low.set()
                continue
            room = self._target() - len(self._buffer)
            if room <= 0:
                continue
            # shield: if shutdown cancels us now, the claim still completes and _shutdown
            # releases what it got, instead of leaving those jobs claimed until lease expiry.
            self._wake.clear()  # a NOTIFY from now on means: look again
            self._claiming = asyncio.ensure_future(self._claim(min(room, s.claim_batch)))
            jobs = await asyncio.shield(self._claiming)
            self._claiming = None
            if jobs:
                jobs = await self._without_suppressed(jobs)
            if jobs:
                if self._buffer and jobs[0].priority > self._buffer[-1].priority:
                    # Higher-priority mail (transactional) jumps the read-ahead of a campaign;
                    # the sort is stable, so the order within a priority is kept.
                    merged = sorted([*self._buffer, *jobs], key=lambda j: -j.priority)
                    self._buffer.clear()
                    self._buffer.extend(merged)
                else:
                    self._buffer.extend(jobs)
                self._buffer_ready.set()
                if len(jobs) == min(room, s.claim_batch) and len(self._buffer) <= self._low_water():
                    self._buffer_low.set()
                continue
            if self.drain:
                if not self._buffer and await self._drained():
                    return
                if self._buffer or self._current is not None or self._sends:
                    # Nothing claimable, but what is buffered or on the wire decides whether
                    # the drain is over: look again as soon as it is done, not a poll later.
                    await self._until_idle(s.poll_interval)
                    self._buffer_low.set()
                    continue
            with contextlib.suppress(TimeoutError):  # new mail (NOTIFY) or the next poll
                await asyncio.wait_for(self._wake.wait(), s.poll_interval)
            self._buffer_low.set()

    async def _db(self, what: str, op: Callable[[], Awaitable[_R]]) -> _R:
        """A statement that rides out a Postgres restart (DatabaseError after the timeout)."""
        return await while_down(op, what=what, give_up_after=self.settings.outage_timeout)

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        """Claim, riding out an outage. A claim cut off mid-way may have committed without us
        hearing the answer: before claiming again, jobs claimed in our name that we do not hold
        go back to the queue (they were never seen, so never sent)."""
        cut = False

        async def attempt() -> list[ClaimedJob]:
            nonlocal cut
            try:
                if cut:
                    orphans = await self.queue.release_orphans(self.owner, self._held_ids())
                    if orphans:
                        log.warning("queue.orphans_released", count=orphans)
                    cut = False
                return await self.queue.claim(self.owner, limit)
            except Exception as exc:
                cut = cut or connection_lost(exc)
                raise

        return await self._db("claim", attempt)

    def _held_ids(self) -> list[int]:
        """Ids of the claimed jobs this worker holds in memory (buffered, being dispatched,
        launching)."""
        ids = {j.message.id for j in self._buffer}
        ids.update(j.message.id for j in self._current_group)
        ids.update(self._on_wire)
        if self._current is not None:
            ids.add(self._current.message.id)
        return list(ids)

    async def _until_idle(self, longest: float) -> None:
        """Wait (at most `longest` seconds) until nothing is buffered, being dispatched or sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + longest
        while self._buffer or self._current is not None or self._sends:
            left = deadline - loop.time()
            if left <= 0:
                return
            if self._sends:
                await asyncio.wait(set(self._sends), timeout=left)
            else:
                await asyncio.sleep(min(left, 0.005))

    async def _without_suppressed(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Drop suppressed recipients (one query per claim); a job left with none is failed."""
        addresses = [a for j in jobs for a in (*j.message.to, *j.message.cc, *j.message.bcc)]
        suppressed = await self._db(
            "suppression check", lambda: self.queue.suppressed_among(addresses)
        )
        if not suppressed:
            return jobs
        keep: list[ClaimedJob] = []
        for job in jobs:
            msg = job.message

            def ok(address: str) -> bool:
                return suppression_key(address) not in suppressed

            to = tuple(filter(ok, msg.to))
            cc = tuple(filter(ok, msg.cc))
            bcc = tuple(filter(ok, msg.bcc))
            if len(to) + len(cc) + len(bcc) == msg.recipient_count:
                keep.append(job)
            elif to or cc or bcc:
                log.info("message.recipients_suppressed", message_id=msg.id)
                trimmed = dataclasses.replace(msg, to=to, cc=cc, bcc=bcc)
                keep.append(dataclasses.replace(job, message=trimmed))
            else:
                self.counters.failed += 1
                log.info("message.suppressed", message_id=msg.id)
                task = asyncio.create_task(
                    self._settler.submit(
                        Settlement(
                            id=msg.id,
                            token=job.token,
                            state="failed",
                            outcome="suppressed",
                            error="every recipient is on the suppression list (bounced, "
                            "complained or added by hand); not sent",
                        )
                    )
                )
                self._side_tasks.add(task)
                task.add_done_callback(self._side_tasks.discard)
        return keep

    async def _drained(self) -> bool:
        """Drain mode: True (and the run ends) once nothing more will be sent by waiting."""
        if self._current is not None or self._sends:
            return False
        pending = await self._db("drain check", lambda: self.queue.pending(0.0))
        if pending.waiting == 0:
            later = (
                f"; {pending.scheduled_later} scheduled for later (next at {pending.next_run_at})"
                if pending.scheduled_later
                else ""
            )
            self._end(EXIT_OK, f"drained: nothing left to send{later}")
            return True
        held = await self._db("drain check", self.queue.held)
        if held.count and held.count >= pending.waiting:
            self._end(
                EXIT_HELD,
                f"{held.count} messages are held by a sending error that needs fixing "
                f"({held.reason}); fix it, then run again",
            )
            return True
        return False

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        """Keep our lease; recover the leases of workers that went silent (any worker does)."""
        s = self.settings
        while not stop.is_set():
            if self._listener is not None:  # (again, if a restart cut its connection)
                await self._listener.ensure()
            if not await self._db("heartbeat", lambda: self.queue.heartbeat(self.owner)):
                log.warning("worker.lease_lost", worker_id=str(self.owner))
                await self._db(
                    "heartbeat", lambda: self.queue.register_worker(self.owner, s.lease_seconds)
                )
            recovered = await self._db("recovery", lambda: self.queue.recover(s.retry.in_doubt))
            if recovered.requeued or recovered.in_doubt:
                log.warning(
                    "queue.recovered",
                    requeued=recovered.requeued,
                    in_doubt=recovered.in_doubt,
                    policy=s.retry.in_doubt,
                )
            if self.campaigns is not None:  # whichever daemon notices first
                await self._db("campaign check", self.campaigns.finish_done)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), s.heartbeat_seconds)

    async def _share_loop(self, stop: asyncio.Event) -> None:
        """Split the account's rate with the other processes that have mail to send.

        Every SHARE_INTERVAL: mark this worker active (for SHARE_TTL) while it has mail, count
        the others that are active, and pace at 1 / (them + us). An idle worker takes nothing;
        a dead one's part comes back when its mark lapses (within SHARE_TTL).
        """
        while not stop.is_set():
            self._share_wake.clear()  # a NOTIFY from now on means: count again
            busy = bool(self._buffer or self._current is not None or self._sends)
            try:
                await self._update_share(busy)
            except Exception as exc:
                if not connection_lost(exc):
                    raise  # keep the last share while the database is away
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._share_wake.wait(), SHARE_INTERVAL)

    async def _update_share(self, busy: bool, *, joining: bool = False) -> None:
        others = await self.queue.rate_share(self.owner, busy, SHARE_TTL)
        self.limiter.set_share(1.0 / (others + 1))
        self.governor.set_share(1.0 / (others + 1))  # and that part of the day's room left
        if joining:
            # No saved-up burst at start: processes that start together (or join others that
            # send) would otherwise burst together, past what SES tolerates.
            self.limiter.spend_burst()

    # -- shutdown -------------------------------------------------------------------------

    async def _wait_sends(self, grace: float | None = None) -> bool:
        if not self._sends:
            return True
        _, pending = await asyncio.wait(set(self._sends), timeout=grace)
        return not pending

    async def _shutdown(self) -> None:
        """Release what was not sent; give sends on the wire the grace period; record the rest.

        A database failure here is logged, not raised: what could not be written is recovered
        by the next worker once our lease expires (claimed -> queued, in flight -> in doubt).
        """
        unsent = list(self._buffer)
        self._buffer.clear()
        if self._claiming is not None:
            unsent += await self._quietly("claim", self._claiming) or []
            self._claiming = None
        if self._current is not None:
            unsent.append(self._current)
            self._current = None
        unsent += [j for j in self._current_group if not any(j is u for u in unsent)]
        self._current_group = []
        if unsent:
            await self._quietly("release", self._release(unsent, 0.0))
            log.info("worker.released", count=len(unsent))
        if not await self._wait_sends(self.settings.shutdown_grace):
            log.warning("worker.grace_expired", in_flight=len(self._sends))
            for task in list(self._sends):
                task.cancel()
            await asyncio.gather(*self._sends, return_exceptions=True)
        leftovers = list(self._on_wire.values())
        self._on_wire.clear()
        if leftovers:
            # Cut off mid-launch or mid-call. Still `claimed` (launch never committed): release.
            # `in_flight`: handed to SES and never heard back: in doubt, by the same policy
            # (the settle's state guard leaves the released ones alone).
            await self._quietly("release", self._release(leftovers, 0.0))
            policy = self.settings.retry
            state: SettleState = "queued" if policy.in_doubt == "resend" else "unknown"
            settlements = [
                Settlement(
                    id=job.message.id,
                    token=job.token,
                    state=state,
                    outcome=Outcome.IN_DOUBT.value,
                    error="shutdown grace period ended while the message was being sent",
                    attempt_used=True,
                )
                for job in leftovers
            ]
            done = await self._quietly("settle", self.queue.settle(settlements))
            self.counters.in_doubt += len(done or ())
        if self._side_tasks:  # they may still submit results (a suppressed job, say)
            await asyncio.gather(*self._side_tasks, return_exceptions=True)
        await self._quietly("settle", self._settler.close())
        await self._quietly("launch", self._launcher.close())

    async def _quietly(self, what: str, op: Awaitable[_R]) -> _R | None:
        try:
            return await op
        except Exception as exc:
            log.error("worker.shutdown_write_failed", operation=what, error=repr(exc))
            return None


def _sender_key(msg: OutgoingMessage) -> tuple[str, str | None]:
    return (msg.from_addr, msg.configuration_set)


def database_refusal(exc: BaseException) -> BaseException:
    """A server-side refusal Postgres gives for the whole system (disk full, out of memory,
    read-only, too many connections) as a DatabaseError a person can act on; others as is."""
    if isinstance(exc, asyncpg.PostgresError) and str(exc.sqlstate or "")[:2] in _SYSTEM_CLASSES:
        hint = getattr(exc, "hint", None)
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        return DatabaseError(
            f"Postgres refused a write: {message}{f' ({hint})' if hint else ''}. The daemon "
            "stopped; nothing queued is lost. Fix the database, then start it again"
        )
    return exc


# SQLSTATE classes of a database that cannot take writes: 53 insufficient resources (disk full,
# out of memory, too many connections), 25 read-only transaction (a standby), 58 system error.
_SYSTEM_CLASSES = frozenset({"53", "25", "58"})


# A passing SES hiccup at start (HTTP 500, throttled, a reset) is retried this many times, with
# growing delays (about 10 s in all); credentials or access problems fail at once.
FIRST_READING_TRIES = 6
_PASSING = (Outcome.TRANSIENT, Outcome.THROTTLED, Outcome.IN_DOUBT)


async def first_reading(
    ses: Sender, governor: QuotaGovernor, *, tries: int = FIRST_READING_TRIES, delay: float = 0.3
) -> Quota:
    """Read GetSendQuota once before sending: the governor admits nothing without a reading."""
    loop = asyncio.get_running_loop()
    for attempt in range(1, tries + 1):
        try:
            quota = await ses.get_send_quota()
        except SesError as exc:
            if exc.outcome not in _PASSING or attempt == tries:
                raise
            log.warning("quota.read_failed", attempt=attempt, error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay *= 2
            continue
        governor.observe(quota, loop.time())
        return quota
    raise AssertionError("unreachable")

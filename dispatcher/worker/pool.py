"""The worker: a short coordinator of parts that each do one job.

    intake (claim loop, buffer, suppression) -> dispatch loop: campaign plan -> admission
    (holds, daily quota, slot, campaign share, rate) -> sending (launch, SES, learn, decide)
    -> ledger (what is on the wire; launch and settle group commits)
    beside them: upkeep (lease, recovery, campaigns), rate share, quota sync and leader

`run()` starts the parts in order and stops them in reverse; shutdown asks the parts what
they hold. A job becomes `in_flight` only once it is admitted, right before the SES call, so a
crash leaves in doubt only the sends that were on the wire.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog

from dispatcher.clock import Clock
from dispatcher.db.outage import StoppedDuringOutage, connection_lost, while_down
from dispatcher.domain.retry import RetryPolicy
from dispatcher.errors import DatabaseError
from dispatcher.pacing import QuotaGovernor, RecipientLimiter
from dispatcher.pacing.settings import PacingSettings
from dispatcher.queue.retrying import RetryingStore
from dispatcher.queue.store import JobStore
from dispatcher.worker.admission import Admission
from dispatcher.worker.counters import EXIT_HELD, EXIT_OK, EXIT_QUOTA_SPENT, Counters, RunReport
from dispatcher.worker.dispatch import Campaigns, Dispatch
from dispatcher.worker.intake import Intake
from dispatcher.worker.ledger import Ledger
from dispatcher.worker.listener import Listener
from dispatcher.worker.quota_store import QUOTA_CHANNEL
from dispatcher.worker.refusal import database_refusal
from dispatcher.worker.sending import Sender, Sending
from dispatcher.worker.share import SHARE_CHANNEL, RateShare
from dispatcher.worker.shared_quota import (
    Lock,
    QuotaBoard,
    apply_reading,
    first_reading,
    run_quota_leader,
    run_quota_sync,
)
from dispatcher.worker.upkeep import Upkeep

__all__ = [
    "EXIT_HELD",
    "EXIT_OK",
    "EXIT_QUOTA_SPENT",
    "Campaigns",
    "Counters",
    "PoolSettings",
    "RunReport",
    "Sender",
    "Shared",
    "WorkerPool",
    "first_reading",
]

log = structlog.get_logger()

WAKE_CHANNEL = "dispatcher_jobs"  # NOTIFYed by every statement that inserts jobs (0006_outbox)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How the pool claims, sends and shuts down: built from the [queue] and [delivery] config
    (`app.pool_settings`), where the defaults live."""

    claim_batch: int
    max_in_flight: int  # ceiling of the send slots, which follow rate x SES latency below it
    lease_seconds: float
    heartbeat_seconds: float
    poll_interval: float
    listen: bool  # wake on NOTIFY dispatcher_jobs instead of waiting for the next poll
    shutdown_grace: float
    settle_batch: int
    settle_interval: float
    campaign_rate_share: float  # of the send rate; the rest is kept for other mail
    outage_timeout: float  # seconds of Postgres outage ridden out before stopping
    retry: RetryPolicy


@dataclass(frozen=True, slots=True)
class Shared:
    """What the processes of one account share besides the jobs: the daily quota's board and
    leader lock, and (optionally) a LISTEN connection that sets `wakes[channel]` on NOTIFY."""

    quota_board: QuotaBoard
    leader_lock: Lock
    listen: Callable[[dict[str, asyncio.Event]], Listener] | None = None


class WorkerPool:
    """Runs until `stop` is set, or (drain mode) until nothing is left to send."""

    def __init__(
        self,
        store: JobStore,
        ses: Sender,
        limiter: RecipientLimiter,
        governor: QuotaGovernor,
        settings: PoolSettings,
        shared: Shared,
        *,
        stop: asyncio.Event,
        drain: bool = False,
        pacing: PacingSettings | None = None,
        rand: Callable[[], float] = random.random,
        campaigns: Campaigns | None = None,
        wall: Clock = time.time,
    ) -> None:
        self.owner = uuid.uuid4()
        self.counters = Counters()
        self.settings = settings
        self.stop = stop
        self.drain = drain
        self._raw_store = store
        # Retried through an outage, but not once a stop is asked for: shutdown must not wait
        # out the database (what it cannot write is recovered when our lease expires).
        self._store = RetryingStore(store, give_up_after=settings.outage_timeout, stop=stop)
        self._ses = ses
        self._shared = shared
        self._campaigns = campaigns
        self._pacing = pacing if pacing is not None else PacingSettings()
        self._finish: tuple[int, str] | None = None
        self._fatal: BaseException | None = None
        self._unrecorded = False  # a shutdown write failed: the next worker recovers the rest
        wakes = {WAKE_CHANNEL: asyncio.Event(), SHARE_CHANNEL: asyncio.Event()}
        wakes[QUOTA_CHANNEL] = asyncio.Event()
        self._wakes = wakes
        s = settings
        self.admission = Admission(
            limiter,
            governor,
            s.retry,
            max_in_flight=s.max_in_flight,
            campaign_rate_share=s.campaign_rate_share,
            pacing=self._pacing,
            wall=wall,
        )
        self.ledger = Ledger(
            self._store,
            self.owner,
            self.counters,
            settle_batch=s.settle_batch,
            settle_interval=s.settle_interval,
            fail=self._fail,
        )
        self.intake = Intake(
            self._store,
            self.owner,
            self.ledger,
            self.counters,
            claim_batch=s.claim_batch,
            poll_interval=s.poll_interval,
            rate=lambda: limiter.rate,
            drain=drain,
            end=self._end,
            wake=wakes[WAKE_CHANNEL],
        )
        self._store.holding = self.intake.held_ids
        self.sending = Sending(
            ses,
            self.admission,
            self.ledger,
            self.counters,
            s.retry,
            pause_campaign=campaigns.pause if campaigns is not None else None,
            fail=self._fail,
            rand=rand,
        )
        self.share = RateShare(
            store,  # not retried: the share keeps its last value while the database is away
            self.owner,
            limiter,
            governor,
            busy=lambda: self.intake.busy,
            wake=wakes[SHARE_CHANNEL],
            bulk_calls=self.admission.bulk_calls,
        )
        self._listener = shared.listen(wakes) if shared.listen and s.listen else None
        self.dispatch = Dispatch(
            self._store,
            self.owner,
            self.intake,
            self.admission,
            self.sending,
            self.ledger,
            self.counters,
            campaigns=campaigns,
            drain=drain,
            end=self._end,
        )
        self.upkeep = Upkeep(
            self._store,
            self.owner,
            lease_seconds=s.lease_seconds,
            heartbeat_seconds=s.heartbeat_seconds,
            in_doubt=s.retry.in_doubt,
            listener=self._listener,
            finish_campaigns=campaigns.finish_done if campaigns is not None else None,
            on_recovered=self.intake.claim_now,
        )

    def _rate(self) -> float:
        return self.limiter.rate

    @property
    def limiter(self) -> RecipientLimiter:
        return self.admission.limiter

    @property
    def governor(self) -> QuotaGovernor:
        return self.admission.governor

    # -- running --------------------------------------------------------------------------

    async def run(self) -> RunReport:
        """Send until stopped or drained; always leaves every claimed job settled or released."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Every log line of this worker (and of the tasks it starts) names it.
        structlog.contextvars.bind_contextvars(worker_id=str(self.owner))
        log.info(
            "worker.started",
            max_in_flight=self.settings.max_in_flight,
            rate=round(self.limiter.rate, 3),
            drain=self.drain,
        )
        try:
            async with AsyncExitStack() as parts:  # stopped in reverse order of start
                # The lock before the row: a registered worker whose lock is free is dead.
                await self._store.hold_session(self.owner)
                parts.push_async_callback(self._raw_store.end_session, self.owner)
                await self._store.register_worker(self.owner, self.settings.lease_seconds)
                parts.push_async_callback(self._unregister)
                if self._listener is not None:
                    parts.push_async_callback(self._listener.close)
                parts.callback(self.admission.close)
                # Our part of the rate before the first send; a daemon still starting rides out
                # an outage here as the rest of the worker does.
                await while_down(
                    self.share.join,
                    what="rate share",
                    give_up_after=self.settings.outage_timeout,
                    stop=self.stop,
                )
                await self._sync_quota()  # the day's quota as every process counts it
                self.ledger.start()
                self._start_background(parts, asyncio.Event())
                parts.push_async_callback(self._after_sends)
                parts.push_async_callback(self._shutdown)
                await self._dispatch_until_stopped()
            if self._fatal is not None:
                raise self._fatal
            if self._unrecorded:
                raise DatabaseError(
                    "stopped while the database was unreachable: what this worker held could "
                    "not be recorded and is recovered by the next worker when its lease expires "
                    f"(after {self.settings.lease_seconds:g} s); nothing queued is lost"
                )
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
        finally:
            structlog.contextvars.unbind_contextvars("worker_id")

    def _start_background(self, parts: AsyncExitStack, stop: asyncio.Event) -> None:
        """The loops beside the dispatch loop; they stop (in reverse) after the sends."""
        board, owner = self._shared.quota_board, self.owner
        loops: list[tuple[str, Awaitable[None]]] = [
            ("heartbeat", self.upkeep.run(stop)),
            ("rate-share", self.share.run(stop)),
            (
                "quota-sync",
                run_quota_sync(
                    board,
                    owner,
                    self.governor,
                    self.limiter,
                    stop,
                    wake=self._wakes[QUOTA_CHANNEL],
                ),
            ),
            (
                "quota-leader",
                run_quota_leader(
                    self._shared.leader_lock,
                    board,
                    owner,
                    self._ses.get_send_quota,
                    self.governor,
                    self.limiter,
                    stop,
                    settings=self._pacing,
                ),
            ),
        ]
        if self._campaigns is not None:  # campaign recipients become jobs ahead of the claim
            loops.append(("materialiser", self._campaigns.materialise(stop, self._rate)))
        tasks = [asyncio.create_task(self._guarded(coro, name), name=name) for name, coro in loops]

        async def stop_loops() -> None:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        parts.push_async_callback(stop_loops)

    async def _dispatch_until_stopped(self) -> None:
        claimer = asyncio.create_task(self._guarded(self.intake.run(), "claimer"), name="claimer")
        dispatch = asyncio.create_task(self.dispatch.run(), name="dispatch")
        stop_wait = asyncio.create_task(self.stop.wait(), name="stop-wait")
        try:
            await asyncio.wait({dispatch, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
            if not dispatch.done():
                log.info("worker.stopping")
                dispatch.cancel()
            try:
                await dispatch
            except asyncio.CancelledError:
                pass
            except StoppedDuringOutage as exc:
                log.warning("worker.task_stopped", task="dispatch", error=str(exc))
                self._unrecorded = True
            except Exception as exc:
                log.error("worker.task_failed", task="dispatch", error=repr(exc))
                self._fail(exc)
            claimer.cancel()  # a claim statement already running finishes (shielded)
            await asyncio.gather(claimer, return_exceptions=True)

    async def _guarded(self, coro: Awaitable[None], name: str) -> None:
        """A part's loop; if it dies, the daemon stops loudly instead of limping."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except StoppedDuringOutage as exc:  # asked to stop: not a failure of the part
            log.warning("worker.task_stopped", task=name, error=str(exc))
            self._unrecorded = True
        except BaseException as exc:
            log.error("worker.task_failed", task=name, error=repr(exc))
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, StoppedDuringOutage):  # asked to stop: reported once, at the end
            self._unrecorded = True
            return
        if self._fatal is None:
            self._fatal = database_refusal(exc)
        self._end(1, f"stopped on an error: {exc}")
        self.stop.set()

    def _end(self, code: int, reason: str) -> None:
        if self._finish is None:
            self._finish = (code, reason)
        self.intake.end()

    # -- shutdown -------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Release what was not sent; give sends on the wire the grace period; record the rest.

        A database failure here is logged, not raised: what could not be written is recovered
        by the next worker once our lease expires (claimed -> queued, in flight -> in doubt).
        """
        unsent = await self.intake.unsent()
        if unsent:
            try:
                await self._store.release(self.owner, [j.id for j in unsent], 0.0)
                log.info("worker.released", count=len(unsent))
            except Exception as exc:
                log.error("worker.shutdown_write_failed", operation="release", error=repr(exc))
                self._unrecorded = True
        if not await self.ledger.close(self.settings.shutdown_grace, self.settings.retry):
            self._unrecorded = True

    async def _after_sends(self) -> None:
        """Our last sends, for the processes that go on; a drain that sent the last of a
        campaign ends it."""
        try:
            await self._sync_quota()
            if self._campaigns is not None:
                await self._campaigns.finish_done()
        except Exception as exc:
            log.error("worker.shutdown_write_failed", operation="quota sync", error=repr(exc))
            self._unrecorded |= isinstance(exc, StoppedDuringOutage)

    async def _sync_quota(self) -> None:
        board, governor = self._shared.quota_board, self.governor
        reading = await while_down(
            lambda: board.sync(self.owner, governor.spent_by_epoch()),
            what="quota sync",
            give_up_after=self.settings.outage_timeout,
            stop=self.stop,
        )
        apply_reading(governor, self.limiter, reading, asyncio.get_running_loop().time())

    async def _unregister(self) -> None:
        try:
            await self._raw_store.unregister_worker(self.owner)
        except Exception as exc:
            log.error("worker.shutdown_write_failed", operation="unregister", error=repr(exc))
            self._unrecorded |= connection_lost(exc)

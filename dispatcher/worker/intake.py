"""Intake: keep a buffer of claimed jobs topped up, drop suppressed recipients, and notice (in
drain mode) when nothing more will come. Owns every job claimed but not yet handed over."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import uuid
from collections import deque
from collections.abc import Callable, Sequence

import structlog

from dispatcher.clock import wait_event
from dispatcher.domain.address import suppression_key_is_lowercase
from dispatcher.domain.jobs import ClaimedJob, Settlement
from dispatcher.domain.validate import suppression_key
from dispatcher.queue.store import JobStore
from dispatcher.worker.counters import EXIT_HELD, EXIT_OK, Counters
from dispatcher.worker.lane_gate import Lanes
from dispatcher.worker.ledger import Ledger

__all__ = ["Intake"]

log = structlog.get_logger()

# Claims in flight at once. One at a time, a worker takes at most claim_batch jobs per round
# trip of claim + suppression lookup (~100 per 5-12 ms), less than it can send when SES is
# fast; a second claim runs while the first is on its way (each skips the rows the other has
# locked), still within the read-ahead (`_target`): jobs buffered plus jobs being claimed.
CLAIMS_IN_FLIGHT = 2
# Seconds of sending (at this process's rate) kept claimed ahead. A process killed holds this
# much until it is found dead (about a second); the survivors then send it on top of their own:
# half a second keeps all of it sent within 2 s of the kill at 200/s (bench.kill).
READ_AHEAD_SECONDS = 0.5

_SUPPRESSED = (
    "every recipient is on the suppression list (bounced, complained or added by hand); not sent"
)


class Intake:
    """The claim loop and the buffer it fills; `next()` hands jobs to the dispatch loop."""

    def __init__(
        self,
        store: JobStore,
        owner: uuid.UUID,
        ledger: Ledger,
        counters: Counters,
        *,
        claim_batch: int,
        poll_interval: float,
        rate: Callable[[], float],
        drain: bool,
        end: Callable[[int, str], None],
        wake: asyncio.Event,
    ) -> None:
        self._store = store
        self._owner = owner
        self._ledger = ledger
        self._counters = counters
        self._claim_batch = claim_batch
        self._poll_interval = poll_interval
        self._rate = rate  # recipients/s now: how far ahead to claim
        self._drain = drain
        self._end = end
        self._wake = wake  # set by NOTIFY dispatcher_jobs: new mail to claim
        self._buffer: deque[ClaimedJob] = deque()
        self._ready = asyncio.Event()  # the buffer has jobs, or the run ends
        self._low = asyncio.Event()  # the claimer should top the buffer up
        self._urgent = 0  # claim_now: jobs to claim beyond the read-ahead and put first
        self._in_hand: list[ClaimedJob] = []  # taken from the buffer, not handed over yet
        # claims in flight: the jobs, and the suppressed keys found with them (`claim_screened`)
        self._claims: set[asyncio.Future[tuple[list[ClaimedJob], frozenset[str] | None]]] = set()
        self._incoming = 0  # jobs those claims may bring (their limits)
        self._paused_until = 0.0  # loop time; no claims before
        self._ended = False
        self._low_mark = 0  # top the buffer up when it is down to this (half the target)
        # Provider lanes (worker.lane_gate), set by the composition root when configured: mail
        # whose provider's lane is not ready waits there, claimed, while other mail goes on.
        self.lanes: Lanes | None = None

    def use_lanes(self, lanes: Lanes) -> None:
        self.lanes = lanes
        lanes.on_ready = self._ready.set

    # -- the dispatch loop's side ------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Has mail: buffered, in hand or on the wire."""
        parked = self.lanes is not None and self.lanes.holding
        return bool(self._buffer or self._in_hand or self._ledger.busy or parked)

    async def next(self) -> ClaimedJob | None:
        """The next job to send (now in hand), or None once the run ends."""
        while not self._buffer:
            if self.lanes is not None and (parked := self.lanes.pop_ready()) is not None:
                self._in_hand.append(parked)
                return parked
            if self._ended:
                return None
            self._ready.clear()
            self._low.set()
            await self._ready.wait()
        if self.lanes is not None and (parked := self.lanes.pop_ready()) is not None:
            self._in_hand.append(parked)  # parked earlier than anything buffered
            return parked
        job = self._buffer.popleft()
        self._in_hand.append(job)
        if len(self._buffer) <= self._low_mark:
            self._low.set()
        return job

    def next_of_campaign(self, campaign_id: int) -> ClaimedJob | None:
        """The next buffered job if it belongs to `campaign_id` (a bulk group's next entry)."""
        if self._buffer and self._buffer[0].campaign_id == campaign_id:
            job = self._buffer.popleft()
            self._in_hand.append(job)
            return job
        return None

    def handed_over(self, jobs: Sequence[ClaimedJob]) -> None:
        """These jobs left our hands (launched, settled or released)."""
        if len(jobs) == 1 and self._in_hand and self._in_hand[0] is jobs[0]:
            del self._in_hand[0]  # the common case: the oldest job in hand, alone
            return
        gone = {id(j) for j in jobs}
        self._in_hand = [j for j in self._in_hand if id(j) not in gone]

    def swap(self, old: ClaimedJob, new: ClaimedJob) -> None:
        """A job in hand was replaced by its rendered form."""
        self._in_hand = [new if j is old else j for j in self._in_hand]

    def put_back(self, jobs: Sequence[ClaimedJob]) -> None:
        """Jobs in hand that cannot go now go back to the front of the buffer, in order."""
        self.handed_over(jobs)
        self._buffer.extendleft(reversed(jobs))

    def take_all(self) -> list[ClaimedJob]:
        """Everything buffered and in hand (to give back when sending pauses)."""
        jobs = [*self._in_hand, *self._buffer]
        if self.lanes is not None:
            jobs += self.lanes.take_parked()
            self.lanes.forget(jobs)
        self._in_hand.clear()
        self._buffer.clear()
        return jobs

    def claim_now(self, recovered: int) -> None:
        """`recovered` jobs were just taken back from a dead worker: claim them at once, past
        the read-ahead if need be, and send them before what is buffered (they waited longest)."""
        self._urgent += recovered
        self._low.set()

    def pause(self, seconds: float) -> None:
        """No claims for `seconds` (the account is paused or the quota is spent)."""
        self._paused_until = asyncio.get_running_loop().time() + seconds

    def end(self) -> None:
        """The run ends: `next()` returns None once the buffer is empty."""
        self._ended = True
        self._ready.set()

    async def unsent(self) -> list[ClaimedJob]:
        """At shutdown (after the claim loop stopped): every job we hold that was not handed
        over, including the result of a claim still in progress."""
        jobs = self.take_all()
        for claiming in list(self._claims):
            with contextlib.suppress(Exception):
                jobs += (await claiming)[0]
        self._claims.clear()
        return jobs

    def held_ids(self) -> list[int]:
        """Ids of the claimed jobs this worker holds (buffered, in hand, on the wire)."""
        ids = {j.id for j in self._buffer}
        ids.update(j.id for j in self._in_hand)
        ids.update(self._ledger.ids())
        if self.lanes is not None:
            ids.update(self.lanes.held_ids())
        return list(ids)

    # -- the claim loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the buffer topped up (CLAIMS_IN_FLIGHT claim loops); in drain mode, notice when
        nothing is left. Ends when a loop ends (drained) or fails (raised here)."""
        loops = [asyncio.ensure_future(self._claim_loop()) for _ in range(CLAIMS_IN_FLIGHT)]
        try:
            await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for loop in loops:
                loop.cancel()
            ended = await asyncio.gather(*loops, return_exceptions=True)
        for result in ended:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def _claim_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._ended:
            await self._low.wait()
            self._low.clear()
            pause = self._paused_until - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
                self._low.set()
                continue
            target = self._target()
            self._low_mark = target // 2  # (the rate may have moved since the last claim)
            # Jobs buffered and being claimed: a claim starts once they are down to the low
            # mark (room for a full claim), or at once for recovered mail (`claim_now`).
            ahead = len(self._buffer) + self._incoming
            if ahead > self._low_mark and not self._urgent:
                continue
            urgent = min(self._urgent, self._claim_batch)
            room = max(0, target - ahead) + urgent
            if room <= 0:
                continue
            limit = min(room, self._claim_batch)
            self._urgent -= urgent
            # shield: if shutdown cancels us now, the claim still completes and `unsent`
            # returns what it got, instead of leaving those jobs claimed until lease expiry.
            self._wake.clear()  # a NOTIFY from now on means: look again
            claiming = asyncio.ensure_future(self._store.claim_screened(self._owner, limit))
            self._claims.add(claiming)
            self._incoming += limit
            jobs, suppressed = await asyncio.shield(claiming)
            claimed = len(jobs)
            if jobs:  # (a cancel here finds them in _claims still: `unsent` releases them)
                jobs = await self._without_suppressed(jobs, suppressed)
            self._claims.discard(claiming)
            self._incoming -= limit
            if urgent and claimed < limit:
                self._urgent = 0  # nothing more to claim now: what was recovered is in
            if self._urgent:
                self._low.set()
            if jobs:
                self._add(jobs, first=urgent > 0)
            if claimed == limit:
                self._low.set()  # (looks again: still at the low mark, or recovered mail)
                continue
            if self._incoming:
                continue  # the other claim's answer decides whether more is coming
            if jobs:
                continue
            if self._drain:
                if not self._buffer and await self._drained():
                    return
                if self.busy:
                    # Nothing claimable, but what is buffered or on the wire decides whether
                    # the drain is over: look again as soon as it is done, not a poll later.
                    await self._until_idle(self._poll_interval)
                    self._low.set()
                    continue
            await wait_event(self._wake, self._poll_interval)  # new mail (NOTIFY) or a poll
            self._low.set()

    def _add(self, jobs: list[ClaimedJob], *, first: bool = False) -> None:
        if first and self._buffer:
            # Recovered mail goes before the read-ahead of its priority (stable sort).
            merged = sorted([*jobs, *self._buffer], key=lambda j: -j.priority)
            self._buffer.clear()
            self._buffer.extend(merged)
        elif self._buffer and jobs[0].priority > self._buffer[-1].priority:
            # Higher-priority mail (transactional) jumps the read-ahead of a campaign; the
            # sort is stable, so the order within a priority is kept.
            merged = sorted([*self._buffer, *jobs], key=lambda j: -j.priority)
            self._buffer.clear()
            self._buffer.extend(merged)
        else:
            self._buffer.extend(jobs)
        self._ready.set()

    def _target(self) -> int:
        """Jobs to keep claimed ahead: half a second of sending, at most 2 x claim_batch (what
        a process that dies strands until it is found dead: the survivors must send it on top
        of their own, so less is sent late; two claims may be on their way at once)."""
        want = max(16, math.ceil(self._rate() * READ_AHEAD_SECONDS))
        return min(2 * self._claim_batch, want)

    async def _until_idle(self, longest: float) -> None:
        """Wait (at most `longest` seconds) until nothing is buffered, in hand or on the wire."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + longest
        while self.busy and (left := deadline - loop.time()) > 0:
            if self._ledger.sending:
                await self._ledger.wait(left)
            elif self._ledger.busy:  # results not written yet: they decide the drain
                await self._ledger.written(left)
            else:
                await asyncio.sleep(min(left, 0.005))

    async def _without_suppressed(
        self, jobs: list[ClaimedJob], found: frozenset[str] | None
    ) -> list[ClaimedJob]:
        """Drop suppressed recipients; a job left with none is failed. `found`: the claim's
        suppressed keys among the plain addresses, or None (all looked up here: one query)."""
        addresses = [a for j in jobs for a in (*j.message.to, *j.message.cc, *j.message.bcc)]
        if found is None:
            suppressed = await self._store.suppressed_among(addresses)
        else:  # the claim looked up the plain ones; the others (rare) are looked up here
            suppressed = set(found)
            if unsure := [a for a in addresses if not suppression_key_is_lowercase(a)]:
                suppressed |= await self._store.suppressed_among(unsure)
        if not suppressed:
            return jobs

        def ok(address: str) -> bool:
            return suppression_key(address) not in suppressed

        keep: list[ClaimedJob] = []
        failed: list[Settlement] = []
        for job in jobs:
            msg = job.message
            to, cc, bcc = (tuple(filter(ok, a)) for a in (msg.to, msg.cc, msg.bcc))
            if len(to) + len(cc) + len(bcc) == msg.recipient_count:
                keep.append(job)
            elif to or cc or bcc:
                log.info("message.recipients_suppressed", message_id=msg.id)
                trimmed = dataclasses.replace(msg, to=to, cc=cc, bcc=bcc)
                keep.append(dataclasses.replace(job, message=trimmed))
            else:
                self._counters.failed += 1
                log.info("message.suppressed", message_id=msg.id)
                failed.append(
                    Settlement(msg.id, job.token, "failed", outcome="suppressed", error=_SUPPRESSED)
                )
        if failed:
            self._ledger.aside(self._ledger.settle(failed))
        return keep

    async def _drained(self) -> bool:
        """Drain mode: True (and the run ends) once nothing more will be sent by waiting."""
        if self._in_hand or self._ledger.busy or (self.lanes and self.lanes.holding):
            return False
        if self._incoming:  # a claim still on its way may bring jobs
            return False
        pending = await self._store.pending(0.0)
        if pending.waiting == 0:
            later = (
                f"; {pending.scheduled_later} scheduled for later (next at {pending.next_run_at})"
                if pending.scheduled_later
                else ""
            )
            self._end(EXIT_OK, f"drained: nothing left to send{later}")
            return True
        held = await self._store.held()
        if held.count and held.count >= pending.waiting:
            self._end(
                EXIT_HELD,
                f"{held.count} messages are held by a sending error that needs fixing "
                f"({held.reason}); fix it, then run again",
            )
            return True
        return False

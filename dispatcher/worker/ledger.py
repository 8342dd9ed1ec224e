"""What is on the wire: the launch (claimed -> in_flight, just before SES is asked) and settle
group commits, the send tasks, and what must become in doubt if shutdown cuts a send off.

An admitted send waits for the next launch group commit; its task starts once the launch has
committed (the task does not wait for it: one future and one task step less per send).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import structlog

from dispatcher.domain.jobs import ClaimedJob, Settlement, SettleState
from dispatcher.domain.outcome import Outcome
from dispatcher.domain.retry import RetryPolicy
from dispatcher.queue.store import JobStore
from dispatcher.worker.batcher import Batcher
from dispatcher.worker.counters import Counters

__all__ = ["Launchable", "Ledger"]

log = structlog.get_logger()


class Launchable(Protocol):
    """An admitted send (it holds a send slot), waiting for the launch group commit."""

    @property
    def jobs(self) -> Sequence[ClaimedJob]: ...

    def launched(self, sendable: list[ClaimedJob]) -> Coroutine[Any, Any, None] | None:
        """Its jobs still ours after the launch (maybe none): the send to run, or None."""

    def abandoned(self) -> None:
        """Not launched (the launch failed, or shutdown cut it off): give its slot back."""


class Ledger:
    """Jobs from the moment they are handed over for sending until their result is recorded."""

    def __init__(
        self,
        store: JobStore,
        owner: uuid.UUID,
        counters: Counters,
        *,
        settle_batch: int,
        settle_interval: float,
        fail: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._store = store
        self._fail = fail
        self._owner = owner
        self._counters = counters
        self._on_wire: dict[int, ClaimedJob] = {}  # handed over, result not known yet
        self._sends: set[asyncio.Task[None]] = set()
        self._side: set[asyncio.Future[Any]] = set()  # e.g. pausing a campaign
        self._cut = False  # shutdown's grace ended: nothing more is handed to SES
        # Nobody waits for a launch: once it commits, the sends it launched start as tasks.
        self._launcher: Batcher[Launchable, None] = Batcher(
            self._launch_batch, max_batch=1000, name="launch", on_error=self._launch_failed
        )
        # Results are written with nobody waiting for them (a send's task ends once SES has
        # answered: one future and one task step less per job); a write that fails stops the
        # worker through `fail`, as it did through each send task that waited for it.
        self._settler: Batcher[Settlement, bool] = Batcher(
            self._settle_batch,
            max_batch=settle_batch,
            linger=settle_interval,
            name="settle",
            on_error=self._settle_failed,
        )

    def start(self) -> None:
        self._launcher.start()
        self._settler.start()

    @property
    def sending(self) -> bool:
        """A send waits for its launch or is running."""
        return bool(self._sends) or self._launcher.busy

    @property
    def busy(self) -> bool:
        """A send is launching or running, a result is not written yet, or side work (a
        campaign pause) is under way: a drain must not judge the queue before it is done."""
        return self.sending or self._settler.busy or bool(self._side)

    def ids(self) -> set[int]:
        return set(self._on_wire)

    def send(self, admitted: Launchable) -> None:
        """Launch an admitted send with the next launch group commit, then run it; tracked
        from now: if shutdown cuts it off mid-launch it cannot know whether the launch
        committed, and settles its jobs as in doubt (see `close`)."""
        for job in admitted.jobs:
            self._on_wire[job.id] = job
        self._launcher.put_nowait(admitted)

    def aside(self, work: Awaitable[Any]) -> None:
        """A side job that must finish before shutdown ends (a campaign pause, a settle)."""
        task = asyncio.ensure_future(work)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    def answered(self, job: ClaimedJob) -> None:
        """The result is known: shutdown must record it, not mark it in doubt."""
        self._on_wire.pop(job.id, None)

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record results: queued for the next group commit (written by `close` at the latest),
        not waited for; see `written`."""
        for settlement in settlements:
            self._settler.put_nowait(settlement)

    async def written(self, longest: float | None = None) -> bool:
        """Wait until the side work (a campaign pause, which may settle jobs too) and the
        results queued so far are written; False if not after `longest` s."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(longest):
                if self._side:
                    await asyncio.wait(set(self._side))
                if self._settler.busy:
                    self._settler.hurry()  # waited for: no linger for more results
                    await self._settler.wait_idle()
        return not (self._settler.busy or self._side)

    def _settle_failed(self, exc: BaseException) -> None:
        log.error("worker.settle_failed", error=repr(exc))
        if self._fail is not None:
            self._fail(exc)

    async def wait(self, longest: float | None = None) -> bool:
        """Wait for the sends launching or running; False if some are not done after
        `longest` s."""
        loop = asyncio.get_running_loop()
        deadline = None if longest is None else loop.time() + longest
        if self._launcher.busy:  # its sends start as tasks once their launch is written
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._launcher.wait_idle()
            if self._launcher.busy:
                return False
        if not self._sends:
            return True
        left = None if deadline is None else max(0.0, deadline - loop.time())
        _, pending = await asyncio.wait(set(self._sends), timeout=left)
        return not pending

    async def close(self, grace: float, retry: RetryPolicy) -> bool:
        """Give sends on the wire `grace` seconds, then cut them off; a send cut off after its
        launch is in doubt (by `retry.in_doubt`), one cut off before goes back untouched.
        Database failures are logged: the next worker recovers what we could not write.
        False if some write failed."""
        if not await self.wait(grace):
            log.warning("worker.grace_expired", in_flight=len(self._sends))
            self._cut = True  # a launch still being written starts no send
            for task in list(self._sends):
                task.cancel()
            await asyncio.gather(*self._sends, return_exceptions=True)
        leftovers = list(self._on_wire.values())
        self._on_wire.clear()
        written = True
        if leftovers:
            ids = [j.id for j in leftovers]
            # Still `claimed` (launch never committed): released. `in_flight`: in doubt; the
            # settle's state guard leaves the released ones alone.
            written &= await _quietly("release", self._store.release(self._owner, ids, 0.0))
            state: SettleState = "queued" if retry.in_doubt == "resend" else "unknown"
            settlements = [
                Settlement(
                    id=job.id,
                    token=job.token,
                    state=state,
                    outcome=Outcome.IN_DOUBT.value,
                    error="shutdown grace period ended while the message was being sent",
                    attempt_used=True,
                )
                for job in leftovers
            ]
            done: set[int] = set()

            async def settle() -> None:
                done.update(await self._store.settle(settlements))

            written &= await _quietly("settle", settle())
            self._counters.in_doubt += len(done)
        if self._side:  # they may still submit results (a suppressed job, say)
            await asyncio.gather(*self._side, return_exceptions=True)
        written &= await _quietly("settle", self._settler.close())
        written &= await _quietly("launch", self._launcher.close())
        return written

    async def _launch_batch(self, batch: Sequence[Launchable]) -> list[None]:
        """One launch statement for the admitted sends; each starts once it has committed."""
        if self._cut:  # shutdown cut the sends off before their launch: never handed to SES
            for admitted in batch:
                admitted.abandoned()
            return [None] * len(batch)
        try:
            jobs = [job for admitted in batch for job in admitted.jobs]
            launched = await self._store.launch(self._owner, jobs)
        except BaseException:
            for admitted in batch:
                admitted.abandoned()
            raise
        for admitted in batch:
            group = admitted.jobs
            sendable = [job for job in group if job.id in launched]
            if len(sendable) < len(group):
                for job in group:
                    if job.id not in launched:
                        self._on_wire.pop(job.id, None)
                        self._counters.lease_lost += 1
                        log.warning("message.lease_lost", message_id=job.id)
            if self._cut:  # launched as shutdown cut the sends off: in doubt (see `close`)
                admitted.abandoned()
                continue
            coro = admitted.launched(sendable)
            if coro is not None:
                task = asyncio.create_task(coro)
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
        return [None] * len(batch)

    def _launch_failed(self, exc: BaseException) -> None:
        log.error("worker.launch_failed", error=repr(exc))
        if self._fail is not None:
            self._fail(exc)

    async def _settle_batch(self, settlements: Sequence[Settlement]) -> list[bool]:
        recorded = await self._store.settle(settlements)
        lost = [s.id for s in settlements if s.id not in recorded]
        if lost:
            self._counters.lease_lost += len(lost)
            log.warning("message.result_not_recorded", message_ids=lost[:20], count=len(lost))
        return [s.id in recorded for s in settlements]


async def _quietly(what: str, op: Coroutine[Any, Any, Any]) -> bool:
    """Run a shutdown write; False (logged) if it failed."""
    try:
        await op
    except Exception as exc:
        log.error("worker.shutdown_write_failed", operation=what, error=repr(exc))
        return False
    return True

"""The ledger's idea of "busy": a drain ends only when side work (a campaign pause) is done too.
Before, a campaign whose list SES did not know was paused by side work the drain did not wait
for: the drain saw its mail waiting and held, and ended with "held by a sending error"."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

from dispatcher.app import retry_policy
from dispatcher.config import Config
from dispatcher.domain.jobs import ClaimedJob, NewMessage
from dispatcher.queue.memory import MemoryJobStore
from dispatcher.worker.counters import Counters
from dispatcher.worker.ledger import Ledger


async def test_side_work_keeps_the_ledger_busy_and_written_waits_for_it() -> None:
    ledger = Ledger(
        MemoryJobStore(), uuid.uuid4(), Counters(), settle_batch=100, settle_interval=0.05
    )
    ledger.start()
    paused = asyncio.Event()

    async def pause_campaign() -> None:
        await asyncio.sleep(0.05)  # the UPDATE of the campaign, on its way
        paused.set()

    ledger.aside(pause_campaign())
    assert ledger.busy, "a drain would judge the queue before the campaign is paused"
    assert await ledger.written(1.0)
    assert paused.is_set() and not ledger.busy
    assert await ledger.close(0.1, retry_policy(Config()))


class _Send:
    """An admitted send as `Sending` hands it to the ledger: records what it saw and when."""

    def __init__(self, store: MemoryJobStore, jobs: list[ClaimedJob], seen: list[str]) -> None:
        self.jobs = jobs
        self._store = store
        self._seen = seen
        self.slot_back = False

    def launched(self, sendable: list[ClaimedJob]) -> Coroutine[Any, Any, None] | None:
        if not sendable:
            self.abandoned()
            return None

        async def call() -> None:  # what SES is asked happens only here
            for job in sendable:
                view = await self._store.get(job.id)
                assert view is not None
                self._seen.append(f"{job.id}:{view.state}")

        return call()

    def abandoned(self) -> None:
        self.slot_back = True


async def _claimed(store: MemoryJobStore, owner: uuid.UUID, n: int) -> list[ClaimedJob]:
    await store.enqueue_many(
        [
            NewMessage(from_addr="a@example.com", to=(f"b{i}@example.com",), subject="s", text="t")
            for i in range(n)
        ]
    )
    return await store.claim(owner, n)


async def test_a_send_starts_only_once_its_launch_is_written_and_a_lost_job_is_not_sent() -> None:
    """Sends admitted together go in one launch statement; each call starts after it, with its
    jobs already in flight; a job whose lease was lost meanwhile is not handed to SES."""
    store, owner = MemoryJobStore(), uuid.uuid4()
    ledger = Ledger(store, owner, Counters(), settle_batch=100, settle_interval=0.0)
    ledger.start()
    jobs = await _claimed(store, owner, 3)
    await store.release(owner, [jobs[2].id])  # lost before its launch
    seen: list[str] = []
    sends = [_Send(store, [job], seen) for job in jobs]
    for send in sends:
        ledger.send(send)
    assert ledger.sending
    assert await ledger.wait(1.0)
    assert seen == [f"{jobs[0].id}:in_flight", f"{jobs[1].id}:in_flight"]
    assert sends[2].slot_back and not sends[0].slot_back
    assert await ledger.close(0.1, retry_policy(Config()))


async def test_sends_cut_off_by_shutdown_before_their_launch_are_never_launched() -> None:
    """Shutdown's grace ends while the launch is still waiting: nothing is handed to SES, the
    slots go back, and the jobs are given back (not in doubt: they never left)."""
    store, owner = MemoryJobStore(), uuid.uuid4()
    ledger = Ledger(store, owner, Counters(), settle_batch=100, settle_interval=0.0)
    # (the launcher is not started: its statement is "still waiting" when the grace ends)
    jobs = await _claimed(store, owner, 2)
    seen: list[str] = []
    sends = [_Send(store, [job], seen) for job in jobs]
    for send in sends:
        ledger.send(send)
    assert await ledger.close(0.0, retry_policy(Config()))
    assert seen == [] and all(send.slot_back for send in sends)
    assert (await store.counts())["queued"] == 2

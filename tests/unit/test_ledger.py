"""The ledger's idea of "busy": a drain ends only when side work (a campaign pause) is done too.
Before, a campaign whose list SES did not know was paused by side work the drain did not wait
for: the drain saw its mail waiting and held, and ended with "held by a sending error"."""

from __future__ import annotations

import asyncio
import uuid

from dispatcher.app import retry_policy
from dispatcher.config import Config
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

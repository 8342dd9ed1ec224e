"""Concurrency that follows the rate: with SES answering in 250 ms (another region), a rate
that 64 fixed send slots would cap (64 / 0.25 s = 256/s) is reached with the defaults."""

from __future__ import annotations

import asyncio
from collections import Counter

from dispatcher.app import run_worker
from dispatcher.queue.repository import Queue
from dispatcher.worker.pool import EXIT_OK, WorkerPool
from tests.support.dispatch import batch, dispatcher_ids, make_config
from tests.support.sim import SimFactory

RATE = 400.0  # recipients/s: needs 100 calls on the wire at 250 ms
SECONDS = 4.0
SLOW_SES = {"latency_model": "fixed", "latency_ms": 250.0}


async def test_a_slow_region_does_not_cap_the_rate(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    n = int(RATE * SECONDS)
    ids = [e.id for e in await queue.enqueue_many(batch(n))]
    pools: list[WorkerPool] = []
    async with sim_process(max_send_rate=RATE, **SLOW_SES) as ses:
        cfg = make_config(pg_dsn, ses.endpoint_url)  # delivery.max_in_flight: the default
        report = await asyncio.wait_for(
            run_worker(cfg, asyncio.Event(), drain=True, on_start=pools.append), 60
        )
        got = await ses.messages()
        stats = await ses.stats()
    assert report.exit_code == EXIT_OK, report.reason
    assert Counter(dispatcher_ids(got)) == Counter(ids)  # every message once
    times = sorted(float(m["accepted_at"]) for m in got)
    achieved = (len(times) - 1) / (times[-1] - times[0])
    # 64 slots would give at most 256/s (0.64 of the rate; less, as a slot is also held while
    # the send is launched); the slots followed the rate instead.
    assert achieved >= 0.8 * RATE, f"{achieved:.0f}/s of {RATE:g}/s"
    assert stats.get("throttled", 0) == 0, stats
    # ... and not by opening every slot the ceiling (1,000) allows: rate x p95 latency x 1.5.
    limit = pools[0].admission.slots[1]
    assert 64 < limit < 1000, limit

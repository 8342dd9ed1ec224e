"""One daily quota for several daemons on one account: one of them reads GetSendQuota for all,
every one counts what the others sent, and a dead reader is replaced within seconds."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from dispatcher.app import run_worker
from dispatcher.domain.quota import Quota
from dispatcher.pacing.governor import PENDING_EPOCH
from dispatcher.queue.repository import Queue
from dispatcher.worker.pool import EXIT_QUOTA_SPENT, WorkerPool
from dispatcher.worker.quota_store import SharedQuotaStore
from tests.support.dispatch import REAL, batch, eventually, make_config
from tests.support.sim import SimFactory


async def leader_row(queue: Queue) -> dict[str, Any]:
    async with queue.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT epoch, leader FROM dispatcher.send_quota")
    return dict(row)


async def test_two_daemons_together_stay_inside_one_daily_quota(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    # 100 recipients a day, we stop at 90 %: together, not each, the two daemons may send 90.
    # At 20/s that takes the pair ~4.5 s: the second one starts sending about a second after
    # the first (SES answers GetSendQuota once a second: it takes over the first's reading).
    async with sim_process(max_send_rate=20, max_24_hour_send=100) as sim:
        await queue.enqueue_many(batch(200, to=REAL))
        cfg = make_config(pg_dsn, sim.endpoint_url, pacing={"quota_headroom": 0.9})
        reports = await asyncio.wait_for(
            asyncio.gather(
                run_worker(cfg, asyncio.Event(), drain=True),
                run_worker(cfg, asyncio.Event(), drain=True),
            ),
            60,
        )
        stats = await sim.stats()
    assert [r.exit_code for r in reports] == [EXIT_QUOTA_SPENT, EXIT_QUOTA_SPENT]
    assert all(r.counters.sent > 0 for r in reports), "each daemon did part of the work"
    assert sum(r.counters.recipients_sent for r in reports) == stats["recipients_accepted"]
    accepted = stats["recipients_accepted"]
    # Together about the 90 allowed (a daemon may not yet have seen the other's last sends, and
    # a send answered while a reading is taken counts twice until the next: both are what
    # quota_headroom is for); never past the account's 100, so SES never had to refuse.
    assert 72 <= accepted <= 100, accepted
    assert stats["daily_quota_exceeded"] == 0
    counts = await queue.counts()
    assert counts["sent"] == accepted and counts["queued"] == 200 - accepted, counts


async def test_one_daemon_reads_the_quota_for_all_and_another_takes_over_when_it_stops(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    async with sim_process(max_send_rate=50) as sim:
        cfg = make_config(
            pg_dsn,
            sim.endpoint_url,
            pacing={"poll_interval": 1.0, "poll_interval_near_limit": 1.0},
        )
        pools: dict[uuid.UUID, asyncio.Event] = {}
        tasks = []
        for _ in range(3):
            stop = asyncio.Event()

            def started(pool: WorkerPool, stop: asyncio.Event = stop) -> None:
                pools[pool.owner] = stop

            tasks.append(asyncio.create_task(run_worker(cfg, stop, on_start=started)))
        try:

            async def published() -> bool:
                return len(pools) == 3 and (await leader_row(queue))["leader"] is not None

            await eventually(published, limit=20)
            # Three daemons polling at 1 s would make about three calls a second; one leader: one.
            before, began = (await sim.stats())["quota_reads"], time.monotonic()
            await asyncio.sleep(4.0)
            reads = (await sim.stats())["quota_reads"] - before
            elapsed = time.monotonic() - began
            assert reads <= elapsed + 1, f"{reads} GetSendQuota calls in {elapsed:.1f} s"
            assert reads >= 2, "the leader keeps reading"

            first = await leader_row(queue)
            assert first["leader"] in pools
            pools[first["leader"]].set()  # the leader stops; its lock goes with it

            async def taken_over() -> bool:
                row = await leader_row(queue)
                return (
                    row["leader"] not in (None, first["leader"]) and row["epoch"] > first["epoch"]
                )

            await eventually(taken_over, limit=5)
            assert (await leader_row(queue))["leader"] in pools
        finally:
            for stop in pools.values():
                stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    for task in tasks:
        assert task.exception() is None


async def test_a_dead_workers_sends_on_the_wire_stop_counting_at_the_next_reading(
    queue: Queue,
) -> None:
    board = SharedQuotaStore(queue.pool)
    live, dead, reader = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await queue.register_worker(live, 30)
    await board.sync(live, {PENDING_EPOCH: 5.0})
    await board.sync(dead, {0: 7.0, PENDING_EPOCH: 40.0})  # SIGKILLed: never registered again
    before = await board.sync(reader, {})
    assert before.others_sent == 52  # everything counts until a reading includes it

    epoch = await board.begin(reader)
    assert await board.publish(reader, epoch, Quota(1000, 14, 47))
    after = await board.sync(reader, {})
    assert after.epoch == epoch and after.quota == Quota(1000, 14, 47)
    assert after.others_sent == 5  # the live worker's pending sends; the dead one's are gone

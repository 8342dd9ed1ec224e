"""Two daemons on one queue: one alive but slow loses its lease, the other takes its mail over.
The slow one's late launches and late results must count for nothing (the fencing token)."""

from __future__ import annotations

import asyncio
from collections import Counter

from dispatcher.app import run_worker
from dispatcher.queue.repository import Queue
from dispatcher.worker.pool import EXIT_OK
from tests.support.dispatch import batch, dispatcher_ids, eventually, make_config
from tests.support.sim import SimFactory

SLOW_A, SLOW_B = 3000.0, 4500.0  # ms each simulator holds a send: A's answers come first


async def states(queue: Queue) -> Counter[str]:
    async with queue.pool.acquire() as conn:
        rows = await conn.fetch("SELECT state::text AS s FROM dispatcher.jobs")
    return Counter(r["s"] for r in rows)


async def test_a_slow_daemon_that_lost_its_lease_neither_sends_nor_records_anything(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    ids = [e.id for e in await queue.enqueue_many(batch(20))]
    slow = {"latency_ms": SLOW_A, "latency_model": "fixed", "max_send_rate": 1000}
    async with (
        sim_process(**slow) as ses_a,
        sim_process(**{**slow, "latency_ms": SLOW_B}) as ses_b,
    ):
        # A claims all 20 and puts 5 on the wire (its sends hang 3 s); the other 15 wait.
        cfg_a = make_config(
            pg_dsn,
            ses_a.endpoint_url,
            queue={"lease_seconds": 10.0, "heartbeat_seconds": 5.0},
            delivery={"max_in_flight": 5},
        )
        a = asyncio.create_task(run_worker(cfg_a, asyncio.Event(), drain=True))
        try:
            await eventually(lambda: _is(queue, in_flight=5, claimed=15), limit=20)
            # A stalls: its upkeep stops (it would renew the lease within 0.25 s) and, to the
            # others, its lease has run out; its session (and its lock) stays open: alive but
            # stuck, which only the lease can tell.
            (upkeep,) = [t for t in asyncio.all_tasks() if t.get_name() == "heartbeat"]
            upkeep.cancel()
            async with queue.pool.acquire() as conn:
                await conn.execute(
                    "UPDATE dispatcher.workers SET heartbeat_at = now() - interval '1 hour'"
                )
            # B takes everything over (resending what A had on the wire) and sends it; B's
            # sends are still on the wire when A's answers come back.
            cfg_b = make_config(
                pg_dsn,
                ses_b.endpoint_url,
                queue={"lease_seconds": 10.0, "heartbeat_seconds": 0.2},
                delivery={"in_doubt": "resend"},
            )
            report_b = await asyncio.wait_for(run_worker(cfg_b, asyncio.Event(), drain=True), 60)
            report_a = await asyncio.wait_for(a, 60)
        finally:
            a.cancel()
        got_a, got_b = await ses_a.messages(), await ses_b.messages()

    assert report_b.exit_code == EXIT_OK, report_b.reason
    # A sent only what was on the wire before it stalled; its 15 buffered jobs never went out.
    assert len(got_a) == 5, dispatcher_ids(got_a)
    assert Counter(dispatcher_ids(got_b)) == Counter(ids)  # B sent every message once
    # Every job ends as B recorded it: sent, with the MessageId B's SES gave it.
    by_b = {int(m["tags"]["dispatcher_id"]): m["message_id"] for m in got_b}
    for job_id in ids:
        view = await queue.get(job_id)
        assert view is not None
        assert (view.state, view.ses_message_id) == ("sent", by_b[job_id]), job_id
    # A's 15 launches were refused and its 5 results not recorded (and A says so).
    assert report_a.counters.lease_lost >= 20, report_a.counters


async def _is(queue: Queue, **expected: int) -> bool:
    now = await states(queue)
    return all(now[k] == v for k, v in expected.items())

"""The whole dispatch path on a real Postgres and a real SES simulator over HTTP."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any

from dispatcher.app import run_worker
from dispatcher.domain.jobs import NewMessage
from dispatcher.queue.repository import Queue
from dispatcher.worker.pool import EXIT_OK, EXIT_QUOTA_SPENT, RunReport
from tests.support.dispatch import REAL, batch, dispatcher_ids, eventually, make_config
from tests.support.sim import SimFactory


async def drain(cfg: Any, limit: float = 60.0) -> RunReport:
    return await asyncio.wait_for(run_worker(cfg, asyncio.Event(), drain=True), limit)


async def test_every_message_reaches_the_simulator_exactly_once(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    async with sim_process(max_send_rate=2000) as sim:
        ids = [e.id for e in await queue.enqueue_many(batch(400, every=4, extra=2))]
        report = await drain(make_config(pg_dsn, sim.endpoint_url))
        received = await sim.messages()
    assert report.exit_code == EXIT_OK
    assert Counter(dispatcher_ids(received)) == Counter(ids)  # each one, once
    counts = await queue.counts()
    assert counts["sent"] == 400 and sum(counts.values()) == 400
    by_ses_id = {m["message_id"]: int(m["tags"]["dispatcher_id"]) for m in received}
    for message_id in ids[:50]:
        job = await queue.get(message_id)
        assert job is not None and job.ses_message_id is not None
        assert by_ses_id[job.ses_message_id] == message_id  # SES's MessageId is recorded


async def test_rate_holds_for_messages_with_several_recipients(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    # The account allows 80/s and we aim for half of it: the simulator never throttles, so what
    # it records is our limiter's own rate, and a limiter running too fast shows (up to 80/s).
    allowed, headroom = 80.0, 0.5
    rate = allowed * headroom
    async with sim_process(max_send_rate=allowed) as sim:
        # 150 messages, every third with two Cc: 250 recipients, about six seconds of sending.
        await queue.enqueue_many(batch(150, every=3, extra=2))
        cfg = make_config(pg_dsn, sim.endpoint_url, pacing={"rate_headroom": headroom})
        report = await drain(cfg)
        received = await sim.messages()
        stats = await sim.stats()
    assert report.exit_code == EXIT_OK
    assert len(received) == 150
    times = sorted(
        (m["accepted_at"], len(m["to"]) + len(m["cc"]) + len(m["bcc"])) for m in received
    )
    # Skip the first second (the bucket starts with a burst: SES allows that too). A send
    # accepted at `start` was paid for before it, so the window counts the sends after it.
    start = next(t for t, _ in times if t > times[0][0] + 1.0)
    steady = [(t, n) for t, n in times if t > start]
    achieved = sum(n for _, n in steady) / (steady[-1][0] - start)
    assert 0.95 * rate <= achieved <= 1.05 * rate, f"achieved {achieved:.1f}/s of {rate}/s"
    assert stats["throttled"] == 0, stats
    assert report.counters.recipients_sent == 250


async def test_daily_quota_is_never_exceeded_and_sending_resumes_by_itself(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    # A 4-second "day" of 60 recipients; we stop at 90 % of it, so at most 54 per window.
    window, limit, headroom = 4.0, 60, 0.9
    async with sim_process(
        max_send_rate=200, max_24_hour_send=limit, quota_window_seconds=window
    ) as sim:
        await queue.enqueue_many(batch(130, to=REAL))
        cfg = make_config(
            pg_dsn,
            sim.endpoint_url,
            pacing={
                "quota_headroom": headroom,
                "poll_interval": 1.0,
                "poll_interval_near_limit": 1.0,
            },
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(cfg, stop))  # the daemon, not drain
        try:
            for _ in range(300):
                if (await queue.counts())["sent"] == 130:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            report = await asyncio.wait_for(worker, 30)
        received = await sim.messages()
        stats = await sim.stats()
    assert report.exit_code == EXIT_OK
    assert len(received) == 130, "sending did not resume after the window freed"
    assert stats["daily_quota_exceeded"] == 0  # we stopped before SES had to refuse
    stamps = sorted(m["accepted_at"] for m in received)
    worst = max(sum(1 for t in stamps if s <= t < s + window) for s in stamps)
    assert worst <= limit * headroom, f"{worst} recipients in one {window}s window"


async def test_drain_exits_3_when_the_quota_is_spent_with_mail_queued(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    async with sim_process(max_send_rate=200, max_24_hour_send=20) as sim:
        await queue.enqueue_many(batch(30, to=REAL))
        report = await drain(make_config(pg_dsn, sim.endpoint_url))
        received = await sim.messages()
    assert report.exit_code == EXIT_QUOTA_SPENT
    assert "quota" in report.reason
    counts = await queue.counts()
    # 20 x 0.98 headroom = 19.6: at most 19 go out (fewer when a reading lags the sends: the
    # governor then stops early, never late), the rest wait in the queue, none failed or lost.
    sent = dispatcher_ids(received)
    assert 0 < len(sent) <= 19 and len(set(sent)) == len(sent), sent
    assert counts["sent"] == len(sent) and counts["queued"] == 30 - len(sent)
    assert counts["failed"] == counts["claimed"] == counts["in_flight"] == 0


async def test_throttling_slows_down_and_never_costs_an_attempt(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    # The account reports 100/s but SES enforces 20/s for a while (as after a quota change
    # that GetSendQuota has not caught up with): throttles happen, mail is slowed, not failed.
    async with sim_process(max_send_rate=100, burst_seconds=0.2) as sim:
        await queue.enqueue_many(batch(200))  # about half left when the switch comes
        cfg = make_config(pg_dsn, sim.endpoint_url, pacing={"poll_interval": 60.0})
        worker = asyncio.create_task(drain(cfg))

        async def quota_read_for_all() -> bool:
            async with queue.pool.acquire() as conn:
                epoch: int = await conn.fetchval("SELECT epoch FROM dispatcher.send_quota")
            return epoch >= 1

        # Only once the daemon has taken its reading (the next one is a minute away).
        await eventually(quota_read_for_all, limit=10)
        await sim.configure(max_send_rate=20)
        report = await worker
        received = await sim.messages()
        stats = await sim.stats()
    assert report.exit_code == EXIT_OK
    assert stats["throttled"] > 0 and report.counters.throttled == stats["throttled"]
    assert Counter(dispatcher_ids(received)).most_common(1)[0][1] == 1
    counts = await queue.counts()
    assert counts["sent"] == 200 and counts["failed"] == 0
    async with queue.pool.acquire() as conn:
        used = await conn.fetchval("SELECT max(attempts) FROM dispatcher.jobs")
    assert used == 0  # throttled sends were requeued without using an attempt


async def test_suppressed_recipients_are_never_sent_to(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    async with queue.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO dispatcher.suppressions (address, reason) VALUES ($1, 'bounce')",
            "gone@example.com",
        )
    only = await queue.enqueue(
        NewMessage(from_addr="a@example.com", to=("Gone@example.com",), subject="s", text="t")
    )
    mixed = await queue.enqueue(
        NewMessage(
            from_addr="a@example.com",
            to=("ok@example.com",),
            cc=("gone@example.com",),
            subject="s",
            text="t",
        )
    )
    # A recipient with a display name: not looked up by the claim statement (its key is not
    # the address lower-cased), so the worker looks it up itself.
    named = await queue.enqueue(
        NewMessage(
            from_addr="a@example.com", to=("Gone Person <GONE@example.com>",), subject="s", text="t"
        )
    )
    async with sim_process(max_send_rate=100) as sim:
        report = await drain(make_config(pg_dsn, sim.endpoint_url))
        received = await sim.messages()
    assert report.exit_code == EXIT_OK
    assert [(m["to"], m["cc"]) for m in received] == [(["ok@example.com"], [])]
    for failed in (only, named):
        job = await queue.get(failed.id)
        assert job is not None and (job.state, job.last_outcome) == ("failed", "suppressed")
    sent = await queue.get(mixed.id)
    assert sent is not None and sent.state == "sent"


async def test_a_pool_of_one_connection_still_sends(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    # The daemon holds connections of its own (LISTEN, the quota leader's lock) beside the
    # pool's working ones: the smallest database.pool_size must not starve its claims.
    async with sim_process(max_send_rate=500) as sim:
        await queue.enqueue_many(batch(40))
        base = make_config(pg_dsn, sim.endpoint_url)
        cfg = replace(base, database=replace(base.database, pool_size=1))
        report = await drain(cfg, limit=30)
        received = await sim.messages()
    assert report.exit_code == EXIT_OK and len(received) == 40

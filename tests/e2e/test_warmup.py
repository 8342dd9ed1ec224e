"""Warm-up as a user runs it: `run --drain` stops at the day's cap, and after the day rows are
moved back one day (the clock moved, no sleeping) the next run sends the next day's share."""

from __future__ import annotations

import json
from pathlib import Path

from dispatcher.queue.repository import Queue
from tests.support.cli import cli_env, fetch, run_cli, state_counts
from tests.support.dispatch import batch, dispatcher_ids
from tests.support.sim import SimFactory


async def test_warmup_day_one_stops_at_100_and_day_two_sends_its_share(
    queue: Queue, pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    ids = [r.id for r in await queue.enqueue_many(batch(300))]
    async with sim_process(max_send_rate=200, max_24_hour_send=100_000) as sim:
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_WARMUP__ENABLED="true",
            DISPATCHER_WARMUP__SCHEDULE="100, 150",
        )

        day1 = await run_cli(env, "run", "--drain")
        assert day1.code == 3, day1  # as when the daily quota is spent: mail still queued
        (report,) = day1.messages
        assert "warm-up day 1: today's cap of 100 recipients is reached" in report, report
        assert len(await sim.messages()) == 100
        assert await state_counts(pg_dsn) == {"sent": 100, "queued": 200}  # waiting, not failed
        status = json.loads((await run_cli(env, "status", "--json")).out)
        warm = status["warmup"]
        assert warm["day"] == 1 and warm["cap"] == 100 and warm["taken_today"] == 100
        assert warm["remaining_today"] == 0 and warm["held"] is None

        # A second run the same day sends nothing more.
        again = await run_cli(env, "run", "--drain")
        assert again.code == 3, again
        assert len(await sim.messages()) == 100

        # The next day: move the recorded days back by one.
        await fetch(pg_dsn, "UPDATE dispatcher.warmup_days SET day = day - 1")
        day2 = await run_cli(env, "run", "--drain")
        assert day2.code == 3, day2
        assert "warm-up day 2: today's cap of 150" in day2.messages[0]
        received = dispatcher_ids(await sim.messages())
        text = await run_cli(env, "status")

    assert len(received) == 250 and len(set(received)) == 250 and set(received) <= set(ids)
    assert await state_counts(pg_dsn) == {"sent": 250, "queued": 50}
    assert "warm-up: day 2 of 2, cap 150 recipients today (UTC), 150 taken, 0 left" in text.out

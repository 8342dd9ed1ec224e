"""A daemon SIGKILLed while it holds claimed mail: the other daemon finds it dead by its session
lock within about a second, not after the 30 s lease, and sends what it had claimed."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

from dispatcher.queue.repository import Queue
from tests.support.cli import cli_env, fetch, start_cli
from tests.support.dispatch import batch, dispatcher_ids, eventually
from tests.support.sim import SimFactory

RATE = 100.0


async def test_a_killed_daemons_claimed_mail_is_recovered_in_seconds_not_after_its_lease(
    queue: Queue, pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    ids = [r.id for r in await queue.enqueue_many(batch(1200))]
    async with sim_process(max_send_rate=RATE, max_24_hour_send=-1) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)  # lease: 30 s
        a = await start_cli(env, "run", output=tmp_path / "a.log")
        b = await start_cli(env, "run", "--drain", output=tmp_path / "b.log")
        try:

            async def a_holds_claimed_mail() -> bool:
                rows = await fetch(
                    pg_dsn,
                    "SELECT count(*) AS n FROM dispatcher.jobs j JOIN dispatcher.workers w "
                    "ON w.id = j.lease_owner WHERE w.pid = $1 AND j.state = 'claimed'",
                    a.pid,
                )
                return int(rows[0]["n"]) >= 5

            await eventually(a_holds_claimed_mail, limit=30, step=0.02)
            [row] = await fetch(pg_dsn, "SELECT id FROM dispatcher.workers WHERE pid = $1", a.pid)
            dead = row["id"]
            a.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await a.wait()

            async def nothing_left_in_its_name() -> bool:
                rows = await fetch(
                    pg_dsn,
                    "SELECT (SELECT count(*) FROM dispatcher.jobs WHERE lease_owner = $1 "
                    "AND state IN ('claimed', 'in_flight')) "
                    "+ (SELECT count(*) FROM dispatcher.workers WHERE id = $1) AS n",
                    dead,
                )
                return int(rows[0]["n"]) == 0

            await eventually(nothing_left_in_its_name, limit=10, step=0.02)
            recovered_after = time.monotonic() - killed_at
            code_b = await asyncio.wait_for(b.wait(), 60)
        finally:
            for proc in (a, b):
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        received = await sim.messages()
    rows = await fetch(pg_dsn, "SELECT id FROM dispatcher.jobs WHERE state = 'unknown'")
    unknown = {r["id"] for r in rows}
    seen = Counter(dispatcher_ids(received))
    summary = f"recovered {recovered_after:.2f} s after the kill, in doubt {len(unknown)}"
    assert recovered_after <= 2.5, summary  # the lease (30 s) would have kept it far longer
    assert code_b == 0, summary
    assert all(seen[i] >= 1 or i in unknown for i in ids), summary  # nothing lost
    assert all(n == 1 or i in unknown for i, n in seen.items()), summary  # none sent twice

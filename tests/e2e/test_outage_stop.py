"""A stop request during a Postgres outage: the daemon exits promptly with one line, and once
Postgres is back the next worker sends what the stopped one held, each message once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from dispatcher.db.embedded import EmbeddedPostgres
from dispatcher.queue.repository import Queue
from tests.support.cli import cli_env, fetch, run_cli, start_cli, stop_cli
from tests.support.dispatch import batch, dispatcher_ids, eventually
from tests.support.sim import SimFactory


async def test_sigterm_while_postgres_is_down_exits_within_seconds_and_loses_nothing(
    own_cluster: EmbeddedPostgres, tmp_path: Path, sim_process: SimFactory
) -> None:
    dsn = own_cluster.dsn
    async with Queue.connect(dsn, max_size=2, migrate=True) as queue:
        ids = [r.id for r in await queue.enqueue_many(batch(300))]
    async with sim_process(max_send_rate=20, max_24_hour_send=-1) as sim:
        env = cli_env(
            tmp_path / "cli",
            dsn=dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_QUEUE__LEASE_SECONDS="3",
            DISPATCHER_QUEUE__HEARTBEAT_SECONDS="1",
            DISPATCHER_DATABASE__OUTAGE_TIMEOUT="120",
        )
        (tmp_path / "cli").mkdir()
        log_file = tmp_path / "run.log"
        proc = await start_cli(env, "run", output=log_file)
        try:

            async def some_sent() -> bool:
                return int((await sim.stats())["accepted"]) >= 20

            await eventually(some_sent, limit=60)
            await asyncio.to_thread(own_cluster.stop)

            async def noticed() -> bool:
                return "db.unavailable" in log_file.read_text()

            await eventually(noticed, limit=30)
            began = time.monotonic()
            code = await stop_cli(proc, limit=60)
            took = time.monotonic() - began
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        output = log_file.read_text()
        assert took < 10, f"stopped {took:.1f} s after SIGTERM\n{output[-3000:]}"
        assert "Traceback" not in output, output[-3000:]
        last = output.strip().splitlines()[-1]
        assert "database was unreachable" in last, output[-3000:]
        assert "lease" in last, output[-3000:]
        assert code == 1, f"exit {code}\n{output[-3000:]}"

        await asyncio.to_thread(own_cluster.start)
        drained = await run_cli(env, "run", "--drain", limit=120)
        received = await sim.messages()
    unknown = {
        r["id"] for r in await fetch(dsn, "SELECT id FROM dispatcher.jobs WHERE state = 'unknown'")
    }
    seen = Counter(dispatcher_ids(received))
    lost = [i for i in ids if i not in seen and i not in unknown]
    twice = {i: n for i, n in seen.items() if n > 1}
    summary = f"exit {drained.code}, lost {len(lost)}, twice {twice}, in doubt {len(unknown)}"
    assert drained.code in (0, 4), f"{summary}\n{drained}"
    assert not lost, summary
    assert not twice, summary  # in doubt is held (the default policy), never sent again

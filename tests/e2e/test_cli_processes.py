"""`dispatcher run --processes N` as a user runs it: with `--config FILE`, capped, children that
die with the parent, and one SNS endpoint served by every child."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from dispatcher.queue.repository import Queue
from tests.support.cli import CliResult, cli_env, fetch, run_cli, start_cli, stop_cli
from tests.support.dispatch import batch, dispatcher_ids, eventually
from tests.support.sim import SimFactory, SimHandle

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def workers(dsn: str) -> int:
    rows = await fetch(dsn, "SELECT count(*) AS n FROM dispatcher.workers")
    return int(rows[0]["n"])


async def test_config_file_with_two_processes_drains_everything_once(
    queue: Queue, pg_dsn: str, tmp_path: Path, sim: SimHandle
) -> None:
    ids = [r.id for r in await queue.enqueue_many(batch(40))]
    config = tmp_path / "dispatcher.toml"
    config.write_text(f'[ses]\nendpoint_url = "{sim.endpoint_url}"\n')
    env = cli_env(tmp_path, dsn=pg_dsn)

    run = await run_cli(env, "--config", str(config), "run", "--processes", "2", "--drain")

    assert run.code == 0, run
    assert Counter(dispatcher_ids(await sim.messages())) == Counter(ids)  # each exactly once


async def test_auto_starts_as_many_processes_as_the_rate_needs(
    queue: Queue, pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    """`--processes auto` at 14/s (SES's answer: no reading in Postgres yet) is one process,
    however many cores; at 5,000/s (the reading a daemon published) one per core, up to 5."""
    cores = os.cpu_count() or 1
    async with sim_process(max_send_rate=14, max_24_hour_send=-1) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)
        ids = [r.id for r in await queue.enqueue_many(batch(5))]
        slow = await run_cli(env, "run", "--processes", "auto", "--drain")
        async with queue.pool.acquire() as conn:  # a daemon published a reading of 5,000/s
            await conn.execute(
                "UPDATE dispatcher.send_quota SET max_send_rate = 5000, max_24_hour_send = -1,"
                " sent_last_24_hours = 0, read_at = now() WHERE account = 'default'"
            )
        ids += [r.id for r in await queue.enqueue_many(batch(5, prefix="n"))]
        fast = await run_cli(env, "run", "--processes", "auto", "--drain")
        sent = Counter(dispatcher_ids(await sim.messages()))

    def decided(run: CliResult) -> list[Any]:
        return [e["processes"] for e in run.events if e.get("event") == "run.processes_auto"]

    assert slow.code == 0 and decided(slow) == [1], slow
    assert fast.code == 0 and decided(fast) == [min(cores, 5)], fast
    assert sent == Counter(ids)  # each exactly once


async def test_too_many_processes_is_one_line_and_exit_2(pg_dsn: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    cores = await run_cli(env, "run", "--processes", "100000")
    # 2 processes of 1,004 connections each: more than any test Postgres has free.
    conns = await run_cli(
        {**env, "DISPATCHER_DATABASE__POOL_SIZE": "1000"}, "run", "--processes", "2"
    )

    assert cores.code == 2, cores
    assert cores.messages == [
        f"dispatcher: error: --processes 100000 is too many for {os.cpu_count()} core(s): "
        f"at most {4 * (os.cpu_count() or 1)} (4 per core)"
    ], cores
    assert conns.code == 2, conns
    assert len(conns.messages) == 1 and "max_connections" in conns.messages[0], conns
    assert await workers(pg_dsn) == 0  # nothing started


async def test_children_die_with_a_sigkilled_parent(
    pg_dsn: str, tmp_path: Path, sim: SimHandle
) -> None:
    # A child stops gracefully when its parent dies, and in any case within shutdown_grace + 5 s.
    env = cli_env(
        tmp_path,
        dsn=pg_dsn,
        endpoint_url=sim.endpoint_url,
        DISPATCHER_DELIVERY__SHUTDOWN_GRACE="2",
    )
    parent = await start_cli(env, "run", "--processes", "2", output=tmp_path / "run.log")
    try:
        await eventually(lambda: _at_least(pg_dsn, 2), limit=40)
        children = psutil.Process(parent.pid).children()
        assert len(children) == 2
        parent.send_signal(signal.SIGKILL)
        await parent.wait()
        _, alive = await asyncio.to_thread(psutil.wait_procs, children, timeout=10)
    finally:
        for p in psutil.Process().children(recursive=True):
            if p.pid != parent.pid and p.ppid() in (parent.pid, 1):
                p.kill()
    assert alive == [], f"children still alive 10 s after the parent's SIGKILL: {alive}"


async def _at_least(dsn: str, n: int) -> bool:
    return await workers(dsn) >= n


async def test_feedback_endpoint_is_served_by_every_process(
    pg_dsn: str, tmp_path: Path, sim: SimHandle
) -> None:
    port = free_port()
    env = cli_env(
        tmp_path,
        dsn=pg_dsn,
        endpoint_url=sim.endpoint_url,
        DISPATCHER_FEEDBACK__ENABLED="true",
        DISPATCHER_FEEDBACK__LISTEN_PORT=str(port),
        DISPATCHER_FEEDBACK__ALLOWED_TOPICS=TOPIC,
    )
    proc = await start_cli(env, "run", "--processes", "2", output=tmp_path / "run.log")
    try:
        # Both processes run (before, the second one could not bind the port and exited 2).
        await eventually(lambda: _at_least(pg_dsn, 2), limit=40)
        assert len(psutil.Process(proc.pid).children()) == 2
        async with aiohttp.ClientSession() as http:
            for _ in range(10):
                async with http.post(f"http://127.0.0.1:{port}/sns", data=b"{}") as resp:
                    assert resp.status == 400, await resp.text()
    finally:
        code = await stop_cli(proc)
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]

"""Stopping and killing `dispatcher run`: nothing lost, nothing sent twice that was not in doubt."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from dispatcher.queue.repository import Queue
from tests.support.dispatch import batch, dispatcher_ids
from tests.support.sim import SimFactory, SimHandle

REPO = Path(__file__).resolve().parents[2]


def worker_env(dsn: str, sim: SimHandle, **settings: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "DISPATCHER_DATABASE_URL": dsn,
            "DISPATCHER_SES_ENDPOINT_URL": sim.endpoint_url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "DISPATCHER_LOG__FORMAT": "json",
        }
    )
    env.update(settings)
    return env


async def start_worker(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher.cli.main",
        "run",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def wait_for(check: Callable[[], Awaitable[bool]], limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def finish(proc: asyncio.subprocess.Process, limit: float = 60.0) -> tuple[int, str]:
    out, _ = await asyncio.wait_for(proc.communicate(), limit)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_sigterm_mid_run_loses_nothing(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    async with sim_process(max_send_rate=40) as sim:
        ids = [e.id for e in await queue.enqueue_many(batch(200))]
        env = worker_env(pg_dsn, sim)
        proc = await start_worker(env)

        async def some_sent() -> bool:
            return int((await sim.stats())["accepted"]) >= 40

        await wait_for(some_sent)
        proc.send_signal(signal.SIGTERM)
        code, out = await finish(proc, 30)
        assert code == 0, out
        assert '"worker.stopped"' in out
        counts = await queue.counts()
        received = await sim.messages()
        # Stopped cleanly: nothing left claimed or on the wire, nothing in doubt, none lost.
        assert counts["claimed"] == counts["in_flight"] == counts["unknown"] == 0
        assert counts["sent"] == len(received) < 200
        assert counts["sent"] + counts["queued"] == 200

        code, out = await finish(await start_worker(env, "--drain"))
        assert code == 0, out
        received = await sim.messages()
    assert Counter(dispatcher_ids(received)) == Counter(ids)  # each exactly once overall


async def _kill_mid_send(
    queue: Queue, pg_dsn: str, sim: SimHandle, in_flight: int
) -> tuple[dict[str, str], set[int], list[int]]:
    """Start a worker, SIGKILL it while sends hang on the wire; returns env, in-flight ids, ids."""
    ids = [e.id for e in await queue.enqueue_many(batch(60))]
    env = worker_env(
        pg_dsn,
        sim,
        DISPATCHER_QUEUE__LEASE_SECONDS="2",
        DISPATCHER_QUEUE__HEARTBEAT_SECONDS="0.5",
        DISPATCHER_DELIVERY__MAX_IN_FLIGHT=str(in_flight),
    )
    proc = await start_worker(env)

    async def on_the_wire() -> bool:
        counts = await queue.counts()
        return counts["in_flight"] == in_flight and counts["claimed"] > 0

    await wait_for(on_the_wire)
    proc.kill()
    await proc.wait()
    async with queue.pool.acquire() as conn:
        rows = await conn.fetch("SELECT id FROM dispatcher.jobs WHERE state = 'in_flight'")
    return env, {r["id"] for r in rows}, ids


async def test_sigkill_claimed_mail_goes_to_the_next_worker_and_in_doubt_mail_is_held(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    async with sim_process(max_send_rate=500, latency_ms=1500) as sim:
        env, on_wire, ids = await _kill_mid_send(queue, pg_dsn, sim, in_flight=4)
        assert len(on_wire) == 4  # only what was handed to SES, not everything claimed
        await sim.configure(latency_ms=0)
        code, out = await finish(await start_worker(env, "--drain"))
        assert code == 0, out
        assert '"queue.recovered"' in out
        await asyncio.sleep(1.6)  # let the killed worker's requests finish inside the simulator
        received = await sim.messages()
        counts = await queue.counts()
        async with queue.pool.acquire() as conn:
            rows = await conn.fetch("SELECT id FROM dispatcher.jobs WHERE state = 'unknown'")
        unknown = {r["id"] for r in rows}
        # The in-doubt set is exactly the sends that were on the wire; they are held, not resent.
        assert unknown == on_wire
        assert counts["sent"] == 60 - len(on_wire) and counts["queued"] == 0
        seen = Counter(dispatcher_ids(received))
        assert all(seen[i] == 1 for i in ids if i not in on_wire)
        assert all(seen[i] <= 1 for i in on_wire)

        # A person decides: resend them.
        resolve = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatcher.cli.main",
            "in-doubt",
            "resolve",
            "--resend",
            "--all",
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        code, out = await finish(resolve)
        assert code == 0 and "4 message(s) queued again" in out
        code, out = await finish(await start_worker(env, "--drain"))
        assert code == 0, out
    assert (await queue.counts())["sent"] == 60


async def test_sigkill_with_resend_policy_sends_in_doubt_mail_again(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    async with sim_process(max_send_rate=500, latency_ms=1500) as sim:
        env, on_wire, ids = await _kill_mid_send(queue, pg_dsn, sim, in_flight=3)
        await sim.configure(latency_ms=0)
        env["DISPATCHER_DELIVERY__IN_DOUBT"] = "resend"
        code, out = await finish(await start_worker(env, "--drain"))
        assert code == 0, out
        await asyncio.sleep(1.6)
        received = await sim.messages()
    counts = await queue.counts()
    assert counts["sent"] == 60 and counts["unknown"] == 0
    seen = Counter(dispatcher_ids(received))
    assert set(seen) == set(ids)  # every message arrived
    duplicated = {i for i, n in seen.items() if n > 1}
    assert duplicated <= on_wire  # the only possible duplicates are the in-doubt ones


async def test_sigterm_with_sends_stuck_past_the_grace_period_marks_only_them_in_doubt(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    async with sim_process(max_send_rate=500, latency_ms=3000) as sim:
        await queue.enqueue_many(batch(40))
        env = worker_env(
            pg_dsn,
            sim,
            DISPATCHER_DELIVERY__MAX_IN_FLIGHT="5",
            DISPATCHER_DELIVERY__SHUTDOWN_GRACE="0.5",
        )
        proc = await start_worker(env)

        async def on_the_wire() -> bool:
            return (await queue.counts())["in_flight"] == 5

        await wait_for(on_the_wire)
        proc.send_signal(signal.SIGTERM)
        code, out = await finish(proc, 30)
    assert code == 0, out
    assert '"worker.grace_expired"' in out
    counts = await queue.counts()
    assert counts["unknown"] == 5  # exactly the five on the wire
    assert counts["queued"] == 35 and counts["claimed"] == counts["in_flight"] == 0, out

"""`dispatcher demo`: the whole path on embedded defaults, with a progress bar and a report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg  # type: ignore[import-untyped]

from dispatcher import app
from dispatcher.clock import wait_event
from dispatcher.config import Config
from dispatcher.domain.jobs import NewMessage
from dispatcher.errors import DatabaseError, DispatcherError, InputError
from dispatcher.queue.repository import Queue
from dispatcher.sim.launch import SimulatorStartError, start_simulator
from dispatcher.sim.provision import setup_account
from dispatcher.worker.pool import RunReport, WorkerPool

DEMO_DB = "dispatcher_demo"
SIM_ADDRESS = "success@simulator.amazonses.com"
SENDER_DOMAIN = "example.com"  # the demo's sender, demo@example.com, is verified as a domain
MAX_COUNT = 1_000_000  # messages; the simulator sends them at --rate
MAX_RATE = 100_000  # recipients per second; SES accounts allow a few thousand at most


@contextlib.asynccontextmanager
async def simulator(rate: float) -> AsyncIterator[str]:
    """The SES simulator in a child process on a free loopback port, the demo's sender domain
    set up as a user sets it up (CreateEmailIdentity, then its verification); yields its URL."""
    try:
        async with start_simulator(max_send_rate=rate, stop_timeout=10.0) as sim:
            await setup_account(sim.endpoint_url, identities=(SENDER_DOMAIN,))
            yield sim.endpoint_url
    except SimulatorStartError as exc:  # raised only while starting: the demo's body cannot
        raise DispatcherError(str(exc)) from None


async def fresh_database(url: str) -> str:
    """(Re)create the demo's own database next to the configured one; returns its URL."""
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to the database: {exc}") from None
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {DEMO_DB} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {DEMO_DB}")
    except asyncpg.PostgresError as exc:
        raise DatabaseError(f"cannot create the demo database {DEMO_DB}: {exc}") from None
    finally:
        await conn.close()
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{DEMO_DB}"))


def demo_messages(count: int, run_id: str) -> list[NewMessage]:
    """Simulator addresses; every tenth message has three recipients (quotas count them all)."""
    out = []
    for i in range(count):
        to: tuple[str, ...] = (SIM_ADDRESS,)
        cc: tuple[str, ...] = ()
        if i % 10 == 9:
            to = (SIM_ADDRESS, f"success+{i}@simulator.amazonses.com")
            cc = (f"success+cc{i}@simulator.amazonses.com",)
        out.append(
            NewMessage(
                from_addr="demo@example.com",
                to=to,
                cc=cc,
                subject=f"dispatcher demo message {i + 1}",
                text=f"Hello from the dispatcher demo, message {i + 1} of {count}.",
                idempotency_key=f"demo-{run_id}-{i}",
                tags={"campaign": "demo"},
            )
        )
    return out


async def progress(pool: WorkerPool, total: int, rate: float, stop: asyncio.Event) -> None:
    """A progress bar on a terminal; a line every few seconds otherwise."""
    tty = sys.stderr.isatty()
    started = time.monotonic()
    last_line = 0.0
    while not stop.is_set():
        c = pool.counters
        done = c.sent + c.failed
        elapsed = time.monotonic() - started
        width = 30
        filled = int(width * done / total) if total else width
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  "
            f"{c.recipients_sent / elapsed if elapsed > 0 else 0:6.1f} recipients/s "
            f"(allowed {rate:g})  throttled {c.throttled}"
        )
        if tty:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
        elif elapsed - last_line >= 5:
            print(line, file=sys.stderr)
            last_line = elapsed
        await wait_event(stop, 0.2)
    if tty:
        sys.stderr.write("\n")


async def run_demo(cfg: Config, *, count: int, rate: float) -> int:
    if count < 1:
        raise InputError(f"--count must be at least 1, got {count}")
    if not rate > 0 or rate == float("inf"):
        raise InputError(f"--rate must be a positive number of recipients per second, got {rate}")
    # A demo of more would run for hours (a huge number would start one that never ends).
    if count > MAX_COUNT:
        raise InputError(f"--count must be at most {MAX_COUNT:,}, got {count}")
    if rate > MAX_RATE:
        raise InputError(f"--rate must be at most {MAX_RATE:,} recipients per second, got {rate:g}")
    base_url = await app.database_url(cfg)
    where = (cfg.database.url and "the configured database") or f"{cfg.database.data_dir}"
    print(f"postgres: {where} (demo database {DEMO_DB})")
    demo_url = await fresh_database(base_url)
    async with simulator(rate) as sim_url:
        print(f"simulator: {sim_url} (MaxSendRate {rate:g}/s)")
        demo_cfg = replace(
            cfg,
            database=replace(cfg.database, url=demo_url, migrate_on_start=True),
            ses=replace(
                cfg.ses,
                endpoint_url=sim_url,
                access_key_id=cfg.ses.access_key_id or "demo",
                secret_access_key=cfg.ses.secret_access_key or "demo",
            ),
        )
        run_id = f"{int(time.time())}"
        async with Queue.connect(demo_url, migrate=True) as queue:
            msgs = demo_messages(count, run_id)
            began = time.monotonic()
            await queue.enqueue_many(msgs)
            recipients = sum(m.recipient_count for m in msgs)
            print(
                f"queued {count} messages ({recipients} recipients) in "
                f"{time.monotonic() - began:.2f} s; sending..."
            )
        stop = asyncio.Event()
        done = asyncio.Event()
        bars: list[asyncio.Task[None]] = []

        def on_start(pool: WorkerPool) -> None:
            bars.append(asyncio.create_task(progress(pool, count, rate, done)))

        try:
            report = await app.run_worker(demo_cfg, stop, drain=True, on_start=on_start)
        finally:
            done.set()
            await asyncio.gather(*bars)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{sim_url}/_sim/stats") as resp:
                stats = await resp.json()
            async with http.get(f"{sim_url}/_sim/messages") as resp:
                accepted = await resp.json()
    ids = [m.get("tags", {}).get("dispatcher_id") for m in accepted]
    stats["distinct"] = len(set(ids))
    print_report(report, count, rate, cfg.pacing.burst_seconds, stats)
    # What SES (the simulator, gone now) accepted, as it recorded it: to check for yourself.
    record = cfg.database.data_dir / "demo-ses-record.json"
    record.parent.mkdir(parents=True, exist_ok=True)  # absent when the database is not embedded
    record.write_text(json.dumps(accepted, indent=1))
    print(f"  record     {record} (every message the simulator accepted)")
    return report.exit_code


def print_report(
    report: RunReport, count: int, rate: float, burst_seconds: float, stats: dict[str, object]
) -> None:
    c = report.counters
    window = (
        (c.last_send_at - c.first_send_at)
        if c.first_send_at is not None and c.last_send_at is not None
        else 0.0
    )
    # The sender starts without a saved-up burst (WorkerPool spends it), so it holds `rate` from
    # its first send to its last: N recipients over the window.
    achieved = c.recipients_sent / window if window > 0 else 0.0
    attempts = max(1, c.attempts)
    print(f"demo finished: {report.reason}")
    print(f"  sent       {c.sent} of {count} messages ({c.recipients_sent} recipients)")
    accepted, distinct = stats.get("accepted"), stats.get("distinct")
    once = "each message exactly once" if accepted == distinct == c.sent else "MISMATCH"
    print(f"  simulator  accepted {accepted} messages, {distinct} distinct ({once})")
    print(
        f"  rate       {achieved:.1f} recipients/s achieved vs {rate:g} allowed "
        f"({achieved / rate:.1%}, first send to last)"
    )
    print(f"  throttled  {c.throttled} ({c.throttled / attempts:.2%} of {c.attempts} attempts)")
    print(f"  failed     {c.failed}")
    print(f"  in doubt   {c.in_doubt}")
    print(f"  elapsed    {report.elapsed:.1f} s")

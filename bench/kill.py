"""SIGKILL one of two daemons at 200/s: how soon the survivors are back at the full rate and the
killed daemon's claimed mail is sent (issue 19 item 4's must-show).

    python -m bench.kill [--rate 200] [--seconds 20] [--kill-at 0.4] [--quick]

A throwaway Postgres, the simulator in its own process at MaxSendRate R with SES-like latency
(lognormal, median 60 ms, p99 250 ms), R x seconds messages queued, then two daemons
`dispatcher run --drain --processes 2` started together, each in a process group of its own.
When all four processes have sent for 2 s and the simulator has accepted at least `kill-at` of
the list, daemon A's whole group (parent and both workers) is SIGKILLed; the jobs A's workers
held (claimed or in flight) are read from the jobs table by lease owner. Daemon B drains the
rest and must exit 0. From the simulator's record
(acceptance times) and the jobs table:

- the rate over time (1 s windows), before and after the kill, and when each survivor was told
  its new share of the rate (its `pacing.share` log line);
- back at rate: the first moment s after the kill from which the survivors keep up 0.95 x R
  for 3 s: at least 0.95 x R x (t - s) acceptances in [s, t) for every t from s + 1 s to
  s + 3 s (a later dip shows in the lowest 1 s window and the plot);
- claimed mail resolved: from the kill until the last job A held is sent (the simulator's
  acceptance) or in doubt (the jobs row's update), and how many became in doubt;
- exactly once: every message accepted once, except the ones in doubt (listed), which at most once.

Checks (otherwise `bench failed: ...`, exit 1, the JSON still written): B exits 0, exactly
once, A held mail at the kill, back at rate and claimed mail resolved within `--target` s (2).
Writes bench/results/kill.json and, when matplotlib is importable, bench/results/kill.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import psutil

from bench.campaign import POLL_INTERVAL
from bench.harness import RESULTS, BenchError, SimControl, cli_env, run_bench, stderr_into
from bench.kill_figures import Run, analyse, plot, report
from bench.messages import make_messages, to_new_messages
from bench.rate import LATENCY, configure
from bench.services import Databases, run_simulator
from dispatcher.db.embedded import temporary_cluster
from dispatcher.obs.logging import configure_logging
from dispatcher.queue.repository import Queue

DAEMON_TIMEOUT = 300.0  # seconds the surviving daemon may take to drain
IN_TRANSIT = 0.1  # seconds after the kill for statements already sent to Postgres to finish


# -- the daemons ------------------------------------------------------------------------------


class Daemon:
    """`dispatcher run --drain --processes N` in a process group of its own."""

    def __init__(self, name: str, processes: int, env: dict[str, str], work: Path) -> None:
        self.name = name
        self.log = work / f"daemon-{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dispatcher.cli.main", "run", "--drain",
                 "--processes", str(processes)],
                env=env, cwd=str(work), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def worker_pids(self) -> list[int]:
        """The worker processes (children of the `run --processes` parent)."""
        with contextlib.suppress(psutil.Error):
            return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        return []

    async def kill_group(self) -> int:
        """SIGKILL the parent and its workers at once (the group is this daemon's alone), and
        return the parent's exit code once every one of them is dead."""
        workers: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            workers = psutil.Process(self.proc.pid).children(recursive=True)
        os.killpg(self.proc.pid, signal.SIGKILL)
        code = await self.wait(5.0)
        # The orphaned workers may stay zombies (nobody here reaps them): dead all the same.
        deadline = time.monotonic() + 5.0
        while any(_running(p) for p in workers):
            if time.monotonic() > deadline:
                raise BenchError(f"daemon {self.name}'s workers outlived SIGKILL")
            await asyncio.sleep(0.005)
        return code

    async def wait(self, limit: float = DAEMON_TIMEOUT) -> int:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), limit)
        except TimeoutError:
            self.stop()
            raise BenchError(f"daemon {self.name} took over {limit:.0f} s to drain") from None

    def stop(self) -> None:
        """At the end, whatever happened: nothing of ours left running."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 12) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- the run ----------------------------------------------------------------------------------


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def workers_of(dsn: str, pids: list[int]) -> list[str]:
    rows = await fetch(dsn, "SELECT id::text FROM dispatcher.workers WHERE pid = ANY($1)", pids)
    return [r["id"] for r in rows]


async def active_workers(dsn: str) -> int:
    rows = await fetch(
        dsn, "SELECT count(*) AS n FROM dispatcher.workers WHERE active_until > now()"
    )
    return int(rows[0]["n"])


async def kill_run(
    args: argparse.Namespace, dsn: str, raw: Any, sim: SimControl, work: Path
) -> Run:
    n = int(args.rate * args.seconds)
    async with Queue.connect(dsn, max_size=2) as queue:
        ids = [r.id for r in await queue.enqueue_many(to_new_messages(make_messages(n), 1))]
    await raw.reset()
    env = cli_env(dsn, raw, work)
    a = Daemon("a", args.processes, env, work)
    b = Daemon("b", args.processes, env, work)
    deadline = time.monotonic() + DAEMON_TIMEOUT

    async def stats() -> dict[str, Any]:
        """The simulator's counters, once both daemons are seen to be still running."""
        await asyncio.sleep(POLL_INTERVAL)
        if time.monotonic() > deadline:
            raise BenchError(f"no kill point within {DAEMON_TIMEOUT:.0f} s")
        for d in (a, b):
            if d.proc.poll() is not None:
                raise BenchError(
                    f"daemon {d.name} exited {d.proc.returncode} before the kill (a machine "
                    "this busy may need more --seconds for four processes to start); "
                    + "; ".join(f"daemon {e.name}'s last lines:\n{e.tail()}" for e in (a, b))
                )
        return await raw.stats()  # type: ignore[no-any-return]

    try:
        # The kill comes once all four processes have sent for 2 s (and `kill-at` of the list
        # is accepted): a process still starting (seconds on a busy machine) is not a survivor.
        while await active_workers(dsn) < 2 * args.processes:
            await stats()
        target = max(int(n * args.kill_at), (await stats())["accepted"] + int(2 * args.rate))
        while (at_kill := await stats())["accepted"] < target:
            pass
        killed = await workers_of(dsn, a.worker_pids())
        if len(killed) != args.processes:
            raise BenchError(f"daemon a has {len(killed)} registered workers, not {args.processes}")
        kill_wall = time.time()
        a_code = await a.kill_group()
        await asyncio.sleep(IN_TRANSIT)
        rows = await fetch(
            dsn,
            "SELECT id, state::text FROM dispatcher.jobs "
            "WHERE lease_owner = ANY($1::uuid[]) AND state IN ('claimed', 'in_flight')",
            killed,
        )
        held = {int(r["id"]): str(r["state"]) for r in rows}
        held_read_s = time.time() - kill_wall
        alive = await fetch(
            dsn, "SELECT count(*) AS n FROM dispatcher.workers WHERE id = ANY($1::uuid[])", killed
        )
        b_code = await b.wait()
    finally:
        a.stop()
        b.stop()
    await asyncio.sleep(0.5)  # the last answers' latency: the record is complete after it
    record = await sim.messages()
    throttled = int((await raw.stats()).get("throttled", 0))
    rows = await fetch(
        dsn,
        "SELECT id, state::text, extract(epoch FROM updated_at)::float8 AS at FROM dispatcher.jobs",
    )
    return Run(
        ids=ids,
        kill_wall=kill_wall,
        killed_workers=killed,
        held=held,
        workers_gone_at_read=len(killed) - int(alive[0]["n"]),
        held_read_s=held_read_s,
        a_code=a_code,
        b_code=b_code,
        b_output=b.output(),
        record=record,
        throttled=throttled,
        throttled_before_kill=int(at_kill.get("throttled", 0)),
        jobs={int(r["id"]): (str(r["state"]), float(r["at"])) for r in rows},
    )


async def main_async(args: argparse.Namespace) -> int:
    configure_logging("warning", "console")
    out: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.kill " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            "rate": args.rate,
            "seconds": args.seconds,
            "kill_at": args.kill_at,
            "processes_per_daemon": args.processes,
            "target_s": args.target,
            "simulator": LATENCY,
        },
    }
    with tempfile.TemporaryDirectory(prefix="bench-kill-") as tmp, temporary_cluster() as pg:
        work = Path(tmp)
        dbs = Databases(pg)
        await dbs.make_template()
        async with contextlib.AsyncExitStack() as stack:
            with stderr_into(work / "simulator.log"):
                raw = await stack.enter_async_context(run_simulator(max_send_rate=args.rate))
            http = await stack.enter_async_context(aiohttp.ClientSession())
            sim = SimControl(raw, http)
            await configure(http, sim, max_send_rate=args.rate, **LATENCY)
            dsn = await dbs.create()
            try:
                run = await kill_run(args, dsn, raw, sim, work)
            finally:
                await dbs.drop(dsn)
    res = analyse(run, args.rate, args.target, args.processes)
    out.update(res)
    report(res, args.rate)
    RESULTS.mkdir(exist_ok=True)
    png = RESULTS / "kill.png"
    out["plot"] = str(png) if plot(res, args.rate, args.target, png) else None
    path = RESULTS / "kill.json"
    out["ok"] = not res["problems"]
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}" + (f" and {png}" if out["plot"] else ""))
    if res["problems"]:
        raise BenchError("; ".join(res["problems"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.kill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=200.0, help="MaxSendRate (200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="queue = rate x this (20)")
    parser.add_argument("--kill-at", type=float, default=0.4, help="share accepted at the kill")
    parser.add_argument("--processes", type=int, default=2, help="per daemon (2)")
    parser.add_argument("--target", type=float, default=2.0, help="seconds allowed (2)")
    parser.add_argument("--quick", action="store_true", help="12 s of sending")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 12.0
    if not 0.1 <= args.kill_at <= 0.7 or args.rate <= 0 or args.seconds < 5:
        parser.error("--kill-at must be within 0.1-0.7, --rate > 0 and --seconds >= 5")
    return run_bench(main_async(args), "bench failed")


if __name__ == "__main__":
    sys.exit(main())

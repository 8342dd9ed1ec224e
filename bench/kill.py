"""SIGKILL one of two daemons at 200/s: how soon the survivors are back at the full rate and the
killed daemon's claimed mail is sent (issue 19 item 4's must-show).

    python -m bench.kill [--rate 200] [--seconds 20] [--kill-at 0.4] [--quick]

A throwaway Postgres, the simulator in its own process at MaxSendRate R with SES-like latency
(lognormal, median 60 ms, p99 250 ms), R x seconds messages queued, then two daemons
`dispatcher run --drain --processes 2` started together, each in a process group of its own.
When the simulator has accepted `kill-at` of the list, daemon A's whole group (parent and both
workers) is SIGKILLed; the jobs A's workers held (claimed or in flight) are read from the jobs
table by lease owner. Daemon B drains the rest and must exit 0. From the simulator's record
(acceptance times) and the jobs table:

- the rate over time (1 s windows), before and after the kill;
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
import bisect
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import psutil

from bench.campaign import (
    POLL_INTERVAL,
    RESULTS,
    BenchError,
    SimControl,
    cli_env,
    run_bench,
    stderr_into,
)
from bench.messages import make_messages, to_new_messages
from bench.rate import LATENCY, configure
from bench.services import Databases, run_simulator
from dispatcher.db.embedded import temporary_cluster
from dispatcher.obs.logging import configure_logging
from dispatcher.queue.repository import Queue

SHARE = 0.95  # of the allowed rate that counts as "back at rate"
WINDOW = 1.0  # seconds per rate window
STEP = 0.05  # seconds between window starts
HOLD = 3.0  # seconds the survivors must keep up the rate to count as back at it
TAIL = 1.0  # seconds at the end of sending left out of "sustained" (the queue runs dry there)
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


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- the run ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    ids: list[int]
    kill_wall: float  # unix seconds of the SIGKILL
    killed_workers: list[str]
    held: dict[int, str]  # job id -> state at the kill (claimed / in_flight)
    workers_gone_at_read: int  # A's workers already deleted when `held` was read (0 expected)
    held_read_s: float  # seconds after the kill `held` was read
    a_code: int
    b_code: int
    b_output: str
    record: list[dict[str, Any]]
    throttled: int  # sends the simulator refused for going past MaxSendRate
    jobs: dict[int, tuple[str, float]]  # job id -> (final state, updated_at in unix seconds)


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def workers_of(dsn: str, pids: list[int]) -> list[str]:
    rows = await fetch(dsn, "SELECT id::text FROM dispatcher.workers WHERE pid = ANY($1)", pids)
    return [r["id"] for r in rows]


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
    try:
        target = int(n * args.kill_at)
        accepted = 0
        while accepted < target:
            await asyncio.sleep(POLL_INTERVAL)
            accepted = (await raw.stats())["accepted"]
            for d in (a, b):
                if d.proc.poll() is not None:
                    raise BenchError(
                        f"daemon {d.name} exited {d.proc.returncode} before the kill:\n"
                        + "\n".join(d.output().splitlines()[-15:])
                    )
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
        jobs={int(r["id"]): (str(r["state"]), float(r["at"])) for r in rows},
    )


# -- the figures ------------------------------------------------------------------------------


def window_counts(times: list[float], starts: list[float], width: float = WINDOW) -> list[int]:
    """Acceptances in [s, s + width) for each start s (times sorted)."""
    return [bisect.bisect_left(times, s + width) - bisect.bisect_left(times, s) for s in starts]


def back_at_rate(times: list[float], rate: float, end: float) -> float | None:
    """The first s >= 0 from which the survivors keep up SHARE x rate for HOLD seconds: at
    least SHARE x rate x (t - s) acceptances in [s, t) for every t from s + 1 s to s + HOLD
    (or `end`, where the queue runs dry); times relative to the kill, sorted. Cumulative, so
    the latency's jitter in one window is no dip, while a shortfall that lasts is; None if
    there is no such s."""
    starts = [i * STEP for i in range(int(max(0.0, end - WINDOW) / STEP) + 1)]
    for s in starts:
        first = bisect.bisect_left(times, s)
        t = s + WINDOW
        while t <= min(s + HOLD, end) + 1e-9:
            if bisect.bisect_left(times, t) - first < SHARE * rate * (t - s):
                break
            t += STEP
        else:
            return s
    return None


def events_after(output: str, event: str, kill_wall: float, *keys: str) -> list[dict[str, Any]]:
    """The survivors' log lines of one event after the kill: seconds after it, and `keys`."""
    out = []
    needle = f'"{event}"'
    for line in output.splitlines():
        if needle not in line:
            continue
        with contextlib.suppress(ValueError, KeyError):
            obj = json.loads(line)
            at = datetime.fromisoformat(obj["timestamp"].replace("Z", "+00:00")).timestamp()
            if at >= kill_wall:
                out.append({"after_s": round(at - kill_wall, 3), **{k: obj.get(k) for k in keys}})
    return out


def analyse(run: Run, rate: float, target: float) -> dict[str, Any]:
    seen = Counter(int(m["tags"]["dispatcher_id"]) for m in run.record)
    accepted_at: dict[int, float] = {}
    for m in run.record:
        i = int(m["tags"]["dispatcher_id"])
        accepted_at[i] = max(accepted_at.get(i, 0.0), float(m["accepted_at"]))
    ids = set(run.ids)
    states = Counter(state for state, _ in run.jobs.values())
    in_doubt = sorted(i for i, (state, _) in run.jobs.items() if state == "unknown")
    problems: list[str] = []

    # exactly once
    lost = sorted(i for i in ids if not seen[i] and i not in in_doubt)
    twice = sorted(i for i, c in seen.items() if c > 1)
    strangers = sorted(set(seen) - ids)
    not_final = {s: c for s, c in states.items() if s not in ("sent", "unknown")}
    if lost or twice or strangers or not_final:
        problems.append(
            f"not exactly once: {len(lost)} lost, {len(twice)} accepted more than once, "
            f"{len(strangers)} unknown ids accepted, jobs not sent or in doubt: {not_final}"
        )
    if run.b_code != 0:
        tail = "\n".join(run.b_output.splitlines()[-10:])
        problems.append(f"the surviving daemon exited {run.b_code}:\n{tail}")
    if run.a_code != -signal.SIGKILL:
        problems.append(f"the killed daemon exited {run.a_code}, not by SIGKILL")

    # the held jobs: when each was sent (the simulator) or put in doubt (the jobs row)
    resolved: dict[int, float] = {}
    unresolved = []
    for i in run.held:
        state, updated = run.jobs.get(i, ("missing", 0.0))
        if state == "sent" and i in accepted_at:
            resolved[i] = accepted_at[i] - run.kill_wall
        elif state == "unknown":
            resolved[i] = updated - run.kill_wall
        else:
            unresolved.append(i)
    if not run.held:
        problems.append("the killed daemon held no mail at the kill: nothing was measured")
    if run.workers_gone_at_read:
        problems.append("the killed workers were recovered before their jobs were read")
    if unresolved:
        problems.append(f"{len(unresolved)} job(s) the killed daemon held were never resolved")
    resolve_s = max(resolved.values()) if resolved and not unresolved else None
    held_in_doubt = sorted(i for i in run.held if run.jobs.get(i, ("", 0.0))[0] == "unknown")

    # the rate over time, relative to the kill
    times = sorted(float(m["accepted_at"]) - run.kill_wall for m in run.record)
    first, last = times[0], times[-1]
    before = sum(1 for t in times if t < 0)
    after = len(times) - before
    end = last - TAIL
    back = back_at_rate(times, rate, end) if end > WINDOW else None
    starts = [i * STEP for i in range(int(max(0.0, end - WINDOW) / STEP) + 1)]
    dip = min(window_counts(times, starts)) if starts else None
    series_starts = [first + i * 0.1 for i in range(int((last - first) / 0.1) + 1)]
    series = window_counts(times, [s - WINDOW for s in series_starts])  # trailing 1 s windows
    if back is None:
        problems.append(f"never back at {SHARE:.2f} x {rate:g}/s after the kill")
    elif back > target:
        problems.append(f"back at rate {back:.2f} s after the kill, target {target:g} s")
    if resolve_s is not None and resolve_s > target:
        problems.append(
            f"the killed daemon's claimed mail resolved {resolve_s:.2f} s after the kill, "
            f"target {target:g} s"
        )
    return {
        "messages": len(ids),
        "kill_at_s": round(-first, 3),
        "rate_before_per_s": round(before / -first, 1) if first < 0 else None,
        "rate_after_per_s": round(after / last, 1) if last > 0 else None,
        "back_at_rate_s": None if back is None else round(back, 2),
        "lowest_1s_window_after_kill": dip,
        "throttled": run.throttled,
        "held_at_kill": dict(Counter(run.held.values())),
        "held_read_s": round(run.held_read_s, 3),
        "held_resolved_s": None if resolve_s is None else round(resolve_s, 3),
        "held_resolved_quantiles_s": quantiles(list(resolved.values())),
        "held_in_doubt": held_in_doubt,
        "recovered_log": events_after(
            run.b_output, "queue.recovered", run.kill_wall, "requeued", "in_doubt"
        ),
        "share_log": events_after(
            run.b_output, "pacing.share", run.kill_wall, "share", "rate", "worker_id"
        ),
        "in_doubt": [{"id": i, "accepted_by_simulator": seen[i]} for i in in_doubt],
        "job_states": dict(states),
        "lost": lost,
        "duplicates": twice,
        "strangers": strangers,
        "killed_workers": run.killed_workers,
        "daemon_exit_codes": {"a": run.a_code, "b": run.b_code},
        "accepted_s_since_kill": [round(t, 4) for t in times],
        "series": {
            "t_s": [round(s, 2) for s in series_starts],
            "per_s_trailing_1s": series,
        },
        "problems": problems,
    }


def quantiles(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    s = sorted(xs)
    return {
        q: round(s[min(len(s) - 1, int(p * len(s)))], 3)
        for q, p in (("p50", 0.5), ("p90", 0.9), ("max", 1.0))
    }


def plot(res: dict[str, Any], rate: float, target: float, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not importable: no plot (pip install -e '.[bench]')")
        return False
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.plot(res["series"]["t_s"], res["series"]["per_s_trailing_1s"], label="accepted, last 1 s")
    ax.axhline(rate, color="grey", linestyle="--", label=f"MaxSendRate {rate:g}/s")
    ax.axhline(SHARE * rate, color="grey", linestyle=":", label=f"{SHARE:.2f} x rate")
    ax.axvline(0.0, color="red", label="SIGKILL of daemon A")
    ax.axvspan(0.0, target, color="red", alpha=0.08, label=f"{target:g} s target")
    if res["back_at_rate_s"] is not None:
        ax.axvline(res["back_at_rate_s"], color="green", linestyle="--", label="back at rate")
    if res["held_resolved_s"] is not None:
        ax.axvline(
            res["held_resolved_s"], color="purple", linestyle="-.", label="A's mail resolved"
        )
    ax.set_xlabel("seconds since the SIGKILL (simulator clock)")
    ax.set_ylabel("messages/s")
    ax.set_title("two daemons x 2 processes, one SIGKILLed")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def report(res: dict[str, Any], rate: float) -> None:
    held = res["held_at_kill"]
    print(
        f"{res['messages']:,} messages at MaxSendRate {rate:g}/s; daemon A SIGKILLed "
        f"{res['kill_at_s']:.1f} s after the first acceptance, holding "
        f"{held.get('claimed', 0)} claimed + {held.get('in_flight', 0)} in flight"
    )
    print(
        f"rate: {res['rate_before_per_s']}/s before the kill, {res['rate_after_per_s']}/s after; "
        f"lowest 1 s window after the kill {res['lowest_1s_window_after_kill']}; "
        f"throttled {res['throttled']}"
    )
    print(f"back at >= {SHARE:.2f} x {rate:g}/s: {res['back_at_rate_s']} s after the kill")
    print(
        f"A's claimed mail sent or in doubt: {res['held_resolved_s']} s after the kill "
        f"(quantiles {res['held_resolved_quantiles_s']}); in doubt {len(res['held_in_doubt'])}"
    )
    for r in res["recovered_log"]:
        print(
            f"  queue.recovered {r['after_s']} s after the kill: {r['requeued']} requeued, "
            f"{r['in_doubt']} in doubt"
        )
    for r in res["share_log"]:
        print(f"  pacing.share {r['after_s']} s after the kill: share {r['share']}, {r['rate']}/s")
    doubt = res["in_doubt"]
    print(
        f"exactly once: lost {len(res['lost'])}, duplicates {len(res['duplicates'])}, "
        f"in doubt {len(doubt)} (of those the simulator accepted "
        f"{sum(1 for d in doubt if d['accepted_by_simulator'])}): "
        + ", ".join(str(d["id"]) for d in doubt[:40])
        + (" ..." if len(doubt) > 40 else "")
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
    res = analyse(run, args.rate, args.target)
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

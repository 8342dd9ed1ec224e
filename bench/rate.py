"""Rate fidelity: how close the dispatcher sends to the account's MaxSendRate, and how often SES
(the simulator) refuses it for going faster.

    python -m bench.rate [--rates 14,100,1000] [--seconds 20] [--quick] [--processes auto]
                         [--bulk-rates 3000] [--bulk-processes auto] [--long]

For each MaxSendRate R: a campaign of R x seconds recipients (bench.campaign's machinery: a
throwaway Postgres, the simulator in its own process with SES-like latency, lognormal, median
60 ms, p99 250 ms), then `dispatcher run --drain --processes auto` as its own process, with
delivery.max_in_flight at its default (auto), as a user starts it. From the simulator's record:
achieved rate = recipients accepted per second between the first and the last acceptance,
achieved / allowed, throttled % = throttled sends / all sends, and the accepted count per second
over time. Each rate is verified first: every recipient accepted exactly once, nothing else
accepted, every job `sent`; otherwise `bench failed: ...` and exit code 1. Writes
bench/results/rate.json, and bench/results/rate.png (rate over time against the allowed rate)
when matplotlib is importable (`pip install -e '.[bench]'`). CPU ms per message over each send
span (the daemon's processes and Postgres) stands next to bench/baseline.py's bare aioboto3 loop
against the same simulator, in the same run (bench/cpu.py).

``--bulk-rates 3000`` (the default; 0 = none) adds, after the per-message rates, a campaign
created with ``--ses-template`` (SES renders it): SendBulkEmail, 50 recipients a call, as often
as SES answers it (once a second for the account), and templated SendEmail calls in between,
sent by ``run --drain --processes`` (``--bulk-processes``, default auto). ``--long`` is one
minute at 1,000/s (``--rates 1000 --seconds 60 --bulk-rates 0``), to see the rate stay flat.
Each result also says how flat its rate is: the lowest and highest second and the coefficient of
variation of the seconds between the first and the last, and the mean of each half.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.campaign import (
    RESULTS,
    BenchError,
    Child,
    Imported,
    SimControl,
    address,
    cli_env,
    create_args,
    created,
    import_list,
    job_counts,
    run_bench,
    run_cli,
    sizes,
    stderr_into,
    write_list,
    write_templates,
)
from bench.cpu import TreeCpu, bare_loop_child, process_tree_cpu
from bench.services import Databases, run_simulator
from dispatcher.db.embedded import temporary_cluster
from dispatcher.obs.logging import configure_logging

LATENCY: dict[str, Any] = {
    "latency_model": "lognormal",
    "latency_ms": 60.0,
    "latency_p99_ms": 250.0,
}


def per_second(times: list[float]) -> list[int]:
    """Accepted count in each whole second from the first acceptance."""
    if not times:
        return []
    start = min(times)
    buckets = Counter(int(t - start) for t in times)
    return [buckets.get(i, 0) for i in range(max(buckets) + 1)]


def check_once(rate: float, n: int, record: list[dict[str, Any]], states: dict[str, int]) -> None:
    """Every recipient accepted exactly once and every job sent, or the figures mean nothing."""
    times = Counter(to for m in record for to in m["to"])
    recipients = {address(i) for i in range(n)}
    problems = []
    lost = len(recipients - set(times))
    twice = sum(1 for a in recipients if times[a] > 1)
    strangers = len(set(times) - recipients)
    if lost or twice or strangers:
        problems.append(
            f"of {n} recipients {lost} never accepted, {twice} accepted more than once, "
            f"and {strangers} address(es) not on the list accepted"
        )
    if states.get("sent", 0) != n:
        problems.append(f"jobs by state {states}, expected {n} sent")
    if problems:
        raise BenchError(f"MaxSendRate {rate:g}/s: " + "; ".join(problems))


async def configure(http: aiohttp.ClientSession, sim: SimControl, **settings: Any) -> None:
    async with http.post(sim.sim.endpoint_url + "/_sim/config", json=settings) as resp:
        if resp.status != 200:
            raise BenchError(f"simulator config {settings} -> {resp.status}: {await resp.text()}")


async def one_rate(
    dbs: Databases,
    sim: SimControl,
    http: aiohttp.ClientSession,
    work: Path,
    rate: float,
    seconds: float,
    templates: tuple[Path, Path],
    processes: str = "auto",
) -> dict[str, Any]:
    n = max(20, int(rate * seconds))
    await configure(http, sim, max_send_rate=rate, **LATENCY)
    imp = await import_list(dbs, sim.sim, work, n, *templates)
    try:
        await sim.sim.reset()
        env = cli_env(imp.dsn, sim.sim, work)
        (await run_cli(env, work, "campaign", "start", str(imp.campaign_id))).check()
        # As a user would: `--processes auto`, delivery.max_in_flight at its default (auto).
        child = Child(["run", "--drain", "--processes", processes], env, work)
        cpu = TreeCpu({"daemon": lambda: process_tree_cpu(child.pid), "postgres": dbs.cpu})
        cpu.start()
        try:
            drained = (await child.wait()).check()
        finally:
            await cpu.stop()
        stats = await sim.sim.stats()
        record = await sim.messages()
        states = await job_counts(imp.dsn)
    finally:
        await dbs.drop(imp.dsn)
    check_once(rate, n, record, states)
    times = sorted(float(m["accepted_at"]) for m in record)
    return {
        "processes": processes,
        **cpu_per_message(cpu, times),
        **sent_figures(rate, n, stats, times, drained.wall),
    }


def sent_figures(
    rate: float, n: int, stats: dict[str, Any], times: list[float], wall: float
) -> dict[str, Any]:
    """What one drain achieved, from the simulator's stats and acceptance times (sorted)."""
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    achieved = (len(times) - 1) / span if span > 0 else 0.0
    accepted, throttled = int(stats["accepted"]), int(stats.get("throttled", 0))
    return {
        "allowed_per_s": rate,
        "recipients": n,
        "accepted": accepted,
        "throttled": throttled,
        "throttled_pct": 100.0 * throttled / (accepted + throttled) if accepted else 0.0,
        "achieved_per_s": achieved,
        "achieved_over_allowed": achieved / rate,
        "send_span_s": span,
        "drain_wall_s": wall,
        "per_second": per_second(times),
        "first_accepted_at": times[0],
    }


def cpu_per_message(cpu: TreeCpu, times: list[float]) -> dict[str, float | None]:
    """CPU ms per accepted message from the first to the last acceptance: the daemon (every
    process of it) and Postgres."""
    sent = len(times) - 1
    out: dict[str, float | None] = {}
    for name in ("daemon", "postgres"):
        spent = cpu.between(name, times[0], times[-1]) if sent > 0 else None
        out[f"cpu_ms_per_msg_{name}"] = None if spent is None else 1000.0 * spent / sent
    d, p = out["cpu_ms_per_msg_daemon"], out["cpu_ms_per_msg_postgres"]
    out["cpu_ms_per_msg_all_in"] = None if d is None or p is None else d + p
    return out


async def bare_loop(http: aiohttp.ClientSession, sim: SimControl, messages: int) -> dict[str, Any]:
    """bench/baseline.py's loop against the same simulator (its rate limit lifted, the latency
    kept), 64 sends at a time: CPU ms per message of "just call SES"."""
    await configure(http, sim, max_send_rate=1e9, **LATENCY)
    return await bare_loop_child(sim.sim.endpoint_url, messages, 64)


class MachineLoad:
    """Every second: the whole machine's CPU busy fraction (other sessions' work included) and
    the cores our `dispatcher` processes used, so a dip in the rate can be told apart from a
    neighbour taking the cores, and the dispatcher's own CPU per recipient followed over time."""

    def __init__(self) -> None:
        # (unix end of the second, machine busy 0..1, cores used by our dispatcher processes)
        self.samples: list[tuple[float, float, float]] = []
        self._task: asyncio.Task[None] | None = None
        self._tick = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _machine() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    @staticmethod
    def _ours() -> dict[int, int]:
        """CPU ticks of each `dispatcher` process descending from this benchmark."""
        parent: dict[int, int] = {}
        ticks: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(entry)] = int(fields[1])
            ticks[int(entry)] = int(fields[11]) + int(fields[12])  # utime + stime
        me, out = os.getpid(), {}
        for pid in ticks:
            p, depth = parent.get(pid, 0), 0
            while p not in (0, 1, me) and depth < 20:
                p, depth = parent.get(p, 0), depth + 1
            if p == me:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if b"dispatcher.cli.main" in f.read():
                            out[pid] = ticks[pid]
                except OSError:
                    continue
        return out

    async def _run(self) -> None:
        last, last_ours = self._machine(), self._ours()
        while last is not None:
            await asyncio.sleep(1.0)
            now, ours = self._machine(), self._ours()
            if now is None:
                return
            total, idle = now[0] - last[0], now[1] - last[1]
            used = sum(t - last_ours[pid] for pid, t in ours.items() if pid in last_ours)
            busy = 1.0 - idle / total if total else 0.0
            self.samples.append((time.time(), busy, used / self._tick))
            last, last_ours = now, ours

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="machine-load")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def attach(self, r: dict[str, Any]) -> None:
        """Add to a result, per second of its send: machine busy, our cores, CPU ms a recipient."""
        busy, cores = [], []
        for i in range(len(r["per_second"])):
            mid = r["first_accepted_at"] + i + 0.5
            hit = [(b, c) for t, b, c in self.samples if t - 1.0 <= mid < t]
            busy.append(round(hit[0][0], 3) if hit else float("nan"))
            cores.append(round(hit[0][1], 3) if hit else float("nan"))
        r["machine_busy"], r["dispatcher_cores"] = busy, cores
        ms = [1000 * c / n for c, n in zip(cores, r["per_second"], strict=True) if n and c == c]
        inner = ms[1:-1]
        if len(inner) >= 2:
            half = len(inner) // 2
            r["cpu_ms_per_recipient"] = {
                "mean": statistics.fmean(inner),
                "first_half_mean": statistics.fmean(inner[:half]),
                "second_half_mean": statistics.fmean(inner[half:]),
            }


def bulk_rates(text: str) -> list[int]:
    """``--bulk-rates``: sizes, or 0 for none."""
    return [] if text.strip() in ("", "0") else sizes(text)


def flatness(series: list[int]) -> dict[str, float]:
    """How flat a rate is: the whole seconds between the first and the last (both partial)."""
    inner = series[1:-1]
    if len(inner) < 2:
        return {}
    mean = statistics.fmean(inner)
    half = len(inner) // 2
    return {
        "seconds": len(inner),
        "min": min(inner),
        "max": max(inner),
        "cv": statistics.pstdev(inner) / mean if mean else 0.0,
        "first_half_mean": statistics.fmean(inner[:half]),
        "second_half_mean": statistics.fmean(inner[half:]),
    }


async def import_bulk(dbs: Databases, sim: SimControl, work: Path, n: int) -> Imported:
    """`campaign create --ses-template` of n recipients (SES syntax: the same text as ours)."""
    html, text = write_templates(work)  # {{ name }} and {{ email }}: valid SES syntax too
    dsn = await dbs.create()
    path = write_list(work / f"list-bulk-{n}.csv", n)
    args = [*create_args(f"bench-bulk-{n}", path, html, text), "--ses-template"]
    done = await run_cli(cli_env(dsn, sim.sim, work), work, *args)
    campaign_id = created(done.check(), n)
    path.unlink()
    return Imported(n, done.wall, done.maxrss_mb, campaign_id, dsn)


async def one_bulk_rate(
    dbs: Databases,
    sim: SimControl,
    http: aiohttp.ClientSession,
    work: Path,
    rate: float,
    seconds: float,
    processes: str,
) -> dict[str, Any]:
    """An SES-template campaign of rate x seconds recipients at MaxSendRate `rate`."""
    n = max(100, int(rate * seconds))
    await configure(http, sim, max_send_rate=rate, **LATENCY)
    imp = await import_bulk(dbs, sim, work, n)
    try:
        await sim.sim.reset()
        env = cli_env(imp.dsn, sim.sim, work)
        (await run_cli(env, work, "campaign", "start", str(imp.campaign_id))).check()
        argv = ["run", "--drain", "--processes", processes]
        drained = (await Child(argv, env, work).wait()).check()
        stats = await sim.sim.stats()
        record = await sim.messages()
        states = await job_counts(imp.dsn)
    finally:
        await dbs.drop(imp.dsn)
    check_once(rate, n, record, states)
    times = sorted(float(m["accepted_at"]) for m in record)
    figures = sent_figures(rate, n, stats, times, drained.wall)
    return {
        "mode": "bulk: --ses-template, SendBulkEmail + templated SendEmail",
        "processes": processes,
        **figures,
        "by_operation": dict(Counter(str(m.get("operation")) for m in record)),
        "flatness": flatness(figures["per_second"]),
    }


def describe(r: dict[str, Any]) -> str:
    """One line of a result: achieved, throttled, flatness."""
    flat = r.get("flatness") or {}
    line = (
        f"MaxSendRate {r['allowed_per_s']:>6g}/s: achieved {r['achieved_per_s']:8.1f}/s = "
        f"{r['achieved_over_allowed']:.3f} of allowed, throttled {r['throttled_pct']:.2f} % "
        f"({r['throttled']} of {r['accepted'] + r['throttled']} sends), "
        f"{r['recipients']:,} recipients"
    )
    if flat:
        line += (
            f"; per second {flat['min']}-{flat['max']} (cv {flat['cv']:.3f}, halves "
            f"{flat['first_half_mean']:.0f} / {flat['second_half_mean']:.0f})"
        )
    busy = [b for b in r.get("machine_busy", []) if b == b]  # nan: not sampled
    if busy:
        line += f"; machine CPU busy {100 * statistics.fmean(busy):.0f} % (all sessions)"
    cpu = r.get("cpu_ms_per_recipient")
    if cpu:
        line += (
            f"; dispatcher CPU {cpu['mean']:.2f} ms/recipient (halves "
            f"{cpu['first_half_mean']:.2f} / {cpu['second_half_mean']:.2f})"
        )
    if "cpu_ms_per_msg_daemon" in r:
        line += (
            f"; --processes {r['processes']}, CPU ms/msg {_ms(r['cpu_ms_per_msg_daemon'])} "
            f"daemon + {_ms(r['cpu_ms_per_msg_postgres'])} Postgres"
        )
    if "by_operation" in r:
        line += f"; {r['mode']}, --processes {r['processes']}: {r['by_operation']}"
    return line


def plot(results: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not importable: no plot (pip install -e '.[bench]')")
        return False
    fig, axes = plt.subplots(len(results), 1, figsize=(8, 2.6 * len(results)), squeeze=False)
    for ax, r in zip(axes[:, 0], results, strict=True):
        series = r["per_second"]
        ax.step(range(len(series)), series, where="post", label="accepted per second")
        ax.axhline(r["allowed_per_s"], color="red", linestyle="--", label="MaxSendRate")
        ax.set_title(
            f"MaxSendRate {r['allowed_per_s']:g}/s{' bulk' if 'by_operation' in r else ''}, "
            f"--processes {r.get('processes', 1)}: achieved {r['achieved_over_allowed']:.3f}"
            f" of allowed, {r['throttled_pct']:.2f} % throttled"
        )
        ax.set_xlabel("seconds since the first acceptance")
        ax.set_ylabel("recipients/s")
        ax.legend(loc="lower right")
        busy, cores = r.get("machine_busy"), r.get("dispatcher_cores")
        if busy and cores:  # the machine's CPU, other sessions included: a dip may be theirs
            twin = ax.twinx()
            xs = [i + 0.5 for i in range(len(busy))]
            ncpu = os.cpu_count() or 1
            twin.plot(xs, [ncpu * b for b in busy], "grey", lw=0.7)
            twin.plot(xs, cores, "green", lw=0.7)
            twin.set_ylim(0, ncpu * 1.05)
            twin.set_ylabel("cores: machine (grey), ours (green)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


async def main_async(args: argparse.Namespace) -> int:
    configure_logging("warning", "console")
    out: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.rate " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            "rates": args.rates,
            "seconds": args.seconds,
            "processes": args.processes,
            "simulator": LATENCY,
            "bulk_rates": args.bulk_rates,
            "bulk_processes": args.bulk_processes,
        },
    }
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp, temporary_cluster() as pg:
        work = Path(tmp)
        templates = write_templates(work)
        dbs = Databases(pg)
        await dbs.make_template()
        async with contextlib.AsyncExitStack() as stack:
            with stderr_into(work / "simulator.log"):
                raw = await stack.enter_async_context(run_simulator(max_send_rate=14.0))
            http = await stack.enter_async_context(aiohttp.ClientSession())
            sim = SimControl(raw, http)
            load = MachineLoad()
            load.start()
            for rate in args.rates:
                for procs in args.processes:
                    r = await one_rate(
                        dbs, sim, http, work, float(rate), args.seconds, templates, procs
                    )
                    results.append(r)
                    r["flatness"] = flatness(r["per_second"])
                    load.attach(r)
                    print(describe(r), flush=True)
            for rate in args.bulk_rates:
                r = await one_bulk_rate(
                    dbs, sim, http, work, float(rate), args.seconds, args.bulk_processes
                )
                results.append(r)
                load.attach(r)
                print(describe(r), flush=True)
            load.stop()
            bare = await bare_loop(http, sim, args.bare_messages)
            out["bare_loop"] = bare
            print(
                f"bare aioboto3 loop (bench/baseline.py, 64 at a time): "
                f"{bare['cpu_ms_per_msg']:.3f} CPU ms/msg, {bare['msgs_per_s']:.0f} msgs/s"
            )
            for r in results:
                d = r.get("cpu_ms_per_msg_all_in")
                r["cpu_all_in_over_bare_loop"] = None if d is None else d / bare["cpu_ms_per_msg"]
    out["results"] = results
    RESULTS.mkdir(exist_ok=True)
    png = RESULTS / "rate.png"
    out["plot"] = str(png.relative_to(RESULTS.parent.parent)) if plot(results, png) else None
    path = RESULTS / "rate.json"
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}" + (f" and {png}" if out["plot"] else ""))
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rates", type=sizes, default=[14, 100, 1000], help="MaxSendRates")
    parser.add_argument("--seconds", type=float, default=20.0, help="sending time per rate (20)")
    parser.add_argument(
        "--processes",
        type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
        default=["auto"],
        help="`run --processes` for each rate, comma-separated N|auto (auto): 1,2,3 finds the knee",
    )
    parser.add_argument(
        "--bare-messages", type=int, default=3000, help="sends of the bare aioboto3 loop (3000)"
    )
    parser.add_argument("--quick", action="store_true", help="8 s per rate")
    parser.add_argument(
        "--bulk-rates",
        type=bulk_rates,
        default=[3000],
        help="MaxSendRates for an --ses-template campaign (3000; 0 = none)",
    )
    parser.add_argument(
        "--bulk-processes", default="auto", help="`run --processes` of the bulk campaign (auto)"
    )
    parser.add_argument(
        "--long", action="store_true", help="one minute at 1,000/s: --rates 1000 --seconds 60"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 8.0
    if args.long:
        args.rates, args.seconds, args.bulk_rates = [1000], 60.0, []
    return run_bench(main_async(args), "bench.rate")


if __name__ == "__main__":
    sys.exit(main())

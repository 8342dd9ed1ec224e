"""Rate fidelity: how close the dispatcher sends to the account's MaxSendRate, and how often SES
(the simulator) refuses it for going faster.

    python -m bench.rate [--rates 14,100,1000] [--seconds 20] [--quick] [--processes auto]
                         [--bulk-rates 3000] [--bulk-processes 1] [--long]

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
span (the daemon's processes and Postgres; the simulator's beside them, as it shares the cores)
stands next to bench/baseline.py's bare aioboto3 loop
against the same simulator, in the same run (bench/cpu.py).

``--bulk-rates 3000`` (the default; 0 = none) adds, after the per-message rates, a campaign
created with ``--ses-template`` (SES renders it): SendBulkEmail, 50 recipients a call, as often
as SES answers it (once a second for the account), and templated SendEmail calls in between,
sent by ``run --drain --processes`` (``--bulk-processes``, default 1: one process needs about
0.75 of a core at 3,000/s here, so it is enough, and a second one on these 2 cores costs more CPU
per recipient in the daemon, Postgres and the simulator and sends less; ``auto`` to compare).
``--long`` is one minute at 1,000/s (``--rates 1000 --seconds 60 --bulk-rates 0``), to see the
rate stay flat.
Each result also says how flat its rate is: the lowest and highest second and the coefficient of
variation of the seconds between the first and the last, and the mean of each half.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.campaign import Imported, import_list, job_counts, sizes
from bench.cpu import ProcessTree, TreeCpu, bare_loop_child
from bench.harness import (
    RESULTS,
    BenchError,
    Child,
    SimControl,
    cli_env,
    run_bench,
    run_cli,
    stderr_into,
)
from bench.lists import address, create_args, created, write_list, write_templates
from bench.rate_figures import (
    MachineLoad,
    cpu_per_message,
    describe,
    flatness,
    plot,
    sent_figures,
)
from bench.services import Databases, run_simulator
from dispatcher.db.embedded import temporary_cluster
from dispatcher.obs.logging import configure_logging

LATENCY: dict[str, Any] = {
    "latency_model": "lognormal",
    "latency_ms": 60.0,
    "latency_p99_ms": 250.0,
}


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
    sent = await send_campaign(dbs, sim, work, imp, rate, processes, measure_cpu=True)
    assert sent.cpu is not None
    return {
        "processes": processes,
        **cpu_per_message(sent.cpu, sent.times),
        **sent_figures(rate, n, sent.stats, sent.times, sent.wall),
    }


@dataclass(frozen=True, slots=True)
class Sent:
    """What one campaign's `run --drain` showed: the simulator's stats and record, when each
    recipient was accepted, the drain's wall time, and the CPU sampled (if asked)."""

    stats: dict[str, Any]
    record: list[dict[str, Any]]
    times: list[float]
    wall: float
    cpu: TreeCpu | None


async def send_campaign(
    dbs: Databases,
    sim: SimControl,
    work: Path,
    imp: Imported,
    rate: float,
    processes: str,
    *,
    measure_cpu: bool,
) -> Sent:
    """Start the imported campaign, `run --drain --processes` it as a user would (with
    delivery.max_in_flight at its default, auto), check each recipient went out once, drop
    the database."""
    try:
        await sim.sim.reset()
        env = cli_env(imp.dsn, sim.sim, work)
        (await run_cli(env, work, "campaign", "start", str(imp.campaign_id))).check()
        child = Child(["run", "--drain", "--processes", processes], env, work)
        cpu = None
        if measure_cpu:
            postmaster = dbs.postmaster_pid
            if postmaster is None:
                raise BenchError("cannot read the Postgres server's pid (postmaster.pid)")
            cpu = TreeCpu(
                {
                    "daemon": ProcessTree(child.pid),
                    "postgres": ProcessTree(postmaster, server=True),
                    "simulator": ProcessTree(sim.sim.pid),
                }
            )
            cpu.start()
        try:
            drained = (await child.wait()).check()
        finally:
            if cpu is not None:
                await cpu.stop()
        stats = await sim.sim.stats()
        record = await sim.messages()
        states = await job_counts(imp.dsn)
    finally:
        await dbs.drop(imp.dsn)
    check_once(rate, imp.rows, record, states)
    times = sorted(float(m["accepted_at"]) for m in record)
    return Sent(stats, record, times, drained.wall, cpu)


async def bare_loop(http: aiohttp.ClientSession, sim: SimControl, messages: int) -> dict[str, Any]:
    """bench/baseline.py's loop against the same simulator (its rate limit lifted, the latency
    kept), 64 sends at a time: CPU ms per message of "just call SES"."""
    await configure(http, sim, max_send_rate=1e9, **LATENCY)
    return await bare_loop_child(sim.sim.endpoint_url, messages, 64)


def bulk_rates(text: str) -> list[int]:
    """``--bulk-rates``: sizes, or 0 for none."""
    return [] if text.strip() in ("", "0") else sizes(text)


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
    sent = await send_campaign(dbs, sim, work, imp, rate, processes, measure_cpu=True)
    assert sent.cpu is not None
    record = sent.record
    figures = sent_figures(rate, n, sent.stats, sent.times, sent.wall)
    return {
        "mode": "bulk: --ses-template, SendBulkEmail + templated SendEmail",
        "processes": processes,
        **cpu_per_message(sent.cpu, sent.times),
        **figures,
        "by_operation": dict(Counter(str(m.get("operation")) for m in record)),
        "flatness": flatness(figures["per_second"]),
    }


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
        "--bulk-processes", default="1", help="`run --processes` of the bulk campaign (1)"
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

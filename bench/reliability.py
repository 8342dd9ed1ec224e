"""SIGKILL the daemon at random moments during a campaign, again and again, then verify everyone.

    python -m bench.reliability [--recipients 20000] [--kills 5] [--rate 1000] [--seed N] [--quick]

Reuses bench.harness and bench.campaign (a throwaway Postgres, the simulator in its own process,
every step a `dispatcher ...` child): `campaign create` of N recipients, `campaign start`, then
`kills` times: `run` until the simulator has accepted a random share of the list, SIGKILL, note
what was claimed / in flight; finally `run --drain` until it exits 0 and the recipient-by-recipient
check of bench.campaign.verify (simulator record against `campaign report`): lost must be 0,
duplicates <= sends in flight at the kills, the in-doubt ones listed. Per kill it reports the
accepted count at the signal and the sends in flight (each becomes one in-doubt recipient); lost
and duplicates can only be counted over the whole run (the simulator does not say which worker sent
a message). Writes bench/results/reliability.json; a failed verification exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]

from bench.campaign import POLL_INTERVAL, SETTLE_PAUSE, SendRun, import_list, job_counts, verify
from bench.harness import RESULTS, Child, SimControl, cli_env, run_bench, run_cli, stderr_into
from bench.lists import write_templates
from bench.services import Databases, run_simulator
from dispatcher.db.embedded import temporary_cluster
from dispatcher.obs.logging import configure_logging

LEASE = {"DISPATCHER_QUEUE__LEASE_SECONDS": "2", "DISPATCHER_QUEUE__HEARTBEAT_SECONDS": "0.5"}


async def in_flight_ids(dsn: str) -> set[int]:
    """Jobs in flight now (a send that may have reached SES): each becomes one in-doubt."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id FROM dispatcher.jobs WHERE state = 'in_flight'")
    finally:
        await conn.close()
    return {r["id"] for r in rows}


def kill_points(n: int, kills: int, rng: random.Random) -> list[int]:
    """Accepted counts at which to kill: random, increasing, between 5 % and 90 % of the list."""
    return sorted(rng.randint(n // 20, n * 9 // 10) for _ in range(kills))


async def main_async(args: argparse.Namespace) -> int:
    configure_logging("warning", "console")
    rng = random.Random(args.seed)
    out: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.reliability " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            "recipients": args.recipients,
            "kills": args.kills,
            "rate": args.rate,
            "latency_ms": args.latency_ms,
            "seed": args.seed,
        },
    }
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp, temporary_cluster() as pg:
        work = Path(tmp)
        html, text = write_templates(work)
        dbs = Databases(pg)
        await dbs.make_template()
        async with contextlib.AsyncExitStack() as stack:
            with stderr_into(work / "simulator.log"):
                raw = await stack.enter_async_context(run_simulator(max_send_rate=args.rate))
            sim = SimControl(raw, await stack.enter_async_context(aiohttp.ClientSession()))
            imp = await import_list(dbs, raw, work, args.recipients, html, text)
            await sim.configure(max_send_rate=args.rate, latency_ms=args.latency_ms)
            await raw.reset()
            env = cli_env(imp.dsn, raw, work, **LEASE)
            (await run_cli(env, work, "campaign", "start", str(imp.campaign_id))).check()

            result = SendRun(imp.rows, killed=True)
            kills: list[dict[str, Any]] = []
            # A kill soon after the last may find that run's in-flight jobs still leased (not yet
            # recovered): they are counted once, at the kill that left them in flight.
            doubted: set[int] = set()
            began = time.perf_counter()
            for target in kill_points(imp.rows, args.kills, rng):
                worker = Child(["run"], env, work)
                accepted = (await raw.stats())["accepted"]
                while accepted < target:
                    await asyncio.sleep(POLL_INTERVAL)
                    accepted = (await raw.stats())["accepted"]
                    early = worker.poll()
                    if early is not None:
                        early.check(expected=-signal.SIGKILL)  # raises: it ended on its own
                worker.kill()
                await worker.wait()
                counts = await job_counts(imp.dsn)
                new = await in_flight_ids(imp.dsn) - doubted
                doubted |= new
                kill = {
                    "at_s": time.perf_counter() - began,
                    "accepted_at_signal": accepted,
                    "in_flight": len(new),
                    "claimed": counts.get("claimed", 0),
                }
                kills.append(kill)
                print(
                    f"kill {len(kills)}: at {kill['at_s']:.1f} s, {accepted:,} accepted, "
                    f"{kill['in_flight']} newly in flight (-> in doubt), {kill['claimed']} claimed"
                )
            result.before_kill = {"in_flight_at_kill": len(doubted)}
            drained = (await Child(["run", "--drain"], env, work).wait()).check()
            result.wall = time.perf_counter() - began
            await asyncio.sleep(args.latency_ms / 1000.0 + SETTLE_PAUSE)
            record = await sim.messages()
            try:
                await verify(result, imp, record, env, work)
                final = await job_counts(imp.dsn)
            finally:
                await dbs.drop(imp.dsn)
    c = result.counts
    stuck = final.get("claimed", 0) + final.get("in_flight", 0)
    if stuck:
        result.problems.append(f"{stuck} job(s) still claimed/in flight after the drain")
    out["kills"] = kills
    out["counts"] = c
    out["final_job_states"] = final
    out["drain_exit_code"] = drained.code
    out["wall_s"] = result.wall
    out["problems"] = result.problems
    print(
        f"{args.kills} SIGKILLs over {c['recipients']:,} recipients in {result.wall:.1f} s: "
        f"lost {c['lost']}, duplicates {c['duplicates']} (<= {c['in_flight_at_kill']} in flight "
        f"at the kills), in doubt {c['in_doubt']} (listed by the report: "
        f"{c['in_doubt_listed_by_report']}), stuck {stuck}"
    )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "reliability.json"
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    for p in result.problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if result.problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reliability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--recipients", type=int, default=20_000, help="campaign size (20,000)")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs before the drain (5)")
    parser.add_argument("--rate", type=float, default=1000.0, help="simulator MaxSendRate (1000)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulator latency (20)")
    parser.add_argument("--seed", type=int, default=None, help="kill points' random seed")
    parser.add_argument("--quick", action="store_true", help="5,000 recipients")
    args = parser.parse_args(argv)
    if args.quick:
        args.recipients = 5_000
    if args.recipients < 100 or args.kills < 1:
        parser.error("--recipients must be >= 100 and --kills >= 1")
    return run_bench(main_async(args), "bench.reliability")


if __name__ == "__main__":
    sys.exit(main())

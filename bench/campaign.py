"""A big campaign through the real command line: import rows/s, a SIGKILL half-way, peak RSS.

    python -m bench.campaign [--recipients N] [--kill/--no-kill] [--rate R]
                             [--rss-sizes 10000,200000] [--rss-send-sizes 10000,50000] [--quick]

Every step is `dispatcher ...` in a child process of its own (`python -m dispatcher.cli.main`,
a fresh database on a throwaway Postgres, JSON logs), as a user would run it; its peak RSS is
its own high-water mark (VmHWM), read while it runs. Three parts:

1. import: `campaign create --recipients list.csv --json` of N recipients, rows/s;
2. send: `campaign start`, `run` against the simulator (its own process, 20 ms latency so some
   sends are on the wire), SIGKILL when about half are accepted, then `run --drain` until it
   exits 0; verified recipient by recipient against the simulator's record and
   `campaign report`: nobody lost, nobody sent twice beyond what was in doubt at the kill;
3. peak RSS of `campaign create` and of `run --drain` against the list size.

Prints the figures, writes bench/results/campaign.json; a failed verification exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import platform
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]

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
from bench.services import Databases, Simulator, run_simulator
from dispatcher.db.embedded import temporary_cluster
from dispatcher.obs.logging import configure_logging

POLL_INTERVAL = 0.02  # seconds between /_sim/stats reads while waiting for the kill point
SETTLE_PAUSE = 0.5  # seconds after a drain (plus the latency) before reading the simulator

IN_DOUBT_LINE = re.compile(r"in doubt \(may or may not have been sent\): (\d+)")


# -- 1. import -------------------------------------------------------------------------------


@dataclass(slots=True)
class Imported:
    rows: int
    wall: float
    maxrss_mb: float
    campaign_id: int
    dsn: str

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall


async def import_list(
    dbs: Databases, sim: Simulator, work: Path, n: int, html: Path, text: Path
) -> Imported:
    """`campaign create` of n recipients into a fresh database, timed as a whole command."""
    dsn = await dbs.create()
    path = write_list(work / f"list-{n}.csv", n)
    done = await run_cli(
        cli_env(dsn, sim, work), work, *create_args(f"bench-{n}", path, html, text)
    )
    campaign_id = created(done.check(), n)
    path.unlink()
    return Imported(n, done.wall, done.maxrss_mb, campaign_id, dsn)


# -- 2. send with a SIGKILL half-way ---------------------------------------------------------


@dataclass(slots=True)
class SendRun:
    recipients: int
    killed: bool
    wall: float = 0.0  # first `run` start to the end of the last `run --drain`
    before_kill: dict[str, Any] = field(default_factory=dict)
    drain: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def msgs_per_s(self) -> float:
        return self.counts.get("accepted_distinct", 0) / self.wall if self.wall else 0.0


async def job_counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT state::text AS state, count(*) AS n FROM dispatcher.jobs GROUP BY 1"
        )
    finally:
        await conn.close()
    return {r["state"]: r["n"] for r in rows}


async def send_campaign(
    imp: Imported, sim: SimControl, work: Path, *, kill: bool, latency_ms: float
) -> SendRun:
    """Start the campaign, run (and SIGKILL half-way), drain, then verify every recipient."""
    n = imp.rows
    result = SendRun(n, kill)
    lease = {"DISPATCHER_QUEUE__LEASE_SECONDS": "2", "DISPATCHER_QUEUE__HEARTBEAT_SECONDS": "0.5"}
    env = cli_env(imp.dsn, sim.sim, work, **lease)
    await sim.sim.reset()
    (await run_cli(env, work, "campaign", "start", str(imp.campaign_id))).check()

    began = time.perf_counter()
    if kill:
        worker = Child(["run"], env, work)
        accepted = 0
        while accepted < n // 2:
            await asyncio.sleep(POLL_INTERVAL)
            accepted = (await sim.sim.stats())["accepted"]
            early = worker.poll()
            if early is not None:
                early.check(expected=-signal.SIGKILL)  # raises: it ended on its own
        worker.kill()
        killed = await worker.wait()
        at_kill = time.perf_counter() - began
        counts = await job_counts(imp.dsn)
        accepted_at_kill = (await sim.sim.stats())["accepted"]
        result.before_kill = {
            "wall_s": at_kill,
            "accepted_at_signal": accepted,
            "accepted_after_kill": accepted_at_kill,
            "msgs_per_s": accepted / at_kill,
            "in_flight_at_kill": counts.get("in_flight", 0),
            "claimed_at_kill": counts.get("claimed", 0),
            "exit_code": killed.code,
            "maxrss_mb": killed.maxrss_mb,
        }
    drain_began, drain_wall_clock = time.perf_counter(), time.time()
    drained = (await Child(["run", "--drain"], env, work).wait()).check()
    result.wall = time.perf_counter() - began
    drain_ended = time.time()
    recovered = [
        json.loads(line)
        for line in drained.output.splitlines()
        if line.startswith("{") and '"queue.recovered"' in line
    ]
    result.drain = {
        "wall_s": time.perf_counter() - drain_began,
        "exit_code": drained.code,
        "maxrss_mb": drained.maxrss_mb,
        "recovered": [{k: r.get(k) for k in ("requeued", "in_doubt", "policy")} for r in recovered],
    }
    await asyncio.sleep(latency_ms / 1000.0 + SETTLE_PAUSE)  # the killed worker's last requests
    record = await sim.messages()
    # Where the drain's time went, on the simulator's clock (time.time, same machine): until
    # its first accepted send (start-up and lease recovery), sending, after its last one.
    mine = [m["accepted_at"] for m in record if m["accepted_at"] >= drain_wall_clock]
    if mine:
        result.drain["to_first_send_s"] = min(mine) - drain_wall_clock
        result.drain["send_phase_msgs_per_s"] = (
            (len(mine) - 1) / (max(mine) - min(mine)) if len(mine) > 1 else None
        )
        result.drain["after_last_send_s"] = drain_ended - max(mine)
    await verify(result, imp, record, env, work)
    return result


async def verify(
    result: SendRun,
    imp: Imported,
    accepted: list[dict[str, Any]],
    env: dict[str, str],
    work: Path,
) -> None:
    """Recipient by recipient: the simulator's record against `campaign report`'s states."""
    n = imp.rows
    report_csv = work / f"report-{imp.campaign_id}.csv"
    report = (
        await run_cli(
            env, work, "campaign", "report", str(imp.campaign_id), "--csv", str(report_csv)
        )
    ).check()
    states: dict[str, str] = {}
    ses_ids: dict[str, str] = {}
    with report_csv.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            states[row["address"]] = row["state"]
            ses_ids[row["address"]] = row["ses_message_id"]
    report_csv.unlink()
    listed = IN_DOUBT_LINE.search(report.output)
    status = (
        await run_cli(env, work, "campaign", "status", str(imp.campaign_id), "--json")
    ).check()
    status_json = json.loads(status.output[status.output.index("{") :])

    times: Counter[str] = Counter()
    sim_ids: dict[str, list[str]] = {}
    for m in accepted:
        for to in m["to"]:
            times[to] += 1
            sim_ids.setdefault(to, []).append(m["message_id"])
    recipients = [address(i) for i in range(n)]
    in_doubt = [a for a in recipients if states.get(a) == "unknown"]
    lost = [a for a in recipients if times[a] == 0 and states.get(a) != "unknown"]
    duplicates = [a for a in recipients if times[a] > 1]
    unfinished = [a for a in recipients if states.get(a) not in ("sent", "unknown")]
    wrong_id = [
        a for a in recipients if states.get(a) == "sent" and ses_ids[a] not in sim_ids.get(a, [])
    ]
    strangers = set(times) - set(recipients)
    in_flight = result.before_kill.get("in_flight_at_kill", 0)
    c = result.counts = {
        "recipients": n,
        "accepted_messages": len(accepted),
        "accepted_distinct": sum(1 for a in recipients if times[a]),
        "sent": sum(1 for a in recipients if states.get(a) == "sent"),
        "lost": len(lost),
        "duplicates": len(duplicates),
        "in_doubt": len(in_doubt),
        "in_doubt_accepted_by_sim": sum(1 for a in in_doubt if times[a]),
        "in_doubt_listed_by_report": int(listed.group(1)) if listed else 0,
        "in_flight_at_kill": in_flight,
        "not_sent_nor_in_doubt": len(unfinished),
        "sent_with_unknown_ses_id": len(wrong_id),
        "report_rows": len(states),
        "status_unknown": status_json["counts"]["unknown"],
        "status_sent": status_json["counts"]["sent"],
    }
    p = result.problems
    if len(states) != n:
        p.append(f"campaign report has {len(states)} rows for {n} recipients")
    if lost:
        p.append(f"{len(lost)} recipient(s) lost (never accepted, not in doubt): {lost[:5]}")
    if len(duplicates) > in_flight:
        p.append(f"{len(duplicates)} sent twice, more than the {in_flight} in flight at the kill")
    if unfinished:
        p.append(f"{len(unfinished)} recipient(s) neither sent nor in doubt: {unfinished[:5]}")
    if wrong_id:
        p.append(f"{len(wrong_id)} sent recipient(s) whose SES id the simulator never gave")
    if strangers:
        p.append(f"the simulator accepted mail for {len(strangers)} address(es) not on the list")
    if len(in_doubt) != in_flight:
        p.append(f"{len(in_doubt)} in doubt after recovery, but {in_flight} were in flight")
    if c["in_doubt_listed_by_report"] != len(in_doubt):
        p.append(
            f"campaign report lists {c['in_doubt_listed_by_report']} in doubt, not {len(in_doubt)}"
        )
    if (c["status_sent"], c["status_unknown"]) != (c["sent"], c["in_doubt"]):
        p.append(f"campaign status --json disagrees with the report: {status_json['counts']}")
    if not result.killed and (in_doubt or duplicates):
        p.append("no kill, yet mail is in doubt or duplicated")


# -- 3. peak RSS against the list size -------------------------------------------------------


async def rss_point(
    size: int, send: bool, dbs: Databases, sim: SimControl, work: Path, html: Path, text: Path
) -> dict[str, Any]:
    imp = await import_list(dbs, sim.sim, work, size, html, text)
    point: dict[str, Any] = {
        "recipients": size,
        "create_maxrss_mb": imp.maxrss_mb,
        "create_rows_per_s": imp.rows_per_s,
        "drain_maxrss_mb": None,
        "drain_msgs_per_s": None,
    }
    try:
        if send:
            run = await send_campaign(imp, sim, work, kill=False, latency_ms=0.0)
            if run.problems:
                raise BenchError(f"{size} recipients, no kill: " + "; ".join(run.problems))
            point["drain_maxrss_mb"] = run.drain["maxrss_mb"]
            point["drain_msgs_per_s"] = run.msgs_per_s
            point["drain_send_phase_msgs_per_s"] = run.drain.get("send_phase_msgs_per_s")
            point["drain_to_first_send_s"] = run.drain.get("to_first_send_s")
            point["drain_after_last_send_s"] = run.drain.get("after_last_send_s")
    finally:
        await dbs.drop(imp.dsn)
    return point


# -- the run ---------------------------------------------------------------------------------


def sizes(text: str) -> list[int]:
    try:
        out = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes like 10000,200000, got {text!r}"
        ) from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return out


def print_rss(points: list[dict[str, Any]], fixed: float) -> None:
    print(f"\npeak RSS against campaign size (MiB; `campaign create` of 1 row: {fixed:.0f})")
    print(
        f"{'recipients':>10}  {'create':>7}  {'run --drain':>11}  "
        f"{'import rows/s':>13}  {'send msgs/s':>11}"
    )
    for p in points:
        drain = f"{p['drain_maxrss_mb']:.0f}" if p["drain_maxrss_mb"] is not None else "-"
        rate = f"{p['drain_msgs_per_s']:.0f}" if p["drain_msgs_per_s"] is not None else "-"
        print(
            f"{p['recipients']:>10,}  {p['create_maxrss_mb']:>7.0f}  {drain:>11}  "
            f"{p['create_rows_per_s']:>13,.0f}  {rate:>11}"
        )


async def main_async(args: argparse.Namespace) -> int:
    configure_logging("warning", "console")
    out: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.campaign " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            "recipients": args.recipients,
            "kill": args.kill,
            "rate": args.rate,
            "latency_ms": args.latency_ms,
            "rss_sizes": args.rss_sizes,
            "rss_send_sizes": args.rss_send_sizes,
        },
    }
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp, temporary_cluster() as pg:
        work = Path(tmp)
        html, text = write_templates(work)
        dbs = Databases(pg)
        await dbs.make_template()
        out["machine"]["postgres"] = await dbs.server_version()
        sim_log = work / "simulator.log"
        async with contextlib.AsyncExitStack() as stack:
            with stderr_into(sim_log):  # the simulator inherits it; see SimControl
                raw = await stack.enter_async_context(run_simulator(max_send_rate=args.rate))
            sim = SimControl(raw, await stack.enter_async_context(aiohttp.ClientSession()))

            # 1. import
            fixed = await import_list(dbs, raw, work, 1, html, text)
            await dbs.drop(fixed.dsn)
            imp = await import_list(dbs, raw, work, args.recipients, html, text)
            net = imp.wall - fixed.wall
            out["import"] = {
                "recipients": imp.rows,
                "wall_s": imp.wall,
                "rows_per_s": imp.rows_per_s,
                "one_row_wall_s": fixed.wall,
                "rows_per_s_net_of_startup": imp.rows / net if net > 0 else None,
                "maxrss_mb": imp.maxrss_mb,
                "one_row_maxrss_mb": fixed.maxrss_mb,
            }
            print(
                f"import: {imp.rows:,} recipients in {imp.wall:.1f} s = "
                f"{imp.rows_per_s:,.0f} rows/s (whole command; "
                f"{out['import']['rows_per_s_net_of_startup'] or 0:,.0f} rows/s net of the "
                f"{fixed.wall:.1f} s a 1-row create takes), peak RSS {imp.maxrss_mb:.0f} MiB"
            )

            # 2. send, killed half-way
            await sim.configure(max_send_rate=args.rate, latency_ms=args.latency_ms)
            try:
                run = await send_campaign(
                    imp, sim, work, kill=args.kill, latency_ms=args.latency_ms
                )
            finally:
                await dbs.drop(imp.dsn)
            problems += run.problems
            c = run.counts
            out["send"] = {
                "recipients": run.recipients,
                "killed": run.killed,
                "wall_s": run.wall,
                "msgs_per_s": run.msgs_per_s,
                "before_kill": run.before_kill,
                "drain": run.drain,
                "counts": c,
                "problems": run.problems,
            }
            print(
                f"send: {c['accepted_distinct']:,} recipients in {run.wall:.1f} s = "
                f"{run.msgs_per_s:,.0f} msgs/s for the whole run (simulator {args.rate:g}/s, "
                f"{args.latency_ms:g} ms latency)"
            )
            if run.killed:
                b = run.before_kill
                print(
                    f"  SIGKILL after {b['wall_s']:.1f} s at {b['accepted_at_signal']:,} accepted "
                    f"({b['msgs_per_s']:,.0f} msgs/s): {b['in_flight_at_kill']} in flight, "
                    f"{b['claimed_at_kill']} claimed; `run --drain` then took "
                    f"{run.drain['wall_s']:.1f} s ({run.drain.get('to_first_send_s', 0):.1f} s "
                    f"to its first send)"
                )
            print(
                f"  lost {c['lost']}, duplicates {c['duplicates']} (allowed <= "
                f"{c['in_flight_at_kill']}), in doubt {c['in_doubt']} (listed by the report: "
                f"{c['in_doubt_listed_by_report']}; of those the simulator accepted "
                f"{c['in_doubt_accepted_by_sim']}), sent {c['sent']:,}"
            )
            for problem in run.problems:
                print(f"  FAILED: {problem}")

            # 3. peak RSS against size
            await sim.configure(max_send_rate=1e9, latency_ms=0.0)
            points = []
            for size in sorted(set(args.rss_sizes) | set(args.rss_send_sizes)):
                try:
                    points.append(
                        await rss_point(
                            size, size in args.rss_send_sizes, dbs, sim, work, html, text
                        )
                    )
                except BenchError as exc:
                    problems.append(str(exc))
                    print(f"  FAILED: {exc}")
            out["rss"] = {"one_row_create_maxrss_mb": fixed.maxrss_mb, "points": points}
            print_rss(points, fixed.maxrss_mb)
        logged = sim_log.read_text(errors="replace")
        out["simulator_log"] = {
            "handler_failed": logged.count("sim.handler_failed"),
            "connection_reset": logged.count("ConnectionResetError"),
            "tail": logged.splitlines()[-5:],
        }

    out["ok"] = not problems
    out["problems"] = problems
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "campaign.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten: {path}")
    if problems:
        print(f"bench failed: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.campaign",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--recipients", type=int, default=100_000, help="import and send (100,000)")
    parser.add_argument(
        "--kill",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="SIGKILL `run` when half the recipients are accepted (on)",
    )
    parser.add_argument("--rate", type=float, default=5000.0, help="simulator MaxSendRate (5000)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulator latency (20)")
    parser.add_argument(
        "--rss-sizes",
        type=sizes,
        default=[10_000, 200_000],
        help="list sizes whose `campaign create` RSS is measured",
    )
    parser.add_argument(
        "--rss-send-sizes",
        type=sizes,
        default=[10_000, 50_000],
        help="list sizes whose `run --drain` RSS is measured",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10,000 recipients; create RSS at 5,000 and 100,000, drain RSS at 2,000 and 20,000",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.recipients = 10_000
        args.rss_sizes, args.rss_send_sizes = [5_000, 100_000], [2_000, 20_000]
    if args.recipients < 2:
        parser.error("--recipients must be >= 2")
    return run_bench(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

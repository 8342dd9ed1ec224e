"""A million-row list: `campaign create` rows/s next to a bare COPY of the same file, peak RSS.

    python -m bench.million [--recipients 1000000] [--rss-sizes 1,100000] [--materialise 100000]
                            [--quick]

On one throwaway Postgres (fsync off), each step on a fresh migrated database:

1. **bare COPY**: the list file into an unindexed two-column table, `COPY ... FROM STDIN (FORMAT
   csv, HEADER)` through asyncpg (Postgres parses the CSV; nothing is checked): the floor.
2. **campaign create**: the real command line in its own process (`python -m
   dispatcher.cli.main campaign create ... --recipients list.csv --json`), timed as a whole
   command: rows/s, and net of what a 1-row `create` takes (interpreter start, imports,
   connecting). Peak RSS (VmHWM, see bench.campaign) for each of `--rss-sizes` and N: flat
   memory means the same peak whatever the size. Checked: `imported` = N, nothing rejected,
   N rows in campaign_recipients, no message or job row yet.
3. **materialise**: `campaign start`, then the worker's materialiser (the real `Materialiser`,
   chunks of 5,000) until `--materialise` recipients are message + job rows: jobs/s, which
   bounds the send rate a campaign can keep up (it needs far less than SES's rates).

Writes bench/results/million.json; a failed check prints `bench failed: ...` and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench.campaign import sizes
from bench.harness import RESULTS, BenchError, Child, run_bench
from bench.lists import create_args, created, write_list, write_templates
from bench.services import REPO_ROOT, Databases
from dispatcher.campaigns.materialise import Ahead, Materialiser
from dispatcher.campaigns.store import CampaignStore
from dispatcher.db.embedded import temporary_cluster
from dispatcher.obs.logging import configure_logging


def env_for(dsn: str, work: Path) -> dict[str, str]:
    """What a user would set for `campaign create` (no SES call is made by it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
            "DISPATCHER_DATABASE_URL": dsn,
            "DISPATCHER_DATA_DIR": str(work / "data"),
            "DISPATCHER_LOG__FORMAT": "json",
            "AWS_REGION": "us-east-1",
        }
    )
    return env


def children_cpu() -> float:
    """User + system CPU seconds of this process's reaped children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _spent(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


async def bare_copy(dbs: Databases, path: Path, n: int) -> dict[str, Any]:
    """The file into an unindexed table by COPY (CSV parsed by Postgres): seconds and rows/s."""
    dsn = await dbs.create()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE bare (email text, name text)")
        began, pg_before = time.perf_counter(), dbs.cpu()
        await conn.copy_to_table("bare", source=str(path), format="csv", header=True)
        wall = time.perf_counter() - began
        pg_cpu = _spent(dbs.cpu(), pg_before)
        if await conn.fetchval("SELECT count(*) FROM bare") != n:
            raise BenchError("the bare COPY did not load every row")
    finally:
        await conn.close()
        await dbs.drop(dsn)
    return {"wall_s": wall, "rows_per_s": n / wall, "postgres_cpu_s": pg_cpu}


async def create(
    dbs: Databases, work: Path, path: Path, n: int, html: Path, text: Path
) -> tuple[dict[str, Any], str, int]:
    """`campaign create` of the list in a child process; its figures, database and id."""
    dsn = await dbs.create()
    args = create_args(f"million-{n}", path, html, text)
    # CPU seconds of the command (its rusage once reaped) and of Postgres: what the import
    # costs whatever else the machine runs; wall time on a shared machine is only an upper
    # bound of what it takes on a free one.
    cpu_before, pg_before = children_cpu(), dbs.cpu()
    done = (await Child(args, env_for(dsn, work), work).wait()).check()
    cpu = children_cpu() - cpu_before
    pg_cpu = _spent(dbs.cpu(), pg_before)
    campaign_id = created(done, n)
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM dispatcher.campaign_recipients WHERE campaign_id = $1",
            campaign_id,
        )
        rows = await conn.fetchval(
            "SELECT (SELECT count(*) FROM dispatcher.messages) "
            "+ (SELECT count(*) FROM dispatcher.jobs)"
        )
    finally:
        await conn.close()
    if stored != n or rows != 0:
        raise BenchError(f"after create: {stored} stored recipients (want {n}), {rows} mail rows")
    figures: dict[str, Any] = {"recipients": n, "wall_s": done.wall, "rows_per_s": n / done.wall}
    figures.update(maxrss_mb=done.maxrss_mb, cpu_s=cpu, postgres_cpu_s=pg_cpu)
    return figures, dsn, campaign_id


async def materialise(dsn: str, campaign_id: int, want: int) -> dict[str, Any]:
    """`campaign start`, then the materialiser until `want` recipients are jobs: jobs/s."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        store = CampaignStore(pool)
        began = time.perf_counter()
        await store.start(campaign_id)
        # refill_below=1: fill to the target whatever is ready (no daemon claims here)
        worker = Materialiser(pool, lambda: 1e9, ahead=Ahead(ceiling=want, refill_below=1.0))
        while await worker.tick():
            pass
        wall = time.perf_counter() - began
        async with pool.acquire() as conn:
            jobs = await conn.fetchval(
                "SELECT count(*) FROM dispatcher.jobs WHERE campaign_id = $1", campaign_id
            )
    finally:
        await pool.close()
    if jobs < want:
        raise BenchError(f"the materialiser made {jobs} jobs, want {want}")
    return {"jobs": jobs, "wall_s": wall, "jobs_per_s": jobs / wall}


async def main_async(args: argparse.Namespace) -> int:
    configure_logging("warning", "console")
    n: int = args.recipients
    out: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.million " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"recipients": n, "rss_sizes": args.rss_sizes},
        "load_average_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-million-") as tmp, temporary_cluster() as pg:
        work = Path(tmp)
        html, text = write_templates(work)
        dbs = Databases(pg)
        await dbs.make_template()
        out["machine"]["postgres"] = await dbs.server_version()
        path = write_list(work / "list.csv", n)
        out["bare_copy"] = await bare_copy(dbs, path, n)
        figures, dsn, campaign_id = await create(dbs, work, path, n, html, text)
        out["create"] = figures
        rss: list[dict[str, Any]] = []
        for size in sorted(set(args.rss_sizes)):
            small = write_list(work / f"list-{size}.csv", size)
            point, other, _ = await create(dbs, work, small, size, html, text)
            await dbs.drop(other)
            rss.append(point)
        out["rss"] = [*rss, figures]
        one = next((p for p in rss if p["recipients"] == 1), None)
        if one is not None:
            net = figures["wall_s"] - one["wall_s"]
            figures["rows_per_s_net_of_startup"] = n / net if net > 0 else None
            net_cpu = figures["cpu_s"] - one["cpu_s"]
            figures["cpu_s_net_of_startup"] = net_cpu if net_cpu > 0 else None
        if args.materialise:
            out["materialise"] = await materialise(dsn, campaign_id, min(n, args.materialise))
    out["load_average_after"] = os.getloadavg()
    c, b = out["create"], out["bare_copy"]
    print(
        f"campaign create of {n:,} recipients: {c['wall_s']:.1f} s = {c['rows_per_s']:,.0f} "
        f"rows/s (whole command; {c.get('rows_per_s_net_of_startup') or 0:,.0f} rows/s net of "
        f"a 1-row create), peak RSS {c['maxrss_mb']:.0f} MiB"
    )
    print(
        f"bare COPY of the same file into an unindexed table: {b['wall_s']:.1f} s = "
        f"{b['rows_per_s']:,.0f} rows/s; create / bare COPY = "
        f"{c['rows_per_s'] / b['rows_per_s']:.2f}"
    )
    pg_cpu = c["postgres_cpu_s"] or 0.0
    net_cpu = c.get("cpu_s_net_of_startup")
    per_cpu = f"{n / net_cpu:,.0f} rows per CPU-second net of a 1-row create" if net_cpu else ""
    print(
        f"  CPU: the command {c['cpu_s']:.1f} s ({per_cpu}), "
        f"Postgres {pg_cpu:.1f} s; load average {out['load_average_before'][0]:.1f} before, "
        f"{out['load_average_after'][0]:.1f} after (2 cores, shared)"
    )
    print("peak RSS of `campaign create` against list size:")
    for p in out["rss"]:
        print(
            f"  {p['recipients']:>10,} recipients: {p['maxrss_mb']:5.0f} MiB, "
            f"{p['wall_s']:.1f} s, CPU {p['cpu_s']:.1f} s"
        )
    if "materialise" in out:
        m = out["materialise"]
        print(
            f"materialiser: {m['jobs']:,} recipients made message + job rows in "
            f"{m['wall_s']:.1f} s = {m['jobs_per_s']:,.0f} jobs/s"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "million.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.million", description=__doc__)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--rss-sizes", type=sizes, default=[1, 100_000])
    parser.add_argument("--materialise", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="100,000 recipients; RSS 1, 10,000")
    args = parser.parse_args(argv)
    if args.quick:
        args.recipients, args.rss_sizes, args.materialise = 100_000, [1, 10_000], 20_000
    return run_bench(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

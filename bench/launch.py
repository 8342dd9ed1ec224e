"""What the `in_flight` write costs: claim -> launch -> settle with one launch statement per
claimed batch, and with one per job (as the worker pool launches each job just before its SES
call), on one throwaway Postgres.

    python -m bench.launch [--jobs 20000] [--batch 100] [--loops 4] [--quick]

Per side, a fresh database of N queued jobs and `--loops` concurrent loops of
`Queue.claim(owner, limit=B)`, then `Queue.launch` (the whole batch in one statement, or each
job in its own), then one `Queue.settle` marking the batch sent, until a claim comes back
empty. The order of the two sides alternates per round. Checked: every job launched once and
all N `sent`. Figures: jobs/s and CPU ms per job of this process and of Postgres (as
bench.queue measures them). Writes bench/results/launch.json; a failed check exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bench.harness import RESULTS, BenchError, machine_facts, run_bench
from bench.queue import _enqueue, figures, sent_noop, timed_drain
from bench.services import Databases, throwaway_postgres
from dispatcher.domain.jobs import ClaimedJob
from dispatcher.obs.logging import configure_logging
from dispatcher.queue.repository import Queue

SIDES = ("per_batch", "per_job")


async def _launch(queue: Queue, owner: uuid.UUID, jobs: list[ClaimedJob], per_job: bool) -> int:
    """Launch the claimed jobs in one statement or one each; how many came back launched."""
    if not per_job:
        return len(await queue.launch(owner, jobs))
    launched = 0
    for job in jobs:
        launched += len(await queue.launch(owner, [job]))
    return launched


async def one_side(dbs: Databases, n: int, batch: int, loops: int, per_job: bool) -> dict[str, Any]:
    """Drain n jobs through claim -> launch -> settle; its figures, checked."""
    dsn = await dbs.create()
    try:
        async with Queue.connect(dsn, max_size=loops) as queue:
            enqueue_s = await _enqueue(queue, n)
            totals = {"launched": 0, "settled": 0}

            async def loop() -> None:
                owner = uuid.uuid4()
                while jobs := await queue.claim(owner, batch):
                    launched = await _launch(queue, owner, jobs, per_job)
                    if launched != len(jobs):
                        raise BenchError(f"launched {launched} of {len(jobs)} claimed jobs")
                    done = await queue.settle(sent_noop(jobs))
                    totals["launched"] += launched
                    totals["settled"] += len(done)

            _, drained = await timed_drain(dbs, asyncio.gather(*(loop() for _ in range(loops))))
            counts = await queue.counts()
    finally:
        await dbs.drop(dsn)
    if counts.get("sent") != n or totals["launched"] != n or totals["settled"] != n:
        raise BenchError(f"{totals} and states {counts}; expected {n} launched, settled, sent")
    return figures(n, enqueue_s, drained)


async def main_async(args: argparse.Namespace) -> int:
    configure_logging("warning", "console")
    rounds: list[dict[str, Any]] = []
    with throwaway_postgres() as dbs:
        await dbs.make_template()
        pg_version = await dbs.server_version()
        for k in range(args.rounds):
            order = SIDES if k % 2 == 0 else SIDES[::-1]
            row: dict[str, Any] = {"order": list(order)}
            for side in order:
                row[side] = await one_side(
                    dbs, args.jobs, args.batch, args.loops, per_job=side == "per_job"
                )
            rounds.append(row)
    medians = {
        side: {
            key: statistics.median(r[side][key] for r in rounds)
            for key in ("drain_jobs_per_s", "cpu_ms_per_job_bench", "cpu_ms_per_job_postgres")
            if all(r[side][key] is not None for r in rounds)
        }
        for side in SIDES
    }
    out = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.launch " + " ".join(sys.argv[1:]),
        "machine": machine_facts(True, pg_version),
        "settings": {"jobs": args.jobs, "batch": args.batch, "loops": args.loops},
        "median": medians,
        "rounds": rounds,
    }
    print(
        f"claim {args.batch} -> launch -> settle, {args.loops} loops, {args.jobs:,} jobs, "
        f"median of {args.rounds} round(s):"
    )
    for side, label in (("per_batch", "one launch per batch"), ("per_job", "one launch per job")):
        m = medians[side]
        pg = m.get("cpu_ms_per_job_postgres")
        print(
            f"  {label:22} {m['drain_jobs_per_s']:>9,.0f} jobs/s, CPU ms/job: "
            f"this process {m['cpu_ms_per_job_bench']:.3f}, "
            f"Postgres {'-' if pg is None else f'{pg:.3f}'}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "launch.json"
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per side (20,000)")
    parser.add_argument("--batch", type=int, default=100, help="claim limit (100)")
    parser.add_argument("--loops", type=int, default=4, help="concurrent loops (4)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, order alternating (2)")
    parser.add_argument("--quick", action="store_true", help="5,000 jobs, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.rounds = 5_000, 1
    for name in ("jobs", "batch", "loops", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return run_bench(main_async(args), "bench.launch")


if __name__ == "__main__":
    sys.exit(main())

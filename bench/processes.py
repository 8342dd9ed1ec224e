"""Unlimited-rate throughput with 1 and with 2 worker processes, side by side in one run.

`dispatcher run --drain --processes N` (the real CLI) against one simulator in its own process
with no rate limit, on the same Postgres, alternating 1 and 2 processes for each round. The rate
is measured on the simulator's clock, first to last acceptance (process start-up excluded), and
every round is checked exactly-once. Writes `bench/results/processes.json`.

    .venv/bin/python -m bench.processes [--messages 6000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bench.harness import RESULTS, event_loop_runner
from bench.messages import make_messages, to_new_messages
from bench.services import REPO_ROOT, Databases, run_simulator, throwaway_postgres
from dispatcher.queue.repository import Queue


async def one_round(
    dbs: Databases, sim: Any, processes: int, messages: int, round_no: int
) -> dict[str, float]:
    dsn = await dbs.create()
    try:
        async with Queue.connect(dsn, max_size=2) as queue:
            ids = [
                r.id
                for r in await queue.enqueue_many(
                    to_new_messages(make_messages(messages), round_no)
                )
            ]
        await sim.reset()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
        env.update(
            DISPATCHER_DATABASE_URL=dsn,
            DISPATCHER_SES_ENDPOINT_URL=sim.endpoint_url,
            DISPATCHER_LOG__LEVEL="warning",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1",
            PYTHONPATH=str(REPO_ROOT),
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dispatcher.cli.main", "run", "--drain",
            "--processes", str(processes),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        code = await asyncio.wait_for(proc.wait(), 600)
        received = await sim.messages()
    finally:
        await dbs.drop(dsn)
    if code != 0:
        raise RuntimeError(f"{processes} process(es): exit code {code}")
    tags = Counter(int(m["tags"]["dispatcher_id"]) for m in received)
    if set(tags) != set(ids) or max(tags.values()) != 1:
        raise RuntimeError(f"{processes} process(es): not exactly once ({len(tags)} of {len(ids)})")
    stamps = sorted(m["accepted_at"] for m in received)
    return {"msgs_per_s": (len(stamps) - 1) / (stamps[-1] - stamps[0])}


async def bench(args: argparse.Namespace, dbs: Databases) -> dict[str, Any]:
    await dbs.make_template()
    results: dict[int, list[float]] = {1: [], 2: []}
    async with run_simulator() as sim:
        for r in range(args.rounds):
            for n in (1, 2) if r % 2 == 0 else (2, 1):
                got = await one_round(dbs, sim, n, args.messages, r * 10 + n)
                results[n].append(got["msgs_per_s"])
    one = statistics.median(results[1])
    two = statistics.median(results[2])
    return {
        "benchmark": "processes",
        "messages": args.messages,
        "rounds": args.rounds,
        "one_process_msgs_per_s": round(one, 1),
        "two_processes_msgs_per_s": round(two, 1),
        "ratio_two_over_one": round(two / one, 3),
        "per_round": {str(k): [round(v, 1) for v in vs] for k, vs in results.items()},
        "cores": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.processes", description=__doc__.split("\n")[0]
    )
    p.add_argument("--messages", type=int, default=6000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    if args.messages < 2 or args.rounds < 1:
        p.error("--messages must be >= 2 and --rounds >= 1")
    with throwaway_postgres() as dbs:
        result = event_loop_runner(True)(bench(args, dbs))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "processes.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"unlimited rate, {args.messages} msgs, median of {args.rounds}: "
        f"1 process {result['one_process_msgs_per_s']} msgs/s, "
        f"2 processes {result['two_processes_msgs_per_s']} msgs/s "
        f"(x{result['ratio_two_over_one']}, {result['cores']} cores)"
    )
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

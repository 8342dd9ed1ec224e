"""Idle enqueue-to-accepted latency: LISTEN/NOTIFY wake-up vs polling only, in one run.

A daemon (in this process, as `dispatcher run` builds it) waits on an empty queue; one message
at a time is enqueued, and the time until the simulator has accepted it is measured. Then the
same with `queue.listen = false` (the daemon finds mail at its next poll, every
`queue.poll_interval`). Prints p50, p99 and the maximum of both (a p99 only from
P99_MIN_SAMPLES samples up: below that it is the maximum), writes `bench/results/latency.json`,
and a CDF plot `bench/results/latency.png` when matplotlib is installed.

    .venv/bin/python -m bench.latency [--messages 200] [--poll-interval 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bench.harness import RESULTS, event_loop_runner
from bench.services import Databases, run_simulator, throwaway_postgres
from dispatcher.app import run_worker
from dispatcher.config import Config
from dispatcher.domain.jobs import NewMessage
from dispatcher.obs.logging import configure_logging
from dispatcher.queue.repository import Queue
from dispatcher.ses.settings import SesSettings

TO = "success@simulator.amazonses.com"
# With fewer samples the 99th percentile is the largest one (nearest rank): reported as the max.
P99_MIN_SAMPLES = 200


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least q of the samples <= it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def one_side(
    dsn: str, endpoint_url: str, *, listen: bool, messages: int, poll_interval: float, sim: Any
) -> list[float]:
    base = Config()
    cfg = replace(
        base,
        database=replace(base.database, url=dsn),
        queue=replace(base.queue, listen=listen, poll_interval=poll_interval),
        ses=SesSettings(
            endpoint_url=endpoint_url,
            access_key_id="bench",
            secret_access_key="bench",
        ),
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(cfg, stop))
    latencies: list[float] = []
    try:
        async with Queue.connect(dsn, max_size=2) as queue:
            await asyncio.sleep(1.0)  # started, idle
            accepted = int((await sim.stats())["accepted"])
            for i in range(messages):
                await asyncio.sleep(0.05 + (i % 7) * 0.013)  # idle again, at varied phases
                began = time.perf_counter()
                await queue.enqueue(
                    NewMessage(from_addr="a@example.com", to=(TO,), subject=f"m{i}", text="t")
                )
                for _ in range(30_000):  # bounded: 30 s at most
                    if int((await sim.stats())["accepted"]) > accepted:
                        break
                    await asyncio.sleep(0.001)
                else:
                    raise RuntimeError(f"message {i} was not accepted within 30 s")
                latencies.append(time.perf_counter() - began)
                accepted += 1
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    return latencies


async def bench(args: argparse.Namespace, dbs: Databases) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "latency",
        "messages": args.messages,
        "poll_interval": args.poll_interval,
    }
    await dbs.make_template()
    async with run_simulator(max_send_rate=1000) as sim:
        for name, listen in (("listen_notify", True), ("polling", False)):
            dsn = await dbs.create()
            lat = await one_side(
                dsn,
                sim.endpoint_url,
                listen=listen,
                messages=args.messages,
                poll_interval=args.poll_interval,
                sim=sim,
            )
            out[name] = {
                "p50_ms": round(statistics.median(lat) * 1000, 2),
                "p99_ms": (
                    round(_percentile(lat, 0.99) * 1000, 2) if len(lat) >= P99_MIN_SAMPLES else None
                ),
                "max_ms": round(max(lat) * 1000, 2),
                "samples_ms": [round(x * 1000, 3) for x in lat],
            }
    out["p50_ratio_polling_over_notify"] = round(
        out["polling"]["p50_ms"] / out["listen_notify"]["p50_ms"], 1
    )
    return out


def plot(result: dict[str, Any]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, label in (("listen_notify", "LISTEN/NOTIFY"), ("polling", "polling only")):
        xs = sorted(result[name]["samples_ms"])
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("enqueue to accepted by SES (ms, log scale)")
    ax.set_ylabel("fraction of messages")
    ax.set_title(f"Idle latency (poll_interval {result['poll_interval']} s)")
    ax.legend()
    ax.grid(True, alpha=0.3)
    path = RESULTS / "latency.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n")[0])
    p.add_argument(
        "--messages",
        type=int,
        default=P99_MIN_SAMPLES,
        help=f"samples per side (%(default)s; a p99 needs {P99_MIN_SAMPLES})",
    )
    p.add_argument("--poll-interval", type=float, default=0.5, help="queue.poll_interval, s")
    args = p.parse_args(argv)
    if args.messages < 1 or args.poll_interval <= 0:
        p.error("--messages must be >= 1 and --poll-interval > 0")
    configure_logging("warning", "console")
    with throwaway_postgres() as dbs:
        result = event_loop_runner(True)(bench(args, dbs))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latency.json").write_text(json.dumps(result, indent=2) + "\n")
    png = plot(result)
    for name in ("listen_notify", "polling"):
        r = result[name]
        tail = (
            f"p99 {r['p99_ms']:>8.2f} ms   max {r['max_ms']:>8.2f} ms"
            if r["p99_ms"] is not None
            else f"max {r['max_ms']:>8.2f} ms (a p99 needs {P99_MIN_SAMPLES} samples)"
        )
        print(f"{name:<14} {args.messages} samples: p50 {r['p50_ms']:>8.2f} ms   {tail}")
    print(f"polling / notify (p50): {result['p50_ratio_polling_over_notify']}x")
    print(f"written: {RESULTS / 'latency.json'}" + (f" and {png}" if png else " (no plot)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

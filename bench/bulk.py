"""An SES-template campaign vs per-message rendering: recipients/s of the same list, side by side.

    python -m bench.bulk [--recipients N] [--rounds K]

Each round imports the same N-recipient campaign twice into fresh databases, once rendered per
recipient and sent with SendEmail ("render"), once as an SES template ("ses_template": SES
renders it; one SendBulkEmail of up to 50 entries a second, which is all SES allows, and
SendEmail calls naming the template in between), and drains each with the dispatcher against
one simulator (its own process, no send rate limit). Every round is verified: the simulator accepted
each recipient exactly once. Figures go to stdout and bench/results/bulk.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.services import Databases, Simulator, run_simulator
from bench.throughput import Knobs, dispatcher_config
from dispatcher.app import run_worker
from dispatcher.campaigns.recipients import iter_recipients
from dispatcher.campaigns.store import CampaignSpec, CampaignStore
from dispatcher.db.embedded import temporary_cluster
from dispatcher.obs.logging import configure_logging
from dispatcher.queue.repository import Queue

RESULTS = Path(__file__).resolve().parent / "results"
HTML_JINJA = "<html><body><p>Hello {{ name }},</p><p>Our autumn news.</p></body></html>"
HTML_SES = "<html><body><p>Hello {{name}},</p><p>Our autumn news.</p></body></html>"


def recipients_csv(n: int) -> bytes:
    rows = ["email,name"] + [f"success+b{i}@simulator.amazonses.com,Person {i}" for i in range(n)]
    return ("\n".join(rows) + "\n").encode()


async def one_side(
    mode: str, n: int, data: bytes, dbs: Databases, sim: Simulator, concurrency: int
) -> dict[str, Any]:
    dsn = await dbs.create()
    try:
        async with Queue.connect(dsn) as queue:
            store = CampaignStore(queue.pool)
            spec = CampaignSpec(
                name=f"bench-{mode}",
                from_addr="news@example.com",
                subject="Hello {{ name }}" if mode == "render" else "Hello {{name}}",
                html=HTML_JINJA if mode == "render" else HTML_SES,
                text="Hello {{ name }}" if mode == "render" else "Hello {{name}}",
                mode=mode,
            )
            created = await store.create(spec, iter_recipients(io.BytesIO(data), source="bench"))
            await store.start(created.id)
        await sim.reset()
        cfg = dispatcher_config(dsn, sim.endpoint_url, concurrency, Knobs())
        cpu0 = time.process_time()
        began = time.monotonic()  # the clock of the worker's first_send_at
        report = await run_worker(cfg, asyncio.Event(), drain=True)
        ended = time.monotonic()
        wall = ended - began
        cpu = time.process_time() - cpu0
        accepted = await sim.messages()
    finally:
        await dbs.drop(dsn)
    to = [m["to"][0] for m in accepted]
    first = report.counters.first_send_at or ended
    if report.exit_code != 0 or len(to) != n or len(set(to)) != n:
        raise SystemExit(
            f"{mode}: verification failed: exit {report.exit_code}, "
            f"{len(to)} accepted, {len(set(to))} distinct, expected {n}"
        )
    return {
        "mode": mode,
        "recipients_per_s": n / wall,
        # Start-up (pool, GetSendQuota, for SendBulkEmail the template: SES allows one
        # non-send request a second) apart from the sending that follows.
        "to_first_send_s": first - began,
        "recipients_per_s_from_first_send": n / (ended - first),
        "cpu_ms_per_recipient": cpu * 1000 / n,
        "ses_calls": report.counters.ses_calls,
        "wall_s": wall,
    }


async def main_async(args: argparse.Namespace) -> int:
    configure_logging("warning", "console")
    data = recipients_csv(args.recipients)
    rounds: list[dict[str, Any]] = []
    with temporary_cluster() as cluster:
        dbs = Databases(cluster)
        await dbs.make_template()
        async with run_simulator() as sim:
            for r in range(args.rounds):
                order = ("render", "ses_template") if r % 2 == 0 else ("ses_template", "render")
                sides = {}
                for mode in order:
                    sides[mode] = await one_side(
                        mode, args.recipients, data, dbs, sim, args.concurrency
                    )
                ratio = (
                    sides["ses_template"]["recipients_per_s"] / sides["render"]["recipients_per_s"]
                )
                rounds.append({"round": r + 1, "order": order, **sides, "ratio": ratio})
                print(
                    f"round {r + 1}: SendEmail {sides['render']['recipients_per_s']:7.0f} "
                    f"recipients/s ({sides['render']['ses_calls']} calls), SendBulkEmail "
                    f"{sides['ses_template']['recipients_per_s']:7.0f} recipients/s "
                    f"({sides['ses_template']['ses_calls']} calls), ratio {ratio:.2f}"
                )

    def med(mode: str, key: str) -> float:
        return float(statistics.median(r[mode][key] for r in rounds))

    summary = {
        "send_email_recipients_per_s": med("render", "recipients_per_s"),
        "send_bulk_email_recipients_per_s": med("ses_template", "recipients_per_s"),
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
        "send_email_cpu_ms_per_recipient": med("render", "cpu_ms_per_recipient"),
        "send_bulk_email_cpu_ms_per_recipient": med("ses_template", "cpu_ms_per_recipient"),
        "send_email_to_first_send_s": med("render", "to_first_send_s"),
        "send_bulk_email_to_first_send_s": med("ses_template", "to_first_send_s"),
        "send_email_recipients_per_s_from_first_send": med(
            "render", "recipients_per_s_from_first_send"
        ),
        "send_bulk_email_recipients_per_s_from_first_send": med(
            "ses_template", "recipients_per_s_from_first_send"
        ),
    }
    print(
        f"\n{args.recipients} recipients, {args.rounds} rounds, concurrency {args.concurrency}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(
        f"median: SendEmail {summary['send_email_recipients_per_s']:.0f} recipients/s "
        f"({summary['send_email_cpu_ms_per_recipient']:.3f} CPU ms each, incl. rendering), "
        f"SendBulkEmail {summary['send_bulk_email_recipients_per_s']:.0f} recipients/s "
        f"({summary['send_bulk_email_cpu_ms_per_recipient']:.3f} CPU ms each); "
        f"ratio {summary['ratio_median']:.2f}"
    )
    print(
        f"from the first send on: SendEmail "
        f"{summary['send_email_recipients_per_s_from_first_send']:.0f} recipients/s "
        f"(first send after {summary['send_email_to_first_send_s']:.2f} s), SendBulkEmail "
        f"{summary['send_bulk_email_recipients_per_s_from_first_send']:.0f} recipients/s "
        f"(first send after {summary['send_bulk_email_to_first_send_s']:.2f} s)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.bulk " + " ".join(sys.argv[1:]),
        "recipients": args.recipients,
        "concurrency": args.concurrency,
        "median": summary,
        "rounds": rounds,
    }
    path = RESULTS / "bulk.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written: {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk", description=__doc__)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_async(args))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

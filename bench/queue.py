"""The queue on its own: the dispatcher's drain of no-op jobs next to pgqueuer's, same Postgres,
same run; and enqueue rows/s, up to a 1,000,000-recipient campaign list.

    python -m bench.queue [--jobs N] [--recipients M] [--rounds K] [--batch B] [--quick]

(`--recipients 0` skips step 3.)

1. **Drain** N no-op jobs, alternating which queue goes first per round, each on a fresh
   database of one throwaway Postgres:
   - dispatcher: the real worker pool (`WorkerPool`, drain mode, default settings) with a sender
     that answers "sent" at once: no SES call, no rate limit, no daily quota. Every job is
     claimed, launched (in_flight) and settled (sent) as in production, with the same
     batching, leases, rate-share and quota bookkeeping.
   - claim+settle: the dispatcher's queue alone, as the pool uses it but without the pool:
     4 tasks, each `Queue.claim(owner, limit=B)` then one `Queue.settle` marking the batch
     sent (the settlement of a successful send), until a claim comes back empty. Two writes
     per job (claimed, sent): the closest match to pgqueuer's pick + ack.
   - pgqueuer (a well-known asyncpg queue, installed by `make bench` only): its `QueueManager`
     in drain mode with an entrypoint that does nothing, batch size B.
   All are checked: all N jobs sent (`Queue.counts()`, dispatcher sides) / all N entrypoint
   calls made and the queue table empty (pgqueuer). Figures: jobs/s, CPU ms per job (= CPU s
   per 1,000 jobs) of this process and of Postgres.
2. **Enqueue** the same N jobs: `Queue.enqueue_many` in chunks of 1,000 vs pgqueuer's list
   `enqueue` in chunks of 1,000, rows/s (the two dispatcher sides enqueue the same way).
3. **A campaign list of M recipients** through `dispatcher campaign create` (CSV -> COPY ->
   one message and one job per recipient), rows/s, as bench.campaign does it.

Prints the table, writes bench/results/queue.json. A failed check exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from bench.campaign import import_list
from bench.harness import RESULTS, BenchError, machine_facts, run_bench
from bench.lists import write_templates
from bench.services import Databases, run_simulator, throwaway_postgres
from dispatcher.app import pool_settings, postgres_shared
from dispatcher.config import Config
from dispatcher.domain.jobs import ClaimedJob, NewMessage, Settlement
from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.outcome import Outcome, SendResult
from dispatcher.domain.quota import Quota
from dispatcher.obs.logging import configure_logging
from dispatcher.pacing import QuotaGovernor, RecipientLimiter
from dispatcher.queue.repository import Queue
from dispatcher.runtime import settle_heap
from dispatcher.worker.pool import WorkerPool, first_reading

_T = TypeVar("_T")

CHUNK = 1000  # rows per enqueue call, both sides
ENTRYPOINT = "noop"
DRAINERS = 4  # claim+settle side: concurrent claim -> settle loops
# JSON keys: "dispatcher" is the worker pool (the key predates the claim+settle side).
SIDES = ("dispatcher", "claim_settle", "pgqueuer")


class NoopSender:
    """Stands where SES would: every send is accepted at once; unlimited rate and quota."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, msg: OutgoingMessage) -> SendResult:
        self.sent += 1
        return SendResult(Outcome.SENT, ses_message_id=f"noop-{msg.id}")

    async def get_send_quota(self) -> Quota:
        return Quota(max_24_hour_send=-1, max_send_rate=1e9, sent_last_24_hours=0)

    async def send_bulk(
        self, template_name: str, messages: list[tuple[OutgoingMessage, dict[str, str]]]
    ) -> list[SendResult]:
        self.sent += len(messages)
        return [SendResult(Outcome.SENT, ses_message_id=f"noop-{m.id}") for m, _ in messages]

    async def send_templated(
        self, template_name: str, msg: OutgoingMessage, variables: dict[str, str]
    ) -> SendResult:
        return await self.send(msg)


def new_messages(n: int) -> list[NewMessage]:
    return [
        NewMessage(
            from_addr="sender@example.com",
            to=(f"success+{i}@simulator.amazonses.com",),
            subject=f"job {i}",
            text="no-op",
            idempotency_key=f"q-{i}",
        )
        for i in range(n)
    ]


@dataclass(frozen=True, slots=True)
class Drained:
    """How long a drain took, and the CPU seconds this process and Postgres spent on it."""

    seconds: float
    cpu_bench: float
    cpu_postgres: float | None


async def timed_drain(dbs: Databases, work: Awaitable[_T]) -> tuple[_T, Drained]:
    """Run one side's drain; its result and what it cost."""
    own0, pg0 = time.process_time(), dbs.cpu()
    began = time.perf_counter()
    result = await work
    seconds = time.perf_counter() - began
    own1, pg1 = time.process_time(), dbs.cpu()
    pg = None if pg0 is None or pg1 is None else pg1 - pg0
    return result, Drained(seconds, own1 - own0, pg)


def figures(n: int, enqueue_s: float, drained: Drained) -> dict[str, Any]:
    """One side's row: jobs/s of the drain and the enqueue, CPU ms per job."""
    pg = drained.cpu_postgres
    return {
        "drain_jobs_per_s": round(n / drained.seconds, 1),
        "enqueue_rows_per_s": round(n / enqueue_s, 1),
        "cpu_ms_per_job_bench": round(drained.cpu_bench * 1000 / n, 4),
        "cpu_ms_per_job_postgres": None if pg is None else round(pg * 1000 / n, 4),
    }


# -- the dispatcher ---------------------------------------------------------------------------


async def _enqueue(queue: Queue, n: int) -> float:
    """Enqueue n messages in chunks of CHUNK; seconds taken."""
    msgs = new_messages(n)
    began = time.perf_counter()
    for i in range(0, n, CHUNK):
        await queue.enqueue_many(msgs[i : i + CHUNK])
    return time.perf_counter() - began


async def dispatcher_side(dbs: Databases, n: int) -> dict[str, Any]:
    dsn = await dbs.create()
    cfg = Config()
    async with Queue.connect(dsn, max_size=cfg.database.pool_size) as queue:
        enqueue_s = await _enqueue(queue, n)
        sender = NoopSender()
        governor = QuotaGovernor(cfg.pacing)
        await first_reading(sender, governor)
        limiter = RecipientLimiter(1e9, cfg.pacing)
        pool = WorkerPool(
            queue,
            sender,
            limiter,
            governor,
            replace(pool_settings(cfg), listen=False),
            postgres_shared(queue),
            stop=asyncio.Event(),
            drain=True,
            pacing=cfg.pacing,
        )
        report, drained = await timed_drain(dbs, pool.run())
        counts = await queue.counts()
    await dbs.drop(dsn)
    if report.exit_code != 0 or counts.get("sent") != n or sender.sent != n:
        raise BenchError(
            f"dispatcher drain: exit {report.exit_code} ({report.reason}), "
            f"{sender.sent} sends, states {counts}; expected {n} sent"
        )
    return figures(n, enqueue_s, drained)


def sent_noop(jobs: Sequence[ClaimedJob]) -> list[Settlement]:
    """What the pool settles for sends SES accepted (decide(): "sent", no delay)."""
    return [
        Settlement(
            id=j.id,
            token=j.token,
            state="sent",
            ses_message_id=f"noop-{j.id}",
            outcome=Outcome.SENT.value,
        )
        for j in jobs
    ]


async def claim_settle_side(dbs: Databases, n: int, batch: int) -> dict[str, Any]:
    """The queue without the pool: DRAINERS loops of claim(limit=batch) -> settle(all sent)."""
    dsn = await dbs.create()
    async with Queue.connect(dsn, max_size=DRAINERS) as queue:
        enqueue_s = await _enqueue(queue, n)
        settled = 0

        async def drainer() -> None:
            nonlocal settled
            owner = uuid.uuid4()
            while jobs := await queue.claim(owner, batch):
                done = await queue.settle(sent_noop(jobs))
                if len(done) != len(jobs):
                    raise BenchError(f"claim+settle: settled {len(done)} of {len(jobs)} claimed")
                settled += len(done)

        _, drained = await timed_drain(dbs, asyncio.gather(*(drainer() for _ in range(DRAINERS))))
        counts = await queue.counts()
    await dbs.drop(dsn)
    if counts.get("sent") != n or settled != n:
        raise BenchError(
            f"claim+settle drain: {settled} settled, states {counts}; expected {n} sent"
        )
    return figures(n, enqueue_s, drained)


# -- pgqueuer ---------------------------------------------------------------------------------


async def pgqueuer_side(dbs: Databases, n: int, batch: int) -> dict[str, Any]:
    from pgqueuer import AsyncpgDriver, QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    dsn = await dbs.create()
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        began = time.perf_counter()
        for i in range(0, n, CHUNK):
            size = min(CHUNK, n - i)
            await queries.enqueue([ENTRYPOINT] * size, [b"no-op"] * size, [0] * size)
        enqueue_s = time.perf_counter() - began
        qm = QueueManager(queries)
        done = 0

        async def noop(job: Any) -> None:
            nonlocal done
            done += 1

        # Registered by a call, not as a decorator: mypy sees pgqueuer as untyped (pyproject).
        qm.entrypoint(ENTRYPOINT)(noop)

        _, drained = await timed_drain(
            dbs,
            qm.run(
                batch_size=batch,
                mode=QueueExecutionMode.drain,
                dequeue_timeout=timedelta(seconds=1),
                log_aggregation_interval=timedelta(0),
            ),
        )
        left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
    finally:
        await conn.close()
    await dbs.drop(dsn)
    if done != n or left != 0:
        raise BenchError(f"pgqueuer drain: {done} of {n} jobs run, {left} left in its queue")
    return figures(n, enqueue_s, drained)


# -- the run ----------------------------------------------------------------------------------


async def campaign_import(dbs: Databases, recipients: int) -> dict[str, Any]:
    async with run_simulator() as sim:
        with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
            work = Path(tmp)
            html, text = write_templates(work)
            imported = await import_list(dbs, sim, work, recipients, html, text)
    await dbs.drop(imported.dsn)
    return {
        "recipients": recipients,
        "seconds": round(imported.wall, 2),
        "rows_per_s": round(recipients / imported.wall, 1),
        "peak_rss_mb": round(imported.maxrss_mb, 1),
    }


async def main_async(args: argparse.Namespace) -> int:
    with throwaway_postgres() as dbs:
        await dbs.make_template()
        pg_version = await dbs.server_version()
        # Warm-up: imports, the template database, Postgres's caches.
        await dispatcher_side(dbs, 1000)
        await claim_settle_side(dbs, 1000, args.batch)
        await pgqueuer_side(dbs, 1000, args.batch)
        # The collector as `dispatcher run` sets it once started (dispatcher/runtime.py), for
        # every side alike: what the warm-up built is frozen, the young threshold raised.
        settle_heap()
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            order = list(SIDES) if r % 2 == 0 else list(reversed(SIDES))
            row: dict[str, Any] = {"round": r + 1, "order": order}
            for side in order:
                print(f"round {r + 1}: {side}, {args.jobs:,} jobs ...", file=sys.stderr)
                if side == "dispatcher":
                    row[side] = await dispatcher_side(dbs, args.jobs)
                elif side == "claim_settle":
                    row[side] = await claim_settle_side(dbs, args.jobs, args.batch)
                else:
                    row[side] = await pgqueuer_side(dbs, args.jobs, args.batch)
            pgq = row["pgqueuer"]["drain_jobs_per_s"]
            row["drain_ratio"] = round(row["dispatcher"]["drain_jobs_per_s"] / pgq, 3)
            cs = row["claim_settle"]["drain_jobs_per_s"]
            row["claim_settle_drain_ratio"] = round(cs / pgq, 3)
            enq = row["dispatcher"]["enqueue_rows_per_s"] / row["pgqueuer"]["enqueue_rows_per_s"]
            row["enqueue_ratio"] = round(enq, 3)
            rounds.append(row)
        imported = None
        if args.recipients:
            print(f"campaign list of {args.recipients:,} recipients ...", file=sys.stderr)
            imported = await campaign_import(dbs, args.recipients)

    def median(side: str, key: str) -> float | None:
        values = [r[side][key] for r in rounds if r[side][key] is not None]
        return round(statistics.median(values), 4) if values else None

    summary = {
        side: {
            key: median(side, key)
            for key in (
                "drain_jobs_per_s",
                "enqueue_rows_per_s",
                "cpu_ms_per_job_bench",
                "cpu_ms_per_job_postgres",
            )
        }
        for side in SIDES
    }
    summary["drain_ratio"] = {
        "dispatcher_over_pgqueuer": median_ratio(rounds, "drain_ratio"),
        "claim_settle_over_pgqueuer": median_ratio(rounds, "claim_settle_drain_ratio"),
    }
    summary["enqueue_ratio"] = {"dispatcher_over_pgqueuer": median_ratio(rounds, "enqueue_ratio")}
    print(f"\nqueue drain of {args.jobs:,} no-op jobs, median of {args.rounds} round(s):")
    print(f"{'':34}{'dispatcher':>13}{'dispatcher':>13}")
    print(f"{'':34}{'worker pool':>13}{'claim+settle':>13}{'pgqueuer':>13}")
    labels = {
        "drain_jobs_per_s": "drain jobs/s",
        "enqueue_rows_per_s": "enqueue rows/s (chunks of 1,000)",
        "cpu_ms_per_job_bench": "CPU ms/job, this process",
        "cpu_ms_per_job_postgres": "CPU ms/job, Postgres",
    }
    for key, label in labels.items():
        print(f"{label:34}" + "".join(f"{_fmt(summary[side][key]):>13}" for side in SIDES))
    print(
        f"drain ratio / pgqueuer per round: worker pool {[r['drain_ratio'] for r in rounds]}, "
        f"claim+settle {[r['claim_settle_drain_ratio'] for r in rounds]}"
    )
    print(f"enqueue ratio / pgqueuer per round: {[r['enqueue_ratio'] for r in rounds]}")
    if imported is not None:
        print(
            f"campaign create of {imported['recipients']:,} recipients: {imported['seconds']} s, "
            f"{imported['rows_per_s']:,.0f} rows/s, peak RSS {imported['peak_rss_mb']} MB"
        )
    result = {
        "benchmark": "queue",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.queue " + " ".join(sys.argv[1:]),
        "machine": machine_facts(False, pg_version),
        "pgqueuer": version("pgqueuer"),
        "jobs": args.jobs,
        "batch": args.batch,
        "claim_settle_drainers": DRAINERS,
        "rounds": rounds,
        "summary": summary,
        "campaign_import": imported,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "queue.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def median_ratio(rounds: list[dict[str, Any]], key: str) -> float:
    return round(float(statistics.median(r[key] for r in rounds)), 3)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.queue", description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument(
        "--recipients",
        type=int,
        default=None,
        help="campaign list size (default 1,000,000; --quick 200,000); 0 skips the campaign",
    )
    parser.add_argument("--rounds", type=int, default=None, help="default 2; --quick 1")
    parser.add_argument(
        "--batch",
        type=int,
        default=100,
        help="pgqueuer's batch size and claim+settle's claim limit",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20,000 jobs, 200,000 recipients, one round (unless given)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs = 20_000
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    if args.recipients is None:
        args.recipients = 200_000 if args.quick else 1_000_000
    for name in ("jobs", "rounds", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.recipients < 0:
        parser.error("--recipients must be >= 0 (0: no campaign list)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("warning", "console")
    return run_bench(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

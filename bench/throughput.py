"""End-to-end dispatcher throughput next to a bare aioboto3 send loop, in the same run.

    python -m bench.throughput [--messages N] [--concurrency C] [--rounds K] [--no-uvloop]

Each round sends N messages twice against the same simulator (its own process, no rate limit,
no daily quota): once with the bare loop (bench/baseline.py) and once with the dispatcher
(`run_worker(..., drain=True)` on a fresh database holding the N messages). The order
alternates per round so drift on a noisy machine hits both sides. The figure that matters is
the per-round ratio dispatcher / baseline (target >= 0.85), with CPU per message for this
process, Postgres and the simulator alongside. Results go to bench/results/ as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bench.baseline import BASELINE_TAG, send_all
from bench.harness import RESULTS, BenchError, event_loop_runner, machine_facts
from bench.messages import BenchMessage, make_messages, to_new_messages
from bench.services import (
    CpuReading,
    Databases,
    Simulator,
    cpu_spent,
    read_cpu,
    run_simulator,
    throwaway_postgres,
)
from dispatcher.app import run_worker
from dispatcher.config import Config
from dispatcher.config.settings import LogSettings
from dispatcher.domain.message import DISPATCHER_ID_TAG
from dispatcher.obs.logging import configure_logging
from dispatcher.queue.repository import Queue
from dispatcher.ses import SesSettings
from dispatcher.worker.pool import RunReport

TARGET_RATIO = 0.85
REGION = "us-east-1"
REAP_PAUSE = 0.3  # seconds: let Postgres reap closed backends before reading its CPU
WARMUP_MESSAGES = 500  # per side, before the measured rounds: imports, caches, TCP, Postgres

_T = TypeVar("_T")


# -- one side of one round --------------------------------------------------------------------


@dataclass(slots=True)
class SideResult:
    """One side of one round. Times in seconds, CPU in seconds (None: could not be read)."""

    side: str  # "baseline" or "dispatcher"
    messages: int
    wall: float  # the whole call: client/pool setup, the sends, teardown
    cpu: float  # this process (time.process_time)
    sim_cpu: float | None
    pg_cpu: float | None
    # Split by the simulator's acceptance times (time.time in its process, so the same clock
    # for both sides and independent of how the dispatcher counts):
    startup: float | None  # from the call to the first message the simulator accepted
    send_phase: float | None  # from the first accepted message to the last
    tail: float | None  # from the last accepted message to the return of the call
    enqueue_wall: float | None = None  # dispatcher only: enqueue_many of the N messages
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.wall

    @property
    def send_phase_rate(self) -> float | None:
        if not self.send_phase or self.messages < 2:
            return None
        return (self.messages - 1) / self.send_phase

    @property
    def cpu_with_postgres(self) -> float:
        """This process and the Postgres backends: the dispatcher's whole cost (the baseline's
        Postgres CPU is about 0, it uses none)."""
        return self.cpu + (self.pg_cpu or 0.0)

    @property
    def busy(self) -> float:
        """Share of the call this process spent on a CPU: near 1 is CPU-bound, lower is waiting."""
        return self.cpu / self.wall

    def per_msg_ms(self, seconds: float | None) -> float | None:
        return None if seconds is None else seconds * 1000.0 / self.messages

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["msgs_per_s"] = self.rate
        out["send_phase_msgs_per_s"] = self.send_phase_rate
        out["cpu_ms_per_msg"] = self.per_msg_ms(self.cpu)
        out["cpu_with_postgres_ms_per_msg"] = self.per_msg_ms(self.cpu_with_postgres)
        out["busy"] = self.busy
        out["sim_cpu_ms_per_msg"] = self.per_msg_ms(self.sim_cpu)
        out["pg_cpu_ms_per_msg"] = self.per_msg_ms(self.pg_cpu)
        out["enqueue_msgs_per_s"] = self.messages / self.enqueue_wall if self.enqueue_wall else None
        return out


@dataclass(frozen=True, slots=True)
class Knobs:
    """Dispatcher settings the run may override; None keeps the Config default."""

    claim_batch: int | None = None
    settle_batch: int | None = None
    settle_interval: float | None = None
    poll_interval: float | None = None
    pool_size: int | None = None


def dispatcher_config(dsn: str, endpoint_url: str, concurrency: int, knobs: Knobs) -> Config:
    """Defaults, pointed at the round's database and the simulator; max_in_flight = C."""
    base = Config()
    queue_changes: dict[str, Any] = {
        k: v
        for k, v in (
            ("claim_batch", knobs.claim_batch),
            ("settle_batch", knobs.settle_batch),
            ("settle_interval", knobs.settle_interval),
            ("poll_interval", knobs.poll_interval),
        )
        if v is not None
    }
    database = replace(base.database, url=dsn, migrate_on_start=True)
    if knobs.pool_size is not None:
        database = replace(database, pool_size=knobs.pool_size)
    return replace(
        base,
        database=database,
        queue=replace(base.queue, **queue_changes),
        delivery=replace(base.delivery, max_in_flight=concurrency),
        ses=SesSettings(
            region=REGION,
            endpoint_url=endpoint_url,
            access_key_id="bench",
            secret_access_key="bench",
        ),
        log=LogSettings(level="warning", format="console"),
    )


@dataclass(frozen=True, slots=True)
class Measured:
    """One measured call: wall seconds, CPU seconds here and elsewhere, and when (unix time)."""

    wall: float
    cpu: float
    others: CpuReading
    began: float  # time.time() at the call, comparable with the simulator's accepted_at
    ended: float


async def _measured(
    sim: Simulator, dbs: Databases, run: Callable[[], Awaitable[_T]]
) -> tuple[_T, Measured]:
    """Run `run()`; its result and what it cost."""
    before = await read_cpu(sim, dbs)
    cpu0 = time.process_time()
    began = time.time()
    t0 = time.perf_counter()
    result = await run()
    wall = time.perf_counter() - t0
    ended = time.time()
    cpu = time.process_time() - cpu0
    await asyncio.sleep(REAP_PAUSE)
    others = cpu_spent(await read_cpu(sim, dbs), before)
    return result, Measured(wall, cpu, others, began, ended)


def _side(
    side: str, n: int, m: Measured, accepted: Sequence[dict[str, Any]], **extra: Any
) -> SideResult:
    """Phases from the simulator's own acceptance times, the same clock for both sides."""
    times = [float(a["accepted_at"]) for a in accepted]
    first, last = min(times), max(times)
    return SideResult(
        side,
        n,
        m.wall,
        m.cpu,
        m.others.sim,
        m.others.pg,
        startup=first - m.began,
        send_phase=last - first,
        tail=m.ended - last,
        **extra,
    )


async def baseline_round(
    sim: Simulator, dbs: Databases, messages: Sequence[BenchMessage], concurrency: int
) -> SideResult:
    n = len(messages)
    await sim.reset()
    run, m = await _measured(
        sim, dbs, lambda: send_all(sim.endpoint_url, REGION, messages, concurrency)
    )
    if run.sent != n or run.failed:
        raise BenchError(f"baseline sent {run.sent} of {n} ({run.failed} failed)")
    accepted = await sim.messages()
    tags = {a["tags"].get(BASELINE_TAG) for a in accepted}
    if len(accepted) != n or len(tags) != n:
        raise BenchError(
            f"baseline: the simulator accepted {len(accepted)} messages with {len(tags)} "
            f"distinct {BASELINE_TAG} tags, expected {n}"
        )
    return _side("baseline", n, m, accepted)


async def dispatcher_round(
    sim: Simulator,
    dbs: Databases,
    messages: Sequence[BenchMessage],
    concurrency: int,
    knobs: Knobs,
    round_no: int,
    profiler: cProfile.Profile | None = None,
) -> SideResult:
    """Enqueue N on a fresh database (timed apart), then `run_worker(drain=True)`; verified."""
    n = len(messages)
    dsn = await dbs.create()
    try:
        new = to_new_messages(list(messages), round_no)
        async with Queue.connect(dsn) as queue:
            t0 = time.perf_counter()
            enqueued = await queue.enqueue_many(new)
            enqueue_wall = time.perf_counter() - t0
        ids = {e.id for e in enqueued}
        if len(ids) != n:
            raise BenchError(f"dispatcher: enqueue_many gave {len(ids)} distinct ids for {n}")
        await sim.reset()
        cfg = dispatcher_config(dsn, sim.endpoint_url, concurrency, knobs)

        async def run() -> RunReport:
            if profiler is None:
                return await run_worker(cfg, asyncio.Event(), drain=True)
            profiler.enable()
            try:
                return await run_worker(cfg, asyncio.Event(), drain=True)
            finally:
                profiler.disable()

        report, m = await _measured(sim, dbs, run)
        c = report.counters
        if report.exit_code != 0 or c.sent != n:
            raise BenchError(
                f"dispatcher: exit code {report.exit_code} ({report.reason}), sent {c.sent} of "
                f"{n}, failed {c.failed}, in doubt {c.in_doubt}, throttled {c.throttled}"
            )
        accepted = await sim.messages()
        tags = [a["tags"].get(DISPATCHER_ID_TAG) for a in accepted]
        got = {int(t) for t in tags if t is not None}
        if len(accepted) != n or len(got) != n or got != ids:
            raise BenchError(
                f"dispatcher: the simulator accepted {len(accepted)} messages with {len(got)} "
                f"distinct {DISPATCHER_ID_TAG} tags ({len(got & ids)} of ours), expected {n}"
            )
        async with Queue.connect(dsn) as queue:
            counts = await queue.counts()
        if counts["sent"] != n:
            left = {k: v for k, v in counts.items() if v}
            raise BenchError(f"dispatcher: jobs by state after the run {left}, expected {n} sent")
    finally:
        await dbs.drop(dsn)
    return _side(
        "dispatcher",
        n,
        m,
        accepted,
        enqueue_wall=enqueue_wall,
        extra={"attempts": c.attempts, "throttled": c.throttled, "elapsed": report.elapsed},
    )


# -- the run ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Round:
    number: int
    order: list[str]
    baseline: SideResult
    dispatcher: SideResult

    @property
    def ratio(self) -> float:
        return self.dispatcher.rate / self.baseline.rate

    @property
    def send_phase_ratio(self) -> float | None:
        d, b = self.dispatcher.send_phase_rate, self.baseline.send_phase_rate
        return d / b if d and b else None

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.number,
            "order": self.order,
            "ratio": self.ratio,
            "send_phase_ratio": self.send_phase_ratio,
            "baseline": self.baseline.to_json(),
            "dispatcher": self.dispatcher.to_json(),
        }


async def bench(args: argparse.Namespace, dbs: Databases, knobs: Knobs) -> dict[str, Any]:
    n, conc = args.messages, args.concurrency
    messages = make_messages(n)
    profiler = cProfile.Profile() if args.profile else None
    await dbs.make_template()
    pg_version = await dbs.server_version()
    async with run_simulator() as sim:
        if args.warmup:
            warm = make_messages(min(WARMUP_MESSAGES, n))
            await baseline_round(sim, dbs, warm, conc)
            await dispatcher_round(sim, dbs, warm, conc, knobs, round_no=0)
            print(f"warm-up done ({len(warm)} messages per side)", file=sys.stderr)
        rounds: list[Round] = []
        for k in range(1, args.rounds + 1):
            order = ["baseline", "dispatcher"] if k % 2 else ["dispatcher", "baseline"]
            results: dict[str, SideResult] = {}
            for side in order:
                if side == "baseline":
                    results[side] = await baseline_round(sim, dbs, messages, conc)
                else:
                    results[side] = await dispatcher_round(
                        sim, dbs, messages, conc, knobs, k, profiler
                    )
            rnd = Round(k, order, results["baseline"], results["dispatcher"])
            rounds.append(rnd)
            print(_round_line(rnd), file=sys.stderr)
    summary = _summary(rounds)
    cfg = dispatcher_config("postgresql://settings-only/none", "http://unused", conc, knobs)
    out: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": _command_line(),
        "target_ratio": TARGET_RATIO,
        "meets_target": summary["ratio_median"] >= TARGET_RATIO,
        "profiled": profiler is not None,
        "messages": n,
        "concurrency": conc,
        "rounds_requested": args.rounds,
        "warmup": args.warmup,
        "dispatcher_settings": {
            "claim_batch": cfg.queue.claim_batch,
            "settle_batch": cfg.queue.settle_batch,
            "settle_interval": cfg.queue.settle_interval,
            "poll_interval": cfg.queue.poll_interval,
            "pool_size": cfg.database.pool_size,
            "max_in_flight": cfg.delivery.max_in_flight,
        },
        "machine": machine_facts(args.uvloop, pg_version),
        "median": summary,
        "rounds": [r.to_json() for r in rounds],
    }
    if profiler is not None:
        out["profile"] = _save_profile(profiler)
    return out


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _summary(rounds: list[Round]) -> dict[str, Any]:
    def side(get: Callable[[Round], SideResult]) -> dict[str, float | None]:
        results = [get(r) for r in rounds]
        return {
            "msgs_per_s": _median([s.rate for s in results]),
            "send_phase_msgs_per_s": _median([s.send_phase_rate for s in results]),
            "cpu_ms_per_msg": _median([s.per_msg_ms(s.cpu) for s in results]),
            "cpu_with_postgres_ms_per_msg": _median(
                [s.per_msg_ms(s.cpu_with_postgres) for s in results]
            ),
            "busy": _median([s.busy for s in results]),
            "pg_cpu_ms_per_msg": _median([s.per_msg_ms(s.pg_cpu) for s in results]),
            "sim_cpu_ms_per_msg": _median([s.per_msg_ms(s.sim_cpu) for s in results]),
            "startup_s": _median([s.startup for s in results]),
            "tail_s": _median([s.tail for s in results]),
        }

    enqueue = [
        r.dispatcher.messages / r.dispatcher.enqueue_wall
        for r in rounds
        if r.dispatcher.enqueue_wall
    ]
    b_rate = _median([r.baseline.rate for r in rounds])
    d_rate = _median([r.dispatcher.rate for r in rounds])
    return {
        "ratio_median": _median([r.ratio for r in rounds]),
        # Not the headline: the median rates of the two sides may come from different rounds.
        "ratio_of_median_rates": d_rate / b_rate if d_rate and b_rate else None,
        "cpu_ratio_median": _median(
            [r.dispatcher.cpu_with_postgres / r.baseline.cpu_with_postgres for r in rounds]
        ),
        "send_phase_ratio_median": _median([r.send_phase_ratio for r in rounds]),
        "baseline": side(lambda r: r.baseline),
        "dispatcher": side(lambda r: r.dispatcher),
        "enqueue_msgs_per_s": _median(enqueue),
    }


def _command_line() -> str:
    return shlex.join([Path(sys.executable).name, "-m", "bench.throughput", *sys.argv[1:]])


def _save_profile(profiler: cProfile.Profile) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"profile-{stamp}.pstats"
    profiler.dump_stats(str(path))
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)
    print(text.getvalue(), file=sys.stderr)
    return {"pstats": str(path)}


# -- output -----------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _round_line(r: Round) -> str:
    b, d = r.baseline, r.dispatcher
    return (
        f"round {r.number} ({' then '.join(r.order)}): baseline {b.rate:7.0f} msg/s, "
        f"dispatcher {d.rate:7.0f} msg/s, ratio {r.ratio:.3f} "
        f"(send phase {_fmt(r.send_phase_ratio, '.3f')})"
    )


def render(result: dict[str, Any]) -> str:
    m = result["median"]
    b, d = m["baseline"], m["dispatcher"]
    rows = [
        ("msgs/s, whole call", "msgs_per_s", ".0f"),
        ("msgs/s, send phase", "send_phase_msgs_per_s", ".0f"),
        ("CPU ms/msg, this process", "cpu_ms_per_msg", ".3f"),
        ("this process busy (CPU/wall)", "busy", ".2f"),
        ("CPU ms/msg, Postgres", "pg_cpu_ms_per_msg", ".3f"),
        ("CPU ms/msg, proc + Postgres", "cpu_with_postgres_ms_per_msg", ".3f"),
        ("CPU ms/msg, simulator", "sim_cpu_ms_per_msg", ".3f"),
        ("startup s (to 1st send)", "startup_s", ".3f"),
        ("tail s (last send to end)", "tail_s", ".3f"),
    ]
    lines = [
        f"{result['messages']} messages, concurrency {result['concurrency']}, "
        f"{len(result['rounds'])} rounds, uvloop {'on' if result['machine']['uvloop'] else 'off'}"
        f", {result['machine']['cpu_count']} CPUs, Python {result['machine']['python']}"
        + (" [PROFILED: figures not representative]" if result["profiled"] else ""),
        "",
        f"{'median of rounds':28} {'baseline':>10} {'dispatcher':>11}",
    ]
    lines += [
        f"{label:28} {_fmt(b[key], spec):>10} {_fmt(d[key], spec):>11}" for label, key, spec in rows
    ]
    verdict = "meets" if result["meets_target"] else "BELOW"
    lines += [
        "",
        f"ratio dispatcher/baseline (median of per-round ratios): {m['ratio_median']:.3f} "
        f"-> {verdict} the target {TARGET_RATIO}",
        f"  (the median msgs/s above divide to {_fmt(m['ratio_of_median_rates'], '.3f')}: "
        "a side's median round need not be the other's, so quote the per-round ratio)",
        f"CPU dispatcher/baseline, process + Postgres (median of per-round ratios): "
        f"{_fmt(m['cpu_ratio_median'], '.3f')}",
        f"send-phase ratio: {_fmt(m['send_phase_ratio_median'], '.3f')}; "
        f"enqueue (not in the ratio): {m['enqueue_msgs_per_s']:.0f} msgs/s",
        f"command: {result['command']}",
    ]
    return "\n".join(lines)


def write_results(result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"throughput-{stamp}.json"
    text = json.dumps(result, indent=2) + "\n"
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return path


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.throughput",
        description="Dispatcher throughput vs a bare aioboto3 send loop, same simulator, one run.",
    )
    p.add_argument("--messages", type=int, default=5000, help="per side and round (%(default)s)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="baseline tasks = dispatcher delivery.max_in_flight (%(default)s)",
    )
    p.add_argument("--rounds", type=int, default=5, help="measured rounds (%(default)s)")
    p.add_argument(
        "--uvloop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run both sides on uvloop, as the dispatcher CLI does (default on)",
    )
    p.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"an unmeasured round of {WARMUP_MESSAGES} messages per side first (default on)",
    )
    p.add_argument("--claim-batch", type=int, help="queue.claim_batch (default: Config's)")
    p.add_argument("--settle-batch", type=int, help="queue.settle_batch")
    p.add_argument("--settle-interval", type=float, help="queue.settle_interval, seconds")
    p.add_argument("--poll-interval", type=float, help="queue.poll_interval, seconds")
    p.add_argument("--pool-size", type=int, help="database.pool_size")
    p.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the dispatcher side; print the top functions, save a .pstats file",
    )
    args = p.parse_args(argv)
    if args.messages < 2 or args.concurrency < 1 or args.rounds < 1:
        p.error("--messages must be >= 2, --concurrency and --rounds >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("warning", "console")
    knobs = Knobs(
        claim_batch=args.claim_batch,
        settle_batch=args.settle_batch,
        settle_interval=args.settle_interval,
        poll_interval=args.poll_interval,
        pool_size=args.pool_size,
    )
    if args.uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            print("uvloop is not installed: running with --no-uvloop", file=sys.stderr)
            args.uvloop = False
    if args.profile:
        RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        with throwaway_postgres() as dbs:
            result = event_loop_runner(args.uvloop)(bench(args, dbs, knobs))
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    path = write_results(result)
    print(render(result))
    print(f"written: {path} and {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

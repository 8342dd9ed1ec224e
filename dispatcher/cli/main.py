"""`dispatcher`: the command line. Parses arguments, loads config, runs one command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from dispatcher import app
from dispatcher.cli import campaign as campaign_cli
from dispatcher.cli import enqueue as enqueue_cli
from dispatcher.cli import suppression as suppression_cli
from dispatcher.cli.argtypes import (
    OneLineParser,
    non_utf8_argument,
    positive_int,
    row_id,
)
from dispatcher.cli.jsonl import parse_send_after
from dispatcher.cli.output import discard_stdout
from dispatcher.cli.processes import process_count, run_processes
from dispatcher.config import Config, load_config
from dispatcher.errors import DispatcherError, InputError
from dispatcher.feedback.guard import reputation_lines, reputation_view
from dispatcher.feedback.store import FeedbackStore
from dispatcher.feedback.watch import thresholds
from dispatcher.obs.logging import configure_logging
from dispatcher.pacing import QuotaGovernor
from dispatcher.queue.embedded import EmbeddedPostgres
from dispatcher.queue.migrate import migrate
from dispatcher.queue.quota import SharedQuotaStore
from dispatcher.queue.repository import STATES, NewMessage, ResolveTo
from dispatcher.queue.validate import validate_message
from dispatcher.ses import SesAdapter
from dispatcher.sim import cli as sim_cli

log = structlog.get_logger()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="dispatcher",
        description="Asynchronous mail dispatcher for Amazon SES: Postgres queue, paced sends.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML config file (default: $DISPATCHER_CONFIG, else built-in defaults)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("migrate", help="apply pending database migrations (idempotent)")

    send = sub.add_parser("send", help="queue one message; prints its id")
    send.add_argument("--from", dest="from_addr", required=True, metavar="ADDRESS")
    send.add_argument("--to", action="append", default=[], metavar="ADDRESS")
    send.add_argument("--cc", action="append", default=[], metavar="ADDRESS")
    send.add_argument("--bcc", action="append", default=[], metavar="ADDRESS")
    send.add_argument("--subject", required=True)
    body = send.add_mutually_exclusive_group(required=True)
    body.add_argument("--text")
    body.add_argument("--html")
    send.add_argument("--idempotency-key", metavar="KEY")
    send.add_argument("--priority", type=int, default=0, help="higher is sent first")
    send.add_argument("--send-after", metavar="TIME", help="ISO 8601 with timezone")
    send.add_argument("--configuration-set", metavar="NAME")

    enqueue_cli.add_parser(sub)

    run = sub.add_parser("run", help="send queued mail until SIGTERM/SIGINT")
    run.add_argument(
        "--drain",
        action="store_true",
        help="exit once nothing is left to send (exit 3 if the "
        "daily quota stops it with mail queued, 4 if a sending error holds the rest)",
    )
    run.add_argument(
        "--processes",
        type=process_count,
        default=1,
        metavar="N|auto",
        help="worker processes (default 1; 'auto': one per core); they split the account's "
        "rate and daily quota between them. Each holds up to database.pool_size + 2 connections",
    )

    status = sub.add_parser("status", help="message counts by state, and pacing")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("quota", help="the account's sending quota next to the governor's view")

    resume = sub.add_parser("resume", help="lift the reputation guard's hold on all sending")
    resume.add_argument(
        "--force", action="store_true", help="required: resuming is a human decision"
    )

    in_doubt = sub.add_parser("in-doubt", help="list or resolve messages whose send is in doubt")
    in_doubt_sub = in_doubt.add_subparsers(dest="action", required=True, metavar="ACTION")
    in_doubt_list = in_doubt_sub.add_parser("list", help="show in-doubt messages")
    in_doubt_list.add_argument("--limit", type=positive_int, default=100)
    resolve = in_doubt_sub.add_parser("resolve", help="decide what happened to them")
    what = resolve.add_mutually_exclusive_group(required=True)
    what.add_argument("--resend", action="store_true", help="queue them again")
    what.add_argument("--sent", action="store_true", help="record them as sent")
    what.add_argument("--failed", action="store_true", help="record them as failed")
    which = resolve.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every in-doubt message")
    which.add_argument("ids", nargs="*", type=row_id, default=[], metavar="ID")

    cancel = sub.add_parser("cancel", help="cancel queued (or in-doubt) messages")
    cancel.add_argument("ids", nargs="+", type=row_id, metavar="ID")

    sim = sub.add_parser("sim", help="run the SES simulator (for tests, benchmarks, the demo)")
    sim_cli.add_arguments(sim)

    campaign_cli.add_parser(sub)
    suppression_cli.add_parser(sub)

    db = sub.add_parser("db", help="the embedded Postgres: where it is, stop it")
    db_sub = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    db_sub.add_parser("status", help="is the embedded server running, and where")
    db_sub.add_parser("stop", help="stop the embedded server (the next command restarts it)")

    demo = sub.add_parser(
        "demo", help="embedded Postgres + simulator: queue and send a few thousand messages"
    )
    demo.add_argument("--count", type=int, default=3000, help="messages to send")
    demo.add_argument("--rate", type=float, default=100.0, help="the simulated MaxSendRate")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    bad = non_utf8_argument(sys.argv[1:] if argv is None else argv)
    if bad is not None:
        print(f"dispatcher: error: argument '{bad}' is not valid UTF-8; retype it", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    if args.command == "sim":
        return sim_cli.run(args)
    try:
        cfg = load_config(args.config)
        level = cfg.log.level
        if args.command == "demo" and level in ("debug", "info"):
            level = "warning"  # the demo shows a progress bar and a report instead
        configure_logging(level, cfg.log.format)
        return _run(_dispatch(args, cfg))
    except DispatcherError as exc:
        print(f"dispatcher: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader of our output left (`... | head`)
        discard_stdout()
        return 128 + signal.SIGPIPE


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _dispatch(args: argparse.Namespace, cfg: Config) -> int:
    command: str = args.command
    if command == "migrate":
        return await cmd_migrate(cfg)
    if command == "send":
        return await cmd_send(args, cfg)
    if command == "enqueue":
        return await enqueue_cli.cmd_enqueue(args, cfg)
    if command == "run":
        if args.processes > 1:
            return await run_processes(
                cfg, processes=args.processes, drain=args.drain, config_path=args.config
            )
        return await cmd_run(cfg, drain=args.drain)
    if command == "status":
        return await cmd_status(cfg, as_json=args.json)
    if command == "quota":
        return await cmd_quota(cfg)
    if command == "resume":
        return await cmd_resume(cfg, force=args.force)
    if command == "in-doubt":
        return await cmd_in_doubt(args, cfg)
    if command == "cancel":
        return await cmd_cancel(args.ids, cfg)
    if command == "db":
        return await cmd_db(args.action, cfg)
    if command == "campaign":
        from dispatcher.cli import campaign as campaign_cli_run

        return await campaign_cli_run.run(args, cfg)
    if command == "suppression":
        return await suppression_cli.run(args, cfg)
    if command == "demo":
        from dispatcher.cli.demo import run_demo

        return await run_demo(cfg, count=args.count, rate=args.rate)
    raise AssertionError(command)


async def cmd_migrate(cfg: Config) -> int:
    async with app.connect(cfg) as conn:
        applied = await migrate(conn)
    where = "the embedded database" if not cfg.database.url else "the database"
    if applied:
        print(f"applied {len(applied)} migration(s) to {where}: {', '.join(applied)}")
    else:
        print(f"{where} is up to date")
    return 0


async def cmd_db(action: str, cfg: Config) -> int:
    if cfg.database.url:
        raise InputError(
            "database.url is set: the dispatcher uses that server, not an embedded one"
        )
    embedded = EmbeddedPostgres(cfg.database.data_dir)
    if action == "stop":
        await asyncio.to_thread(embedded.stop)
        print(f"embedded Postgres under {embedded.data_dir} stopped")
        return 0
    st = await asyncio.to_thread(embedded.status)
    if not st.initialized:
        print(f"no embedded Postgres under {st.data_dir} yet (the first command creates it)")
    elif st.running:
        print(f"embedded Postgres under {st.data_dir}: running, pid {st.pid}, port {st.port}")
    else:
        print(f"embedded Postgres under {st.data_dir}: stopped")
    return 0


async def cmd_send(args: argparse.Namespace, cfg: Config) -> int:
    msg = NewMessage(
        from_addr=args.from_addr,
        to=tuple(args.to),
        cc=tuple(args.cc),
        bcc=tuple(args.bcc),
        subject=args.subject,
        text=args.text,
        html=args.html,
        configuration_set=args.configuration_set,
        idempotency_key=args.idempotency_key,
        priority=args.priority,
        send_after=parse_send_after(args.send_after) if args.send_after else None,
    )
    validate_message(msg)
    async with app.open_queue(cfg) as queue:
        result = await queue.enqueue(msg)
    print(result.id)
    if not result.created:
        print(
            f"note: idempotency key {args.idempotency_key!r} was already queued as message "
            f"{result.id}; nothing new was queued",
            file=sys.stderr,
        )
    return 0


async def cmd_run(cfg: Config, *, drain: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if not stop.is_set():
            log.info("worker.signal", signal=name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig.name)
    report = await app.run_worker(cfg, stop, drain=drain)
    c = report.counters
    stream = sys.stderr if report.exit_code else sys.stdout
    print(
        f"{report.reason}. sent {c.sent}, failed {c.failed}, in doubt {c.in_doubt}, "
        f"throttled {c.throttled} time(s), in {report.elapsed:.1f} s",
        file=stream,
    )
    return report.exit_code


async def _pacing_view(cfg: Config) -> dict[str, Any]:
    """The account's quota through the governor's eyes (one GetSendQuota call)."""
    try:
        async with SesAdapter.open(cfg.ses) as ses:
            quota = await ses.get_send_quota()
    except Exception as exc:
        return {"error": f"could not read the sending quota: {exc}"}
    governor = QuotaGovernor(cfg.pacing)
    now = asyncio.get_running_loop().time()
    governor.observe(quota, now)
    view = governor.view(now)
    limit = quota.max_24_hour_send
    return {
        "max_send_rate": quota.max_send_rate,
        "rate_limit": quota.max_send_rate * cfg.pacing.rate_headroom,
        "max_24_hour_send": limit,
        "sent_last_24_hours": quota.sent_last_24_hours,
        "quota_headroom": cfg.pacing.quota_headroom,
        "stop_at": None if limit < 0 else limit * cfg.pacing.quota_headroom,
        "remaining": view.remaining,
        "paused": view.paused,
        "reason": view.reason,
    }


async def cmd_status(cfg: Config, *, as_json: bool) -> int:
    async with app.open_queue(cfg) as queue:
        counts = await queue.counts()
        workers = await queue.workers()
        window = cfg.guard.window_hours
        feedback = FeedbackStore(queue.pool)
        sent = await feedback.account_counts(window * 3600.0)
        hold = await feedback.sending_hold()
        shared = await SharedQuotaStore(queue.pool).sync(uuid.UUID(int=0), {})
    states = {state: counts.get(state, 0) for state in STATES}
    pacing = await _pacing_view(cfg)
    pacing["workers"] = len(workers)
    leader = next((w for w in workers if w.id == shared.leader), None)
    pacing["shared"] = {
        # The reading every worker admits mail against, and who takes it (None: nobody yet).
        "read_by": None if leader is None else f"{leader.hostname}/{leader.pid} ({leader.id})",
        "reading_age_seconds": round(shared.age, 1) if shared.quota is not None else None,
        "sent_since_reading": shared.others_sent,  # by every worker, on the wire included
    }
    reputation = reputation_view(sent, thresholds(cfg.guard), window_hours=window)
    reputation["sending_held"] = None if hold is None else {"reason": hold[0], "since": hold[1]}
    if as_json:
        view = {"states": states, "pacing": pacing, "reputation": reputation}
        print(json.dumps(view, indent=2, default=str))
        return 0
    print("messages:")
    for state in STATES:
        print(f"  {state:<10} {states[state]:>10}")
    if states["unknown"]:
        print(
            f"  {states['unknown']} message(s) in doubt: see `dispatcher in-doubt list`, then "
            "`dispatcher in-doubt resolve`"
        )
    print(f"workers: {len(workers)} running")
    _print_pacing(pacing)
    shared = pacing["shared"]
    if shared["reading_age_seconds"] is not None:
        print(
            f"  shared reading    taken {shared['reading_age_seconds']:g} s ago by "
            f"{shared['read_by'] or 'a worker that has stopped'}; "
            f"{shared['sent_since_reading']:g} recipients sent since by all workers"
        )
    print(f"reputation (last {window:g} h, account-wide):")
    print("\n".join(reputation_lines(reputation)))
    if hold is not None:
        print(f"ALL SENDING HELD since {hold[1]:%Y-%m-%d %H:%M:%S %Z}: {hold[0]}")
        print("  check the lists, then `dispatcher resume --force`")
    return 0


async def cmd_resume(cfg: Config, *, force: bool) -> int:
    async with app.open_queue(cfg) as queue:
        feedback = FeedbackStore(queue.pool)
        hold = await feedback.sending_hold()
        if hold is None:
            raise InputError("sending is not held; nothing to resume")
        if not force:
            raise InputError(
                f"all sending was held by the reputation guard ({hold[0]}); "
                "resume with --force once you have checked the lists"
            )
        await feedback.release_sending()
    print(f"sending resumed (was held: {hold[0]})")
    return 0


def _print_pacing(pacing: dict[str, Any]) -> None:
    if "error" in pacing:
        print(f"pacing: {pacing['error']}")
        return
    limit = pacing["max_24_hour_send"]
    print("account (GetSendQuota):")
    print(f"  MaxSendRate       {pacing['max_send_rate']:>12g} recipients/s")
    print(f"  Max24HourSend     {'unlimited' if limit < 0 else f'{limit:g}':>12}")
    print(f"  SentLast24Hours   {pacing['sent_last_24_hours']:>12g}")
    print("governor:")
    print(f"  send rate         {pacing['rate_limit']:>12g} recipients/s")
    if limit >= 0:
        print(
            f"  stops at          {pacing['stop_at']:>12g} "
            f"({pacing['quota_headroom']:.0%} of Max24HourSend)"
        )
        print(f"  remaining         {pacing['remaining']:>12g}")
    print(f"  state             {'PAUSED' if pacing['paused'] else 'sending':>12}")
    if pacing["reason"]:
        print(f"  reason            {pacing['reason']}")


async def cmd_quota(cfg: Config) -> int:
    pacing = await _pacing_view(cfg)
    if "error" in pacing:
        raise DispatcherError(pacing["error"])
    _print_pacing(pacing)
    return 0


async def cmd_in_doubt(args: argparse.Namespace, cfg: Config) -> int:
    async with app.open_queue(cfg) as queue:
        if args.action == "list":
            jobs = await queue.list_unknown(args.limit)
            if not jobs:
                print("no messages in doubt")
                return 0
            for job in jobs:
                print(
                    f"{job.id}\t{job.updated_at:%Y-%m-%d %H:%M:%S}\t{job.from_addr} -> "
                    f"{', '.join(job.to)}\t{job.subject!r}\t{job.last_error or ''}"
                )
            return 0
        to: ResolveTo = "queued" if args.resend else "sent" if args.sent else "failed"
        ids = None if args.all else list(args.ids)
        done = await queue.resolve_unknown(ids, to)
    verb = {"queued": "queued again", "sent": "recorded as sent", "failed": "recorded as failed"}
    print(f"{len(done)} message(s) {verb[to]}")
    if ids is not None and len(done) < len(ids):
        missing = sorted(set(ids) - set(done))
        print(f"not in doubt (left as they are): {', '.join(map(str, missing))}", file=sys.stderr)
        return 1
    return 0


async def cmd_cancel(ids: list[int], cfg: Config) -> int:
    async with app.open_queue(cfg) as queue:
        done = await queue.cancel(ids)
    print(f"{len(done)} message(s) cancelled")
    missing = sorted(set(ids) - set(done))
    if missing:
        print(
            f"not cancelled (unknown, or already sending or done): {', '.join(map(str, missing))}",
            file=sys.stderr,
        )
        return 1
    return 0


def with_overrides(cfg: Config, **sections: Any) -> Config:
    """A copy of `cfg` with some sections replaced (used by the demo)."""
    return replace(cfg, **sections)


if __name__ == "__main__":
    sys.exit(main())

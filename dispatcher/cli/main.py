"""`dispatcher`: the command line. Parses arguments, loads config, runs one command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from botocore.exceptions import NoCredentialsError

from dispatcher import app
from dispatcher.cli import campaign as campaign_cli
from dispatcher.cli import db as db_cli
from dispatcher.cli import doctor as doctor_cli
from dispatcher.cli import enqueue as enqueue_cli
from dispatcher.cli import keys as keys_cli
from dispatcher.cli import prune as prune_cli
from dispatcher.cli import suppression as suppression_cli
from dispatcher.cli import webhooks as webhooks_cli
from dispatcher.cli.argtypes import (
    OneLineParser,
    message_ref,
    non_utf8_argument,
    positive_int,
    row_id,
)
from dispatcher.cli.attach import read_attachment
from dispatcher.cli.campaign_create import parse_tags
from dispatcher.cli.commands import Command, with_stores
from dispatcher.cli.output import discard_stdout
from dispatcher.cli.processes import (
    AUTO,
    auto_processes,
    process_count,
    run_processes,
    watch_parent,
)
from dispatcher.cli.status import cmd_quota, cmd_status, no_credentials
from dispatcher.config import Config, load_config
from dispatcher.db.migrate import migrate
from dispatcher.domain.jobs import NewMessage, ResolveTo
from dispatcher.domain.validate import validate_message
from dispatcher.domain.wire import parse_send_after
from dispatcher.errors import DispatcherError, InputError
from dispatcher.obs.logging import configure_logging
from dispatcher.sim import cli as sim_cli

ORPHAN_SLACK = 5.0  # seconds past shutdown_grace an orphaned child of `run --processes` may take

if TYPE_CHECKING:
    pass

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
    # Each command names its coroutine; `sim` runs on its own (no config, its own loop), and
    # `demo` draws a progress bar, so it keeps the info lines off the terminal.
    parser.set_defaults(standalone=None, quiet=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate_ = sub.add_parser("migrate", help="apply pending database migrations (idempotent)")
    migrate_.set_defaults(func=cmd_migrate)

    send = sub.add_parser("send", help="queue one message; prints its id")
    send.set_defaults(func=cmd_send)
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
    send.add_argument("--reply-to", action="append", default=[], metavar="ADDRESS")
    send.add_argument("--tag", action="append", default=[], metavar="NAME=VALUE")
    send.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="FILE",
        help="attach this file (repeatable); its type is guessed from its name",
    )

    enqueue_cli.add_parser(sub)

    run = sub.add_parser("run", help="send queued mail until SIGTERM/SIGINT")
    run.set_defaults(func=cmd_run)
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
        help="worker processes (default 1; 'auto': one per 1,000/s of the accounts' MaxSendRate, "
        "at most one per core); they split the account's "
        "rate and daily quota between them. Each holds up to database.pool_size + 4 connections",
    )

    status = sub.add_parser("status", help="message counts by state, and pacing; or one message")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "id", nargs="?", type=message_ref, metavar="ID", help="show this message and its SES events"
    )
    status.set_defaults(func=cmd_status)
    status.add_argument(
        "--check",
        action="store_true",
        help="readiness as /readyz judges it: exit 1, one line "
        "per problem, if mail is not going out (for systemd and cron)",
    )

    quota = sub.add_parser("quota", help="the account's sending quota next to the governor's view")
    quota.set_defaults(func=cmd_quota)

    resume = sub.add_parser("resume", help="lift the reputation guard's hold on all sending")
    resume.set_defaults(func=with_stores(cmd_resume))
    resume.add_argument(
        "--force", action="store_true", help="required: resuming is a human decision"
    )

    in_doubt = sub.add_parser("in-doubt", help="list or resolve messages whose send is in doubt")
    in_doubt_sub = in_doubt.add_subparsers(dest="action", required=True, metavar="ACTION")
    in_doubt_list = in_doubt_sub.add_parser("list", help="show in-doubt messages")
    in_doubt_list.add_argument("--limit", type=positive_int, default=100)
    in_doubt_list.set_defaults(func=with_stores(cmd_in_doubt_list))
    resolve = in_doubt_sub.add_parser("resolve", help="decide what happened to them")
    resolve.set_defaults(func=with_stores(cmd_in_doubt_resolve))
    what = resolve.add_mutually_exclusive_group(required=True)
    what.add_argument("--resend", action="store_true", help="queue them again")
    what.add_argument("--sent", action="store_true", help="record them as sent")
    what.add_argument("--failed", action="store_true", help="record them as failed")
    which = resolve.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every in-doubt message")
    which.add_argument("ids", nargs="*", type=row_id, default=[], metavar="ID")

    cancel = sub.add_parser("cancel", help="cancel queued (or in-doubt) messages")
    cancel.add_argument("ids", nargs="+", type=row_id, metavar="ID")
    cancel.set_defaults(func=with_stores(cmd_cancel))

    sim = sub.add_parser("sim", help="run the SES simulator (for tests, benchmarks, the demo)")
    sim_cli.add_arguments(sim)
    sim.set_defaults(standalone=sim_cli.run)

    campaign_cli.add_parser(sub)
    suppression_cli.add_parser(sub)
    keys_cli.add_parser(sub)
    doctor_cli.add_parser(sub)
    webhooks_cli.add_parser(sub)
    prune_cli.add_parser(sub)

    db = sub.add_parser(
        "db", help="the database: its URL; the embedded Postgres: where it is, stop it"
    )
    db_sub = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    db_status = db_sub.add_parser("status", help="is the embedded server running, and where")
    db_status.set_defaults(func=db_cli.cmd_status)
    db_url = db_sub.add_parser(
        "url", help="print the URL of the database in use (psql, pg_dump, the outbox)"
    )
    db_url.set_defaults(func=db_cli.cmd_url)
    db_stop = db_sub.add_parser(
        "stop", help="stop the embedded server (the next command restarts it, on the same port)"
    )
    db_stop.set_defaults(func=db_cli.cmd_stop)
    db_stop.add_argument(
        "--force", action="store_true", help="stop it even while daemons or others are connected"
    )

    demo = sub.add_parser(
        "demo", help="embedded Postgres + simulator: queue and send a few thousand messages"
    )
    demo.add_argument("--count", type=int, default=3000, help="messages to send")
    demo.add_argument("--rate", type=float, default=100.0, help="the simulated MaxSendRate")
    demo.set_defaults(func=cmd_demo, quiet=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    bad = non_utf8_argument(sys.argv[1:] if argv is None else argv)
    if bad is not None:
        print(f"dispatcher: error: argument '{bad}' is not valid UTF-8; retype it", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    if args.standalone is not None:
        standalone: Callable[[argparse.Namespace], int] = args.standalone
        return standalone(args)
    command: Command = args.func
    try:
        cfg = load_config(args.config)
        level = cfg.log.level
        if args.quiet and level in ("debug", "info"):
            level = "warning"  # the demo shows a progress bar and a report instead
        configure_logging(level, cfg.log.format)
        return _run(command(args, cfg))
    except DispatcherError as exc:
        if isinstance(exc.__cause__, NoCredentialsError):
            print(f"dispatcher: error: {no_credentials(cfg)}", file=sys.stderr)
            return 2
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


async def cmd_migrate(args: argparse.Namespace, cfg: Config) -> int:
    async with app.connect(cfg) as conn:
        applied = await migrate(conn)
    where = "the embedded database" if not cfg.database.url else "the database"
    if applied:
        print(f"applied {len(applied)} migration(s) to {where}: {', '.join(applied)}")
    else:
        print(f"{where} is up to date")
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
        reply_to=tuple(args.reply_to),
        tags=parse_tags(args.tag),
        idempotency_key=args.idempotency_key,
        priority=args.priority,
        send_after=parse_send_after(args.send_after) if args.send_after else None,
        attachments=tuple(read_attachment(path) for path in args.attach),
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


async def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    if args.processes == AUTO:
        args.processes = await auto_processes(cfg)
    if args.processes > 1:
        return await run_processes(
            cfg, processes=args.processes, drain=args.drain, config_path=args.config
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if not stop.is_set():
            log.info("worker.signal", signal=name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig.name)
    watcher = watch_parent(stop, cfg.delivery.shutdown_grace + ORPHAN_SLACK)
    try:
        report = await app.run_worker(cfg, stop, drain=args.drain)
    finally:
        if watcher is not None:
            watcher.cancel()
    c = report.counters
    stream = sys.stderr if report.exit_code else sys.stdout
    print(
        f"{report.reason}. sent {c.sent}, failed {c.failed}, in doubt {c.in_doubt}, "
        f"throttled {c.throttled} time(s), in {report.elapsed:.1f} s",
        file=stream,
    )
    return report.exit_code


async def cmd_resume(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    feedback = stores.feedback
    hold = await feedback.sending_hold()
    if hold is None:
        raise InputError("sending is not held; nothing to resume")
    if not args.force:
        raise InputError(
            f"all sending was held by the reputation guard ({hold[0]}); "
            "resume with --force once you have checked the lists"
        )
    await feedback.release_sending()
    print(f"sending resumed (was held: {hold[0]})")
    return 0


async def cmd_in_doubt_list(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    jobs = await stores.queue.list_unknown(args.limit)
    if not jobs:
        print("no messages in doubt")
        return 0
    for job in jobs:
        print(
            f"{job.id}\t{job.updated_at:%Y-%m-%d %H:%M:%S}\t{job.from_addr} -> "
            f"{', '.join(job.to)}\t{job.subject!r}\t{job.last_error or ''}"
        )
    return 0


async def cmd_in_doubt_resolve(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    to: ResolveTo = "queued" if args.resend else "sent" if args.sent else "failed"
    ids = None if args.all else list(args.ids)
    done = await stores.queue.resolve_unknown(ids, to)
    verb = {"queued": "queued again", "sent": "recorded as sent", "failed": "recorded as failed"}
    print(f"{len(done)} message(s) {verb[to]}")
    if ids is not None and len(done) < len(ids):
        missing = sorted(set(ids) - set(done))
        print(f"not in doubt (left as they are): {', '.join(map(str, missing))}", file=sys.stderr)
        return 1
    return 0


async def cmd_cancel(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    ids: list[int] = args.ids
    done = await stores.queue.cancel(ids)
    print(f"{len(done)} message(s) cancelled")
    missing = sorted(set(ids) - set(done))
    if missing:
        print(
            f"not cancelled (unknown, or already sending or done): {', '.join(map(str, missing))}",
            file=sys.stderr,
        )
        return 1
    return 0


async def cmd_demo(args: argparse.Namespace, cfg: Config) -> int:
    from dispatcher.cli.demo import run_demo  # the simulator's server: only the demo needs it

    return await run_demo(cfg, count=args.count, rate=args.rate)


if __name__ == "__main__":
    sys.exit(main())

"""Command line of the simulator; `dispatcher sim` and `python -m dispatcher.sim` share it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from dispatcher.sim.server import serve
from dispatcher.sim.settings import SimSettings

DEFAULT_PORT = 4579  # next to moto's/localstack's usual ports, clear of both


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SimSettings()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"0 = any free port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--max-send-rate",
        type=float,
        default=defaults.max_send_rate,
        help="MaxSendRate, recipients per second (default %(default)s)",
    )
    parser.add_argument(
        "--max-24h-send",
        type=float,
        default=defaults.max_24_hour_send,
        help="Max24HourSend, recipients per window; -1 = unlimited (default %(default)s)",
    )
    parser.add_argument(
        "--burst-seconds",
        type=float,
        default=defaults.burst_seconds,
        help="seconds of rate the bucket holds as burst allowance (default %(default)s)",
    )
    parser.add_argument(
        "--quota-window",
        type=float,
        default=defaults.quota_window_seconds,
        help="length of the rolling daily-quota window in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=defaults.latency_ms,
        help="fixed latency added to every send (default %(default)s)",
    )
    parser.add_argument("--region", default=defaults.region, help="region the account is in")


def settings_from_args(args: argparse.Namespace) -> SimSettings:
    return SimSettings(
        max_send_rate=args.max_send_rate,
        max_24_hour_send=args.max_24h_send,
        burst_seconds=args.burst_seconds,
        quota_window_seconds=args.quota_window,
        latency_ms=args.latency_ms,
        region=args.region,
    )


async def _main(settings: SimSettings, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    await serve(settings, host, port, stop)


def _runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop when it is installed, the stock loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run

    def run(main: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)

    return run


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; exit code 0, or 2 for a bad setting, 1 if the port is taken."""
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"dispatcher-sim: {exc}", file=sys.stderr)
        return 2
    try:
        _runner()(_main(settings, args.host, args.port))
    except OSError as exc:
        print(f"dispatcher-sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dispatcher.sim", description="Amazon SES simulator (v1 and v2 APIs)"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))

"""Command line of the simulator; `dispatcher sim` and `python -m dispatcher.sim` share it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from dispatcher.sim.server import serve
from dispatcher.sim.settings import SANDBOX_MAX_24_HOUR_SEND, SANDBOX_MAX_SEND_RATE, SimSettings

DEFAULT_PORT = 4579  # next to moto's/localstack's usual ports, clear of both


# SimSettings fields whose flag is not simply --field-name (kept for compatibility).
_FLAG_NAMES = {"max_24_hour_send": "--max-24h-send", "quota_window_seconds": "--quota-window"}
_HELP = {
    "max_send_rate": "MaxSendRate, recipients per second (default 14; 1 with --sandbox)",
    "max_24_hour_send": "Max24HourSend, recipients per window; -1 = unlimited "
    "(default 50000; 200 with --sandbox)",
    "burst_seconds": "seconds of rate the bucket holds as burst allowance",
    "quota_window_seconds": "length of the rolling daily-quota window in seconds",
    "region": "region the account is in",
    "sandbox": "sandbox account: sender and recipients must be verified, 200/day at 1/s",
    "require_verified_sender": "refuse unverified senders, as AWS does for every account "
    "(default on)",
    "require_configuration_sets": "refuse a ConfigurationSetName that was never created "
    "(default on)",
    "api_requests_per_second": "limit on each non-send action (GetSendQuota, identities, "
    "templates, bulk sends...), as AWS's 1/s; 0 = none",
    "lenient": "quick experiments: accept unverified senders and unknown configuration sets, "
    "no limit on non-send actions",
    "auto_verify": "new identities (CreateEmailIdentity, Verify*) are verified at once instead "
    "of PENDING until POST /_sim/identities/NAME/verify",
    "latency_ms": "latency added to every send: fixed, or the lognormal median",
    "latency_model": "fixed | lognormal",
    "latency_p99_ms": "lognormal: 99th percentile of the latency (0 = 4 x the median)",
    "fault_500_rate": "fraction of API requests answered HTTP 500 InternalFailure",
    "fault_503_rate": "fraction of API requests answered HTTP 503 ServiceUnavailable",
    "fault_reset_rate": "fraction of API requests whose connection is reset",
    "fault_timeout_rate": "fraction of API requests that never get an answer",
    "fault_timeout_seconds": "how long such a request is held before the connection drops",
    "fault_throttle_rate": "fraction of sends throttled regardless of the rate",
    "storm_interval_seconds": "a throttling storm starts this often (0 = never)",
    "storm_duration_seconds": "how long each storm refuses every send",
    "sns_signature_version": "SNS SignatureVersion: 1 (RSA-SHA1) or 2 (RSA-SHA256)",
    "event_delay_ms": "delay between acceptance and the event's delivery",
    "event_reorder_ms": "each event is delayed a further random 0..N ms (reordering)",
    "event_duplicate_rate": "fraction of SNS notifications delivered twice",
    "events_file": "append every SES event to this JSONL file",
}


def _flag(name: str) -> str:
    return _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def flags_for(settings: Mapping[str, Any]) -> list[str]:
    """The command line that asks for these SimSettings values (the inverse of the flags)."""
    out: list[str] = []
    for name, value in settings.items():
        if isinstance(value, bool):
            out.append(_flag(name) if value else "--no-" + _flag(name)[2:])
        else:
            out.append(f"{_flag(name)}={value}")  # `=`: a value such as -1 is not an option
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per SimSettings field, plus the account and event set-up."""
    defaults = SimSettings()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"0 = any free port (default {DEFAULT_PORT})"
    )
    for f in dataclasses.fields(SimSettings):
        default = getattr(defaults, f.name)
        help_text = _HELP.get(f.name, f.name)
        if f.type == "bool":
            parser.add_argument(
                _flag(f.name),
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text,
            )
            continue
        kind: type = {"float": float, "int": int, "str": str}[str(f.type)]
        if f.name in ("max_send_rate", "max_24_hour_send"):
            default = None  # filled in by settings_from_args: it depends on --sandbox
        else:
            help_text += " (default %(default)s)"
        parser.add_argument(_flag(f.name), dest=f.name, type=kind, default=default, help=help_text)
    parser.add_argument(
        "--verify",
        action="append",
        default=[],
        metavar="IDENTITY",
        help="a verified email address or domain, set up directly (the back door; a user "
        "would call CreateEmailIdentity, then POST /_sim/identities/NAME/verify) (repeatable)",
    )
    parser.add_argument(
        "--configuration-set",
        action="append",
        default=[],
        metavar="NAME",
        help="a configuration set that exists (repeatable)",
    )
    parser.add_argument(
        "--account-state",
        choices=("healthy", "paused", "suspended"),
        default="healthy",
        help="paused: sending disabled; suspended: EnforcementStatus SHUTDOWN",
    )
    parser.add_argument(
        "--sns-endpoint",
        action="append",
        default=[],
        metavar="URL",
        help="subscribe this HTTP(S) endpoint to the identity notifications (repeatable)",
    )
    parser.add_argument(
        "--sns-event-endpoint",
        action="append",
        default=[],
        metavar="URL",
        help="subscribe this endpoint to the configuration-set events (repeatable)",
    )
    parser.add_argument(
        "--sns-auto-confirm",
        action="store_true",
        help="subscriptions from the flags skip the SubscriptionConfirmation handshake",
    )
    parser.add_argument(
        "--sns-cert-file",
        default="",
        metavar="PATH",
        help="write the SNS signing certificate (PEM) here, for receivers to pin",
    )


def settings_from_args(args: argparse.Namespace) -> SimSettings:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SimSettings)}
    defaults = SimSettings()
    if values["max_send_rate"] is None:
        values["max_send_rate"] = SANDBOX_MAX_SEND_RATE if args.sandbox else defaults.max_send_rate
    if values["max_24_hour_send"] is None:
        values["max_24_hour_send"] = (
            SANDBOX_MAX_24_HOUR_SEND if args.sandbox else defaults.max_24_hour_send
        )
    return SimSettings(**values)


def setup_from_args(args: argparse.Namespace) -> list[tuple[str, dict[str, object]]]:
    """The admin calls the flags stand for, made before the simulator says it is ready."""
    out: list[tuple[str, dict[str, object]]] = []
    if args.account_state == "paused":
        out.append(("account", {"sending_enabled": False}))
    elif args.account_state == "suspended":
        out.append(("account", {"enforcement_status": "SHUTDOWN"}))
    out += [("verify", {"identity": i}) for i in args.verify]
    out += [("configuration_set", {"name": n}) for n in args.configuration_set]
    for kind, urls in (
        ("identity", args.sns_endpoint),
        ("configuration_set", args.sns_event_endpoint),
    ):
        out += [
            ("subscribe", {"endpoint": u, "kind": kind, "auto_confirm": args.sns_auto_confirm})
            for u in urls
        ]
    return out


async def _main(settings: SimSettings, args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    await serve(
        settings,
        args.host,
        args.port,
        stop,
        setup=setup_from_args(args),
        cert_file=args.sns_cert_file,
    )


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
        _runner()(_main(settings, args))
    except ValueError as exc:  # a bad start-up flag found while applying it
        print(f"dispatcher-sim: {exc}", file=sys.stderr)
        return 2
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

"""`dispatcher run --processes N`: N worker processes from one command, one Postgres.

The parent starts (or reuses) the embedded Postgres and applies migrations once, then runs N
children `dispatcher run` pointed at that database. They split the account's send rate between
them through Postgres (each paces at MaxSendRate / active processes, see WorkerPool's rate
share), so N processes send no faster than one account allows. SIGTERM/SIGINT are passed on;
a child dies with the parent (PR_SET_PDEATHSIG on Linux). The exit code is the highest of the
children's (0 when all drained).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import sys

import structlog

from dispatcher import app
from dispatcher.config import Config

log = structlog.get_logger()

_PR_SET_PDEATHSIG = 1


def process_count(text: str) -> int:
    """`--processes` as given: a whole number >= 1, or `auto` for one per core."""
    if text.strip().lower() == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"--processes must be a whole number >= 1, or 'auto' for one per core; got {text!r}"
        )
    return n


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux); else nothing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def run_processes(
    cfg: Config, *, processes: int, drain: bool, config_path: str | None
) -> int:
    url = await app.database_url(cfg)
    async with app.open_queue(cfg):  # migrate once, here, before the children start
        pass
    env = dict(os.environ)
    env["DISPATCHER_DATABASE_URL"] = url
    if config_path:
        env["DISPATCHER_CONFIG"] = config_path
    argv = [sys.executable, "-m", "dispatcher.cli.main", "run", *(["--drain"] if drain else [])]
    children = [
        await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        for _ in range(processes)
    ]
    log.info("run.processes", processes=processes, pids=[c.pid for c in children])
    loop = asyncio.get_running_loop()

    def forward(sig: signal.Signals) -> None:
        for child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, forward, sig)
    codes = await asyncio.gather(*(c.wait() for c in children))
    log.info("run.processes_done", exit_codes=list(codes))
    return max(codes) if all(c >= 0 for c in codes) else 1

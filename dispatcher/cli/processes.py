"""`dispatcher run --processes N`: N worker processes from one command, one Postgres.

The parent starts (or reuses) the embedded Postgres and applies migrations once, then runs N
children `dispatcher run` pointed at that database. They split the account's send rate between
them through Postgres (each paces at MaxSendRate / active processes, see WorkerPool's rate
share), so N processes send no faster than one account allows. SIGTERM/SIGINT are passed on.
The exit code is the highest of the children's (0 when all drained).

N is capped before anything starts: at most 4 per core, and no more than Postgres has
connections left for (each process holds up to database.pool_size + 4). `--processes auto`
starts as many as the accounts' MaxSendRate needs (one per PROCESS_RATE recipients/s), at most
one per core: a process more than that only costs CPU and connections.

Children die with the parent, even a SIGKILLed one: each child watches its parent's pid and
stops when it changes (portable to every POSIX system, and it also covers a parent that died
before the child was running); on Linux PR_SET_PDEATHSIG signals it at once as well.

With `[feedback] enabled`, the parent binds the SNS endpoint's port once (a port in use is one
error, before any child starts) and every child serves that one inherited socket, so the
daemon is one listener whichever children are alive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import math
import os
import signal
import socket
import sys

import structlog

from dispatcher import app
from dispatcher.accounts.settings import effective_accounts
from dispatcher.config import Config
from dispatcher.doors import sockets
from dispatcher.errors import DispatcherError, InputError
from dispatcher.obs import metrics
from dispatcher.ses.adapter import SesAdapter
from dispatcher.worker.quota_store import SharedQuotaStore

log = structlog.get_logger()

_PR_SET_PDEATHSIG = 1
PER_CORE = 4  # more processes than this per core only adds contention
AUTO = 0  # `--processes auto`: decided by auto_processes once the accounts' rates are known
# Recipients/s of MaxSendRate per process for `--processes auto`: one process sends 1,000/s
# of per-message SendEmail flat for a minute on 0.65-0.8 of a core, and a second one only adds
# CPU there (python -m bench.rate --rates 1000 --processes 1,2: 0.88-0.92 against 1.11-1.32 ms
# a message all-in); where SES renders (an SES-template campaign) one process does 3,000/s.
PROCESS_RATE = 1000.0
RATE_KNOWN_WITHIN = 7 * 86400.0  # an account's last published MaxSendRate is taken this long
PARENT_PID_ENV = "DISPATCHER_PARENT_PID"  # set for children: the pid they must outlive not
PARENT_POLL = 0.5  # seconds between a child's checks that its parent is alive


def process_count(text: str) -> int:
    """`--processes` as given: a whole number >= 1, or `auto` (AUTO) for as many as the rate
    needs."""
    if text.strip().lower() == "auto":
        return AUTO
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"--processes must be a whole number >= 1, or 'auto' for as many as the account's "
            f"rate needs; got {text!r}"
        )
    return n


def processes_for(rates: list[float], cores: int, per_process: float = PROCESS_RATE) -> int:
    """`--processes auto`: one process per `per_process` recipients/s of the accounts' summed
    MaxSendRate, at least one, at most one per core."""
    total = sum(rate for rate in rates if rate > 0)
    return max(1, min(cores, math.ceil(total / per_process)))


async def account_rates(cfg: Config) -> list[float] | None:
    """Each account's MaxSendRate: the reading last published in Postgres (a daemon that ran in
    the last week), else one GetSendQuota; None if SES cannot be asked."""
    rates: list[float] = []
    async with app.open_queue(cfg) as queue:
        for name, ses_settings, _ in effective_accounts(cfg.accounts, cfg.ses, cfg.pacing):
            quota = await SharedQuotaStore(queue.pool, name).published(within=RATE_KNOWN_WITHIN)
            if quota is None:
                try:
                    async with SesAdapter.open(ses_settings) as ses:
                        quota = await ses.get_send_quota()
                except DispatcherError as exc:
                    log.warning("run.processes_rate_unknown", account=name, error=str(exc))
                    return None
            rates.append(quota.max_send_rate)
    return rates


async def auto_processes(cfg: Config) -> int:
    """How many processes `--processes auto` starts here (logged with why)."""
    cores = max(1, os.cpu_count() or 1)
    rates = await account_rates(cfg)
    if rates is None:  # one process runs, and says once what is wrong with SES
        return 1
    n = processes_for(rates, cores)
    log.info(
        "run.processes_auto",
        processes=n,
        max_send_rates=rates,
        cores=cores,
        per_process=PROCESS_RATE,
    )
    return n


def check_cores(processes: int, cores: int) -> None:
    """Refuse more than PER_CORE processes per core: they would only contend."""
    if processes > PER_CORE * cores:
        raise InputError(
            f"--processes {processes} is too many for {cores} core(s): at most "
            f"{PER_CORE * cores} ({PER_CORE} per core)"
        )


def check_connections(processes: int, *, per_process: int, free: int, max_connections: int) -> None:
    """Refuse more processes than Postgres has connections left for."""
    fit = free // per_process
    if processes > fit:
        raise InputError(
            f"--processes {processes} needs up to {processes * per_process} Postgres connections "
            f"(database.pool_size + 4 = {per_process} each) but only {free} of max_connections "
            f"{max_connections} are free: use --processes {max(fit, 1)} or less, a smaller "
            "database.pool_size, or raise max_connections"
        )


async def _free_connections(cfg: Config) -> tuple[int, int]:
    """(connections Postgres can still accept from us, max_connections)."""
    async with app.connect(cfg) as conn:
        row = await conn.fetchrow(
            "SELECT current_setting('max_connections')::int AS max,"
            " current_setting('superuser_reserved_connections')::int"
            "  + coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,"
            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            "  AND pid <> pg_backend_pid()) AS used"
        )
    return max(0, row["max"] - row["reserved"] - row["used"]), row["max"]


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux); else nothing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def watch_parent(stop: asyncio.Event, deadline: float) -> asyncio.Task[None] | None:
    """In a child of `run --processes`: set `stop` once the parent is gone, and end the process
    if it is still running `deadline` seconds later (None elsewhere). Cancel the task once the
    run has ended."""
    raw = os.environ.get(PARENT_PID_ENV)
    if not raw or not raw.isdigit():
        return None
    parent = int(raw)

    async def watch() -> None:
        # No event to wait on: a dead parent tells nobody, its child only sees a new ppid.
        while os.getppid() == parent:  # noqa: ASYNC110
            await asyncio.sleep(PARENT_POLL)
        log.warning("run.parent_gone", parent_pid=parent)
        stop.set()
        # Nobody waits for an orphan: past the shutdown grace it must not linger, whatever it
        # waits on (what it held is recovered by the next worker when its lease expires).
        await asyncio.sleep(deadline)
        log.error("run.orphan_exit", parent_pid=parent, after=deadline)
        os._exit(1)

    return asyncio.create_task(watch(), name="parent-watch")


async def run_processes(
    cfg: Config, *, processes: int, drain: bool, config_path: os.PathLike[str] | str | None
) -> int:
    check_cores(processes, os.cpu_count() or 1)
    url = await app.database_url(cfg)
    async with app.open_queue(cfg):  # migrate once, here, before the children start
        pass
    free, max_connections = await _free_connections(cfg)
    check_connections(
        processes,
        per_process=cfg.database.pool_size + app.HELD_CONNECTIONS,
        free=free,
        max_connections=max_connections,
    )
    env = dict(os.environ)
    env["DISPATCHER_DATABASE_URL"] = url
    env[PARENT_PID_ENV] = str(os.getpid())
    if config_path:
        env["DISPATCHER_CONFIG"] = os.path.abspath(config_path)  # noqa: ASYNC240 - no I/O
    bound: list[socket.socket] = []
    try:
        for door in sockets.listeners(cfg):
            sock = sockets.bind(door)
            bound.append(sock)
            sock.set_inheritable(True)
            env[sockets.env_name(door.name)] = str(sock.fileno())
            host, port = sock.getsockname()[:2]
            log.info(f"{door.name}.listening", host=host, port=port, shared=True)
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    # Every child answers /metrics on the shared socket: each scrape sums all of their files.
    with metrics.multiprocess_dir(cfg.api.enabled) as metrics_dir:
        if metrics_dir is not None:
            env[metrics.MULTIPROC_ENV] = metrics_dir
        return await _run_children(processes, drain, env, bound, metrics_dir)


async def _run_children(
    processes: int,
    drain: bool,
    env: dict[str, str],
    bound: list[socket.socket],
    metrics_dir: str | None,
) -> int:
    pass_fds = tuple(sock.fileno() for sock in bound)
    argv = [sys.executable, "-m", "dispatcher.cli.main", "run", *(["--drain"] if drain else [])]
    loop = asyncio.get_running_loop()
    children: list[asyncio.subprocess.Process] = []
    stopping = False

    def forward(sig: signal.Signals) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)

    # Installed before the first child: a signal during start-up must reach every child.
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, forward, sig)
    try:
        for _ in range(processes):
            if stopping:
                break
            children.append(
                await asyncio.create_subprocess_exec(
                    *argv,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    preexec_fn=_die_with_parent,
                    pass_fds=pass_fds,
                )
            )
    finally:
        for sock in bound:
            sock.close()  # the children hold them now
    log.info("run.processes", processes=len(children), pids=[c.pid for c in children])
    codes = await asyncio.gather(*(metrics.reap(c, metrics_dir) for c in children))
    log.info("run.processes_done", exit_codes=list(codes))
    return max(codes, default=0) if all(c >= 0 for c in codes) else 1

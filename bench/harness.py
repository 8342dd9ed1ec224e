"""What every benchmark shares: its error and exit code, `dispatcher` commands run as child
processes with their peak RSS, the environment a user would give them, the simulator's settings
and record, the event loop to run on, and the machine facts written beside the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench.services import REPO_ROOT, Simulator

__all__ = [
    "CHILD_TIMEOUT",
    "REGION",
    "RESULTS",
    "BenchError",
    "Child",
    "Finished",
    "SimControl",
    "cli_env",
    "event_loop_runner",
    "machine_facts",
    "run_bench",
    "run_cli",
    "stderr_into",
    "vm_hwm_kib",
]

RESULTS = Path(__file__).resolve().parent / "results"
REGION = "us-east-1"
SIM_PAGE = 20_000  # messages per /_sim/messages request
RSS_POLL = 0.02  # seconds between readings of a child's VmHWM
CHILD_TIMEOUT = 1800.0  # seconds any one command may take before the bench gives up

_T = TypeVar("_T")


class BenchError(Exception):
    """A command failed or the mail did not arrive as it must: the figures would mean nothing."""


def run_bench(main: Coroutine[Any, Any, int], label: str = "bench failed") -> int:
    """A benchmark's exit code: `main`'s, or 1 with one line when it raised BenchError."""
    try:
        return asyncio.run(main)
    except BenchError as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return 1


# -- children --------------------------------------------------------------------------------


@dataclass(slots=True)
class Finished:
    """A command that ran to its end (or was killed): exit code, wall time, its own peak RSS."""

    argv: list[str]
    code: int  # negative: killed by that signal
    wall: float
    maxrss_mb: float  # the child's peak RSS (VmHWM, last reading before it exited), MiB
    output: str  # stdout and stderr, interleaved

    def check(self, expected: int = 0) -> Finished:
        if self.code != expected:
            tail = "\n".join(self.output.splitlines()[-20:])
            raise BenchError(
                f"`dispatcher {' '.join(self.argv)}` exited {self.code}, expected {expected}:\n"
                f"{tail}"
            )
        return self


def vm_hwm_kib(pid: int) -> int | None:
    """The process's peak resident set since its exec (VmHWM), KiB; None once it has exited."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None  # gone, or a zombie (no memory left to report)


class Child:
    """`dispatcher ARGS` in its own process; its peak RSS is sampled from /proc while it runs.

    Not `ru_maxrss`: Linux carries the parent's high-water mark across fork + exec into the
    child's (a 300 MB parent makes `python -c pass` report 313 MB), so it would measure this
    benchmark, which holds the simulator's record. VmHWM belongs to the memory map that exec
    created and only grows, so the last reading misses at most the final RSS_POLL seconds.
    Output goes to a file (no pipe to fill while nobody reads it).
    """

    def __init__(self, args: Sequence[str], env: dict[str, str], log_dir: Path) -> None:
        self.argv = list(args)
        self._log = log_dir / f"child-{time.monotonic_ns()}.log"
        self._done: Finished | None = None
        self._hwm_kib = 0
        self._began = time.perf_counter()
        with self._log.open("wb") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "dispatcher.cli.main", *self.argv],
                env=env,
                cwd=str(log_dir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        self._sampler = asyncio.get_running_loop().create_task(
            self._sample(), name=f"rss-{self._proc.pid}"
        )

    async def _sample(self) -> None:
        while self._done is None:
            kib = vm_hwm_kib(self._proc.pid)
            if kib is not None:
                self._hwm_kib = max(self._hwm_kib, kib)
            await asyncio.sleep(RSS_POLL)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def kill(self) -> None:
        """SIGKILL this child (by its pid, nothing else)."""
        if self._done is None:
            os.kill(self._proc.pid, signal.SIGKILL)

    def poll(self) -> Finished | None:
        """The result if the child has exited (reaping it), else None."""
        if self._done is None:
            pid, status = os.waitpid(self._proc.pid, os.WNOHANG)
            if pid:
                self._reaped(status)
        return self._done

    async def wait(self, limit: float = CHILD_TIMEOUT) -> Finished:
        if self._done is not None:
            return self._done
        try:
            _, status = await asyncio.wait_for(
                asyncio.to_thread(os.waitpid, self._proc.pid, 0), limit
            )
        except TimeoutError:
            self.kill()
            raise BenchError(
                f"`dispatcher {' '.join(self.argv)}` took over {limit:.0f} s"
            ) from None
        return self._reaped(status)

    def _reaped(self, status: int) -> Finished:
        code = os.waitstatus_to_exitcode(status)
        self._proc.returncode = code  # reaped here: Popen must not wait for it again
        self._done = Finished(
            self.argv,
            code,
            time.perf_counter() - self._began,
            self._hwm_kib / 1024.0,
            self._log.read_text(errors="replace"),
        )
        self._sampler.cancel()
        return self._done


async def run_cli(env: dict[str, str], work: Path, *args: str) -> Finished:
    return await Child(args, env, work).wait()


def cli_env(dsn: str, sim: Simulator, work: Path, **settings: str) -> dict[str, str]:
    """The environment a user would set: this database, the simulator, JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
            "DISPATCHER_DATABASE_URL": dsn,
            "DISPATCHER_DATA_DIR": str(work / "data"),
            "DISPATCHER_SES_ENDPOINT_URL": sim.endpoint_url,
            "DISPATCHER_LOG__FORMAT": "json",
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    )
    env.update(settings)
    return env


# -- the simulator's side --------------------------------------------------------------------


@contextlib.contextmanager
def stderr_into(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at `path` for a moment, so a child started now inherits it.

    The simulator logs a traceback for every request whose client vanished mid-body (the
    SIGKILL cuts dozens): kept in a file and counted instead of flooding the figures.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("ab") as target:
            os.dup2(target.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class SimControl:
    """What bench.services.Simulator does not offer: settings and paged messages."""

    def __init__(self, sim: Simulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self._http = http

    async def configure(self, **settings: float) -> None:
        url = self.sim.endpoint_url + "/_sim/config"
        async with self._http.post(url, json=settings) as resp:
            if resp.status != 200:
                raise BenchError(f"simulator config {settings} -> {resp.status}")

    async def messages(self) -> list[dict[str, Any]]:
        """Every accepted message, oldest first, a page at a time."""
        out: list[dict[str, Any]] = []
        while True:
            url = f"{self.sim.endpoint_url}/_sim/messages?offset={len(out)}&limit={SIM_PAGE}"
            async with self._http.get(url) as resp:
                page = await resp.json()
            out.extend(page)
            if len(page) < SIM_PAGE:
                return out


# -- the run and its record -----------------------------------------------------------------


def event_loop_runner(use_uvloop: bool) -> Callable[[Coroutine[Any, Any, _T]], _T]:
    if not use_uvloop:
        return asyncio.run
    import uvloop

    def run(main: Coroutine[Any, Any, _T]) -> _T:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)

    return run


def machine_facts(uvloop_on: bool, pg_version: str) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "uvloop": uvloop_on,
        "postgres": pg_version,
        "postgres_fsync": "off (throwaway cluster)",
        "packages": {
            name: version(name)
            for name in ("aioboto3", "aiobotocore", "botocore", "aiohttp", "asyncpg", "uvloop")
        },
    }

"""What the benchmark runs against: the SES simulator in its own process, a throwaway Postgres,
and CPU meters for both (they are other processes, so `time.process_time` does not see them).
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import psutil

from dispatcher.db.embedded import EmbeddedPostgres, temporary_cluster
from dispatcher.db.migrate import migrate
from dispatcher.sim.launch import start_simulator
from dispatcher.sim.provision import setup_account

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "bench_template"
# Every benchmark sends from an address at example.com: the domain covers them all.
SENDER_IDENTITIES = ("example.com",)


# -- CPU of other processes -------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def tree_cpu(root_pid: int) -> float:
    """CPU seconds of a server and its children, including children that already exited.

    Postgres forks a backend per connection; one that exits (the dispatcher closes its pool)
    is reaped by the postmaster and its CPU moves into the postmaster's `children_*` times, so
    a difference of two readings counts it either way.
    """
    root = psutil.Process(root_pid)
    t = root.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in root.children(recursive=False):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            ct = child.cpu_times()
            total += ct.user + ct.system
    return float(total)


@dataclass(frozen=True, slots=True)
class CpuReading:
    """CPU seconds of the simulator and of Postgres (None when they cannot be read)."""

    sim: float | None
    pg: float | None


def _safe(read: Callable[[], float]) -> float | None:
    try:
        return read()
    except (psutil.Error, OSError):
        return None


def _diff(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


# -- the simulator ----------------------------------------------------------------------------


class Simulator:
    """The SES simulator in a child process, and its /_sim/ API."""

    def __init__(self, endpoint_url: str, pid: int, http: aiohttp.ClientSession) -> None:
        self.endpoint_url = endpoint_url
        self.pid = pid
        self._http = http

    async def reset(self) -> None:
        await self._call("POST", "/_sim/reset")

    async def stats(self) -> dict[str, Any]:
        return await self._call("GET", "/_sim/stats")  # type: ignore[no-any-return]

    async def messages(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/_sim/messages")  # type: ignore[no-any-return]

    def cpu(self) -> float | None:
        return _safe(lambda: process_cpu(self.pid))

    async def _call(self, method: str, path: str) -> Any:
        async with self._http.request(method, self.endpoint_url + path) as resp:
            payload = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"simulator {method} {path} -> {resp.status}: {payload}")
            return payload


@asynccontextmanager
async def run_simulator(max_send_rate: float = 1e9) -> AsyncIterator[Simulator]:
    """`python -m dispatcher.sim` on a free loopback port, no daily quota, the benchmarks'
    sender domain set up through the API as a user would; killed on exit."""
    async with (
        start_simulator(max_send_rate=max_send_rate, max_24_hour_send=-1) as sim,
        aiohttp.ClientSession() as http,
    ):
        assert sim.pid is not None
        await setup_account(sim.endpoint_url, identities=SENDER_IDENTITIES)
        yield Simulator(sim.endpoint_url, sim.pid, http)


# -- Postgres ---------------------------------------------------------------------------------


def dsn_with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


class Databases:
    """A fresh database per round, copied from a migrated template on one throwaway server."""

    def __init__(self, cluster: EmbeddedPostgres) -> None:
        self._cluster = cluster
        self._admin_dsn = cluster.dsn
        self._numbers = itertools.count(1)

    @property
    def postmaster_pid(self) -> int | None:
        """Line 1 of postmaster.pid (the server's root process), None if unreadable."""
        try:
            first = (self._cluster.pg_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, ValueError, IndexError):
            return None

    def cpu(self) -> float | None:
        pid = self.postmaster_pid
        return None if pid is None else _safe(lambda: tree_cpu(pid))

    async def server_version(self) -> str:
        conn = await asyncpg.connect(self._admin_dsn)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    async def make_template(self) -> None:
        conn = await asyncpg.connect(self._admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
            await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(dsn_with_database(self._admin_dsn, TEMPLATE))
        try:
            await migrate(conn)
        finally:
            await conn.close()  # CREATE DATABASE ... TEMPLATE fails while anyone is connected

    async def create(self) -> str:
        """A new migrated database; returns its DSN."""
        name = f"bench_{next(self._numbers)}"
        conn = await asyncpg.connect(self._admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        finally:
            await conn.close()
        return dsn_with_database(self._admin_dsn, name)

    async def drop(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        conn = await asyncpg.connect(self._admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def read_cpu(sim: Simulator, dbs: Databases) -> CpuReading:
    return CpuReading(sim=sim.cpu(), pg=dbs.cpu())


def cpu_spent(after: CpuReading, before: CpuReading) -> CpuReading:
    return CpuReading(sim=_diff(after.sim, before.sim), pg=_diff(after.pg, before.pg))


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[Databases]:
    """A Postgres cluster of its own for this run, removed afterwards."""
    print("starting a throwaway Postgres ...", file=sys.stderr)
    with temporary_cluster() as cluster:
        yield Databases(cluster)

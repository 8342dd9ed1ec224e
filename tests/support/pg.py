"""One throwaway Postgres per test session, and a fresh migrated database per test.

Register in tests/conftest.py with `pytest_plugins = [..., "tests.support.pg"]`, then:

    async def test_x(queue):            # a connected Queue on a new, migrated database
        await queue.enqueue(...)

    async def test_y(pg_dsn):           # just the DSN of a new, migrated database
    async def test_z(pg_blank_dsn):     # a new database that was never migrated

The schema is migrated once into `dispatcher_template`; each test's database is a copy
(`CREATE DATABASE test_N TEMPLATE dispatcher_template`), which takes milliseconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import shutil
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

from dispatcher.db.embedded import EmbeddedPostgres, temporary_cluster
from dispatcher.db.migrate import migrate
from dispatcher.queue.repository import Queue

TEMPLATE = "dispatcher_template"

_T = TypeVar("_T")
_numbers = itertools.count(1)


def dsn_with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database of the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def _run_in_thread(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion on a private loop, away from pytest-asyncio's loops."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass(frozen=True, slots=True)
class PgCluster:
    """The session's server: an admin DSN (database `dispatcher`) and the migrated template."""

    admin_dsn: str
    template: str

    def dsn(self, database: str) -> str:
        return dsn_with_database(self.admin_dsn, database)

    async def create_database(self, *, migrated: bool = True) -> str:
        """A new empty database (a copy of the template if ``migrated``); returns its DSN."""
        name = f"test_{next(_numbers)}"
        template = f' TEMPLATE "{self.template}"' if migrated else ""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"{template}')
        finally:
            await conn.close()
        return self.dsn(name)

    async def drop_database(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def _make_template(admin_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(dsn_with_database(admin_dsn, TEMPLATE))
    try:
        await migrate(conn)
    finally:
        await conn.close()  # CREATE DATABASE ... TEMPLATE fails while anyone is connected to it


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A throwaway Postgres (fsync off) for the session; the schema migrated into a template."""
    with temporary_cluster() as server:
        admin_dsn = server.dsn
        _run_in_thread(_make_template(admin_dsn))
        yield PgCluster(admin_dsn=admin_dsn, template=TEMPLATE)


@pytest.fixture
async def pg_dsn(pg_cluster: PgCluster) -> AsyncIterator[str]:
    """DSN of a new database with the current schema, dropped after the test."""
    dsn = await pg_cluster.create_database()
    yield dsn
    await pg_cluster.drop_database(dsn)


@pytest.fixture
async def pg_blank_dsn(pg_cluster: PgCluster) -> AsyncIterator[str]:
    """DSN of a new database that was never migrated, dropped after the test."""
    dsn = await pg_cluster.create_database(migrated=False)
    yield dsn
    await pg_cluster.drop_database(dsn)


@pytest.fixture
async def queue(pg_dsn: str) -> AsyncIterator[Queue]:
    """A Queue connected to this test's database."""
    async with Queue.connect(pg_dsn) as q:
        yield q


@contextmanager
def server_dir() -> Iterator[Path]:
    """A directory for a cluster the test starts itself, outside /tmp/pytest-of-<user>: pytest
    resets that folder to mode 0700 whenever another pytest session starts, and a server run as
    a service user (under root) then loses its way to its own data directory."""
    base = Path(tempfile.mkdtemp(prefix="dpg-test-"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedPostgres]:
    """A Postgres this test may stop or restart (the session's shared one must not be)."""
    with server_dir() as base, temporary_cluster(base) as cluster:
        yield cluster

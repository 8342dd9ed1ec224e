"""Connections: a pool on a database URL, migrated or checked, with errors that say what to fix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg  # type: ignore[import-untyped]

from dispatcher.db.migrate import migrate as apply_migrations
from dispatcher.db.migrate import require_migrated
from dispatcher.errors import DatabaseError

__all__ = ["describe_dsn", "open_pool", "stateless"]


def describe_dsn(dsn: str) -> str:
    """host:port/database of a postgresql:// URL, never its password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "the configured database URL (unparsable)"
    database = parts.path.lstrip("/") or parts.username or "postgres"
    return f"{host}:{port}/{database}"


def _scrub(text: str, dsn: str) -> str:
    """``text`` with the DSN's password (if any) masked."""
    try:
        password = urlsplit(dsn).password
    except ValueError:
        password = None
    if not password:
        return text
    for form in {password, unquote(password)}:
        text = text.replace(form, "***")
    return text


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that knows whether its borrower left session state behind."""

    _stateless = False  # the borrower ran only statements that change no session state

    def mark_stateless(self) -> None:
        self._stateless = True


async def _reset(conn: Any) -> None:
    """asyncpg's reset on release (advisory locks, LISTEN, settings, cursors: one round trip),
    skipped for a connection whose borrower changed none of them (``stateless``): that round
    trip was a tenth of the worker's Postgres time."""
    if getattr(conn, "_stateless", False):
        conn._stateless = False
        return
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)


@asynccontextmanager
async def stateless(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for statements that leave no session state (no SET, LISTEN,
    advisory lock, prepared cursor or open transaction): given back without the reset.
    An exception inside gives it back with the full reset."""
    async with pool.acquire() as conn:
        yield conn
        mark = getattr(conn, "mark_stateless", None)  # a pool not made by open_pool: reset
        if mark is not None:
            mark()


@asynccontextmanager
async def open_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, migrate: bool = False
) -> AsyncIterator[asyncpg.Pool]:
    """A new pool on ``dsn``, closed on exit; migrates first, or checks it was migrated."""
    where = describe_dsn(dsn)
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            connection_class=_Connection,
            reset=_reset,
        )
    except (
        OSError,
        TimeoutError,
        ValueError,  # a malformed URL
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        reason = _scrub(f"{type(exc).__name__}: {exc}", dsn)
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {where}: {reason}. Check that the server "
            "runs and that the database URL (host, port, user, password, database) is right."
        ) from None
    try:
        async with pool.acquire() as conn:
            if migrate:
                await apply_migrations(conn)
            else:
                await require_migrated(conn)
        yield pool
    finally:
        await pool.close()

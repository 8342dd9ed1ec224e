"""Numbered schema migrations (``migrations/NNNN_name.sql``), applied in order, once.

Each migration runs in its own transaction together with the row that records it in
``dispatcher.schema_migrations``, under a transaction-scoped advisory lock: two processes
migrating at once take turns, and the second finds the work done. Transaction-scoped locks
(not session ones) also work behind a pooler in transaction mode.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.errors import DatabaseError

__all__ = ["Migration", "migrate", "migrations", "pending_migrations", "require_migrated"]

log = structlog.get_logger()

# Any constant shared by every migrating process; spells "dispatch" in ASCII.
_LOCK_KEY = 0x6469737061746368
_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS dispatcher;
CREATE TABLE IF NOT EXISTS dispatcher.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: ``0001_init.sql`` has version 1 and name ``0001_init``."""

    version: int
    name: str
    sql: str


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """Every migration shipped with the package, by version."""
    folder = resources.files("dispatcher.db") / "migrations"
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(
                f"two migrations share version {version}: {found[version].name} and {entry.name}"
            )
        found[version] = Migration(version, entry.name.removesuffix(".sql"), entry.read_text())
    return tuple(found[v] for v in sorted(found))


async def _applied(conn: asyncpg.Connection) -> set[int]:
    """Versions recorded in the database; empty if it was never migrated."""
    if await conn.fetchval("SELECT to_regclass('dispatcher.schema_migrations')") is None:
        return set()
    rows = await conn.fetch("SELECT version FROM dispatcher.schema_migrations")
    return {row["version"] for row in rows}


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every pending migration; return the names applied ([] if there were none)."""
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await conn.execute(_BOOTSTRAP)
    except asyncpg.PostgresError as exc:
        raise DatabaseError(
            f"cannot create the schema dispatcher and its migrations table: "
            f"{type(exc).__name__}: {exc}. The database user needs the CREATE privilege on "
            "the database."
        ) from exc
    applied: list[str] = []
    for migration in migrations():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            # Checked under the lock: another process may have applied it while we waited.
            done = await conn.fetchval(
                "SELECT 1 FROM dispatcher.schema_migrations WHERE version = $1",
                migration.version,
            )
            if done:
                continue
            try:
                await conn.execute(migration.sql)  # no arguments: many statements in one call
            except asyncpg.PostgresError as exc:
                raise DatabaseError(
                    f"migration {migration.name} failed and was rolled back: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            await conn.execute(
                "INSERT INTO dispatcher.schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
        log.info("db.migration.applied", version=migration.version, migration=migration.name)
        applied.append(migration.name)
    return applied


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    """Names of the shipped migrations the database has not recorded yet, in order."""
    done = await _applied(conn)
    return [m.name for m in migrations() if m.version not in done]


async def require_migrated(conn: asyncpg.Connection) -> None:
    """Raise DatabaseError saying how to migrate unless every migration is applied."""
    pending = await pending_migrations(conn)
    if pending:
        raise DatabaseError(
            f"database schema is not migrated (pending: {', '.join(pending)}); run "
            "`dispatcher migrate` or set database.migrate_on_start = true"
        )

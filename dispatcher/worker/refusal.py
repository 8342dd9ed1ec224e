"""A database that cannot take writes, told as one line a person can act on."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]

from dispatcher.errors import DatabaseError

__all__ = ["database_refusal"]

# SQLSTATE classes of a database that cannot take writes: 53 insufficient resources (disk full,
# out of memory, too many connections), 25 read-only transaction (a standby), 58 system error.
_SYSTEM_CLASSES = frozenset({"53", "25", "58"})


def database_refusal(exc: BaseException) -> BaseException:
    """A server-side refusal Postgres gives for the whole system (disk full, out of memory,
    read-only, too many connections) as a DatabaseError a person can act on; others as is."""
    if isinstance(exc, asyncpg.PostgresError) and str(exc.sqlstate or "")[:2] in _SYSTEM_CLASSES:
        hint = getattr(exc, "hint", None)
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        return DatabaseError(
            f"Postgres refused a write: {message}{f' ({hint})' if hint else ''}. The daemon "
            "stopped; nothing queued is lost. Fix the database, then start it again"
        )
    return exc

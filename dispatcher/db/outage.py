"""Riding out a Postgres outage: which errors mean "the database is gone for now", and a retry
loop with backoff that gives up, loudly, after a configured time.

A restart of Postgres cuts every connection (asyncpg raises ConnectionDoesNotExistError, or
AdminShutdownError/CannotConnectNowError while it shuts down and starts, or OSError while nothing
listens). The statements retried through `while_down` are safe to repeat: claim results that may
be lost are released by the caller, `launch` accepts its own earlier commit, and `settle`,
`release` and `heartbeat` are fenced or idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.clock import wait_event
from dispatcher.errors import DatabaseError

__all__ = ["StoppedDuringOutage", "connection_alive", "connection_lost", "while_down"]

log = structlog.get_logger()

_R = TypeVar("_R")

_LOST: tuple[type[BaseException], ...] = (
    OSError,  # refused / reset while the server is down (ConnectionError, socket errors)
    asyncpg.PostgresConnectionError,  # ConnectionDoesNotExistError, ConnectionFailureError
    asyncpg.exceptions.OperatorInterventionError,  # AdminShutdown, CannotConnectNow, Crash...
    asyncpg.InterfaceError,  # a connection left mid-operation by the cut
    asyncpg.exceptions._base.InternalClientError,  # "cannot switch to state ..." after a cut
)


class StoppedDuringOutage(DatabaseError):
    """A stop was asked for while the database was unreachable: the call was given up."""


def connection_alive(conn: asyncpg.Connection | None) -> bool:
    """A held connection that a restart has not cut (False for None)."""
    if conn is None:
        return False
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # the pool took the cut connection back
        return False


def connection_lost(exc: BaseException) -> bool:
    """True for the errors of a database that is (re)starting or unreachable, not of a query."""
    return isinstance(exc, _LOST)


async def while_down(
    op: Callable[[], Awaitable[_R]],
    *,
    what: str,
    give_up_after: float,
    first_delay: float = 0.1,
    max_delay: float = 2.0,
    stop: asyncio.Event | None = None,
) -> _R:
    """Run `op`; while the database is unreachable, retry with backoff for up to `give_up_after` s.

    Any other error is raised at once. After `give_up_after` seconds of outage, or at once once
    `stop` is set (a shutdown must not wait out the outage): DatabaseError.
    """
    loop = asyncio.get_running_loop()
    started: float | None = None
    delay = first_delay
    while True:
        try:
            result = await op()
        except Exception as exc:
            if not connection_lost(exc):
                raise
            if stop is not None and stop.is_set():
                raise StoppedDuringOutage(
                    f"the database is unreachable ({what}: {exc}); stopping without waiting for it"
                ) from None
            now = loop.time()
            if started is None:
                started = now
                log.warning("db.unavailable", operation=what, error=repr(exc))
            elif now - started > give_up_after:
                raise DatabaseError(
                    f"the database has been unreachable for {give_up_after:g} s ({what}: {exc}); "
                    "stopping. Check that Postgres is running, then start the daemon again "
                    "(nothing is lost: unsent mail stays queued)"
                ) from None
            await _pause(delay, stop)
            delay = min(max_delay, delay * 2)
            continue
        if started is not None:
            log.info("db.reconnected", operation=what, after=round(loop.time() - started, 3))
        return result


async def _pause(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    await wait_event(stop, seconds)

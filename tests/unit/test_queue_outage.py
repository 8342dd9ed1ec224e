"""Riding out a database outage: what counts as one, retry until back, give up loudly."""

from __future__ import annotations

import asyncio

import asyncpg  # type: ignore[import-untyped]
import pytest

from dispatcher.db.outage import StoppedDuringOutage, connection_lost, while_down
from dispatcher.errors import DatabaseError


def test_connection_errors_are_outages_and_query_errors_are_not() -> None:
    assert connection_lost(ConnectionRefusedError())
    assert connection_lost(asyncpg.exceptions.AdminShutdownError("terminating"))
    assert connection_lost(asyncpg.exceptions.CannotConnectNowError("starting up"))
    assert connection_lost(asyncpg.exceptions.ConnectionDoesNotExistError("closed"))
    assert not connection_lost(asyncpg.exceptions.UniqueViolationError("duplicate"))
    assert not connection_lost(ValueError("bug"))


async def test_retries_while_down_then_returns_the_answer() -> None:
    calls = 0

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
        return "claimed"

    assert await while_down(op, what="claim", give_up_after=5, first_delay=0.001) == "claimed"
    assert calls == 4


async def test_a_query_error_is_not_retried() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.exceptions.UndefinedTableError('relation "x" does not exist')

    with pytest.raises(asyncpg.exceptions.UndefinedTableError):
        await while_down(op, what="claim", give_up_after=5)
    assert calls == 1


async def test_gives_up_after_the_timeout_with_an_error_that_says_what_to_do() -> None:
    async def op() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(DatabaseError, match=r"unreachable for 0.05 s .*Check that Postgres"):
        await while_down(op, what="settle", give_up_after=0.05, first_delay=0.01, max_delay=0.01)


async def test_a_stop_request_cuts_the_outage_short() -> None:
    """Backing off for a 120 s outage, the call gives up at the first failure after a stop."""
    stop = asyncio.Event()
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError(111, "Connection refused")

    loop = asyncio.get_running_loop()
    began = loop.time()
    loop.call_later(0.05, stop.set)  # SIGTERM arrives while the retry backs off
    with pytest.raises(StoppedDuringOutage, match=r"unreachable \(settle: .*Connection refused"):
        await while_down(op, what="settle", give_up_after=120, first_delay=60, stop=stop)
    assert loop.time() - began < 5  # neither the 120 s outage nor the 60 s backoff waited out
    assert calls == 2  # the stop ended the backoff sleep; one more try, then no more

"""What every door does with the messages an application hands it: check them against the key,
validate them as `enqueue` does, and queue them all in one transaction, answering only after
the commit. Doors differ only in how they read a request and write the answer."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import asyncpg  # type: ignore[import-untyped]

from dispatcher.domain.jobs import Enqueued, NewMessage
from dispatcher.domain.validate import validate_message
from dispatcher.doors.keys import ApiKey
from dispatcher.errors import DispatcherError, InputError
from dispatcher.queue.enqueue import enqueue_on

__all__ = [
    "Forbidden",
    "Unavailable",
    "accept",
    "atomic",
    "authorize",
    "checked",
    "is_unavailable",
]

ACQUIRE_TIMEOUT = 10.0  # seconds a door waits for a connection before answering "try later"


class Forbidden(DispatcherError):
    """The key may not do this (a sender or priority outside its limits); ``field`` names what."""

    exit_code = 2

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class Unavailable(DispatcherError):
    """Postgres cannot be reached: nothing was queued, the client should retry."""


def authorize(key: ApiKey, msg: NewMessage) -> NewMessage:
    """`msg` (already validated) stamped with the key, or Forbidden."""
    if not key.allows_sender(msg.from_addr):
        raise Forbidden(
            f"key {key.id} may not send as {msg.from_addr}; it may use {', '.join(key.senders)}",
            field="from",
        )
    if not key.allows_priority(msg.priority):
        raise Forbidden(
            f"key {key.id} may queue at priority {key.max_priority} at most, not {msg.priority}",
            field="priority",
        )
    return dataclasses.replace(msg, key_id=key.id)


def atomic(conn: asyncpg.Connection, messages: int) -> AbstractAsyncContextManager[object]:
    """A transaction around queueing several messages (all or none); none for one message,
    whose insert is a single statement, atomic on its own (BEGIN and COMMIT would be two more
    round trips per message)."""
    return conn.transaction() if messages > 1 else contextlib.nullcontext()


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database is out of reach (not that the data was refused)."""
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.InterfaceError
        | asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError,
    )


def checked(key: ApiKey, messages: Sequence[NewMessage]) -> list[NewMessage]:
    """Every message validated and authorised; the first bad one raises, naming its index when
    there are several."""
    out: list[NewMessage] = []
    for i, msg in enumerate(messages):
        where = f"message {i}: " if len(messages) > 1 else ""
        try:
            out.append(authorize(key, validate_message(msg)))
        except Forbidden as exc:
            raise Forbidden(f"{where}{exc}", field=exc.field) from None
        except InputError as exc:
            raise InputError(f"{where}{exc}", field=exc.field) from None
    return out


async def accept(pool: asyncpg.Pool, key: ApiKey, messages: Sequence[NewMessage]) -> list[Enqueued]:
    """Queue `messages` as `key`, all or none, committed when this returns.

    InputError / Forbidden for a bad message (nothing queued), Unavailable when Postgres is out
    of reach (nothing queued: the client retries).
    """
    valid = checked(key, messages)
    if not valid:
        return []
    try:
        async with (
            pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn,
            atomic(conn, len(valid)),
        ):
            return await enqueue_on(conn, valid)
    except Exception as exc:
        if is_unavailable(exc):
            raise Unavailable(f"the queue's database is unreachable: {exc}") from None
        raise

"""The transactional outbox for Python applications: queue mail on your own connection, inside
your own transaction, so it is sent if and only if that transaction commits.

    async with conn.transaction():
        await conn.execute("UPDATE accounts SET reset_token = $1 WHERE id = $2", token, uid)
        await outbox.enqueue(conn, NewMessage(from_addr=..., to=(email,), subject=..., text=...))

Other languages call the SQL function `dispatcher.enqueue(...)` the same way (see README).
The message is validated exactly as `dispatcher enqueue` validates it; the rows are the ones
`Queue.enqueue` writes. A running daemon is woken at commit (NOTIFY) and sends it at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg  # type: ignore[import-untyped]

from dispatcher.domain.jobs import Enqueued, NewMessage
from dispatcher.queue.enqueue import enqueue_on, validate_all

__all__ = ["enqueue", "enqueue_many"]


async def enqueue(conn: asyncpg.Connection, message: NewMessage) -> int:
    """Queue one message on `conn`; its id (an existing idempotency key returns that id)."""
    return (await enqueue_many(conn, [message]))[0].id


async def enqueue_many(conn: asyncpg.Connection, messages: Sequence[NewMessage]) -> list[Enqueued]:
    """Queue several messages on `conn`, all or none (InputError names the first bad one)."""
    valid = validate_all(messages)
    if not valid:
        return []
    return await enqueue_on(conn, valid)

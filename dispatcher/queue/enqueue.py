"""Enqueue: messages checked and inserted (a message row and a job row each) in batches, one
statement per chunk, the checks of one part beside Postgres's insert of the one before."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from dispatcher.db.connect import stateless
from dispatcher.db.sql import named_queries
from dispatcher.domain.jobs import Enqueued, NewMessage
from dispatcher.domain.validate import validate_message
from dispatcher.errors import DatabaseError, InputError

__all__ = ["ENQUEUE_CHUNK", "OVERLAP_PART", "enqueue_batch", "enqueue_on", "validate_all"]

query = named_queries("dispatcher.queue", "queries.sql")

ENQUEUE_CHUNK = 10_000
"""Messages per statement of enqueue_on; larger batches run as several in the caller's
transaction (Queue.enqueue_many goes in OVERLAP_PART parts instead)."""

OVERLAP_PART = 250
"""From two parts up, enqueue_many checks each part while Postgres inserts the one before."""


def array_literal(values: Sequence[str]) -> str:
    """A Postgres text[] literal: every element quoted, so any character is kept as given."""
    if not values:
        return "{}"
    return '{"' + '","'.join(v.replace("\\", "\\\\").replace('"', '\\"') for v in values) + '"}'


def _tags_json(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(tags)) if tags else "{}"


def _column(values: list[Any], common: Any) -> list[Any]:
    """``values``, or [] when every one is ``common``: unnest pads a shorter array with NULL,
    which the statement reads as that value, and asyncpg then encodes nothing for the column
    (its per-element type checks were a third of the enqueue's own CPU)."""
    return [] if values.count(common) == len(values) else values


def _params(msgs: Sequence[NewMessage]) -> list[list[Any]]:
    """The 18 parallel arrays of the enqueue_many statement, in parameter order."""
    return [
        _column([m.idempotency_key for m in msgs], None),
        [m.from_addr for m in msgs],  # never NULL: the array that is always full length
        [array_literal(m.to) for m in msgs],
        _column([array_literal(m.cc) for m in msgs], "{}"),
        _column([array_literal(m.bcc) for m in msgs], "{}"),
        _column([array_literal(m.reply_to) for m in msgs], "{}"),
        [m.subject for m in msgs],
        _column([m.text for m in msgs], None),
        _column([m.html for m in msgs], None),
        _column([m.raw for m in msgs], None),
        _column([m.configuration_set for m in msgs], None),
        _column([_tags_json(m.tags) for m in msgs], "{}"),
        _column([m.priority for m in msgs], 0),
        _column([m.send_after for m in msgs], None),
        [m.recipient_count for m in msgs],
        _column([m.key_id for m in msgs], None),
        _column([m.template_name for m in msgs], None),
        _column([m.template_data for m in msgs], None),
    ]


def validate_all(msgs: Sequence[NewMessage], start: int = 0) -> list[NewMessage]:
    """Every message checked and normalised (InputError names the first bad one's index, the
    first message counting as ``start``)."""
    out: list[NewMessage] = []
    for i, msg in enumerate(msgs, start):
        try:
            out.append(validate_message(msg))
        except InputError as exc:
            raise InputError(f"message {i}: {exc}", field=exc.field) from None
    return out


async def enqueue_on(conn: asyncpg.Connection, msgs: Sequence[NewMessage]) -> list[Enqueued]:
    """Insert already validated messages on ``conn`` (in the caller's transaction, if any)."""
    found: list[tuple[int | None, bool]] = []
    for start in range(0, len(msgs), ENQUEUE_CHUNK):
        chunk = msgs[start : start + ENQUEUE_CHUNK]
        rows = await conn.fetch(query("enqueue_many"), *_params(chunk))
        found += [(row["id"], row["created"]) for row in rows]
    return await _results(conn, msgs, found)


async def _enqueue_overlapped(
    conn: asyncpg.Connection, msgs: Sequence[NewMessage]
) -> list[Enqueued]:
    """Validate and insert ``msgs`` part by part, each part checked while Postgres inserts the
    one before (two cores at work instead of one after the other); in the caller's
    transaction, which a bad message anywhere rolls back: none is queued."""
    valid: list[NewMessage] = []
    found: list[tuple[int | None, bool]] = []
    pending: asyncio.Future[list[Any]] | None = None
    try:
        for start in range(0, len(msgs), OVERLAP_PART):
            part = validate_all(msgs[start : start + OVERLAP_PART], start)
            params = _params(part)
            if pending is not None:
                found += [(row["id"], row["created"]) for row in await pending]
            pending = asyncio.ensure_future(conn.fetch(query("enqueue_many"), *params))
            await asyncio.sleep(0)  # let it send the statement before the next part's checks
            valid += part
        assert pending is not None
        found += [(row["id"], row["created"]) for row in await pending]
    finally:
        if pending is not None:  # a bad message: the part in flight ends before the rollback
            await asyncio.gather(pending, return_exceptions=True)
    return await _results(conn, valid, found)


async def _results(
    conn: asyncpg.Connection, msgs: Sequence[NewMessage], found: list[tuple[int | None, bool]]
) -> list[Enqueued]:
    """The statement's (id, created) per message, a key another transaction won looked up."""
    if len(found) != len(msgs):
        raise DatabaseError(f"enqueue_many returned {len(found)} rows for {len(msgs)}")
    # A NULL id: the key came earlier in the same statement, or another transaction inserted
    # it while our statement ran; either row was invisible to the statement's snapshot, and a
    # new statement sees it.
    lost = sorted(
        {msgs[i].idempotency_key or "" for i, (id_, _) in enumerate(found) if id_ is None}
    )
    by_key: dict[str, int] = {}
    if lost:
        rows = await conn.fetch(query("find_by_keys"), lost)
        by_key = {row["idempotency_key"]: row["id"] for row in rows}
    results: list[Enqueued] = []
    for i, (id_, created) in enumerate(found):
        if id_ is None:
            key = msgs[i].idempotency_key or ""
            if key not in by_key:
                raise DatabaseError(f"message {i}: no row for idempotency key {key!r}")
            id_, created = by_key[key], False
        results.append(Enqueued(id_, created))
    return results


async def enqueue_batch(pool: asyncpg.Pool, msgs: Sequence[NewMessage]) -> list[Enqueued]:
    """Queue.enqueue_many: every message checked before anything is committed, all or none."""
    if len(msgs) > OVERLAP_PART:
        async with stateless(pool) as conn, conn.transaction():
            return await _enqueue_overlapped(conn, msgs)
    msgs = validate_all(msgs)
    if not msgs:
        return []
    async with stateless(pool) as conn:
        # One chunk is one statement and needs no transaction; several must be atomic.
        several = len(msgs) > ENQUEUE_CHUNK
        async with conn.transaction() if several else contextlib.nullcontext():
            return await enqueue_on(conn, msgs)

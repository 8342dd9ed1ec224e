"""Enqueue: messages checked and inserted (a message row and a job row each) in batches: one
statement per chunk, or, for Queue.enqueue_many of more than OVERLAP_PART, parts copied in with
binary COPY, the checks of one part beside Postgres's insert of the one before."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from operator import attrgetter
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

OVERLAP_PART = 500
"""From two parts up, enqueue_many checks each part while Postgres copies the one before in
(500 cost ~10 % less CPU per row than 250, in this process and in Postgres: fewer statements)."""

CHECK_SLICE = 50
"""Messages checked between two turns of the event loop while a part is copied in: each turn
lets the part's COPY go on (answer, data, next COPY) beside the checks."""


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


# The fields copy_columns reads of each message (one C call per message), and the columns of
# messages named only when a row of the part sets them: left out, a column gets its DEFAULT
# (or NULL), the value given here, and asyncpg encodes nothing for it.
_FIELDS = attrgetter(
    *("from_addr", "to", "subject", "tags", "priority", "send_after"),
    *("idempotency_key", "cc", "bcc", "reply_to", "text", "html", "raw", "configuration_set"),
    *("key_id", "template_name", "template_data"),
)
_OPTIONAL = (
    ("idempotency_key", None),
    ("cc_addrs", ()),
    ("bcc_addrs", ()),
    ("reply_to", ()),
    ("text_body", None),
    ("html_body", None),
    ("raw", None),
    ("configuration_set", None),
    ("key_id", None),
    ("template_name", None),
    ("template_data", None),
)

_Columns = list[tuple[str, Sequence[Any]]]


def copy_columns(
    ids: list[int], msgs: list[NewMessage], now: datetime
) -> tuple[_Columns, _Columns]:
    """The columns (name, a value per message) to COPY into messages and into jobs, as
    enqueue_many's statement writes them; ``now`` is the transaction's now()."""
    n = len(msgs)
    from_addr, to, subject, tags, priority, after, *optional = zip(*map(_FIELDS, msgs), strict=True)
    message: _Columns = [("id", ids), ("from_addr", from_addr), ("to_addrs", to)]
    message.append(("subject", subject))
    for (column, default), values in zip(_OPTIONAL, optional, strict=True):
        if values.count(default) != n:
            message.append((column, values))
    if any(tags):
        message.append(("tags", [_tags_json(t) for t in tags]))
    cc, bcc = optional[1], optional[2]
    recipients = list(map(len, to))
    if cc.count(()) != n or bcc.count(()) != n:
        recipients = [a + len(c) + len(b) for a, c, b in zip(recipients, cc, bcc, strict=True)]
    job: _Columns = [("id", ids), ("recipients", recipients)]
    if priority.count(0) != n:
        job.append(("priority", priority))
    if after.count(None) != n:
        job.append(("run_at", [now if a is None else a for a in after]))
        job.append(("scheduled", [a is not None for a in after]))
    return message, job


_Records = tuple[list[str], list[tuple[Any, ...]]]


def _records(columns: _Columns) -> _Records:
    """The column names and one record per row of ``columns``, as COPY takes them."""
    return [name for name, _ in columns], list(zip(*(values for _, values in columns), strict=True))


async def _copy(conn: asyncpg.Connection, messages: _Records, jobs: _Records) -> None:
    """COPY one part in: messages first (the routing trigger on jobs reads them), then jobs."""
    for table, (columns, records) in (("messages", messages), ("jobs", jobs)):
        await conn.copy_records_to_table(
            table, schema_name="dispatcher", columns=columns, records=records
        )


def _lookup_key(key: object) -> str | None:
    """``key`` if the reserve statement can carry it, else None: validation refuses such a key
    (not a string, a NUL, not UTF-8) before its part is copied, with a message that says so."""
    if type(key) is not str or "\x00" in key:
        return None
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError:
            return None
    return key


def _sort_out(
    part: list[NewMessage], ids: list[int], stored: list[int | None], first: dict[str, int]
) -> tuple[list[int], list[NewMessage], list[Enqueued]]:
    """The ids and messages of ``part`` to copy in, and every message's result: a key stored
    before or met earlier in the batch (``first``: key -> id, updated) is not copied again."""
    keys = [m.idempotency_key for m in part]
    nones = keys.count(None)
    if nones == len(keys) or (
        stored.count(None) == len(keys) == len(set(keys)) + max(nones - 1, 0)
        and first.keys().isdisjoint(keys)
    ):  # no key stored or repeated: the common case, without a loop per message
        if nones != len(keys):
            first.update({k: i for k, i in zip(keys, ids, strict=True) if k is not None})
        return ids, part, [Enqueued(id_, True) for id_ in ids]
    new_ids: list[int] = []
    new: list[NewMessage] = []
    results: list[Enqueued] = []
    for id_, msg, key, old in zip(ids, part, keys, stored, strict=True):
        if key is not None:
            if old is None:
                old = first.get(key)
            if old is not None:
                results.append(Enqueued(old, False))
                continue
            first[key] = id_
        new_ids.append(id_)
        new.append(msg)
        results.append(Enqueued(id_, True))
    return new_ids, new, results


async def _checked(msgs: Sequence[NewMessage], start: int) -> list[NewMessage]:
    """validate_all in slices, the event loop turning between them (see CHECK_SLICE)."""
    out: list[NewMessage] = []
    for at in range(0, len(msgs), CHECK_SLICE):
        out += validate_all(msgs[at : at + CHECK_SLICE], start + at)
        await asyncio.sleep(0)
    return out


async def _enqueue_copied(conn: asyncpg.Connection, msgs: Sequence[NewMessage]) -> list[Enqueued]:
    """Check and COPY ``msgs`` part by part, in the caller's transaction, which a bad message
    anywhere rolls back. Postgres draws the ids and finds the stored keys of the whole batch
    while the first part is checked; then each part is checked and made into records while
    the one before is copied in."""
    keys = [_lookup_key(m.idempotency_key) for m in msgs]
    keyed = keys.count(None) != len(keys)
    pending: asyncio.Future[Any] = asyncio.ensure_future(
        conn.fetchrow(query("enqueue_reserve"), len(msgs), keys if keyed else None)
    )
    results: list[Enqueued] = []
    first: dict[str, int] = {}
    try:
        await asyncio.sleep(0)  # let it send the statement before the first checks
        reserved = None
        for start in range(0, len(msgs), OVERLAP_PART):
            part = await _checked(msgs[start : start + OVERLAP_PART], start)
            if reserved is None:
                reserved = await pending
                ids: list[int] = reserved["ids"]
                stored: list[int | None] = reserved["stored"] if keyed else [None] * len(msgs)
            end = start + len(part)
            new_ids, new, done = _sort_out(part, ids[start:end], stored[start:end], first)
            results += done
            if new:  # else every message of the part was stored before
                message, job = copy_columns(new_ids, new, reserved["now"])
                records = _records(message), _records(job)
                await pending  # the part before is copied in
                pending = asyncio.ensure_future(_copy(conn, *records))
                await asyncio.sleep(0)  # let it send the COPY before the next checks
        await pending
    finally:  # a bad message: what is in flight ends before the rollback
        await asyncio.gather(pending, return_exceptions=True)
    return results


async def enqueue_batch(pool: asyncpg.Pool, msgs: Sequence[NewMessage]) -> list[Enqueued]:
    """Queue.enqueue_many: every message checked before anything is committed, all or none."""
    if len(msgs) > OVERLAP_PART:
        async with stateless(pool) as conn:
            try:
                async with conn.transaction():
                    return await _enqueue_copied(conn, msgs)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "messages_idempotency_key_key":
                    raise
            # Another transaction stored one of the keys after this one looked: all rolled
            # back, the batch goes again by INSERT ... ON CONFLICT, which waits for and skips it.
            async with conn.transaction():
                return await _enqueue_overlapped(conn, msgs)
    msgs = validate_all(msgs)
    if not msgs:
        return []
    async with stateless(pool) as conn:
        # One chunk is one statement and needs no transaction; several must be atomic.
        several = len(msgs) > ENQUEUE_CHUNK
        async with conn.transaction() if several else contextlib.nullcontext():
            return await enqueue_on(conn, msgs)

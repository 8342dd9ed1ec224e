"""The HTTP API (`[api]`, under /v1): queue a message or a batch, read a message back.

`POST /v1/messages` answers only after the commit; a batch is one transaction (all or none).
An idempotency key (the `Idempotency-Key` header, or a message's own `idempotency_key`) is
scoped to the API key: the same key again answers the first message (200); the same key with
another message is a 409. `GET /v1/messages/{id}` shows a message queued with the same API key
(404 for any other). `GET /v1/openapi.json` describes it all (dispatcher/doors/openapi.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import asyncpg  # type: ignore[import-untyped]
import structlog
from aiohttp import web

from dispatcher.db.sql import named_queries
from dispatcher.domain.jobs import Enqueued, NewMessage
from dispatcher.doors import openapi
from dispatcher.doors.api_body import (
    BadBody,
    Body,
    comparable_raw,
    field_of,
    read_body,
    unscoped_key,
)
from dispatcher.doors.intake import (
    ACQUIRE_TIMEOUT,
    Forbidden,
    atomic,
    checked,
    is_unavailable,
)
from dispatcher.doors.keys import ApiKey
from dispatcher.doors.web import CONTEXT, DoorError, basic_key, fail
from dispatcher.errors import InputError
from dispatcher.message_view import message_json
from dispatcher.queue.enqueue import enqueue_on

__all__ = ["RETRY_AFTER", "routes"]

log = structlog.get_logger()

INLINE_BODY = 16 * 1024  # bytes of body parsed on the event loop; larger ones in a thread
query = named_queries("dispatcher.doors", "http_api.sql")

RETRY_AFTER = 5  # seconds a client is asked to wait when Postgres is out of reach
MAX_ID = 2**63 - 1  # message ids are bigint


def routes() -> list[web.RouteDef]:
    """The API's routes, for `build_app` (HEAD is left out: nothing here is a document to probe)."""
    return [
        web.post("/v1/messages", post_messages),
        web.get("/v1/messages/{id}", get_message, allow_head=False),
        web.get("/v1/openapi.json", get_openapi, allow_head=False),
    ]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_iso)


def _iso(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _refuse(status: int, error: str, field: str | None, index: int | None) -> NoReturn:
    body: dict[str, Any] = {"error": error}
    if field is not None:
        body["field"] = field
    if index is not None:
        body["index"] = index
    raise DoorError(status, body, {})


@contextmanager
def _database() -> Iterator[None]:
    """Postgres out of reach inside the block: a 503 with Retry-After; other errors pass."""
    try:
        yield
    except DoorError:
        raise
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log.warning("api.unavailable", error=str(exc))
        fail(
            503,
            "the queue's database is unreachable; nothing was queued: try again later",
            **{"Retry-After": str(RETRY_AFTER)},
        )


async def _authenticated(request: web.Request) -> ApiKey:
    """The request's key, 401 without one, 503 when the keys cannot be read."""
    with _database():
        return await basic_key(request)


def _authorized(key: ApiKey, messages: Sequence[NewMessage], batch: bool) -> list[NewMessage]:
    """Each message validated and within the key's limits; 403/400 name the index in a batch."""
    out: list[NewMessage] = []
    for i, msg in enumerate(messages):
        index = i if batch else None
        where = f"message {i}: " if batch else ""
        try:
            out += checked(key, [msg])
        except Forbidden as exc:
            _refuse(403, f"{where}{exc}", exc.field, index)
        except InputError as exc:
            _refuse(400, f"{where}{exc}", field_of(exc), index)
    return out


def _prepared(raw: bytes, key: ApiKey, header_key: str | None) -> tuple[Body, list[NewMessage]]:
    """The body's messages, validated and authorised; 400/403 otherwise."""
    try:
        body = read_body(raw, key.id, header_key)
    except BadBody as exc:
        _refuse(400, exc.error, exc.field, exc.index)
    return body, _authorized(key, body.messages, body.batch)


def _content(msg: NewMessage) -> tuple[Any, ...]:
    return (
        msg.from_addr,
        list(msg.to),
        list(msg.cc),
        list(msg.bcc),
        list(msg.reply_to),
        msg.subject,
        msg.text,
        msg.html,
        None if msg.raw is None else comparable_raw(msg.raw),
        msg.configuration_set,
        dict(msg.tags),
    )


def _stored(row: asyncpg.Record) -> tuple[Any, ...]:
    tags = row["tags"]
    return (
        row["from_addr"],
        list(row["to_addrs"]),
        list(row["cc_addrs"]),
        list(row["bcc_addrs"]),
        list(row["reply_to"]),
        row["subject"],
        row["text_body"],
        row["html_body"],
        None if row["raw"] is None else comparable_raw(bytes(row["raw"])),
        row["configuration_set"],
        json.loads(tags) if isinstance(tags, str) else dict(tags),
    )


async def _check_replays(
    conn: asyncpg.Connection, key: ApiKey, msgs: Sequence[NewMessage], results: list[Enqueued]
) -> None:
    """409 if an idempotency key already held another message (in the caller's transaction,
    so a batch with one conflict queues nothing)."""
    replays = [i for i, r in enumerate(results) if not r.created]
    if not replays:
        return
    rows = await conn.fetch(query("stored_content"), [results[i].id for i in replays])
    stored = {row["id"]: _stored(row) for row in rows}
    for i in replays:
        if stored.get(results[i].id) != _content(msgs[i]):
            given = unscoped_key(key.id, msgs[i].idempotency_key)
            where = f"message {i}: " if len(msgs) > 1 else ""
            _refuse(
                409,
                f"{where}idempotency key {given!r} already queued message {results[i].id} with "
                "other content; use a new key for a new message",
                "idempotency_key",
                i if len(msgs) > 1 else None,
            )


async def post_messages(request: web.Request) -> web.Response:
    """Queue one message (a JSON object) or a batch (an array), committed before the answer."""
    ctx = request.app[CONTEXT]
    key = await _authenticated(request)
    raw = await request.read()
    given_key = request.headers.get("Idempotency-Key")
    if len(raw) <= INLINE_BODY:  # a message or two: less work than the hop to a thread
        body, valid = _prepared(raw, key, given_key)
    else:
        # In a thread: reading and validating a large batch takes seconds of CPU, which would
        # otherwise stop the daemon's own sending loop (and its lease heartbeats) meanwhile.
        body, valid = await asyncio.to_thread(_prepared, raw, key, given_key)
    try:
        # A batch is all or none: a 409 on one element undoes the rest.
        with _database():
            async with (
                ctx.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn,
                atomic(conn, len(valid)),
            ):
                results = await enqueue_on(conn, valid)
                await _check_replays(conn, key, valid, results)
    except asyncpg.DataError as exc:  # what the validation let through but Postgres refused
        _refuse(400, f"the database refused a value: {exc}", None, None)
    created = [r.created for r in results]
    status = 201 if any(created) else 200
    log.info("api.queued", key_id=key.id, messages=len(results), created=sum(created))
    if body.batch:
        return web.json_response(
            {"ids": [r.id for r in results], "created": created}, status=status
        )
    (one,) = results
    return web.json_response(
        {"id": one.id, "created": one.created},
        status=status,
        headers={"Location": f"/v1/messages/{one.id}"},
    )


async def get_message(request: web.Request) -> web.Response:
    """A message queued with this key: its state, attempts, SES MessageId, events; else 404."""
    ctx = request.app[CONTEXT]
    key = await _authenticated(request)
    text = request.match_info["id"]
    not_found = f"no message {text[:40]!r} was queued with this key"
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_ID:
        fail(404, not_found)
    message_id = int(text)
    with _database():
        owner = await ctx.pool.fetchval(query("owner"), message_id)
        if owner != key.id:
            fail(404, not_found)
        job = await ctx.queue.get(message_id)
        events = await ctx.feedback.message_events(message_id)
    if job is None:
        fail(404, not_found)
    view = message_json(job, events)
    view["message"]["idempotency_key"] = unscoped_key(key.id, job.idempotency_key)
    return web.json_response(view, dumps=_dumps)


async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of these routes (no key needed: it holds no data)."""
    return web.json_response(_document())


@functools.cache
def _document() -> dict[str, Any]:
    return openapi.document()

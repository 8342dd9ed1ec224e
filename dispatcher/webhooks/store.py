"""The webhook outbox in Postgres (`webhooks.sql`): endpoints synced from the config, events
claimed in order per message, results settled in one statement.

Every statement goes through a small semaphore: the sender holds at most `connections` of the
daemon's pool at once, so webhooks can never take the connections mail needs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from dispatcher.db.sql import named_queries
from dispatcher.webhooks.settings import WebhookSettings
from dispatcher.webhooks.signing import Event

query = named_queries("dispatcher.webhooks", "webhooks.sql")

__all__ = ["Claimed", "EndpointStatus", "Result", "WebhookStore"]

DEFAULT_CONNECTIONS = 2
# SES events that arrive this close together are put in the order they happened, not arrived.
REORDER_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Claimed:
    """An event leased for one POST; `attempts` (this one included) fences its result."""

    event: Event
    attempts: int


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one POST."""

    id: int
    attempts: int
    state: str  # delivered, pending, given_up
    delay: float = 0.0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """One endpoint as `dispatcher webhooks` shows it."""

    id: int
    url: str
    events: tuple[str, ...]
    backlog: int  # events not delivered yet (nor given up)
    oldest_pending: datetime | None
    delivered: int
    given_up: int
    last_error: str | None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class WebhookStore:
    """The outbox over the daemon's pool, at most `connections` connections at a time."""

    __slots__ = ("_gate", "_pool")

    def __init__(self, pool: asyncpg.Pool, *, connections: int = DEFAULT_CONNECTIONS) -> None:
        self._pool = pool
        self._gate = asyncio.Semaphore(connections)

    async def _fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        async with self._gate, self._pool.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(query(name), *args)
        return rows

    async def sync(self, endpoints: Sequence[WebhookSettings]) -> tuple[dict[str, int], list[str]]:
        """Subscribe the configured endpoints (url -> id) and unsubscribe the others (their
        urls, second), in one transaction under a lock: daemons starting together take turns."""
        wanted = [{"url": e.url, "events": list(e.events)} for e in endpoints]
        async with self._gate, self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('dispatcher.webhooks'))")
            rows = await conn.fetch(query("endpoints_sync"), json.dumps(wanted))
        ids = {r["url"]: r["id"] for r in rows if not r["dropped"]}
        return ids, sorted(r["url"] for r in rows if r["dropped"])

    async def order_late(self, settle: float = REORDER_SECONDS) -> int:
        """Give SES events written at least `settle` seconds ago their place; how many."""
        return len(await self._fetch("order_late", float(settle)))

    async def claim(self, endpoint_id: int, limit: int, lease: float) -> list[Claimed]:
        """Up to `limit` due events of one endpoint, the first waiting one of each message."""
        rows = await self._fetch("claim", endpoint_id, limit, float(lease))
        out = [
            Claimed(
                Event(r["id"], r["type"], r["created_at"], r["message_id"], _json(r["data"])),
                r["attempts"],
            )
            for r in rows
        ]
        out.sort(key=lambda c: c.event.id)
        return out

    async def settle(self, results: Sequence[Result]) -> int:
        """Record POST results (fenced by attempt); how many were still ours to record."""
        if not results:
            return 0
        rows = await self._fetch(
            "settle",
            [r.id for r in results],
            [r.attempts for r in results],
            [r.state for r in results],
            [r.delay for r in results],
            [r.error for r in results],
        )
        return len(rows)

    async def release(self, claimed: Sequence[Claimed]) -> None:
        """Events whose POST a shutdown cut short: due again at once."""
        if claimed:
            async with self._gate, self._pool.acquire() as conn:
                await conn.execute(
                    query("release"),
                    [c.event.id for c in claimed],
                    [c.attempts for c in claimed],
                )

    async def wake(self, endpoint_id: int) -> None:
        """The endpoint answers again: its backed-off events are due now."""
        async with self._gate, self._pool.acquire() as conn:
            await conn.execute(query("wake"), endpoint_id)

    async def prune(self, older_than: float, limit: int = 10_000) -> int:
        """Forget delivered and given-up events older than `older_than` seconds; how many."""
        async with self._gate, self._pool.acquire() as conn:
            done: str = await conn.execute(query("prune"), float(older_than), limit)
        return int(done.split()[-1])

    async def status(self) -> list[EndpointStatus]:
        """Every endpoint known to the database, with its backlog."""
        return [
            EndpointStatus(
                r["id"],
                r["url"],
                tuple(r["events"]),
                r["backlog"],
                r["oldest_pending"],
                r["delivered"],
                r["given_up"],
                r["last_error"],
            )
            for r in await self._fetch("status")
        ]

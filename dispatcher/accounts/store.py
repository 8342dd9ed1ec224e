"""The accounts and routes in Postgres (migration 0021, accounts.sql): written by the daemon from
its config at start, so every way mail enters is routed by the same rules; read by `status`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.accounts.settings import DEFAULT_ACCOUNT, RouteSettings
from dispatcher.db.sql import named_queries
from dispatcher.errors import DatabaseError
from dispatcher.feedback.guard import Counts

__all__ = ["AccountCounts", "AccountRow", "AccountStore"]

log = structlog.get_logger()
query = named_queries("dispatcher.accounts", "accounts.sql")


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One account as `status` shows it."""

    name: str
    default: bool
    paused_reason: str | None  # SES paused or suspended it
    held_reason: str | None  # the reputation guard holds its sending (`resume --force`)
    max_send_rate: float | None
    max_24_hour_send: float | None
    sent_last_24_hours: float | None
    reading_age: float | None  # seconds since its quota was read; None: never
    queued: int
    workers: int


def _route_rows(routes: Sequence[RouteSettings]) -> list[list[Any]]:
    return [
        [list(r.from_domain), list(r.campaign), list(r.key), list(r.tag), r.account, r.fallback]
        for r in routes
    ]


async def _switch_routing(conn: asyncpg.Connection, *, on: bool) -> None:
    try:
        await conn.execute(query("enable_trigger" if on else "disable_trigger"))
    except asyncpg.InsufficientPrivilegeError:
        raise DatabaseError(
            f"cannot turn routing {'on' if on else 'off'} for the configured [[accounts]] and "
            "[[routes]]: the database user must own dispatcher.jobs (the user that runs "
            "`dispatcher migrate`); start the daemon once as that user"
        ) from None


class AccountCounts:
    """One account's reputation counts (what the warm-up's spike check reads)."""

    def __init__(self, store: AccountStore, account: str) -> None:
        self._store = store
        self._account = account

    async def account_counts(self, window_seconds: float) -> Counts:
        counts = await self._store.guard_counts(window_seconds)
        return counts.get(self._account, Counts(sent=0, bounced=0, complained=0))


class AccountStore:
    """Reads and writes of the accounts and routes tables, on connections from `pool`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def put(self, names: Sequence[str], routes: Sequence[RouteSettings]) -> int:
        """Make the database's accounts and routes these (the first name is the default);
        mail still waiting goes where they say. Returns how many jobs changed account."""
        wanted = _route_rows(routes)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(query("lock"))
            row = await conn.fetchrow(query("current"))
            old_names = list(row["names"])
            old_routes = json.loads(row["routes"]) if isinstance(row["routes"], str) else []
            changed = old_names[:1] != list(names[:1]) or old_routes != wanted
            await conn.execute(query("put_accounts"), list(names))
            await conn.execute(query("put_quota_rows"), list(names))
            if old_routes != wanted:
                await conn.execute(query("clear_routes"))
                for position, values in enumerate(wanted):
                    await conn.execute(query("put_route"), position, *values)
            # The trigger decides only when there is something to decide: routes, or a
            # default account whose name is not the column's default.
            needed = bool(routes) or names[0] != DEFAULT_ACCOUNT
            if bool(await conn.fetchval(query("trigger_enabled"))) != needed:
                await _switch_routing(conn, on=needed)
            if changed:
                status = await conn.execute(query("reroute"))
            else:
                status = await conn.execute(query("reroute_gone"), list(names))
        moved = int(status.split()[-1])
        if moved:
            log.info("accounts.rerouted", jobs=moved)
        return moved

    async def mark_paused(self, account: str, reason: str | None) -> int:
        """SES paused `account` (`reason`), or it sends again (None). Returns the jobs moved
        to their route's fallback account."""
        async with self._pool.acquire() as conn:
            moved: int = await conn.fetchval(query("mark_paused"), account, reason)
        return moved

    async def guard_counts(self, window_seconds: float) -> dict[str, Counts]:
        """Recipients sent, hard bounces and complaints of each account in the window."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("guard_counts"), float(window_seconds))
        return {
            r["name"]: Counts(sent=r["sent"], bounced=r["bounced"], complained=r["complained"])
            for r in rows
        }

    async def campaigns_on(self, account: str, campaign_ids: Sequence[int]) -> list[int]:
        """Those of `campaign_ids` with mail waiting on `account`."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("campaigns_on"), account, list(campaign_ids))
        return [r["id"] for r in rows]

    async def hold(self, account: str, reason: str) -> bool:
        """Hold all sending of `account` (the guard); False if it was held already."""
        async with self._pool.acquire() as conn:
            return await conn.fetchval(query("hold"), account, reason) is not None

    async def overview(self) -> list[AccountRow]:
        """Every configured account, the default first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("overview"))
        return [
            AccountRow(
                name=r["name"],
                default=r["position"] == 0,
                paused_reason=r["paused_reason"] if r["paused_at"] is not None else None,
                held_reason=r["held_reason"],
                max_send_rate=r["max_send_rate"],
                max_24_hour_send=r["max_24_hour_send"],
                sent_last_24_hours=r["sent_last_24_hours"],
                reading_age=r["reading_age"],
                queued=r["queued"],
                workers=r["workers"],
            )
            for r in rows
        ]

"""The provider lanes' shared parts in Postgres (migration 0020, lanes.sql), and the loop that
keeps this process's `LaneGate` supplied: daily room, MX answers, back-offs (decisions in
dispatcher.pacing.lanes). MX lookups happen here, never on the send path."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.accounts.settings import DEFAULT_ACCOUNT
from dispatcher.clock import wait_event
from dispatcher.db.outage import connection_lost
from dispatcher.db.sql import named_queries
from dispatcher.doctor.dns import lookup, make_resolver
from dispatcher.doctor.facts import Lookup
from dispatcher.doctor.settings import parse_nameservers
from dispatcher.pacing.lanes import Backoff, LaneGate, LaneSettings, backoff_step
from dispatcher.pacing.providers import OTHER, ProviderSettings, ProviderTable
from dispatcher.worker.lane_gate import Lanes

__all__ = ["DEFAULT_ACCOUNT", "LaneStore", "lanes_view", "print_lanes", "run_lanes"]

query = named_queries("dispatcher.worker", "lanes.sql")
log = structlog.get_logger()

LOOK = 0.25  # seconds between rounds when nothing asks sooner
MX_BATCH = 500  # domains answered per round (from Postgres's cache, else by DNS)
MX_PARALLEL = 32  # DNS questions in flight at once
FAILED_MX_TTL = 300.0  # seconds a failed lookup (timeout, SERVFAIL) counts as `other`


class LaneStore:
    """Reads and writes the lanes' rows, each call its own short transaction."""

    def __init__(self, pool: asyncpg.Pool, account: str = DEFAULT_ACCOUNT) -> None:
        self._pool = pool
        self.account = account

    async def take(self, provider: str, want: float, cap: int) -> tuple[date, float, float]:
        """Up to `want` of today's room under `cap`: (day, granted, left after the grant)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(query("lane_open_day"), self.account, provider)
            row = await conn.fetchrow(query("lane_lock_day"), self.account, provider)
            taken = float(row["taken"])
            granted = max(0.0, min(want, cap - taken))
            if granted:
                await conn.execute(
                    query("lane_add_taken"), self.account, provider, row["day"], granted
                )
        return row["day"], granted, max(0.0, cap - taken - granted)

    async def give_back(self, day: date, room: Mapping[str, float]) -> None:
        async with self._pool.acquire() as conn:
            for provider, n in room.items():
                await conn.execute(query("lane_add_taken"), self.account, provider, day, -n)

    async def add_sent(self, counts: Mapping[str, int]) -> None:
        if counts:
            async with self._pool.acquire() as conn:
                await conn.execute(
                    query("lane_add_sent"), self.account, list(counts), list(counts.values())
                )

    async def mx_cached(self, domains: Sequence[str]) -> dict[str, str]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("mx_cached"), list(domains))
        return {r["domain"]: r["provider"] for r in rows}

    async def mx_put(self, found: Mapping[str, tuple[str, tuple[str, ...], float]]) -> None:
        if not found:
            return
        domains = list(found)
        async with self._pool.acquire() as conn:
            await conn.execute(
                query("mx_put"),
                domains,
                [found[d][0] for d in domains],
                [" ".join(found[d][1]) for d in domains],
                [found[d][2] for d in domains],
            )

    async def soft_feedback(self, window: float) -> tuple[float, dict[str, int]]:
        """(the database's time, soft feedback recipients by domain in the last `window` s)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("soft_feedback"), float(window))
            now = rows[0]["now"] if rows else await conn.fetchval(query("db_now"))
        return float(now), {r["domain"]: int(r["n"]) for r in rows}

    async def backoffs(self) -> dict[str, Backoff]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("lane_backoffs"), self.account)
        return {r["provider"]: Backoff(r["reason"], r["since"], r["last_burst"]) for r in rows}

    async def set_backoff(self, provider: str, backoff: Backoff | None) -> None:
        async with self._pool.acquire() as conn:
            if backoff is None:
                await conn.execute(query("lane_backoff_clear"), self.account, provider)
            else:
                await conn.execute(
                    query("lane_backoff_put"),
                    self.account,
                    provider,
                    backoff.reason,
                    backoff.since,
                    backoff.last_burst,
                )

    async def today(self) -> dict[str, tuple[float, int]]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("lane_today"), self.account)
        return {r["provider"]: (float(r["taken"]), int(r["sent"])) for r in rows}

    async def waiting_by_domain(self) -> dict[str, int]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("waiting_by_domain"))
        return {r["domain"] or "": int(r["n"]) for r in rows}

    async def mx_all(self) -> dict[str, str]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("mx_all"))
        return {r["domain"]: r["provider"] for r in rows}


async def check_backoffs(
    store: LaneStore, table: ProviderTable, names: Sequence[str], settings: LaneSettings
) -> dict[str, Backoff]:
    """Count each lane's recent soft feedback, step its back-off, and return them all."""
    now, by_domain = await store.soft_feedback(settings.backoff_window)
    known = await store.mx_cached(list(by_domain)) if by_domain else {}
    soft: dict[str, int] = {}
    for domain, n in by_domain.items():
        name = table.by_domain(domain) or known.get(domain, OTHER)
        soft[name] = soft.get(name, 0) + n
    current = await store.backoffs()
    out: dict[str, Backoff] = {}
    for name in names:
        before = current.get(name)
        after = backoff_step(before, soft.get(name, 0), now, settings)
        if after != before:
            await store.set_backoff(name, after)
            if after is not None and before is None:
                log.warning("lane.backed_off", provider=name, reason=after.reason)
            elif after is None:
                log.info("lane.recovered", provider=name)
        if after is not None:
            out[name] = after
    return out


async def lookup_mx(
    domains: Sequence[str], table: ProviderTable, settings: LaneSettings
) -> dict[str, tuple[str, tuple[str, ...], float]]:
    """domain -> (provider, MX hosts, seconds to keep the answer)."""
    resolver = make_resolver(
        parse_nameservers(settings.nameservers, key="lanes.nameservers"), settings.mx_timeout
    )
    gate = asyncio.Semaphore(MX_PARALLEL)

    async def one(domain: str) -> Lookup:
        async with gate:
            return await lookup(resolver, domain, "MX")

    answers = await asyncio.gather(*(one(d) for d in domains))
    out: dict[str, tuple[str, tuple[str, ...], float]] = {}
    for domain, answer in zip(domains, answers, strict=True):
        if answer.problem is not None:  # proves nothing: `other` for a while, then ask again
            log.info("lane.mx_failed", domain=domain, problem=answer.problem)
            out[domain] = (OTHER, (), min(FAILED_MX_TTL, settings.mx_ttl))
        else:
            out[domain] = (table.by_mx(answer.records), answer.records, settings.mx_ttl)
    return out


async def run_lanes(store: LaneStore, lanes: Lanes, stop: asyncio.Event) -> None:
    """Until `stop`: answer MX questions, keep capped lanes supplied with daily room, add what
    each lane admitted to today's row and follow the back-offs."""
    gate = lanes.gate
    settings = gate.settings
    caps = {p.name: p.daily_cap for p in lanes.limits if p.daily_cap is not None}
    loop = asyncio.get_running_loop()
    next_check = loop.time()
    forget_mx_at = loop.time() + settings.mx_ttl  # answers kept in memory no longer than that
    day: date | None = None
    # MX lookups in a task of their own: a slow DNS server must not hold up the daily room.
    mx: asyncio.Task[None] | None = None
    try:
        while not stop.is_set():
            lanes.wake.clear()
            try:
                if mx is not None and mx.done():
                    done: asyncio.Task[None] = mx
                    mx = None
                    done.result()  # a lookup's database error is handled below, as ours
                if loop.time() >= forget_mx_at:
                    forget_mx_at = loop.time() + settings.mx_ttl
                    gate.mx.clear()  # asked again (Postgres's cache first) as mail comes
                if mx is None and gate.pending:
                    mx = asyncio.create_task(_answer_mx(store, lanes), name="lanes-mx")
                day = await _round(store, gate, caps, day)
                if loop.time() >= next_check:
                    next_check = loop.time() + settings.check_interval
                    found = await check_backoffs(store, gate.table, list(gate.lanes), settings)
                    gate.set_backoffs(found, loop.time())
                lanes.poke()
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                log.warning("lane.db_unavailable", error=repr(exc))  # the gate keeps what it has
            await wait_event(lanes.wake, LOOK)
    finally:
        if mx is not None:
            mx.cancel()
            await asyncio.gather(mx, return_exceptions=True)
        await _at_exit(store, gate, day)


async def _answer_mx(store: LaneStore, lanes: Lanes) -> None:
    """Answer up to MX_BATCH pending domains: from Postgres's cache, else by DNS."""
    gate = lanes.gate
    pending = sorted(gate.pending)[:MX_BATCH]
    cached = await store.mx_cached(pending)
    missing = [d for d in pending if d not in cached]
    looked = await lookup_mx(missing, gate.table, gate.settings) if missing else {}
    await store.mx_put(looked)
    gate.resolved({**cached, **{d: v[0] for d, v in looked.items()}})
    lanes.poke()  # parked mail may go now
    lanes.wake.set()  # more to look up, maybe


async def _round(
    store: LaneStore, gate: LaneGate[Any], caps: Mapping[str, int], day: date | None
) -> date | None:
    now = asyncio.get_running_loop().time()
    for name, want in gate.room_wanted(now).items():
        today, granted, left = await store.take(name, want, caps[name])
        gate.room_granted(name, granted, left, day is not None and today != day, now)
        day = today
    sent = gate.flush()
    try:
        await store.add_sent(sent)
    except BaseException:
        gate.unflush(sent)
        raise
    return day


async def _at_exit(store: LaneStore, gate: LaneGate[Any], day: date | None) -> None:
    """What was admitted goes to today's row; daily room taken and not used goes back."""
    try:
        await store.add_sent(gate.flush())
        room = gate.give_back_room()
        if day is not None and room:
            await store.give_back(day, room)
    except Exception as exc:
        log.warning("lane.give_back_failed", error=repr(exc))


# -- status -------------------------------------------------------------------------------------


async def lanes_view(
    pool: asyncpg.Pool,
    limits: Sequence[ProviderSettings],
    *,
    waiting: bool = True,
    account: str = DEFAULT_ACCOUNT,
) -> list[dict[str, Any]] | None:
    """Each lane of `account` for `dispatcher status` (--json: this list); None when no lane is
    configured. `waiting` reads the recipients of all unsent mail (a scan: not for every
    metrics scrape)."""
    if not any(p.limited for p in limits):
        return None
    store = LaneStore(pool, account)
    table = ProviderTable(limits)
    today, backoffs = await store.today(), await store.backoffs()
    by_lane: dict[str, int] = {}
    if waiting:
        known = await store.mx_all()
        for domain, n in (await store.waiting_by_domain()).items():
            name = table.by_domain(domain) or known.get(domain, OTHER)
            by_lane[name] = by_lane.get(name, 0) + n
    out: list[dict[str, Any]] = []
    names = [p.name for p in limits if p.limited]
    names += sorted(n for n in {*by_lane, *today} if n not in names)
    by_name = {p.name: p for p in limits}
    for name in names:
        p = by_name.get(name)
        taken, sent = today.get(name, (0.0, 0))
        cap = p.daily_cap if p is not None else None
        b = backoffs.get(name)
        out.append(
            {
                "provider": name,
                "rate": p.rate if p is not None else None,  # None: only the account rate
                "daily_cap": cap,
                "cap_left": None if cap is None else max(0.0, cap - taken),
                "sent_today": sent,  # recipients admitted through the lane today (UTC)
                # recipients of mail not sent yet (None: not read)
                "waiting": by_lane.get(name, 0) if waiting else None,
                "backed_off": b.reason if b is not None else None,
            }
        )
    return out


def print_lanes(view: list[dict[str, Any]] | None, account: str | None = None) -> None:
    if view is None:
        return
    of = f" of account {account}" if account is not None else ""
    waiting = ", waiting recipients" if any(lane["waiting"] is not None for lane in view) else ""
    print(f"provider lanes{of} (sent today UTC{waiting}):")
    for lane in view:
        rate = f"{lane['rate']:g}/s" if lane["rate"] is not None else "account rate"
        cap = f"cap {lane['daily_cap']:,}/day" if lane["daily_cap"] is not None else "no cap"
        line = f"  {lane['provider']:<12} {rate:>12}  {cap:<18} sent {lane['sent_today']:>8,}"
        if lane["waiting"] is not None:
            line += f"  waiting {lane['waiting']:>8,}"
        if lane["backed_off"]:
            line += f"  BACKED OFF: {lane['backed_off']}"
        print(line)

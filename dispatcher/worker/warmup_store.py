"""The warm-up's days in Postgres (migration 0018, warmup.sql), and the loop that keeps this
process's `WarmupGate` supplied with room from today's row (decisions in pacing.warmup)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.accounts.settings import DEFAULT_ACCOUNT
from dispatcher.clock import wait_event
from dispatcher.db.outage import connection_lost
from dispatcher.db.sql import named_queries
from dispatcher.feedback.guard import Counts
from dispatcher.pacing.warmup import (
    WarmupDay,
    WarmupGate,
    WarmupSettings,
    cap_for,
    grant,
    spike_reason,
)

query = named_queries("dispatcher.worker", "warmup.sql")
log = structlog.get_logger()

REFILL_LOOK = 1.0  # seconds between looks at today's row when nothing asks (a new day, a hold)


class WarmupStore:
    """Takes, gives back and holds on the warm-up's day rows, each in its own transaction."""

    def __init__(
        self, pool: asyncpg.Pool, settings: WarmupSettings, account: str = DEFAULT_ACCOUNT
    ) -> None:
        self._pool = pool
        self._caps = settings.caps
        self.account = account  # each SES account ramps up on its own (migration 0021)

    async def take(self, want: float) -> WarmupDay:
        """Up to `want` recipients of today's room for this process (0: just look)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(query("warmup_open_day"), self.account)
            # takes queue here: none overshoots
            await conn.execute(query("warmup_lock_day"), self.account)
            row = await conn.fetchrow(query("warmup_day"), self.account)
            cap = cap_for(self._caps, row["day_no"])
            granted = grant(cap, row["taken"], want)
            if granted:
                await conn.execute(query("warmup_add"), row["today"], granted, self.account)
        return self._day(row, cap, granted)

    async def look(self) -> WarmupDay:
        """Today as it stands, changing nothing (for `dispatcher status`)."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(query("warmup_day"), self.account)
        return self._day(row, cap_for(self._caps, row["day_no"]), 0.0)

    async def days_held(self) -> int:
        async with self._pool.acquire() as conn:
            held: int = await conn.fetchval(query("warmup_days_held"), self.account)
        return held

    async def give_back(self, gate: WarmupGate) -> None:
        """Room taken and not used goes back to its day's row (at exit)."""
        back = gate.give_back()
        if back is not None:
            async with self._pool.acquire() as conn:
                await conn.execute(query("warmup_add"), back[0], -back[1], self.account)

    async def hold(self, reason: str) -> bool:
        """Hold today's ramp for `reason`; True if this call held it."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(query("warmup_open_day"), self.account)
            return await conn.fetchval(query("warmup_hold"), reason, self.account) is not None

    @staticmethod
    def _day(row: Any, cap: int | None, granted: float) -> WarmupDay:
        taken = float(row["taken"]) + granted
        first = row["first_day"] if row["first_day"] is not None or not taken else row["today"]
        return WarmupDay(
            today=row["today"],
            day=row["day_no"],
            cap=cap,
            taken=taken,
            granted=granted,
            held_reason=row["held_reason"],
            first_day=first,
        )


class AccountCounts(Protocol):
    async def account_counts(self, window_seconds: float) -> Counts: ...


async def check_spike(
    store: WarmupStore, feedback: AccountCounts, settings: WarmupSettings, window_hours: float
) -> str | None:
    """Hold today's ramp if the account's rates show a spike; the reason if this call held it."""
    reason = spike_reason(await feedback.account_counts(window_hours * 3600.0), settings)
    if reason is not None and await store.hold(reason):
        log.warning("warmup.held", reason=reason)
        return reason
    return None


async def run_warmup(
    store: WarmupStore,
    gate: WarmupGate,
    settings: WarmupSettings,
    feedback: AccountCounts,
    window_hours: float,
    stop: asyncio.Event,
) -> None:
    """Until `stop`: keep the gate supplied (at once when it runs short), look at today's row
    every REFILL_LOOK s (a new day, another process's hold), and check for spikes."""
    short = asyncio.Event()
    gate.on_short = short.set

    async def relay_stop() -> None:
        await stop.wait()
        short.set()

    relay = asyncio.create_task(relay_stop(), name="warmup-stop")
    try:
        await _supply(store, gate, settings, feedback, window_hours, stop, short)
    finally:
        relay.cancel()
        gate.on_short = None


async def _supply(
    store: WarmupStore,
    gate: WarmupGate,
    settings: WarmupSettings,
    feedback: AccountCounts,
    window_hours: float,
    stop: asyncio.Event,
    short: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    next_check = loop.time()
    while not stop.is_set():
        short.clear()
        try:
            gate.apply(await store.take(gate.needs(settings.chunk)))
            if loop.time() >= next_check:
                next_check = loop.time() + settings.check_interval
                await check_spike(store, feedback, settings, window_hours)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            log.warning("warmup.db_unavailable", error=repr(exc))  # the gate keeps what it has
        await wait_event(short, REFILL_LOOK)


async def warmup_view(
    pool: asyncpg.Pool, settings: WarmupSettings, account: str = DEFAULT_ACCOUNT
) -> dict[str, Any] | None:
    """The warm-up of `account` for `dispatcher status` (--json: this dict); None when off."""
    if not settings.enabled:
        return None
    store = WarmupStore(pool, settings, account)
    day = await store.look()
    return {
        "day": day.day,
        "first_day": day.first_day.isoformat() if day.first_day is not None else None,
        "today_utc": day.today.isoformat(),
        "cap": day.cap,  # None: the schedule is over, only SES's quota applies
        "taken_today": day.taken,  # given out to processes: sent, or about to be
        "remaining_today": day.room,
        "held": day.held_reason,  # today's ramp is held (it does not advance) for this reason
        "days_held": await store.days_held(),
        "schedule_days": len(settings.caps),
    }


def print_warmup(view: dict[str, Any] | None, account: str | None = None) -> None:
    if view is None:
        return
    head = "warm-up" if account is None else f"warm-up of account {account}"
    if view["cap"] is None:
        print(f"{head}: over (day {view['day']}, after {view['schedule_days']} days of ramp)")
        return
    print(
        f"{head}: day {view['day']} of {view['schedule_days']}, cap {view['cap']:,} recipients "
        f"today (UTC), {view['taken_today']:,.0f} taken, {view['remaining_today']:,.0f} left"
    )
    if view["held"]:
        print(f"  HELD today (the ramp does not advance): {view['held']}")
    elif view["days_held"]:
        print(f"  {view['days_held']} day(s) held so far for bounce or complaint spikes")

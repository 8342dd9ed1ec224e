"""The warm-up's day rows in Postgres: concurrent takes never pass the cap, a spike holds the
ramp (the day number stays), and what is left goes back."""

from __future__ import annotations

import asyncio

from dispatcher.feedback.guard import Counts
from dispatcher.pacing.warmup import WarmupGate, WarmupSettings
from dispatcher.queue.repository import Queue
from dispatcher.worker.warmup_store import WarmupStore, check_spike, warmup_view

SETTINGS = WarmupSettings(enabled=True, schedule="100, 200, 400")


class Spike:
    async def account_counts(self, window_seconds: float) -> Counts:
        return Counts(sent=200, bounced=10, complained=0)  # 5 % hard bounces


async def test_concurrent_takes_stop_at_the_cap_and_a_spike_holds_the_ramp(queue: Queue) -> None:
    store = WarmupStore(queue.pool, SETTINGS)
    days = await asyncio.gather(*(store.take(7) for _ in range(40)))
    assert sum(d.granted for d in days) == 100  # 40 x 7 asked, the cap given, never more
    assert {d.day for d in days} == {1} and max(d.taken for d in days) == 100

    reason = await check_spike(store, Spike(), SETTINGS, window_hours=24)
    assert reason is not None and reason.startswith("warm-up held: account bounce rate 5%")
    assert await check_spike(store, Spike(), SETTINGS, window_hours=24) is None  # once a day
    view = await warmup_view(queue.pool, SETTINGS)
    assert view is not None and view["held"] == reason and view["days_held"] == 1

    # The next day (rows moved back one day): day 1 again, as it was held.
    async with queue.pool.acquire() as conn:
        await conn.execute("UPDATE dispatcher.warmup_days SET day = day - 1")
    gate = WarmupGate()
    gate.apply(await store.take(50))
    assert gate.day is not None and gate.day.day == 1 and gate.day.cap == 100
    await store.give_back(gate)  # unused room goes back for the other processes
    assert (await store.look()).taken == 0

"""Provider lanes' shared parts on a real Postgres: takes of a daily cap by concurrent processes
stop at the cap, a burst of DeliveryDelay events and soft bounces from one provider backs its
lane off (and the quiet period lifts it), MX answers are kept for every process."""

from __future__ import annotations

import asyncio
import json

from dispatcher.pacing.lanes import LaneSettings
from dispatcher.pacing.providers import ProviderSettings, ProviderTable
from dispatcher.queue.repository import Queue
from dispatcher.worker.lane_store import LaneStore, check_backoffs, lanes_view

SETTINGS = LaneSettings(backoff_events=5, backoff_window=300.0, backoff_quiet=600.0)


async def test_concurrent_takes_stop_at_the_daily_cap(queue: Queue) -> None:
    a, b = LaneStore(queue.pool), LaneStore(queue.pool)
    takes = await asyncio.gather(*(s.take("google", 70, 1000) for s in [a, b] * 10))
    assert sum(granted for _, granted, _ in takes) == 1000  # 20 x 70 asked, the cap given
    assert min(left for _, _, left in takes) == 0
    day = takes[0][0]
    await a.give_back(day, {"google": 30.0})  # a process's unused room, at exit
    assert (await b.take("google", 100, 1000))[1] == 30
    await a.add_sent({"google": 12, "yahoo": 3})
    await b.add_sent({"google": 1})
    assert await a.today() == {"google": (1000.0, 13), "yahoo": (0.0, 3)}


async def insert_soft_feedback(queue: Queue, domain: str, delays: int, soft_bounces: int) -> None:
    async with queue.pool.acquire() as conn:
        for i in range(delays):
            parsed = {"kind": "delivery_delay", "recipients": [{"address": f"d{i}@{domain}"}]}
            await conn.execute(
                "INSERT INTO dispatcher.events (sns_message_id, topic_arn, kind, event_type,"
                " raw, parsed) VALUES ($1, 't', 'delivery_delay', 'DeliveryDelay', '{}', $2)",
                f"delay-{domain}-{i}",
                json.dumps(parsed),
            )
        for i in range(soft_bounces):
            event_id = await conn.fetchval(
                "INSERT INTO dispatcher.events (sns_message_id, topic_arn, kind, event_type, raw)"
                " VALUES ($1, 't', 'bounce', 'Bounce', '{}') RETURNING id",
                f"bounce-{domain}-{i}",
            )
            await conn.execute(
                "INSERT INTO dispatcher.recipient_events (event_id, address, kind, bounce_type,"
                " occurred_at) VALUES ($1, $2, 'bounce', 'Transient', now())",
                event_id,
                f"b{i}@{domain}",
            )


async def test_a_burst_of_delays_backs_off_that_lane_only_and_quiet_lifts_it(queue: Queue) -> None:
    limits = [ProviderSettings("google", rate=5.0), ProviderSettings("yahoo", rate=5.0)]
    table = ProviderTable(limits)
    store = LaneStore(queue.pool)
    await store.mx_put({"workspace.example": ("google", ("aspmx.l.google.com",), 3600.0)})
    await insert_soft_feedback(queue, "gmail.com", delays=3, soft_bounces=0)
    await insert_soft_feedback(queue, "workspace.example", delays=0, soft_bounces=2)
    await insert_soft_feedback(queue, "yahoo.com", delays=2, soft_bounces=2)

    found = await check_backoffs(store, table, ["google", "yahoo"], SETTINGS)
    assert list(found) == ["google"]  # 5 from google (one by MX), 4 from yahoo
    assert found["google"].reason.startswith("5 delivery delays or soft bounces")
    view = await lanes_view(queue.pool, limits)
    assert view is not None
    assert {lane["provider"]: lane["backed_off"] for lane in view} == {
        "google": found["google"].reason,
        "yahoo": None,
    }

    # The burst is over (the events age out of the window), but the lane stays slowed until
    # backoff_quiet has passed since the last burst: move the row's clock back.
    async with queue.pool.acquire() as conn:
        await conn.execute("UPDATE dispatcher.events SET received_at = now() - interval '1 hour'")
        await conn.execute(
            "UPDATE dispatcher.recipient_events SET occurred_at = now() - interval '1 hour'"
        )
    assert list(await check_backoffs(store, table, ["google", "yahoo"], SETTINGS)) == ["google"]
    async with queue.pool.acquire() as conn:
        await conn.execute(
            "UPDATE dispatcher.lane_backoffs SET last_burst = now() - interval '601 seconds'"
        )
    assert await check_backoffs(store, table, ["google", "yahoo"], SETTINGS) == {}
    assert await store.backoffs() == {}


async def test_mx_answers_are_shared_and_expire(queue: Queue) -> None:
    a, b = LaneStore(queue.pool), LaneStore(queue.pool)
    await a.mx_put(
        {
            "workspace.example": ("google", ("aspmx.l.google.com",), 3600.0),
            "old.example": ("microsoft", ("x.mail.protection.outlook.com",), 0.001),
        }
    )
    await asyncio.sleep(0.01)
    assert await b.mx_cached(["workspace.example", "old.example", "new.example"]) == {
        "workspace.example": "google"
    }

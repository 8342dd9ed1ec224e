"""Provider lanes' shared parts on a real Postgres: takes of a daily cap by concurrent processes
stop at the cap, a burst of DeliveryDelay events and soft bounces from one provider backs its
lane off (and the quiet period lifts it), MX answers are kept for every process."""

from __future__ import annotations

import asyncio
import json

from dispatcher.domain.jobs import ClaimedJob
from dispatcher.domain.message import OutgoingMessage
from dispatcher.pacing.lanes import Backoff, LaneSettings
from dispatcher.pacing.providers import ProviderSettings, ProviderTable
from dispatcher.queue.repository import Queue
from dispatcher.worker.lane_gate import Lanes
from dispatcher.worker.lane_store import LaneStore, check_backoffs, lanes_view, run_lanes
from tests.support.dns_server import dns_server

SETTINGS = LaneSettings(backoff_events=5, backoff_window=300.0, backoff_quiet=600.0)


def claimed(address: str) -> ClaimedJob:
    msg = OutgoingMessage(id=1, from_addr="news@example.com", to=(address,), subject="Hi")
    return ClaimedJob(token=1, attempts=0, priority=0, message=msg)


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


async def test_each_accounts_lanes_are_shown_with_its_own_numbers(queue: Queue) -> None:
    limits = [ProviderSettings(name="google", rate=5.0, daily_cap=100)]
    await LaneStore(queue.pool, "brand-a").add_sent({"google": 7})
    await LaneStore(queue.pool, "brand-b").take("google", 40, 100)
    await LaneStore(queue.pool, "brand-b").add_sent({"google": 2})
    a = await lanes_view(queue.pool, limits, waiting=False, account="brand-a")
    b = await lanes_view(queue.pool, limits, waiting=False, account="brand-b")
    assert a is not None and b is not None
    assert (a[0]["sent_today"], a[0]["cap_left"]) == (7, 100)
    assert (b[0]["sent_today"], b[0]["cap_left"], b[0]["waiting"]) == (2, 60, None)


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


async def test_the_lanes_loop_answers_mx_supplies_room_and_follows_backoffs(queue: Queue) -> None:
    """The daemon's lanes loop: a domain of unknown MX parked in the gate is looked up (DNS on
    127.0.0.1) and its mail goes in google's lane; a capped lane gets its room from Postgres;
    a back-off row slows the lane; at exit the unused room goes back."""
    limits = [ProviderSettings("google", rate=10.0, daily_cap=500)]
    zone = {("workspace.example", "MX"): ["1 aspmx.l.google.com."]}
    async with dns_server(zone) as ns:
        settings = LaneSettings(nameservers=ns.address, mx_wait=30.0, check_interval=0.05)
        lanes = Lanes(limits, settings, share=lambda: 1.0)
        woken = asyncio.Event()
        lanes.on_ready = woken.set
        store = LaneStore(queue.pool)
        stop = asyncio.Event()
        loop = asyncio.create_task(run_lanes(store, lanes, stop))
        try:
            job = claimed("jo@workspace.example")
            assert lanes.enter(job).what == "parked"  # MX unknown: waits for the lookup
            for _ in range(100):  # the loop answers it (and wakes the intake) within moments
                await asyncio.wait_for(woken.wait(), 10)
                woken.clear()
                if (ready := lanes.pop_ready()) is not None:
                    break
            assert ready is job and ns.asked == [("workspace.example", "MX")]
            for _ in range(100):  # the room arrives with the loop's next round
                if (entry := lanes.enter(job)).what == "go":
                    break
                assert entry.what == "parked"
                lanes.take_parked()
                await asyncio.sleep(0.05)
            assert entry.what == "go" and lanes.gate.lanes["google"].sent == 1
            assert await store.mx_cached(["workspace.example"]) == {"workspace.example": "google"}

            await store.set_backoff("google", Backoff("a burst", 0.0, 9e9))
            for _ in range(100):
                if lanes.gate.lanes["google"].backoff is not None:
                    break
                await asyncio.sleep(0.05)
            assert lanes.gate.view(0.0)[0]["rate_now"] == 5.0  # halved
        finally:
            stop.set()
            lanes.wake.set()
            await asyncio.wait_for(loop, 10)
    taken, sent = (await store.today())["google"]
    assert (taken, sent) == (1.0, 1)  # 100 taken, 99 given back at exit; one admitted

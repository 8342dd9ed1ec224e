"""InFlightLimit: the send slots follow rate x SES latency, between a floor and the ceiling;
and Slots, the gate whose limit moves while slots are taken."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.pacing.inflight import (
    FLOOR,
    MARGIN,
    PRIOR_SECONDS,
    REFRESH_SECONDS,
    WINDOW_SECONDS,
    InFlightLimit,
)
from dispatcher.worker.slots import Slots


def feed(
    limit: InFlightLimit, seconds: float, count: int, start: float, rate: float, per_call: int = 1
) -> float:
    """`count` calls answered at `rate` calls a second from `start`, each after holding its
    slot `seconds`; returns the time of the last answer."""
    now = start
    for i in range(count):
        now = start + i / rate
        limit.observe(seconds, per_call, now)
    return now


def test_before_any_answer_the_prior_latency_sizes_the_slots() -> None:
    limit = InFlightLimit(1000)
    assert limit.limit(1000.0, 0.0) == round(1000 * PRIOR_SECONDS * MARGIN)


def test_a_slower_region_gets_more_slots_and_a_faster_one_fewer() -> None:
    limit = InFlightLimit(1000)
    now = feed(limit, 0.2, 500, 0.0, 1000.0)  # SES from another region: 200 ms
    assert limit.limit(1000.0, now + REFRESH_SECONDS) == 300  # 1000/s x 0.2 s x 1.5
    # SES answers in 20 ms now: once most of the recent calls say so, the slots shrink.
    now = feed(limit, 0.02, 500, now + 0.001, 1000.0)
    assert limit.limit(1000.0, now + REFRESH_SECONDS) == 30


def test_the_slots_follow_a_raised_rate_at_once() -> None:
    limit = InFlightLimit(1000)
    now = feed(limit, 0.2, 200, 0.0, 100.0)
    assert limit.limit(100.0, now + 0.5) == 30
    # GetSendQuota reports a higher MaxSendRate: no need to wait for new answers.
    assert limit.limit(2000.0, now + 0.5) == 600


def test_the_tail_counts_not_the_median() -> None:
    """SES's latency has a tail: the slots are sized by its 95th percentile."""
    limit = InFlightLimit(1000)
    now = 0.0
    for i in range(1000):
        now = i / 1000
        limit.observe(0.5 if i % 10 == 0 else 0.05, 1, now)  # 10 % of the calls take 0.5 s
    assert limit.latency == PRIOR_SECONDS  # nothing recomputed before the first refresh
    assert limit.limit(1000.0, now + REFRESH_SECONDS) == 750
    assert limit.latency == 0.5


def test_floor_and_ceiling() -> None:
    limit = InFlightLimit(64)
    now = feed(limit, 0.06, 100, 0.0, 14.0)
    assert limit.limit(14.0, now + 1.0) == FLOOR  # 14/s x 60 ms needs 1.3: the floor
    assert limit.limit(5000.0, now + 1.0) == 64  # the configured ceiling holds
    assert limit.limit(float("inf"), now + 1.0) == 64  # no rate limit: all the ceiling
    small = InFlightLimit(5)
    assert small.limit(1.0, 0.0) == 5  # a ceiling under the floor wins


def test_bulk_calls_carry_many_recipients_so_fewer_slots_do() -> None:
    limit = InFlightLimit(1000)
    now = feed(limit, 0.2, 400, 0.0, 60.0, per_call=50)  # SendBulkEmail, 50 a call
    # 3,000 recipients/s are 60 calls/s: 60 x 0.2 x 1.5 = 18 slots, not 900.
    assert limit.limit(3000.0, now + 1.0) == 18


def test_old_answers_stop_counting_but_an_idle_spell_keeps_the_estimate() -> None:
    limit = InFlightLimit(1000)
    now = feed(limit, 0.2, 100, 0.0, 100.0)
    assert limit.limit(100.0, now + 1.0) == 30
    # Idle for a minute: no new answers, the last estimate stands (not the prior).
    later = now + 60.0
    assert limit.limit(100.0, later) == 30
    # Then answers come in 40 ms: the old 200 ms ones are outside the window.
    now = feed(limit, 0.04, 5, later, 100.0)
    assert limit.limit(100.0, now + REFRESH_SECONDS) == FLOOR
    assert limit.latency == pytest.approx(0.04)
    assert WINDOW_SECONDS < 60.0


def test_refresh_is_rate_limited() -> None:
    limit = InFlightLimit(1000)
    now = feed(limit, 0.1, 100, 0.0, 1000.0)
    assert limit.limit(1000.0, now) == 150
    limit.observe(2.0, 1, now)  # a burst of slow answers right after a refresh
    for _ in range(20):
        limit.observe(2.0, 1, now)
    assert limit.limit(1000.0, now + REFRESH_SECONDS / 2) == 150  # not yet recomputed
    assert limit.limit(1000.0, now + REFRESH_SECONDS) == 1000  # 2 s x 1000/s x 1.5: ceiling


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="ceiling"):
        InFlightLimit(0)
    with pytest.raises(ValueError, match="margin"):
        InFlightLimit(10, margin=0.0)


async def test_slots_follow_a_moving_limit() -> None:
    slots = Slots(2)
    await slots.acquire()
    await slots.acquire()
    third = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert not third.done()  # full
    slots.set_limit(3)  # more slots: the waiter goes at once
    await asyncio.wait_for(third, 1.0)
    assert (slots.taken, slots.limit) == (3, 3)
    slots.set_limit(1)  # fewer: none taken back, the next waits until two are released
    fourth = asyncio.create_task(slots.acquire())
    slots.release()
    slots.release()
    await asyncio.sleep(0)
    assert not fourth.done()
    slots.release()
    await asyncio.wait_for(fourth, 1.0)
    assert slots.taken == 1


async def test_a_cancelled_waiter_gives_its_slot_on() -> None:
    slots = Slots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    slots.release()
    await asyncio.wait_for(second, 1.0)
    assert slots.taken == 1


async def test_a_slot_handed_to_a_waiter_cancelled_meanwhile_is_not_lost() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # handed to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.taken == 0
    await asyncio.wait_for(slots.acquire(), 1.0)  # and the slot is there for the next one

"""wait_event: the timed wait every stoppable loop of the daemon uses."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.clock import wait_event


async def test_a_stop_that_arrives_with_new_mail_stops_the_loop() -> None:
    # A claim loop waits for a NOTIFY (the event) or its next poll; shutdown cancels it. When the
    # NOTIFY and the cancel land in the same loop turn, Python 3.11's wait_for returned the
    # event's result and dropped the cancel: the loop went on and the daemon never stopped
    # (seen in CI as a `run` that outlived its stop by 30 s).
    wake = asyncio.Event()
    rounds = 0

    async def claim_loop() -> None:
        nonlocal rounds
        while True:
            await wait_event(wake, 10.0)
            wake.clear()
            rounds += 1

    task = asyncio.create_task(claim_loop())
    await asyncio.sleep(0)  # the loop now waits
    wake.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1.0)
    assert rounds == 0


async def test_it_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5.0) is True
    assert await wait_event(event, 0.0) is True  # already set: no wait at all

"""Injected time: pacing, leases and backoff take a clock so tests move time instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds on a monotonic scale."""
        ...


def monotonic() -> float:
    return time.monotonic()


def loop_time(clock: Clock | None = None) -> float:
    """`clock()` if given, else the running loop's time (monotonic outside a loop: the default
    loop's clock), so timers set with loop.call_later agree with it."""
    if clock is not None:
        return clock()
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; True if it is set.

    Not `asyncio.wait_for(event.wait(), seconds)`: on Python 3.11 that swallows a cancel which
    arrives in the same loop turn as the event (it returns the event's result instead), so a
    loop told to stop at that moment goes on. `asyncio.timeout` counts cancels and never does.
    """
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()

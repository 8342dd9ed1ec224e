"""Injected time: pacing, leases and backoff take a clock so tests move time instead of sleeping."""

from __future__ import annotations

import asyncio
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

"""Virtual time for the pacing tests: an event loop whose clock jumps to the next timer.

`run_virtual(main())` runs a coroutine on a real selector event loop whose `time()` is
virtual: when no callback is ready the loop advances its clock to the next timer instead of
sleeping, so a minute of pacing takes milliseconds, and aiolimiter (which reads `loop.time()`
and schedules `loop.call_at`) runs unmodified. Also a tiny self-check of the loop itself.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

START = 1000.0  # virtual time at loop start: far from 0 so no code path mistakes it for unset
_TICK = 1e-9  # the least a loop iteration advances: a real clock never stands still either


class _VirtualSelector(selectors.DefaultSelector):
    """Polls real file descriptors without blocking; waiting just moves the virtual clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events:
            return events
        if timeout is None:
            raise RuntimeError("virtual-time deadlock: every task waits and no timer is set")
        self.now += max(timeout, _TICK)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run() on a VirtualTimeLoop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def test_virtual_loop_jumps_time_instead_of_sleeping() -> None:
    import time

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return start, loop.time()

    wall = time.monotonic()
    start, end = run_virtual(main())
    assert end - start >= 3600
    assert end - start < 3600.001
    assert time.monotonic() - wall < 1.0

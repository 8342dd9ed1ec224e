"""Group commit: concurrent callers share statements and each gets its own result."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from dispatcher.worker.batcher import Batcher


async def test_concurrent_submits_share_flushes_and_keep_their_results() -> None:
    calls: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        await asyncio.sleep(0.01)  # while this runs, the next batch piles up
        return [i * 10 for i in items]

    b: Batcher[int, int] = Batcher(flush, max_batch=50)
    b.start()
    results = await asyncio.gather(*(b.submit(i) for i in range(200)))
    await b.close()
    assert results == [i * 10 for i in range(200)]
    assert sorted(x for call in calls for x in call) == list(range(200))
    assert len(calls) < 200 / 2  # batched, not one statement per item
    assert max(len(c) for c in calls) <= 50


async def test_a_failed_flush_fails_its_callers_only() -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        if 3 in items:
            raise RuntimeError("db down")
        return list(items)

    b: Batcher[int, int] = Batcher(flush, max_batch=1)
    b.start()
    with pytest.raises(RuntimeError, match="db down"):
        await b.submit(3)
    assert await b.submit(4) == 4
    await b.close()


async def test_close_flushes_what_was_submitted() -> None:
    seen: list[int] = []

    async def flush(items: Sequence[int]) -> list[None]:
        seen.extend(items)
        return [None] * len(items)

    b: Batcher[int, None] = Batcher(flush, linger=5.0)  # would wait long without close
    b.start()
    task = asyncio.create_task(b.submit(1))
    await asyncio.sleep(0)
    await asyncio.wait_for(b.close(), 1.0)
    await task
    assert seen == [1]


async def test_a_cancelled_waiter_still_has_its_item_flushed() -> None:
    """What shutdown relies on: a settle whose waiter is cancelled is still written."""
    seen: list[int] = []

    async def flush(items: Sequence[int]) -> list[int]:
        seen.extend(items)
        return list(items)

    b: Batcher[int, int] = Batcher(flush, linger=0.05)
    b.start()
    waiter = asyncio.create_task(b.submit(7))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await b.submit(8) == 8
    await b.close()
    assert seen == [7, 8]

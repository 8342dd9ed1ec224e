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


async def test_items_put_without_a_waiter_are_flushed_and_their_failure_reported() -> None:
    """A send's result is written with nobody waiting for it (the send's task has ended): it
    still goes in a group commit, `wait_idle` tells when it is written, and a failed write
    reaches `on_error` (the worker stops) instead of vanishing."""
    written: list[int] = []
    errors: list[BaseException] = []

    async def flush(items: Sequence[int]) -> list[None]:
        await asyncio.sleep(0.01)
        if 13 in items:
            raise RuntimeError("db down")
        written.extend(items)
        return [None] * len(items)

    b: Batcher[int, None] = Batcher(flush, max_batch=10, on_error=errors.append)
    b.start()
    for i in range(5):
        b.put_nowait(i)
    assert b.busy
    await b.wait_idle()
    assert written == [0, 1, 2, 3, 4] and not b.busy and errors == []
    b.put_nowait(13)
    await b.wait_idle()
    assert [str(e) for e in errors] == ["db down"]
    await b.close()


async def test_hurry_cuts_the_linger_short_for_someone_waiting() -> None:
    """A drain that waits for the last results to be written does not wait out the linger."""
    flushed: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[None]:
        flushed.append(list(items))
        return [None] * len(items)

    b: Batcher[int, None] = Batcher(flush, linger=30.0)
    b.start()
    b.put_nowait(1)
    b.put_nowait(2)
    await asyncio.sleep(0)  # the batcher lingers now
    b.hurry()
    async with asyncio.timeout(1.0):
        await b.wait_idle()
    assert flushed == [[1, 2]]
    await b.close()

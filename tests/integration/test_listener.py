"""The LISTEN connection of a worker goes back to the pool whatever moment the worker stops at:
a stop while it was being set up used to keep it, and closing the pool then waited forever."""

from __future__ import annotations

import asyncio

import asyncpg  # type: ignore[import-untyped]

from dispatcher.worker.listener import Listener


async def test_a_listener_cancelled_while_it_starts_gives_its_connection_back(
    pg_dsn: str,
) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    try:
        channels = {f"ch{i}": asyncio.Event() for i in range(3)}
        # Cancel after 0, 1, 2, ... loop turns: one of them lands between taking the connection
        # and the last LISTEN, which is what a worker stopping during its start-up does.
        for turns in range(40):
            listener = Listener(pool, channels)
            task = asyncio.create_task(listener.ensure())
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await listener.close()
            async with asyncio.timeout(2):  # the pool's one connection is free again
                async with pool.acquire() as conn:
                    assert await conn.fetchval("SELECT 1") == 1
    finally:
        await asyncio.wait_for(pool.close(), 10)

"""Group commit: many concurrent callers, one database statement per batch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from dispatcher.clock import wait_event

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Collects items from many tasks and hands them to `flush` in batches.

    While one flush runs, new items pile up and go together in the next one, so the batch size
    follows the load by itself (no fixed timer on the hot path). `linger` (seconds) optionally
    waits a little for more items when the load is light, trading latency for fewer statements.
    `flush` returns one result per item, in order. A failed flush fails every caller of it.
    """

    __slots__ = (
        "_close_requested",
        "_closing",
        "_flush",
        "_linger",
        "_max_batch",
        "_name",
        "_pending",
        "_task",
        "_wakeup",
    )

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 500,
        linger: float = 0.0,
        name: str = "batcher",
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._linger = linger
        self._name = name
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._close_requested = asyncio.Event()  # cuts a linger short

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    def put(self, item: T) -> asyncio.Future[R]:
        """Queue `item` for the next flush; its result, to await. The item is flushed even if
        the future is cancelled (a cancelled waiter only stops waiting), so no shield is needed:
        it cost a future and three callbacks per item on the hot path."""
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if not self._wakeup.is_set():
            self._wakeup.set()
        return fut

    async def submit(self, item: T) -> R:
        """Queue `item` for the next flush and wait for its result."""
        return await self.put(item)

    async def close(self) -> None:
        """Flush everything submitted so far, then stop."""
        self._closing = True
        self._close_requested.set()
        self._wakeup.set()
        task = self._task
        if task is not None:
            await task
        while self._pending:  # never started, or items submitted during close
            await self._flush_some()

    async def _run(self) -> None:
        while not self._closing or self._pending:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._linger > 0 and not self._closing and len(self._pending) < self._max_batch:
                await wait_event(self._close_requested, self._linger)
            while self._pending:
                await self._flush_some()

    async def _flush_some(self) -> None:
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        try:
            results = await self._flush([item for item, _ in batch])
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if isinstance(exc, Exception):
                return
            raise
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)

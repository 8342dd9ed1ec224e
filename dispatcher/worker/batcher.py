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
    `flush` returns one result per item, in order. A failed flush fails every caller of it;
    items put without a waiter (`put_nowait`) report it to `on_error` instead.
    """

    __slots__ = (
        "_closing",
        "_flush",
        "_hurry",
        "_idle",
        "_linger",
        "_max_batch",
        "_name",
        "_on_error",
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
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._linger = linger
        self._name = name
        self._on_error = on_error
        self._pending: list[tuple[T, asyncio.Future[R] | None]] = []
        self._idle = asyncio.Event()  # nothing pending and no flush running
        self._idle.set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._hurry = asyncio.Event()  # cuts a linger short: closing, or someone waits (`hurry`)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    def put(self, item: T) -> asyncio.Future[R]:
        """Queue `item` for the next flush; its result, to await. The item is flushed even if
        the future is cancelled (a cancelled waiter only stops waiting), so no shield is needed:
        it cost a future and three callbacks per item on the hot path."""
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        self._idle.clear()
        if not self._wakeup.is_set():
            self._wakeup.set()
        return fut

    def put_nowait(self, item: T) -> None:
        """Queue `item` for the next flush with nobody waiting for its result (no future, no
        task step per item); a failed flush of it goes to `on_error`."""
        self._pending.append((item, None))
        self._idle.clear()
        if not self._wakeup.is_set():
            self._wakeup.set()

    @property
    def busy(self) -> bool:
        """Items are pending or being flushed."""
        return not self._idle.is_set()

    async def wait_idle(self) -> None:
        """Until everything put so far is flushed (or its flush failed)."""
        await self._idle.wait()

    def hurry(self) -> None:
        """Flush what is pending without waiting out the linger (someone waits for it)."""
        self._hurry.set()

    async def submit(self, item: T) -> R:
        """Queue `item` for the next flush and wait for its result."""
        return await self.put(item)

    async def close(self) -> None:
        """Flush everything submitted so far, then stop."""
        self._closing = True
        self._hurry.set()
        self._wakeup.set()
        task = self._task
        if task is not None:
            await task
        while self._pending:  # never started, or items submitted during close
            await self._flush_some()
        self._idle.set()

    async def _run(self) -> None:
        while not self._closing or self._pending:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._linger > 0 and not self._closing and len(self._pending) < self._max_batch:
                await wait_event(self._hurry, self._linger)
                if not self._closing:
                    self._hurry.clear()
            while self._pending:
                await self._flush_some()
            self._idle.set()

    async def _flush_some(self) -> None:
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        try:
            results = await self._flush([item for item, _ in batch])
        except BaseException as exc:
            unwaited = False
            for _, fut in batch:
                if fut is None:
                    unwaited = True
                elif not fut.done():
                    fut.set_exception(exc)
            if unwaited and self._on_error is not None and isinstance(exc, Exception):
                self._on_error(exc)
            if isinstance(exc, Exception):
                return
            raise
        for (_, fut), result in zip(batch, results, strict=True):
            if fut is not None and not fut.done():
                fut.set_result(result)

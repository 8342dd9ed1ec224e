"""Upkeep: keep this worker's lease, take back the jobs of workers that died, finish campaigns
with nothing left to send (whichever daemon notices first)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import structlog

from dispatcher.clock import wait_event
from dispatcher.domain.retry import InDoubtPolicy
from dispatcher.queue.store import JobStore
from dispatcher.worker.listener import Listener

__all__ = ["Upkeep"]

log = structlog.get_logger()


class Upkeep:
    """Every `heartbeat_seconds`: heartbeat (re-register if declared dead), recovery, campaigns."""

    def __init__(
        self,
        store: JobStore,
        owner: uuid.UUID,
        *,
        lease_seconds: float,
        heartbeat_seconds: float,
        in_doubt: InDoubtPolicy,
        listener: Listener | None = None,
        finish_campaigns: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._store = store
        self._owner = owner
        self._lease_seconds = lease_seconds
        self._interval = heartbeat_seconds
        self._in_doubt = in_doubt
        self._listener = listener
        self._finish_campaigns = finish_campaigns

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.once()
            await wait_event(stop, self._interval)

    async def once(self) -> None:
        if self._listener is not None:  # (again, if a restart cut its connection)
            await self._listener.ensure()
        if not await self._store.heartbeat(self._owner):
            log.warning("worker.lease_lost")
            await self._store.register_worker(self._owner, self._lease_seconds)
        recovered = await self._store.recover(self._in_doubt)
        if recovered.requeued or recovered.in_doubt:
            log.warning(
                "queue.recovered",
                requeued=recovered.requeued,
                in_doubt=recovered.in_doubt,
                policy=self._in_doubt,
            )
        if self._finish_campaigns is not None:
            await self._finish_campaigns()

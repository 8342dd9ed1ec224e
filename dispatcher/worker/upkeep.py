"""Upkeep: keep this worker's lease and session lock, take back the jobs of workers that died,
finish campaigns with nothing left to send (whichever daemon notices first).

A worker that dies is found by its session lock, which Postgres frees when its process ends:
every PROBE_SECONDS each worker holds (or takes again) its own lock, renews its heartbeat and
recovers the jobs of workers whose lock is free and whose heartbeat is older than
SESSION_GRACE_TICKS probes (a live worker whose lock connection was cut takes it again at its
next probe, before that). Leases stay the fallback for a worker alive but stuck.
"""

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

# How often a worker looks for dead ones (at most heartbeat_seconds). A worker killed right
# after its heartbeat is found SESSION_GRACE_TICKS + up to one probe later: 0.75-1.0 s here, so
# its claimed mail is back in the queue with time to be sent within 2 s of the kill (bench.kill).
# Two short statements per probe and process (heartbeat, recover).
PROBE_SECONDS = 0.25
SESSION_GRACE_TICKS = 3  # a free lock counts once the heartbeat is this many probes old


class Upkeep:
    """Every probe: session lock, heartbeat (re-register if declared dead), recovery; every
    `heartbeat_seconds`: the LISTEN connection and campaigns."""

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
        on_recovered: Callable[[int], None] | None = None,  # jobs requeued from the dead
    ) -> None:
        self._on_recovered = on_recovered
        self._store = store
        self._owner = owner
        self._lease_seconds = lease_seconds
        self._interval = heartbeat_seconds
        self._probe = min(PROBE_SECONDS, heartbeat_seconds)
        self.session_grace = SESSION_GRACE_TICKS * self._probe
        self._session_held: bool | None = None
        self._in_doubt = in_doubt
        self._listener = listener
        self._finish_campaigns = finish_campaigns

    async def run(self, stop: asyncio.Event) -> None:
        every = max(1, round(self._interval / self._probe))
        tick = 0
        while not stop.is_set():
            await self.probe()
            if tick % every == 0:
                await self.slow()
            tick += 1
            await wait_event(stop, self._probe)

    async def once(self) -> None:
        await self.probe()
        await self.slow()

    async def probe(self) -> None:
        """Lock, heartbeat, recovery: three short statements, or two while the lock is held."""
        held = await self._store.hold_session(self._owner)
        if held != self._session_held:  # said once per change, not every probe
            if not held:
                log.warning("worker.session_lock_not_taken")
            self._session_held = held
        if not await self._store.heartbeat(self._owner):
            log.warning("worker.lease_lost")
            await self._store.register_worker(self._owner, self._lease_seconds)
        recovered = await self._store.recover(self._in_doubt, self.session_grace)
        if recovered.requeued and self._on_recovered is not None:
            self._on_recovered(recovered.requeued)
        if recovered.requeued or recovered.in_doubt:
            log.warning(
                "queue.recovered",
                requeued=recovered.requeued,
                in_doubt=recovered.in_doubt,
                policy=self._in_doubt,
            )

    async def slow(self) -> None:
        if self._listener is not None:  # (again, if a restart cut its connection)
            await self._listener.ensure()
        if self._finish_campaigns is not None:
            await self._finish_campaigns()

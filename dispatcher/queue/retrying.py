"""Outage retry, applied once: a JobStore whose every call rides out a Postgres restart.

While the database is unreachable a call is retried with backoff for up to `give_up_after`
seconds, then DatabaseError (at once once `stop` is set: a shutdown does not wait out an
outage); any other error is raised at once (`outage.while_down`). A claim cut off mid-way may
have committed without us hearing the answer: before the next claim, jobs claimed in our name
that we do not hold go back to the queue (never seen, so never sent).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog

from dispatcher.db.outage import connection_lost, while_down
from dispatcher.domain.jobs import ClaimedJob, Held, Peers, Pending, Recovered, Settlement
from dispatcher.domain.retry import InDoubtPolicy
from dispatcher.queue.store import JobStore

__all__ = ["RetryingStore"]

log = structlog.get_logger()
_R = TypeVar("_R")


class RetryingStore:
    """`store`, with every call retried through an outage."""

    def __init__(
        self, store: JobStore, *, give_up_after: float, stop: asyncio.Event | None = None
    ) -> None:
        self._store = store
        self._give_up_after = give_up_after
        self._stop = stop  # once set, an outage is not waited out (shutdown)
        self._cut: set[uuid.UUID] = set()  # owners whose last claim was cut off
        # The ids a worker holds, asked for before claiming again after a cut.
        self.holding: Callable[[], Sequence[int]] = list

    async def _retry(self, what: str, op: Callable[[], Awaitable[_R]]) -> _R:
        return await while_down(op, what=what, give_up_after=self._give_up_after, stop=self._stop)

    async def claim(self, owner: uuid.UUID, limit: int) -> list[ClaimedJob]:
        return await self._retry(
            "claim", lambda: self._claim(owner, lambda: self._store.claim(owner, limit))
        )

    async def claim_screened(
        self, owner: uuid.UUID, limit: int
    ) -> tuple[list[ClaimedJob], frozenset[str] | None]:
        return await self._retry(
            "claim", lambda: self._claim(owner, lambda: self._store.claim_screened(owner, limit))
        )

    async def _claim(self, owner: uuid.UUID, claim: Callable[[], Awaitable[_R]]) -> _R:
        """One attempt of a claim; one cut off before releases what it may have claimed."""
        try:
            if owner in self._cut:
                orphans = await self._store.release_orphans(owner, self.holding())
                if orphans:
                    log.warning("queue.orphans_released", count=orphans)
                self._cut.discard(owner)
            return await claim()
        except Exception as exc:
            if connection_lost(exc):
                self._cut.add(owner)
            raise

    async def launch(
        self, owner: uuid.UUID, jobs: Sequence[ClaimedJob] | Sequence[tuple[int, int]]
    ) -> set[int]:
        return await self._retry("launch", lambda: self._store.launch(owner, jobs))

    async def settle(self, settlements: Sequence[Settlement]) -> set[int]:
        return await self._retry("settle", lambda: self._store.settle(settlements))

    async def release(
        self, owner: uuid.UUID, ids: Sequence[int], delay: float = 0.0, *, scheduled: bool = False
    ) -> int:
        return await self._retry(
            "release", lambda: self._store.release(owner, ids, delay, scheduled=scheduled)
        )

    async def release_orphans(self, owner: uuid.UUID, held: Sequence[int]) -> int:
        return await self._retry("release", lambda: self._store.release_orphans(owner, held))

    async def register_worker(self, owner: uuid.UUID, lease_seconds: float) -> None:
        await self._retry("heartbeat", lambda: self._store.register_worker(owner, lease_seconds))

    async def heartbeat(self, owner: uuid.UUID) -> bool:
        return await self._retry("heartbeat", lambda: self._store.heartbeat(owner))

    async def unregister_worker(self, owner: uuid.UUID) -> None:
        await self._retry("unregister", lambda: self._store.unregister_worker(owner))

    async def hold_session(self, owner: uuid.UUID) -> bool:
        return await self._retry("heartbeat", lambda: self._store.hold_session(owner))

    async def end_session(self, owner: uuid.UUID) -> None:
        await self._store.end_session(owner)  # only gives a connection back

    async def recover(
        self, in_doubt: InDoubtPolicy, session_grace: float | None = None
    ) -> Recovered:
        return await self._retry("recovery", lambda: self._store.recover(in_doubt, session_grace))

    async def rate_share(self, owner: uuid.UUID, busy: bool, ttl: float) -> Peers:
        return await self._retry("rate share", lambda: self._store.rate_share(owner, busy, ttl))

    async def pending(self, horizon_seconds: float = 0.0) -> Pending:
        return await self._retry("drain check", lambda: self._store.pending(horizon_seconds))

    async def held(self) -> Held:
        return await self._retry("drain check", self._store.held)

    async def suppressed_among(self, addresses: Sequence[str]) -> set[str]:
        return await self._retry(
            "suppression check", lambda: self._store.suppressed_among(addresses)
        )

"""The rate share: several processes send for one account, each at MaxSendRate / (active ones).

Every SHARE_INTERVAL a worker marks itself active (for SHARE_TTL) while it has mail, counts the
others that are active, and paces at 1 / (them + us). An idle worker takes nothing; a dead one's
part comes back when its mark lapses (within SHARE_TTL). Its rank among them gives it its turns
of SES's one SendBulkEmail call a second (dispatcher.pacing.calls).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from dispatcher.clock import wait_event
from dispatcher.db.outage import connection_lost
from dispatcher.pacing import QuotaGovernor, RecipientLimiter
from dispatcher.pacing.calls import CallPacer
from dispatcher.queue.store import JobStore

__all__ = ["SHARE_CHANNEL", "SHARE_INTERVAL", "SHARE_TTL", "RateShare"]

SHARE_INTERVAL = 0.25  # seconds between rate-share updates
SHARE_TTL = 1.0  # seconds an active mark lasts: a dead process's part comes back this soon
SHARE_CHANNEL = "dispatcher_share"  # NOTIFYed when a worker starts sending (rate_share)


class RateShare:
    """Keeps this process's limiter and governor at its part of the account."""

    def __init__(
        self,
        store: JobStore,
        owner: uuid.UUID,
        limiter: RecipientLimiter,
        governor: QuotaGovernor,
        *,
        busy: Callable[[], bool],
        wake: asyncio.Event,
        bulk_calls: CallPacer | None = None,
    ) -> None:
        self._store = store
        self._owner = owner
        self._limiter = limiter
        self._governor = governor
        self._busy = busy
        self._wake = wake  # set by NOTIFY dispatcher_share: recount now
        self._bulk_calls = bulk_calls

    async def join(self) -> None:
        """Our part before the first send, with no saved-up burst: processes that start
        together (or join others that send) would otherwise burst together, past what SES
        tolerates."""
        await self._update(busy=True)
        self._limiter.spend_burst()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()  # a NOTIFY from now on means: count again
            try:
                await self._update(self._busy())
            except Exception as exc:
                if not connection_lost(exc):
                    raise  # keep the last share while the database is away
            await wait_event(self._wake, SHARE_INTERVAL)

    async def _update(self, busy: bool) -> None:
        peers = await self._store.rate_share(self._owner, busy, SHARE_TTL)
        n = peers.others + 1
        self._limiter.set_share(1.0 / n)
        self._governor.set_share(1.0 / n)  # and that part of the day's room left
        if self._bulk_calls is not None:
            self._bulk_calls.set_turn(peers.before, n)

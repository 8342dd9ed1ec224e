"""Recipients become mail as the campaign is sent, not at import (issue 19 item 5).

`campaign create` stores a list as narrow rows (campaign_recipients); a message row and a job
row per recipient would cost the import most of its time. Every worker process runs a
`Materialiser` that keeps, for each running campaign, a few seconds of sending ready to claim:
it moves the next recipients (list order) into messages + queued jobs, one transaction per
chunk that deletes them from campaign_recipients (so a crash never makes a recipient twice or
loses one), under the campaign row's lock taken with SKIP LOCKED (so processes and hosts never
materialise the same chunk, and a pause or cancel, which update that row, is never crossed:
paused and cancelled campaigns are not materialised). `campaign start` materialises the first
chunk itself, so the first claim finds mail.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.clock import wait_event
from dispatcher.db.outage import connection_lost
from dispatcher.db.sql import named_queries

__all__ = ["Ahead", "Materialiser", "materialise_chunk"]

query = named_queries("dispatcher.campaigns", "campaigns.sql")
log = structlog.get_logger()

CHUNK = 5000  # recipients per transaction: ~0.1-0.2 s of Postgres work, a short row lock
START_LEAD_SECONDS = 5.0  # a send_at campaign is materialised this long before it starts


@dataclass(frozen=True, slots=True)
class Ahead:
    """How much mail to keep ready per campaign: `seconds` of sending at the current rate,
    at least `floor`, at most `ceiling` (the claim's own read-ahead is half a second), refilled
    to that target once what is ready falls below `refill_below` of it. Not more: every look at
    what is ready walks it (materialise_due: 7.5 ms at 30,000 ready), so a look counts only up
    to the refill mark. And not in dribs: topping up after every look made a chunk of ~400
    recipients several times a second at 3,000/s, and each chunk and each count has a cost of
    its own (pg_stat_statements: 43 ms of Postgres per 420 recipients); refilling half the
    target at a time makes a chunk every ~1.5 s."""

    seconds: float = 3.0
    floor: int = 2000
    ceiling: int = 50_000
    refill_below: float = 0.5

    def target(self, rate: float) -> int:
        """Jobs to keep ready for a send rate of `rate` recipients/s."""
        return max(self.floor, min(self.ceiling, math.ceil(rate * self.seconds)))

    def mark(self, rate: float) -> int:
        """Below this many ready jobs the campaign is refilled: the count need go no further."""
        return max(1, math.ceil(self.target(rate) * self.refill_below))

    def wanted(self, rate: float, ready: int, unmaterialised: int) -> int:
        """How many recipients to materialise now (0: enough is ready)."""
        if ready >= self.mark(rate):
            return 0
        return max(0, min(unmaterialised, self.target(rate) - ready))


async def materialise_chunk(
    conn: asyncpg.Connection, campaign_id: int, limit: int, after: int = 0
) -> tuple[int, int]:
    """Move the recipients on `limit` lines of a campaign whose row this transaction holds
    locked into messages + queued jobs, from the first line left past `after` (every line up
    to it is moved already; fewer than `limit` where the list had rejected lines); how many it
    moved and the last line moved (`after` if none)."""
    row = await conn.fetchrow(query("materialise_chunk"), campaign_id, limit, after)
    if row is None or not row["made"]:
        return 0, after
    return int(row["made"]), int(row["last_line"])


class Materialiser:
    """Keeps each running campaign `Ahead` of its sending; one per worker process."""

    __slots__ = ("_ahead", "_chunk", "_done_to", "_interval", "_pool", "_rate")

    def __init__(
        self,
        pool: asyncpg.Pool,
        rate: Callable[[], float],
        *,
        ahead: Ahead | None = None,
        interval: float = 0.5,
        chunk: int | None = None,
    ) -> None:
        self._pool = pool
        self._rate = rate  # this process's send rate (recipients/s), read at every tick
        self._ahead = ahead if ahead is not None else Ahead()
        self._interval = interval
        self._chunk = chunk if chunk is not None else CHUNK
        # Per campaign, the last line this process moved: the next chunk starts past it.
        # (Another process moving more meanwhile only makes our next walk a little longer.)
        self._done_to: dict[int, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop`. An outage of Postgres is waited out here (a chunk is one
        transaction: nothing half done to repeat); the pool's other parts decide when an
        outage has lasted too long and stop the daemon."""
        down = False
        while not stop.is_set():
            try:
                made = await self.tick()
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                if not down:
                    log.warning("campaign.materialiser_waiting", error=repr(exc))
                    down = True
                await wait_event(stop, self._interval)
                continue
            if down:
                log.info("campaign.materialiser_back")
                down = False
            if not made:  # more at once when behind; otherwise look again shortly
                await wait_event(stop, self._interval)

    async def tick(self) -> int:
        """One look at every running campaign; how many recipients became jobs."""
        rate = self._rate()
        async with self._pool.acquire() as conn:
            due = await conn.fetch(
                query("materialise_due"), START_LEAD_SECONDS, self._ahead.mark(rate)
            )
        made = 0
        for row in due:
            want = self._ahead.wanted(rate, row["ready"], row["unmaterialised"])
            if want > 0:
                made += await self.campaign(row["id"], min(want, self._chunk))
        if len(self._done_to) > 2 * len(due):  # campaigns that ended
            running = {row["id"] for row in due}
            self._done_to = {k: v for k, v in self._done_to.items() if k in running}
        return made

    async def campaign(self, campaign_id: int, limit: int) -> int:
        """One chunk of one campaign, unless another process is at it or it stopped running."""
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(query("materialise_lock"), campaign_id) is None:
                return 0
            made, last = await materialise_chunk(
                conn, campaign_id, limit, self._done_to.get(campaign_id, 0)
            )
        self._done_to[campaign_id] = last  # only once committed: else those lines are still due
        if made:
            log.debug("campaign.materialised", campaign_id=campaign_id, recipients=made)
        return made

"""The pruner: removes what `[retention]` says is due, in short batches, one process at a time.

Each batch is its own statement and transaction over at most `batch_size` rows (fewer when a
batch was slow, see BatchSizer) taken with SKIP LOCKED, so the queue's claim and settle never
wait for it. A session advisory lock makes one pruner run at a time across processes and hosts;
the others skip their turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.config.settings import RetentionSettings
from dispatcher.db.sql import named_queries
from dispatcher.retention.policy import BatchSizer, Cutoff, content_since, cutoffs

query = named_queries("dispatcher.retention", "retention.sql")
log = structlog.get_logger()

LOCK_KEY = 0x646973707275  # any constant shared by every pruner; "dispru" in ASCII
BATCH_PAUSE = 0.01  # seconds between batches: the queue's statements get the disk in between

Progress = Callable[[int], object]  # told the rows each batch removed or emptied

# The column each finished state ages by, each with an index that has its oldest rows first:
# sent mail by sent_at (jobs_sent_at), the rest by updated_at (jobs_finished).
CLOCK = {"sent": "sent_at", "failed": "updated_at", "cancelled": "updated_at"}


@functools.cache
def state_query(name: str, state: str) -> str:
    """Query `name` for one finished state: its literal and its clock column filled in."""
    return query(name).format(state=state, clock=CLOCK[state])


@dataclass(slots=True)
class PruneReport:
    """What one run removed (or, dry, would remove): per state, and untied events."""

    dry_run: bool
    content: dict[str, int] = field(default_factory=dict)  # state -> messages emptied
    rows: dict[str, int] = field(default_factory=dict)  # state -> messages deleted
    events: int = 0  # feedback events deleted (with their rows, or untied and old)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.content.values()) + sum(self.rows.values()) + self.events

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "content": self.content,
            "rows": self.rows,
            "events": self.events,
            "seconds": round(self.seconds, 3),
        }

    def lines(self) -> list[str]:
        """The report for a person."""
        verb = "would remove" if self.dry_run else "removed"
        content = ", ".join(f"{s} {n}" for s, n in self.content.items() if n) or "none"
        rows = ", ".join(f"{s} {n}" for s, n in self.rows.items() if n) or "none"
        return [
            f"content (bodies, raw MIME, campaign variables) {verb}: {content}",
            f"rows {verb}: {rows}",
            f"feedback events {verb}: {self.events}",
        ]


class Pruner:
    """Prunes one database with one `RetentionSettings`."""

    __slots__ = ("_pool", "settings")

    def __init__(self, pool: asyncpg.Pool, settings: RetentionSettings) -> None:
        self._pool = pool
        self.settings = settings

    async def run(
        self,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
        planned: Callable[[int], None] | None = None,
        stop: asyncio.Event | None = None,
        at: datetime | None = None,
    ) -> PruneReport | None:
        """One run; None when another process holds the pruner's lock.

        `planned` is told the total first (a count costs a scan of the due rows' index, so it
        is only made when asked for); `stop` ends the run between two batches. `at` is the
        time the run prunes as of: the database's clock unless a test moves it.
        """
        began = time.monotonic()
        async with self._pool.acquire() as conn:
            if not await conn.fetchval(query("try_lock"), LOCK_KEY):
                return None
            try:
                now: datetime = at or await conn.fetchval(query("db_now"))
                cuts = cutoffs(self.settings, now)
                if dry_run or planned is not None:
                    plan = await self._count(conn, cuts)
                    if planned is not None:
                        planned(plan.total)
                    if dry_run:
                        plan.seconds = time.monotonic() - began
                        return plan
                report = await self._prune(conn, cuts, progress or (lambda n: None), stop)
            finally:
                await conn.fetchval(query("unlock"), LOCK_KEY)
        report.seconds = time.monotonic() - began
        return report

    async def _lower_bound(self, conn: asyncpg.Connection, cut: Cutoff) -> datetime | None:
        """Where content pruning of `cut.state` starts: past the rows deleted anyway, and past
        the last run's mark."""
        since = content_since(await conn.fetchval(query("content_mark"), cut.state))
        if cut.rows_before is not None and (since is None or cut.rows_before > since):
            return cut.rows_before
        return since

    async def _count(self, conn: asyncpg.Connection, cuts: tuple[Cutoff, ...]) -> PruneReport:
        report = PruneReport(dry_run=True)
        for cut in cuts:
            if cut.rows_before is not None:
                n = await conn.fetchval(state_query("count_rows", cut.state), cut.rows_before)
                report.rows[cut.state] = n
            if cut.content_before is not None:
                since = await self._lower_bound(conn, cut)
                n = await conn.fetchval(
                    state_query("count_content", cut.state), cut.content_before, since
                )
                report.content[cut.state] = n
        events_before = self._events_before(cuts)
        if events_before is not None:
            report.events = await conn.fetchval(query("count_untied_events"), events_before)
        return report

    @staticmethod
    def _events_before(cuts: tuple[Cutoff, ...]) -> datetime | None:
        """Untied events go with the rows of sent mail (most events are about sent mail)."""
        return next(c.rows_before for c in cuts if c.state == "sent")

    async def _prune(
        self,
        conn: asyncpg.Connection,
        cuts: tuple[Cutoff, ...],
        progress: Progress,
        stop: asyncio.Event | None,
    ) -> PruneReport:
        report = PruneReport(dry_run=False)
        sizer = BatchSizer(self.settings.batch_size)

        def stopped() -> bool:
            return stop is not None and stop.is_set()

        for cut in cuts:
            # Rows first: their content then needs no separate pass.
            if cut.rows_before is not None:
                report.rows[cut.state] = 0
                while not stopped():
                    size = sizer.size
                    t0 = time.monotonic()
                    r = await conn.fetchrow(
                        state_query("prune_rows", cut.state), cut.rows_before, size
                    )
                    sizer.took(time.monotonic() - t0)
                    report.rows[cut.state] += r["rows"]
                    report.events += r["events"]
                    progress(r["rows"])
                    if r["rows"] < size:
                        break
                    await asyncio.sleep(BATCH_PAUSE)
            if cut.content_before is not None:
                report.content[cut.state] = 0
                since = await self._lower_bound(conn, cut)
                finished = False
                while not stopped():
                    size = sizer.size
                    t0 = time.monotonic()
                    status: str = await conn.execute(
                        state_query("prune_content", cut.state), cut.content_before, since, size
                    )
                    sizer.took(time.monotonic() - t0)
                    n = int(status.split()[-1])
                    report.content[cut.state] += n
                    progress(n)
                    if n < size:
                        finished = True
                        break
                    await asyncio.sleep(BATCH_PAUSE)
                if finished:
                    await conn.execute(query("content_mark_set"), cut.state, cut.content_before)
        events_before = self._events_before(cuts)
        while events_before is not None and not stopped():
            size = sizer.size
            status = await conn.execute(query("prune_untied_events"), events_before, size)
            n = int(status.split()[-1])
            report.events += n
            progress(n)
            if n < size:
                break
            await asyncio.sleep(BATCH_PAUSE)
        return report


async def run_pruner(pruner: Pruner, stop: asyncio.Event) -> None:
    """The daemon's pruning loop: a run every `retention.interval` seconds until `stop`.

    A database error skips the run (the queue's own outage handling decides whether the
    daemon goes on); anything else ends the loop, and the daemon with it.
    """
    while not stop.is_set():
        try:
            report = await pruner.run(stop=stop)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("retention.failed", error=f"{type(exc).__name__}: {exc}")
        else:
            if report is None:
                log.debug("retention.skipped", reason="another process is pruning")
            elif report.total:
                log.info("retention.pruned", **report.to_json())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pruner.settings.interval)

"""Beside the pools of several accounts: telling Postgres when SES pauses one (its routes'
fallback accounts then take its waiting mail), and one report for the run of all pools."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from dispatcher.clock import wait_event
from dispatcher.db.outage import connection_lost
from dispatcher.worker.counters import EXIT_OK, Counters, RunReport

if TYPE_CHECKING:
    from dispatcher.accounts.store import AccountStore
    from dispatcher.worker.pool import WorkerPool

__all__ = ["WATCH_INTERVAL", "merged_report", "run_pause_watch", "summed"]

_COUNTS = (
    "attempts",
    "ses_calls",
    "sent",
    "recipients_sent",
    "throttled",
    "daily_quota",
    "failed",
    "retried",
    "in_doubt",
    "held",
    "lease_lost",
)

log = structlog.get_logger()

WATCH_INTERVAL = 1.0  # seconds between looks at an account's pause


async def run_pause_watch(
    store: AccountStore, name: str, pool: WorkerPool, stop: asyncio.Event
) -> None:
    """Mark account `name` paused while SES holds its sending (its pool's account hold), and
    sending again once its pool has sent since; the fallback moves happen in Postgres."""
    loop = asyncio.get_running_loop()
    paused = False
    sent_at_pause = 0
    while not stop.is_set():
        held = pool.admission.holds.account(loop.time()) > 0
        change: bool | None = None
        if held and not paused:
            change, sent_at_pause = True, pool.counters.sent
        elif paused and not held and pool.counters.sent > sent_at_pause:
            change = False
        if change is not None:
            try:
                reason = "SES paused or suspended the account's sending" if change else None
                moved = await store.mark_paused(name, reason)
                paused = change
                log.warning("account.marked", account=name, paused=paused, fell_back=moved)
            except Exception as exc:
                if not connection_lost(exc):
                    raise  # tried again on the next look while the database is away
        await wait_event(stop, WATCH_INTERVAL)


def summed(counters: Sequence[Counters]) -> Counters:
    """What several pools counted, as one (the run's report of every account together)."""
    total = Counters()
    for c in counters:
        for field in _COUNTS:
            setattr(total, field, getattr(total, field) + getattr(c, field))
        starts = [t for t in (total.first_send_at, c.first_send_at) if t is not None]
        ends = [t for t in (total.last_send_at, c.last_send_at) if t is not None]
        total.first_send_at = min(starts) if starts else None
        total.last_send_at = max(ends) if ends else None
        if c.send_seconds is not None:
            total.send_seconds = (total.send_seconds or []) + c.send_seconds
        if c.accepted_after is not None:
            total.accepted_after = (total.accepted_after or []) + c.accepted_after
    return total


def merged_report(reports: Sequence[RunReport]) -> RunReport:
    """The run of every account's pool as one: the first that did not end OK says how it
    ended (the default account's first), the counts are added up."""
    if len(reports) == 1:
        return reports[0]
    total = summed([r.counters for r in reports])
    ending = next((r for r in reports if r.exit_code != EXIT_OK), reports[0])
    return RunReport(ending.exit_code, ending.reason, total, max(r.elapsed for r in reports))

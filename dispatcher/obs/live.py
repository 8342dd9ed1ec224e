"""The running daemon as its probes and /metrics see it: made by `app.run_worker` before the
doors open, told about the worker pool once it exists, ticked once a second."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog

from dispatcher.accounts.settings import DEFAULT_ACCOUNT
from dispatcher.obs.health import WORKER_LOOPS, Liveness, liveness
from dispatcher.obs.metrics import ProcessMetrics, SharedReader

if TYPE_CHECKING:
    from dispatcher.worker.pool import WorkerPool

__all__ = ["TICK", "Live", "observing"]

log = structlog.get_logger()

TICK = 1.0  # seconds between copies of the counters into the metrics


class Live:
    """The pools (none while starting), the stop event, and this process's metrics."""

    def __init__(self, stop: asyncio.Event, accounts: Sequence[str] = (DEFAULT_ACCOUNT,)) -> None:
        self.stop = stop
        self.metrics = ProcessMetrics(accounts=accounts)  # their series are there from the start
        self.pool: WorkerPool | None = None  # the default account's
        self.accounts: tuple[tuple[str, WorkerPool], ...] = ()  # each account's pool, by name
        self.started = False  # every worker loop was seen running
        self.last_tick: float | None = None
        self.reader: SharedReader | None = None  # made by the first scrape (it keeps a cache)

    def attach(self, accounts: Sequence[tuple[str, WorkerPool]]) -> None:
        """The pool of each SES account exists (the default account's first): their counters
        keep latency samples from now on."""
        for _, pool in accounts:
            pool.counters.send_seconds = []
            pool.counters.accepted_after = []
        self.pool = accounts[0][1]
        self.accounts = tuple(accounts)

    def tick(self, now: float) -> None:
        """Copy each pool's counters into the metrics, under its account; note that the loop
        turns."""
        self.last_tick = now
        if self.pool is None:
            return
        if not self.started:
            self.started = set(WORKER_LOOPS) <= _running()
        for name, pool in self.accounts:
            self.metrics.update(
                pool.counters,
                account=name,
                in_flight=len(pool.ledger.ids()),
                rate_allowed=pool.limiter.rate,
                now=now,
                send_slots=pool.admission.slots[1],
            )

    def liveness(self, now: float) -> Liveness:
        tick_age = None if self.last_tick is None else now - self.last_tick
        return liveness(
            started=self.started,
            stopping=self.stop.is_set(),
            running=_running(),
            tick_age=tick_age,
        )

    def account_paused_for(self, now: float) -> float | None:
        """Seconds SES still pauses this process's sending (None before the pool exists)."""
        return None if self.pool is None else self.pool.admission.holds.account(now)


def _running() -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks() if not t.done()}


@asynccontextmanager
async def observing(
    stop: asyncio.Event, accounts: Sequence[str] = (DEFAULT_ACCOUNT,)
) -> AsyncIterator[Live]:
    """A `Live` for the SES `accounts` (the default first), ticked every TICK seconds until the
    block ends."""
    live = Live(stop, accounts)
    loop = asyncio.get_running_loop()

    async def ticker() -> None:
        while True:
            try:
                live.tick(loop.time())
            except Exception as exc:  # metrics must never stop the sending
                log.error("metrics.tick_failed", error=repr(exc))
            await asyncio.sleep(TICK)

    task = asyncio.create_task(ticker(), name="metrics-ticker")
    try:
        yield live
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        live.tick(loop.time())  # the last sends are in the files other processes sum

"""Liveness and readiness: pure decisions from facts, and the bounded I/O that gathers them.

Liveness (`/healthz`) asks only whether this process is turning: a Postgres outage is not a
liveness failure (the daemon rides it out for database.outage_timeout; a restart would gain
nothing). Readiness (`/readyz`, `dispatcher status --check`) asks whether mail goes out: Postgres
reachable, a recent GetSendQuota reading shared in Postgres, sending not held.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]

from dispatcher.feedback.store import FeedbackStore
from dispatcher.worker.quota_store import SharedQuotaStore

__all__ = [
    "DB_TIMEOUT",
    "READING_POLLS",
    "TICK_LATE",
    "WORKER_LOOPS",
    "Liveness",
    "Readiness",
    "gather_readiness",
    "liveness",
    "readiness",
    "unreachable",
]

DB_TIMEOUT = 2.0  # seconds a probe waits for Postgres before it calls it unreachable
READING_POLLS = 3  # a reading older than this many pacing.poll_interval is stale
TICK_LATE = 10.0  # seconds without a tick of the daemon's own loop: it is stuck
# The worker's loops (named tasks of WorkerPool.run): each must be running once it started.
WORKER_LOOPS = ("claimer", "dispatch", "heartbeat", "rate-share", "quota-sync", "quota-leader")


@dataclass(frozen=True, slots=True)
class Liveness:
    """What `/healthz` answers: alive or not, why not, and what the process is doing."""

    alive: bool
    phase: str  # "starting", "sending", "stopping"
    problems: tuple[str, ...]


def liveness(
    *, started: bool, stopping: bool, running: Iterable[str], tick_age: float | None
) -> Liveness:
    """Alive while every worker loop runs and the daemon's ticker turned recently.

    `running`: the names of this process's tasks not done yet; `tick_age`: seconds since the
    ticker last ran (None before its first tick). Starting (the first quota reading may take a
    while) and stopping (a drain) are alive: a restart would only cut them short.
    """
    if stopping:
        return Liveness(True, "stopping", ())
    problems: list[str] = []
    if tick_age is not None and tick_age > TICK_LATE:
        problems.append(f"the daemon's ticker last ran {tick_age:.0f} s ago (stuck?)")
    if not started:
        return Liveness(not problems, "starting", tuple(problems))
    alive = set(running)
    missing = [name for name in WORKER_LOOPS if name not in alive]
    if missing:
        problems.append(f"worker loop(s) not running: {', '.join(missing)}")
    return Liveness(not problems, "sending", tuple(problems))


@dataclass(frozen=True, slots=True)
class Readiness:
    """The facts readiness is judged on; None where a fact could not be gathered."""

    database_error: str | None  # what is wrong with Postgres, after "Postgres " (None: fine)
    reading_age: float | None  # seconds since the shared GetSendQuota reading (None: none yet)
    hold: str | None  # why all sending is held (the guard), or None
    account_paused_for: float | None = None  # seconds SES still pauses the account (a daemon)
    stopping: bool = False


def readiness(facts: Readiness, *, poll_interval: float) -> list[str]:
    """One line per reason mail does not go out now; empty when ready."""
    if facts.database_error is not None:
        # Nothing else can be read: the other facts come from Postgres.
        return [f"Postgres {facts.database_error}"]
    problems: list[str] = []
    if facts.stopping:
        problems.append("the daemon is stopping")
    limit = READING_POLLS * poll_interval
    if facts.reading_age is None:
        problems.append("no GetSendQuota reading yet: is a daemon running?")
    elif facts.reading_age > limit:
        problems.append(
            f"the last GetSendQuota reading is {facts.reading_age:.0f} s old (over {limit:g} s, "
            f"{READING_POLLS} x pacing.poll_interval): is a daemon running and SES reachable?"
        )
    if facts.hold is not None:
        problems.append(f"all sending held: {facts.hold} (check, then `dispatcher resume --force`)")
    if facts.account_paused_for:
        problems.append(
            f"SES paused the account's sending: held for {facts.account_paused_for:.0f} s more"
        )
    return problems


async def gather_readiness(
    pool: asyncpg.Pool,
    quota: SharedQuotaStore,
    feedback: FeedbackStore,
) -> Readiness:
    """The facts in Postgres, bounded by DB_TIMEOUT (an outage answers quickly)."""

    async def read() -> Readiness:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        shared = await quota.sync(uuid.UUID(int=0), {})  # records nothing: no sends
        hold = await feedback.sending_hold()
        age = shared.age if shared.quota is not None else None
        return Readiness(None, age, None if hold is None else hold[0])

    try:
        return await asyncio.wait_for(read(), DB_TIMEOUT)
    except TimeoutError:
        return Readiness(f"unreachable: no answer within {DB_TIMEOUT:g} s", None, None)
    except asyncpg.UndefinedTableError:
        return Readiness("has no dispatcher schema: run `dispatcher migrate`", None, None)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return Readiness(unreachable(exc), None, None)


def unreachable(exc: BaseException) -> str:
    """What follows "Postgres " for a failed connection or statement."""
    return f"unreachable: {type(exc).__name__}: {exc}".strip().rstrip(":")

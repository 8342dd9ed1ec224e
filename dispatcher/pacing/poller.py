"""Pieces of reading GetSendQuota now and then: one call that stop can cut short, back-off after
failures, re-rating the limiter, and logging pauses. The loop that uses them is the quota leader
(dispatcher.worker.shared_quota), which reads for every process on the account."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from dispatcher.domain.quota import Quota
from dispatcher.pacing.bucket import RecipientLimiter
from dispatcher.pacing.governor import QuotaGovernor
from dispatcher.pacing.settings import PacingSettings

log = structlog.get_logger()


def rerate(limiter: RecipientLimiter, max_send_rate: float) -> None:
    """Pace at a new MaxSendRate reading (a broken one, e.g. 0, is refused and logged)."""
    if max_send_rate == limiter.max_send_rate:
        return
    old = limiter.max_send_rate
    try:
        limiter.set_max_send_rate(max_send_rate)
    except ValueError as exc:  # e.g. a 0 rate from a broken reading: keep the old one
        log.warning("pacing.rerate_refused", error=str(exc))
    else:
        log.info(
            "pacing.rerated",
            old_max_send_rate=old,
            new_max_send_rate=max_send_rate,
            allowed_rate=round(limiter.allowed_rate, 3),
        )


def backoff(s: PacingSettings, failures: int) -> float:
    """Seconds from a failed call to the next: doubling from poll_failure_backoff, capped."""
    return float(
        min(s.poll_failure_backoff * 2 ** min(failures - 1, 30), s.poll_failure_backoff_max)
    )


def log_transition(governor: QuotaGovernor, was_paused: bool | None) -> bool:
    paused = governor.paused
    if paused and not was_paused:
        view = governor.quota
        log.warning(
            "quota.paused",
            reason=governor.pause_reason,
            max_24_hour_send=view.max_24_hour_send if view is not None else None,
            sent_last_24_hours=view.sent_last_24_hours if view is not None else None,
        )
    elif not paused and was_paused:
        log.info("quota.resumed", remaining=governor.remaining())
    return paused


async def poll_or_stop(
    get_quota: Callable[[], Awaitable[Quota]], stop: asyncio.Event, limit: float
) -> Quota | None:
    """One GetSendQuota call; None if `stop` was set first (the call is then cancelled)."""
    poll = asyncio.ensure_future(get_quota())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait(
            (poll, stopped), timeout=limit, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (poll, stopped):
            task.cancel()
        # Let the cancelled ones finish and retrieve their exceptions (no "never retrieved").
        await asyncio.gather(poll, stopped, return_exceptions=True)
    if stopped in done or stop.is_set():
        return None
    if poll not in done:
        raise TimeoutError(f"GetSendQuota took longer than {limit} s")
    return poll.result()

"""Background loop: read GetSendQuota now and then, feed the governor, re-rate the limiter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from dispatcher.clock import Clock
from dispatcher.domain.quota import Quota
from dispatcher.pacing.bucket import RecipientLimiter
from dispatcher.pacing.governor import QuotaGovernor
from dispatcher.pacing.settings import MIN_POLL_INTERVAL, PacingSettings

log = structlog.get_logger()


async def run_quota_poller(
    get_quota: Callable[[], Awaitable[Quota]],
    governor: QuotaGovernor,
    limiter: RecipientLimiter,
    stop: asyncio.Event,
    *,
    clock: Clock | None = None,
    settings: PacingSettings | None = None,
) -> None:
    """Poll until `stop` is set; a failed call is logged and retried with back-off, never fatal.

    Polls at once, then when `governor.next_poll_at()` says, never twice within one second.
    While waiting it wakes every `poll_interval_near_limit` s to notice a pause that started
    between readings (it then polls sooner and logs `quota.paused`). `clock` must be on the
    event loop's time scale (default `loop.time`), as the waits run on the loop.
    """
    s = settings if settings is not None else PacingSettings()
    now_fn: Clock = clock if clock is not None else asyncio.get_running_loop().time
    failures = 0
    last_start = float("-inf")  # when the last call started
    failed_at = float("-inf")  # when the last call failed (back-off counts from there)
    was_paused: bool | None = None  # None until the first reading: nothing to compare with
    while not stop.is_set():
        now = now_fn()
        due = failed_at + _backoff(s, failures) if failures else governor.next_poll_at()
        due = max(due, last_start + MIN_POLL_INTERVAL)
        if now < due:
            if await _stopped(stop, min(due - now, s.poll_interval_near_limit)):
                return
            if was_paused is not None:  # a pause can also start between readings
                was_paused = _log_transition(governor, was_paused)
            continue

        last_start = now
        governor.begin_poll(now)
        try:
            quota = await _poll_or_stop(get_quota, stop, s.poll_timeout)
        except Exception as exc:  # any failure of the call: keep the last reading, back off
            failures += 1
            failed_at = now_fn()
            log.warning(
                "quota.poll_failed",
                error=f"{type(exc).__name__}: {exc}",
                failures=failures,
                retry_in=_backoff(s, failures),
            )
            continue
        if quota is None:
            return  # stop was set during the call
        failures = 0
        now = now_fn()
        governor.observe(quota, now)
        if quota.max_send_rate != limiter.max_send_rate:
            old = limiter.max_send_rate
            try:
                limiter.set_max_send_rate(quota.max_send_rate)
            except ValueError as exc:  # e.g. a 0 rate from a broken reading: keep the old one
                log.warning("pacing.rerate_refused", error=str(exc))
            else:
                log.info(
                    "pacing.rerated",
                    old_max_send_rate=old,
                    new_max_send_rate=quota.max_send_rate,
                    allowed_rate=round(limiter.allowed_rate, 3),
                )
        was_paused = _log_transition(governor, was_paused)


def _backoff(s: PacingSettings, failures: int) -> float:
    """Seconds from a failed call to the next: doubling from poll_failure_backoff, capped."""
    return float(
        min(s.poll_failure_backoff * 2 ** min(failures - 1, 30), s.poll_failure_backoff_max)
    )


def _log_transition(governor: QuotaGovernor, was_paused: bool | None) -> bool:
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


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `stop`; True if it was set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


async def _poll_or_stop(
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

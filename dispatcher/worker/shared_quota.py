"""One daily quota for every process and host on the account, coordinated through Postgres.

Only one process at a time reads GetSendQuota: the holder of an advisory lock (the *leader*).
Before each reading it opens a new epoch, waits until every process counts its sends into that
epoch, asks SES, and publishes the answer. Every process, every SYNC_INTERVAL, records what it
sent per epoch and reads the published reading with what the others sent since it was begun; its
governor admits mail against reading + its own + the others' sends. If the leader dies, its
connection closes, the lock is free, and another process takes it within LEAD_RETRY.

Both loops ride out a Postgres outage: they keep the last reading and try again.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import structlog

from dispatcher.clock import Clock, wait_event
from dispatcher.db.outage import connection_lost
from dispatcher.domain.outcome import Outcome
from dispatcher.domain.quota import Quota
from dispatcher.pacing.bucket import RecipientLimiter
from dispatcher.pacing.governor import QuotaGovernor
from dispatcher.pacing.poller import backoff, log_transition, poll_or_stop, rerate
from dispatcher.pacing.settings import MIN_POLL_INTERVAL, PacingSettings
from dispatcher.ses.errors import SesError
from dispatcher.worker.quota_store import SharedReading

log = structlog.get_logger()

SYNC_INTERVAL = 0.25  # seconds between a process's reports of what it sent
# Longest wait from opening an epoch to asking SES (every live process normally moves its count
# to the new epoch within milliseconds of the NOTIFY; a silent one by its next sync).
NOTICE_WAIT = 0.75
MOVE_CHECK = 0.01  # seconds between checks that every worker counts into a new epoch
LEAD_RETRY = 1.0  # seconds between a follower's attempts to take the leader's lock


class QuotaReader(Protocol):
    """GetSendQuota (the SES adapter)."""

    async def get_send_quota(self) -> Quota: ...


class QuotaBoard(Protocol):
    """The shared rows (dispatcher.worker.quota_store.SharedQuotaStore in production)."""

    async def sync(self, owner: uuid.UUID, spent: Mapping[int, float]) -> SharedReading: ...
    async def begin(self, owner: uuid.UUID) -> int: ...
    async def unmoved(self, epoch: int) -> int: ...
    async def publish(self, owner: uuid.UUID, epoch: int, quota: Quota) -> bool: ...


class Lock(Protocol):
    """The leader's lock (dispatcher.worker.quota_store.LeaderLock in production)."""

    @property
    def held(self) -> bool: ...
    async def try_take(self) -> bool: ...
    async def release(self) -> None: ...


def apply_reading(
    governor: QuotaGovernor,
    limiter: RecipientLimiter,
    reading: SharedReading,
    now: float,
) -> None:
    """Feed one sync's answer to the governor, and the published MaxSendRate to the limiter."""
    new = reading.quota is not None and reading.epoch != governor.epoch
    governor.follow(reading.polling_epoch, now)
    governor.adopt(reading.epoch, reading.quota, reading.others_sent, reading.age, now)
    if new and reading.quota is not None:
        rerate(limiter, reading.quota.max_send_rate)


async def run_quota_sync(
    board: QuotaBoard,
    owner: uuid.UUID,
    governor: QuotaGovernor,
    limiter: RecipientLimiter,
    stop: asyncio.Event,
    *,
    clock: Clock | None = None,
    interval: float = SYNC_INTERVAL,
    wake: asyncio.Event | None = None,
) -> None:
    """Every `interval` (or when `wake` is set: a reading was begun), report our sends per
    epoch and take in the published reading."""
    now_fn: Clock = clock if clock is not None else asyncio.get_running_loop().time
    # None until there is a reading: "no reading yet" is not a pause worth a log line.
    was_paused: bool | None = governor.paused if governor.quota is not None else None
    while not stop.is_set():
        if wake is not None:
            wake.clear()  # a NOTIFY from now on: sync again
        try:
            reading = await board.sync(owner, governor.spent_by_epoch())
        except Exception as exc:
            if not connection_lost(exc):
                raise
        else:
            moved = governor.counting_epoch != reading.polling_epoch
            apply_reading(governor, limiter, reading, now_fn())
            if governor.quota is not None:
                was_paused = log_transition(governor, was_paused)
            if moved:
                continue  # tell the leader at once that we count into the new epoch
        if wake is None:
            if await wait_event(stop, interval):
                return
        else:
            await wait_event(wake, interval)


async def run_quota_leader(
    lock: Lock,
    board: QuotaBoard,
    owner: uuid.UUID,
    get_quota: Callable[[], Awaitable[Quota]],
    governor: QuotaGovernor,
    limiter: RecipientLimiter,
    stop: asyncio.Event,
    *,
    clock: Clock | None = None,
    settings: PacingSettings | None = None,
    notice_wait: float = NOTICE_WAIT,
    lead_retry: float = LEAD_RETRY,
) -> None:
    """Take the leader's lock when it is free; while holding it, read GetSendQuota for all.

    A reading is due when the governor says (sooner near the limit or while paused), at once on
    taking the lead (the published one may be old) or when none was published; never two within
    a second. A failed call backs off (poll_failure_backoff, doubling), a throttled one is retried
    a second later; a lost database
    connection gives up the lead (the lock goes with the connection) until it can be taken again.
    While waiting it wakes every `lead_retry` s, so a pause that starts between readings is
    polled for within a second or so.
    """
    s = settings if settings is not None else PacingSettings()
    now_fn: Clock = clock if clock is not None else asyncio.get_running_loop().time
    failures = 0
    failed_at = float("-inf")
    # This process's own start-up reading counts: SES allows one GetSendQuota a second, and a
    # wait for that must come before an epoch is opened, not between it and the call (sends
    # answered in that gap count twice until the next reading).
    last_start = governor.reading_at if governor.reading_at is not None else float("-inf")
    fresh = False
    try:
        while not stop.is_set():
            if not lock.held:
                try:
                    taken = await lock.try_take()
                except Exception as exc:
                    if not connection_lost(exc):
                        raise
                    taken = False
                if not taken:
                    if await wait_event(stop, lead_retry):
                        return
                    continue
                log.info("quota.leading", worker_id=str(owner))
                failures, fresh = 0, True  # the published reading may be old (or none)
            now = now_fn()
            if failures:
                due = failed_at + backoff(s, failures)
            elif fresh or governor.epoch is None:
                due = now
            else:
                due = governor.next_poll_at()
            due = max(due, last_start + MIN_POLL_INTERVAL)
            if now < due:
                if await wait_event(stop, min(due - now, lead_retry)):
                    return
                continue
            last_start, fresh = now, False
            try:
                epoch = await board.begin(owner)
                if await _until_moved(board, epoch, stop, notice_wait):
                    return
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                await _lose_lead(lock, exc)
                continue
            try:
                quota = await poll_or_stop(get_quota, stop, s.poll_timeout)
            except Exception as exc:  # any failure of the call: keep the last reading, back off
                if isinstance(exc, SesError) and exc.outcome is Outcome.THROTTLED:
                    # Another caller on the account took this second (a process starting up
                    # reads once): the next second is free again, doubling would only leave
                    # the reading stale.
                    fresh = True
                    log.info("quota.poll_throttled", retry_in=MIN_POLL_INTERVAL)
                    continue
                failures += 1
                failed_at = now_fn()
                log.warning(
                    "quota.poll_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    failures=failures,
                    retry_in=backoff(s, failures),
                )
                continue
            if quota is None:
                return  # stop was set during the call
            failures = 0
            try:
                await board.publish(owner, epoch, quota)
                # Take it in ourselves now (the others do at their next sync).
                reading = await board.sync(owner, governor.spent_by_epoch())
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                await _lose_lead(lock, exc)
                continue
            apply_reading(governor, limiter, reading, now_fn())
            log.debug(
                "quota.published",
                epoch=epoch,
                max_24_hour_send=quota.max_24_hour_send,
                sent_last_24_hours=quota.sent_last_24_hours,
                max_send_rate=quota.max_send_rate,
            )
    finally:
        await lock.release()


async def _until_moved(board: QuotaBoard, epoch: int, stop: asyncio.Event, longest: float) -> bool:
    """Wait until every live worker counts into `epoch` (at most `longest` s); True if stopped.

    Sends made before a worker moved are counted in its earlier epoch, so the reading must be
    taken after that; sends between its move and the reading are counted twice (in the reading
    and in the new epoch), which errs on the safe side and lasts until the next reading.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + longest
    while loop.time() < deadline:
        try:
            if await board.unmoved(epoch) == 0:
                return stop.is_set()
        except Exception as exc:
            if not connection_lost(exc):
                raise
        if await wait_event(stop, MOVE_CHECK):
            return True
    return stop.is_set()


async def _lose_lead(lock: Lock, exc: BaseException) -> None:
    log.warning("quota.lead_lost", error=repr(exc))
    await lock.release()


# A passing SES hiccup at start (HTTP 500, throttled, a reset) is retried this many times, with
# growing delays (about 10 s in all); credentials or access problems fail at once.
FIRST_READING_TRIES = 6
# While a throttled start-up read waits for its retry, it looks for a published reading this often.
SHARED_LOOK = 0.25


async def first_reading(
    ses: QuotaReader,
    governor: QuotaGovernor,
    *,
    published: Callable[[], Awaitable[Quota | None]] | None = None,
    tries: int = FIRST_READING_TRIES,
    delay: float = 0.3,
    rand: Callable[[], float] = random.random,
) -> Quota:
    """The quota before the first send: the governor admits nothing without a reading.

    `published`: the reading another process of the account published lately, if any. SES
    answers GetSendQuota once a second for the whole account, so processes and daemons started
    together would throttle each other's start-up reads; each one first looks for a reading it
    can take over (its quota sync counts the others' sends since at once), and asks SES only
    when there is none, retrying a throttled read after a growing, jittered pause.
    """
    passing = (Outcome.TRANSIENT, Outcome.THROTTLED, Outcome.IN_DOUBT)
    loop = asyncio.get_running_loop()

    async def shared_within(seconds: float) -> Quota | None:
        """Look for a published reading now and every SHARED_LOOK s until `seconds` passed."""
        deadline = loop.time() + seconds
        while True:
            if published is not None and (shared := await published()) is not None:
                return shared
            left = deadline - loop.time()
            if left <= 0:
                return None
            await asyncio.sleep(min(left, SHARED_LOOK) if published is not None else left)

    pause = 0.0
    for attempt in range(1, tries + 1):
        if (shared := await shared_within(pause)) is not None:
            log.info("quota.read_shared", max_send_rate=shared.max_send_rate)
            governor.observe(shared, loop.time())
            return shared
        try:
            quota = await ses.get_send_quota()
        except SesError as exc:
            if exc.outcome not in passing or attempt == tries:
                raise
            pause = delay * (0.5 + rand())  # jitter: processes started together spread out
            log.warning("quota.read_failed", attempt=attempt, error=str(exc), retry_in=pause)
            delay *= 2  # (the pause is spent looking for a reading another process publishes)
            continue
        governor.observe(quota, loop.time())
        return quota
    raise AssertionError("unreachable")

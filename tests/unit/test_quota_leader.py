"""The quota leader and sync loops on an in-memory board, in virtual time: the leader polls on
schedule, re-rates the limiter, survives failures and stops promptly; only the holder of the lock
reads GetSendQuota; every process counts the others' sends."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from dispatcher.domain.outcome import Outcome
from dispatcher.domain.quota import Quota
from dispatcher.pacing.bucket import RecipientLimiter
from dispatcher.pacing.governor import QuotaGovernor
from dispatcher.pacing.settings import PacingSettings
from dispatcher.ses.errors import SesError
from dispatcher.worker.shared_quota import (
    FIRST_READING_TRIES,
    SHARED_LOOK,
    first_reading,
    run_quota_leader,
    run_quota_sync,
)
from tests.support.quota_board import FakeBoard, FakeLock, LockRegistry
from tests.unit.test_pacing_support import run_virtual

HANG = object()  # a response that never comes
Logs = list[MutableMapping[str, Any]]


def now() -> float:
    return asyncio.get_running_loop().time()


class FakeSes:
    """GetSendQuota returning the scripted answers in turn (the last one repeats)."""

    def __init__(self, *answers: Quota | Exception | object) -> None:
        self.answers = list(answers)
        self.calls: list[float] = []
        self.cancelled = 0

    async def get_quota(self) -> Quota:
        self.calls.append(now())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is HANG:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, Quota)
        return answer


class Rig:
    """One process: a leader loop and a sync loop around its own governor and limiter."""

    def __init__(
        self,
        ses: FakeSes,
        settings: PacingSettings,
        rate: float = 14.0,
        *,
        board: FakeBoard | None = None,
        locks: LockRegistry | None = None,
    ) -> None:
        self.ses = ses
        self.settings = settings
        self.board = board if board is not None else FakeBoard()
        self.owner = uuid.uuid4()
        self.governor = QuotaGovernor(settings)
        self.limiter = RecipientLimiter(rate, settings)
        self.stop = asyncio.Event()
        self.lock = FakeLock(locks if locks is not None else {}, self.owner)
        wake = asyncio.Event()
        self.board.listeners.append(wake)
        self.sync = asyncio.create_task(
            run_quota_sync(
                self.board, self.owner, self.governor, self.limiter, self.stop, wake=wake
            )
        )
        self.task = asyncio.create_task(
            run_quota_leader(
                self.lock,
                self.board,
                self.owner,
                ses.get_quota,
                self.governor,
                self.limiter,
                self.stop,
                settings=settings,
            )
        )

    async def finish(self) -> float:
        """Set stop; return how long the leader loop took to end."""
        self.stop.set()
        start = now()
        await asyncio.wait_for(self.task, timeout=1.0)
        await asyncio.wait_for(self.sync, timeout=1.0)
        return now() - start


def events(logs: Logs, name: str) -> Logs:
    return [entry for entry in logs if entry["event"] == name]


def test_polls_at_once_then_every_poll_interval() -> None:
    async def main() -> list[float]:
        rig = Rig(FakeSes(Quota(50_000, 14, 0)), PacingSettings(poll_interval=60))
        t0 = now()
        await asyncio.sleep(200)
        await rig.finish()
        return [t - t0 for t in rig.ses.calls]

    calls = run_virtual(main())
    assert calls == pytest.approx([0, 60, 120, 180], abs=0.05)


def test_a_new_max_send_rate_rerates_the_limiter() -> None:
    async def main() -> tuple[Rig, Logs]:
        ses = FakeSes(Quota(50_000, 14, 0), Quota(50_000, 28, 10))
        with capture_logs() as logs:
            rig = Rig(ses, PacingSettings(poll_interval=60))
            await asyncio.sleep(1)
            assert rig.limiter.max_send_rate == 14.0
            await asyncio.sleep(60)
            await rig.finish()
        return rig, logs

    rig, logs = run_virtual(main())
    assert rig.limiter.max_send_rate == 28.0
    assert rig.limiter.rate == 28.0
    assert rig.governor.quota == Quota(50_000, 28, 10)
    rerated = events(logs, "pacing.rerated")
    assert len(rerated) == 1
    assert rerated[0]["old_max_send_rate"] == 14.0
    assert rerated[0]["new_max_send_rate"] == 28.0


def test_a_nonsense_max_send_rate_keeps_the_old_rate() -> None:
    async def main() -> tuple[Rig, Logs]:
        with capture_logs() as logs:
            rig = Rig(FakeSes(Quota(50_000, 0, 0)), PacingSettings())
            await asyncio.sleep(1)
            await rig.finish()
        return rig, logs

    rig, logs = run_virtual(main())
    assert rig.limiter.max_send_rate == 14.0
    assert len(events(logs, "pacing.rerate_refused")) == 1


def test_survives_failed_polls_with_backoff_and_keeps_the_last_reading() -> None:
    settings = PacingSettings(poll_interval=60, poll_failure_backoff=2, poll_failure_backoff_max=5)
    reading = Quota(50_000, 14, 0)
    boom = RuntimeError("connection refused")

    async def main() -> tuple[Rig, list[float], Logs]:
        ses = FakeSes(reading, boom, boom, boom, boom, Quota(50_000, 20, 0))
        with capture_logs() as logs:
            rig = Rig(ses, settings)
            t0 = now()
            await asyncio.sleep(61)
            assert rig.governor.quota == reading  # the failures kept it
            assert not rig.task.done()
            await asyncio.sleep(30)
            await rig.finish()
        return rig, [t - t0 for t in ses.calls], logs

    rig, calls, logs = run_virtual(main())
    # Reading, then failures at 60, 62, 66, 71 (back-off 2, 4, then capped at 5), success at 76.
    assert calls == pytest.approx([0, 60, 62, 66, 71, 76], abs=0.05)
    failed = events(logs, "quota.poll_failed")
    assert [f["failures"] for f in failed] == [1, 2, 3, 4]
    assert failed[0]["error"] == "RuntimeError: connection refused"
    assert failed[0]["log_level"] == "warning"
    assert rig.limiter.max_send_rate == 20.0


def test_a_throttled_poll_is_retried_a_second_later_without_backing_off() -> None:
    # Another process starting up took this second of the account's GetSendQuota: a back-off of
    # 2 s, 4 s, ... would leave the reading stale for nothing.
    settings = PacingSettings(poll_interval=60, poll_failure_backoff=2, poll_failure_backoff_max=5)
    ses = FakeSes(Quota(50_000, 14, 0), throttled(), throttled(), Quota(50_000, 20, 0))

    async def main() -> tuple[Rig, list[float]]:
        rig = Rig(ses, settings)
        t0 = now()
        await asyncio.sleep(70)
        await rig.finish()
        return rig, [t - t0 for t in ses.calls]

    rig, calls = run_virtual(main())
    assert calls[:4] == pytest.approx([0, 60, 61, 62], abs=0.05)
    assert rig.limiter.max_send_rate == 20.0


def test_a_hanging_poll_times_out_and_counts_as_failed() -> None:
    settings = PacingSettings(poll_timeout=10, poll_failure_backoff=2)

    async def main() -> tuple[FakeSes, list[float], Logs]:
        ses = FakeSes(HANG, Quota(50_000, 14, 0))
        with capture_logs() as logs:
            rig = Rig(ses, settings)
            t0 = now()
            await asyncio.sleep(13)
            await rig.finish()
        return ses, [t - t0 for t in ses.calls], logs

    ses, calls, logs = run_virtual(main())
    assert calls == pytest.approx([0, 12], abs=0.05)
    assert ses.cancelled == 1
    assert "TimeoutError" in events(logs, "quota.poll_failed")[0]["error"]


def test_stop_ends_a_long_wait_promptly() -> None:
    async def main() -> float:
        rig = Rig(FakeSes(Quota(50_000, 14, 0)), PacingSettings(poll_interval=3600))
        await asyncio.sleep(3)
        return await rig.finish()

    assert run_virtual(main()) < 0.01


def test_stop_during_a_poll_cancels_it() -> None:
    async def main() -> tuple[float, FakeSes]:
        ses = FakeSes(HANG)
        rig = Rig(ses, PacingSettings(poll_timeout=30))
        await asyncio.sleep(1)
        took = await rig.finish()
        return took, ses

    took, ses = run_virtual(main())
    assert took < 0.01
    assert ses.cancelled == 1


def test_stop_set_before_start_returns_at_once() -> None:
    async def main() -> list[float]:
        ses = FakeSes(Quota(1, 1, 0))
        stop = asyncio.Event()
        stop.set()
        owner = uuid.uuid4()
        await run_quota_leader(
            FakeLock({}, owner),
            FakeBoard(),
            owner,
            ses.get_quota,
            QuotaGovernor(),
            RecipientLimiter(1.0),
            stop,
        )
        return ses.calls

    assert run_virtual(main()) == []


def test_logs_pause_and_resume_and_polls_faster_while_paused() -> None:
    settings = PacingSettings(poll_interval=60, poll_interval_near_limit=5, quota_headroom=0.98)

    async def main() -> tuple[list[float], Logs, QuotaGovernor]:
        ses = FakeSes(
            Quota(1000, 14, 990),  # over 98 %: paused
            Quota(1000, 14, 985),  # still
            Quota(1000, 14, 400),  # the window freed room: resumed
        )
        with capture_logs() as logs:
            rig = Rig(ses, settings)
            t0 = now()
            await asyncio.sleep(12)
            await rig.finish()
        return [t - t0 for t in ses.calls], logs, rig.governor

    calls, logs, governor = run_virtual(main())
    assert calls == pytest.approx([0, 5, 10], abs=0.05)
    paused = events(logs, "quota.paused")
    resumed = events(logs, "quota.resumed")
    assert len(paused) == 1 and len(resumed) == 1
    assert "daily sending quota" in paused[0]["reason"]
    assert not governor.paused


def test_a_pause_between_readings_is_noticed_and_polled_for() -> None:
    settings = PacingSettings(poll_interval=60, poll_interval_near_limit=5)

    async def main() -> tuple[list[float], Logs]:
        ses = FakeSes(Quota(50_000, 14, 0))
        with capture_logs() as logs:
            rig = Rig(ses, settings)
            t0 = now()
            await asyncio.sleep(12)
            rig.governor.on_daily_quota_error(now())  # a worker got "daily quota exceeded"
            await asyncio.sleep(10)
            await rig.finish()
        return [t - t0 for t in ses.calls], logs

    calls, logs = run_virtual(main())
    # The leader looks every second: the pause at 12 s is polled for within a second.
    assert len(calls) == 2 and calls[0] == pytest.approx(0, abs=0.05) and 12 < calls[1] <= 13.05
    assert len(events(logs, "quota.paused")) == 1
    assert len(events(logs, "quota.resumed")) == 1


def test_never_calls_twice_within_a_second() -> None:
    settings = PacingSettings(
        poll_interval=1, poll_interval_near_limit=1, poll_failure_backoff=1, poll_timeout=0.2
    )

    async def main() -> list[float]:
        ses = FakeSes(
            Quota(10, 1, 10),
            RuntimeError("x"),
            HANG,
            Quota(10, 1, 0),
            RuntimeError("y"),
            HANG,
            Quota(-1, 1, 0),
        )
        rig = Rig(ses, settings)
        await asyncio.sleep(30)
        await rig.finish()
        return ses.calls

    calls = run_virtual(main())
    assert len(calls) >= 20
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(calls))


def test_only_the_lock_holder_reads_and_another_takes_over_when_it_stops() -> None:
    settings = PacingSettings(poll_interval=60)

    async def main() -> tuple[list[float], list[float], float]:
        board, locks = FakeBoard(), LockRegistry()
        a = Rig(FakeSes(Quota(50_000, 14, 0)), settings, board=board, locks=locks)
        await asyncio.sleep(0.5)
        b = Rig(FakeSes(Quota(50_000, 14, 0)), settings, board=board, locks=locks)
        t0 = now()
        await asyncio.sleep(130)
        assert b.governor.quota == Quota(50_000, 14, 0)  # b follows what a publishes
        await a.finish()  # a's lock is released (a crash releases it with the connection)
        stopped_at = now() - t0
        await asyncio.sleep(5)
        await b.finish()
        return [t - t0 for t in a.ses.calls], [t - t0 for t in b.ses.calls], stopped_at

    a_calls, b_calls, stopped_at = run_virtual(main())
    assert len(a_calls) == 3  # at start, then every 60 s
    assert len(b_calls) == 1  # only after a stopped: at once (within LEAD_RETRY)
    assert stopped_at < b_calls[0] <= stopped_at + 1.05


def test_each_process_counts_what_the_others_sent_and_have_on_the_wire() -> None:
    settings = PacingSettings(poll_interval=60, quota_headroom=1.0)

    async def main() -> tuple[float | None, float | None, float | None]:
        board, locks = FakeBoard(), LockRegistry()
        a = Rig(FakeSes(Quota(1000, 14, 100)), settings, board=board, locks=locks)
        b = Rig(FakeSes(Quota(1000, 14, 100)), settings, board=board, locks=locks)
        await asyncio.sleep(1)
        before = b.governor.remaining()
        assert a.governor.reserve(30, now()).allowed  # handed to SES, no answer yet
        await asyncio.sleep(0.5)
        pending = b.governor.remaining()
        a.governor.answered(30)
        assert a.governor.reserve(20, now()).allowed
        a.governor.answered(20)
        await asyncio.sleep(0.5)
        answered = b.governor.remaining()
        await a.finish()
        await b.finish()
        return before, pending, answered

    before, pending, answered = run_virtual(main())
    assert before == 900  # 1000 allowed, 100 sent before the reading
    assert pending == 870  # a's send on the wire counts for b at once
    assert answered == 850


# -- the first reading --------------------------------------------------------------------------


class QuotaOnly:
    """An SES adapter's get_send_quota over a FakeSes."""

    def __init__(self, ses: FakeSes) -> None:
        self.ses = ses

    async def get_send_quota(self) -> Quota:
        return await self.ses.get_quota()


def throttled() -> SesError:
    return SesError("GetSendQuota", Outcome.THROTTLED, "Throttling", "Rate exceeded")


def test_a_starting_process_takes_over_a_published_reading_instead_of_asking_ses() -> None:
    # Several processes start together; SES answers GetSendQuota once a second for them all.
    async def main() -> tuple[Quota, list[float]]:
        ses = FakeSes(throttled())
        published = Quota(50_000, 30, 1_000)

        async def shared() -> Quota | None:
            return published

        governor = QuotaGovernor(PacingSettings())
        quota = await first_reading(QuotaOnly(ses), governor, published=shared)
        return quota, ses.calls

    quota, calls = run_virtual(main())
    assert quota.max_send_rate == 30 and calls == []  # SES not asked at all


def test_a_throttled_first_read_waits_for_the_reading_another_process_publishes() -> None:
    async def main() -> tuple[Quota, int, float]:
        ses = FakeSes(throttled())  # the leader of another process has the second's turn
        board: list[Quota] = []
        began = now()
        asyncio.get_running_loop().call_later(1.5, board.append, Quota(50_000, 30, 7))

        async def shared() -> Quota | None:
            return board[0] if board else None

        governor = QuotaGovernor(PacingSettings())
        quota = await first_reading(QuotaOnly(ses), governor, published=shared, rand=lambda: 0.5)
        return quota, len(ses.calls), now() - began

    quota, calls, took = run_virtual(main())
    assert quota.sent_last_24_hours == 7  # the published reading, once there was one
    assert 1 <= calls < FIRST_READING_TRIES  # it did not give up
    assert 1.5 <= took <= 1.5 + SHARED_LOOK  # taken as soon as it was published

"""QuotaGovernor: daily-quota admission, local counting between readings, pause and resume."""

from __future__ import annotations

import random

import pytest

from dispatcher.domain.quota import Quota
from dispatcher.pacing.governor import PENDING_EPOCH, Admission, QuotaGovernor
from dispatcher.pacing.settings import PacingSettings

T0 = 5000.0


def governor(**overrides: float) -> QuotaGovernor:
    return QuotaGovernor(PacingSettings(**overrides))


def test_refuses_before_the_first_reading() -> None:
    g = governor()
    a = g.check(1, T0)
    assert not a.allowed
    assert a.reason is not None and "no GetSendQuota reading" in a.reason
    assert a.retry_at is not None and a.retry_at >= T0 + 1.0
    assert g.paused
    assert g.next_poll_in(T0) == 1.0


def test_admits_below_headroom_and_refuses_at_it() -> None:
    g = governor(quota_headroom=0.98)
    g.observe(Quota(max_24_hour_send=1000, max_send_rate=14, sent_last_24_hours=900), T0)
    # Room: 1000 * 0.98 - 900 = 80 recipients.
    assert g.check(50, T0).allowed
    assert g.check(80, T0).allowed
    refused = g.check(81, T0)
    assert not refused.allowed
    assert refused.reason is not None and "daily sending quota" in refused.reason
    assert refused.retry_at is not None and refused.retry_at >= T0 + 1.0
    assert g.remaining() == pytest.approx(80)
    assert not g.paused  # a smaller message still fits


def test_counts_local_sends_between_readings() -> None:
    g = governor(quota_headroom=1.0)
    g.observe(Quota(1000, 14, 900), T0)
    g.record_sent(50, T0 + 1)
    g.record_sent(40, T0 + 2)
    assert g.check(10, T0 + 3).allowed
    assert not g.check(11, T0 + 3).allowed
    g.record_sent(10, T0 + 3)
    assert g.paused  # 1000 of 1000: not even one recipient fits
    assert g.pause_reason is not None and "1000 of 1000" in g.pause_reason


def test_reserve_checks_and_records_in_one_step() -> None:
    g = governor(quota_headroom=1.0)
    g.observe(Quota(100, 14, 95), T0)
    assert g.reserve(3, T0).allowed
    assert not g.reserve(3, T0).allowed  # 98 + 3 > 100; nothing recorded
    assert g.reserve(2, T0).allowed
    assert g.paused


def test_a_reading_replaces_the_local_count() -> None:
    g = governor(quota_headroom=1.0)
    g.observe(Quota(1000, 14, 0), T0)
    g.record_sent(500, T0 + 1)
    g.observe(Quota(1000, 14, 500), T0 + 60)  # SES counted them: no double counting
    assert g.remaining() == pytest.approx(500)


def test_unlimited_quota_admits_anything() -> None:
    g = governor()
    g.observe(Quota(-1, 14, 10**9), T0)
    g.record_sent(10**6, T0)
    assert g.check(50, T0) == Admission(True)
    assert not g.paused
    assert g.remaining() is None
    assert g.next_poll_in(T0) == 60.0
    v = g.view(T0 + 3)
    assert v.limit == -1
    assert v.remaining is None
    assert v.last_reading_age == pytest.approx(3)


def test_daily_quota_error_pauses_at_once_even_if_the_reading_says_room() -> None:
    g = governor()
    g.observe(Quota(10_000, 14, 10), T0)
    g.on_daily_quota_error(T0 + 5)
    a = g.check(1, T0 + 5)
    assert not a.allowed
    assert a.reason is not None and "daily sending quota exceeded" in a.reason
    assert g.paused
    assert g.next_poll_in(T0 + 5) == 1.0  # the 5 s "near limit" interval is already overdue


def test_daily_quota_error_pauses_unlimited_accounts_too() -> None:
    g = governor()
    g.observe(Quota(-1, 14, 0), T0)
    g.on_daily_quota_error(T0 + 1)
    assert not g.check(1, T0 + 1).allowed


def test_a_reading_after_the_error_resumes() -> None:
    # (Which reading may lift it when several processes share one: see the shared tests below.)
    g = governor()
    g.observe(Quota(10_000, 14, 10), T0)
    g.on_daily_quota_error(T0 + 10)
    assert g.paused
    g.observe(Quota(10_000, 14, 9_000), T0 + 16.5)
    assert not g.paused
    assert g.check(50, T0 + 17).allowed


def test_resumes_by_itself_when_the_window_frees_room() -> None:
    g = governor(quota_headroom=0.98)
    g.observe(Quota(200, 1, 199), T0)
    assert g.paused
    assert not g.check(1, T0).allowed
    # Hours later the rolling window has let go of old sends.
    g.observe(Quota(200, 1, 150), T0 + 3600)
    assert not g.paused
    assert g.pause_reason is None
    assert g.check(46, T0 + 3600).allowed  # 150 + 46 = 196 = 200 * 0.98
    assert not g.check(47, T0 + 3600).allowed


def test_polls_faster_near_the_limit_and_when_paused() -> None:
    g = governor(poll_interval=60, poll_interval_near_limit=5, near_limit_fraction=0.9)
    g.observe(Quota(1000, 14, 100), T0)
    assert g.next_poll_in(T0) == 60.0
    assert g.next_poll_in(T0 + 45) == pytest.approx(15.0)
    g.record_sent(800, T0 + 1)  # 900 >= 0.9 * 980: the next reading is due 5 s after the last
    assert g.next_poll_in(T0 + 2) == pytest.approx(3.0)
    assert g.next_poll_in(T0 + 10) == 1.0  # overdue: as soon as AWS allows
    g.observe(Quota(1000, 14, 1000), T0 + 20)
    assert g.paused
    assert g.next_poll_in(T0 + 20) == 5.0


def test_next_poll_in_is_never_below_one_second() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        g = governor(
            poll_interval=rng.choice([1.0, 2.0, 60.0]),
            poll_interval_near_limit=1.0,
            quota_headroom=rng.choice([0.5, 0.98, 1.0]),
        )
        if rng.random() < 0.9:
            limit = rng.choice([-1.0, 0.0, 200.0, 50_000.0])
            g.observe(Quota(limit, 1, rng.uniform(0, 60_000)), T0)
        if rng.random() < 0.3:
            g.on_daily_quota_error(T0 + rng.uniform(-10, 10))
        now = T0 + rng.uniform(-100, 10_000)
        assert g.next_poll_in(now) >= 1.0
        admission = g.check(rng.randint(1, 50), now)
        if not admission.allowed:
            assert admission.retry_at is not None and admission.retry_at >= now + 1.0


def test_view_for_the_status_command() -> None:
    g = governor(quota_headroom=0.98)
    g.observe(Quota(50_000, 14, 1_000), T0)
    g.record_sent(10, T0 + 1)
    v = g.view(T0 + 30)
    assert v.limit == 50_000
    assert v.headroom == 0.98
    assert v.sent_last_24h == 1_000
    assert v.sent_since_reading == 10
    assert v.remaining == pytest.approx(50_000 * 0.98 - 1_010)
    assert not v.paused
    assert v.reason is None
    assert v.last_reading_age == pytest.approx(30)
    assert v.max_send_rate == 14
    empty = QuotaGovernor().view(T0)
    assert empty.limit is None
    assert empty.paused
    assert empty.last_reading_age is None


# -- a reading shared by several processes ---------------------------------------------------


def shared(quota: Quota, *, headroom: float = 1.0) -> QuotaGovernor:
    g = QuotaGovernor(PacingSettings(quota_headroom=headroom))
    g.follow(1, 0.0)
    g.adopt(1, quota, others=0.0, age=0.0, now=0.0)
    return g


def test_a_send_answered_before_a_reading_is_in_it_and_a_pending_one_is_not() -> None:
    g = shared(Quota(1000, 14, 0))
    assert g.reserve(10, 1.0).allowed
    g.answered(10)  # answered while counting into epoch 1: the reading of epoch 2 includes it
    assert g.reserve(5, 1.0).allowed  # on the wire while the reading is taken
    g.follow(2, 2.0)
    g.adopt(2, Quota(1000, 14, 10), others=0.0, age=0.0, now=3.0)
    assert g.remaining() == 1000 - 10 - 5  # the reading's 10, our 5 still pending
    g.answered(5)  # answered after we moved to epoch 2: counted (maybe twice: the safe side)
    g.follow(3, 4.0)
    g.adopt(3, Quota(1000, 14, 15), others=0.0, age=0.0, now=5.0)
    assert g.remaining() == 1000 - 15
    assert g.spent_by_epoch() == {3: 0.0, PENDING_EPOCH: 0.0}


def test_the_others_sends_count_against_the_room() -> None:
    g = shared(Quota(1000, 14, 100))
    g.adopt(1, Quota(1000, 14, 100), others=850.0, age=0.0, now=1.0)
    assert g.remaining() == 50
    assert g.check(50, 1.0).allowed and not g.check(51, 1.0).allowed


def test_each_process_takes_only_its_share_of_the_room_left() -> None:
    g = shared(Quota(1000, 14, 900))
    g.set_share(0.5)  # two processes sending: 100 left, 50 each
    assert g.check(50, 1.0).allowed and not g.check(51, 1.0).allowed
    g.set_share(1.0)
    assert g.check(100, 1.0).allowed
    with pytest.raises(ValueError, match="share"):
        g.set_share(0.0)


def test_the_share_holds_between_syncs_for_one_message_at_a_time() -> None:
    g = shared(Quota(1000, 14, 900))
    g.set_share(0.5)  # two processes: 100 left, each may take 50 before they see each other
    taken = 0
    while g.reserve(1, 1.0).allowed:
        taken += 1
    assert taken == 50
    # The next sync shows the other's 50 too: the room is spent.
    g.adopt(1, Quota(1000, 14, 900), others=50.0, age=0.0, now=2.0)
    assert g.paused and g.remaining() == 0
    # Had the other sent nothing, half of what is left is ours again.
    h = shared(Quota(1000, 14, 900))
    h.set_share(0.5)
    assert h.reserve(40, 1.0).allowed and not h.check(11, 1.0).allowed
    h.adopt(1, Quota(1000, 14, 900), others=0.0, age=0.0, now=2.0)
    assert h.check(30, 2.0).allowed and not h.check(31, 2.0).allowed


def test_a_daily_quota_refusal_is_lifted_only_by_a_reading_begun_after_it() -> None:
    g = shared(Quota(1000, 14, 0))
    g.on_daily_quota_error(5.0)
    g.follow(2, 4.0)  # begun before the refusal
    g.adopt(2, Quota(1000, 14, 10), others=0.0, age=0.0, now=6.0)
    assert g.paused
    g.follow(3, 7.0)
    g.adopt(3, Quota(1000, 14, 10), others=0.0, age=0.0, now=8.0)
    assert not g.paused

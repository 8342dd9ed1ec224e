"""The simulator's rate bucket and rolling daily quota, on a clock the test moves."""

from __future__ import annotations

import pytest

from dispatcher.sim.limits import ActionLimit, RateBucket, RollingQuota


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_starts_full_and_lets_a_burst_of_rate_times_burst_seconds_pass() -> None:
    clock = FakeClock()
    bucket = RateBucket(10.0, burst_seconds=2.0, clock=clock)
    assert bucket.capacity == 20.0
    assert all(bucket.try_take(1) for _ in range(20))
    assert not bucket.try_take(1)


def test_sustained_excess_is_refused_and_the_rate_holds_over_time() -> None:
    clock = FakeClock()
    bucket = RateBucket(5.0, clock=clock)
    accepted = 0
    for _ in range(1000):  # offered at 50/s for 20 s
        accepted += bucket.try_take(1)
        clock.advance(0.02)
    # 5 to start with, then 5/s for 20 s.
    assert 100 <= accepted <= 106


def test_capacity_is_at_least_one_token_for_slow_rates() -> None:
    clock = FakeClock()
    bucket = RateBucket(0.5, clock=clock)
    assert bucket.capacity == 1.0
    assert bucket.try_take(1)
    assert not bucket.try_take(1)
    clock.advance(1.9)
    assert not bucket.try_take(1)
    clock.advance(0.1)
    assert bucket.try_take(1)


def test_multi_recipient_message_costs_one_token_per_recipient() -> None:
    clock = FakeClock()
    bucket = RateBucket(10.0, clock=clock)
    assert bucket.try_take(7)
    assert bucket.level() == pytest.approx(3.0)
    assert bucket.try_take(3)
    assert not bucket.try_take(1)


def test_level_goes_negative_and_the_burst_is_paid_back() -> None:
    # SES: at 1/s a 5-recipient message is accepted and the next sends fail for about 5 s.
    clock = FakeClock()
    bucket = RateBucket(1.0, clock=clock)
    assert bucket.try_take(5)
    assert bucket.level() == pytest.approx(-4.0)
    assert bucket.retry_after() == pytest.approx(5.0)
    for _ in range(49):
        clock.advance(0.1)
        assert not bucket.try_take(1), f"accepted at t+{clock.now - 1000:.1f}s"
    clock.advance(0.1)
    assert bucket.try_take(1)


def test_refused_attempt_takes_nothing() -> None:
    clock = FakeClock()
    bucket = RateBucket(1.0, clock=clock)
    assert bucket.try_take(1)
    for _ in range(10):
        assert not bucket.try_take(1)
    clock.advance(1.0)
    assert bucket.try_take(1)


def test_set_rate_at_runtime_changes_refill_and_capacity() -> None:
    clock = FakeClock()
    bucket = RateBucket(1.0, clock=clock)
    assert bucket.try_take(1)
    clock.advance(0.5)
    bucket.set_rate(10.0)  # half a token earned at the old rate is kept
    assert bucket.capacity == 10.0
    assert bucket.level() == pytest.approx(0.5)
    clock.advance(0.05)
    assert bucket.try_take(1)
    clock.advance(10.0)
    assert bucket.level() == pytest.approx(10.0)
    bucket.set_rate(2.0)  # lowering the rate caps the saved tokens at the new capacity
    assert bucket.level() == pytest.approx(2.0)


def test_set_rate_rejects_nonsense() -> None:
    bucket = RateBucket(1.0, clock=FakeClock())
    with pytest.raises(ValueError, match="rate"):
        bucket.set_rate(0.0)
    with pytest.raises(ValueError, match="burst_seconds"):
        RateBucket(1.0, burst_seconds=0.0, clock=FakeClock())


def test_quota_refuses_when_the_message_would_cross_the_limit() -> None:
    clock = FakeClock()
    quota = RollingQuota(10, window=100.0, clock=clock)
    assert quota.try_take(8)
    assert not quota.allows(3)  # 8 + 3 > 10: the whole message is refused
    assert quota.try_take(2)
    assert quota.sent_in_window() == 10
    assert not quota.try_take(1)
    assert quota.sent_in_window() == 10  # a refusal counts nothing


def test_quota_window_rolls_and_frees_what_was_sent_longest_ago() -> None:
    clock = FakeClock()
    quota = RollingQuota(10, window=100.0, clock=clock)
    quota.record(6)
    clock.advance(40.0)
    quota.record(4)
    assert not quota.allows(1)
    clock.advance(59.0)  # first send is 99 s old: still counted
    assert quota.sent_in_window() == 10
    clock.advance(1.0)  # now 100 s old: freed
    assert quota.sent_in_window() == 4
    assert quota.allows(6)
    clock.advance(40.0)
    assert quota.sent_in_window() == 0


def test_quota_merges_close_sends_but_never_frees_early() -> None:
    clock = FakeClock()
    quota = RollingQuota(-1, window=10.0, clock=clock)  # slots of 1 ms
    for _ in range(10_000):  # 10 000 sends within 0.1 ms
        quota.record(1)
        clock.advance(0.00000001)
    assert len(quota._entries) == 1
    assert quota.sent_in_window() == 10_000
    clock.advance(9.9999)
    assert quota.sent_in_window() == 10_000
    clock.advance(0.001)
    assert quota.sent_in_window() == 0


def test_unlimited_quota_allows_everything_but_still_counts() -> None:
    clock = FakeClock()
    quota = RollingQuota(-1, window=100.0, clock=clock)
    assert quota.unlimited
    assert quota.try_take(1_000_000)
    assert quota.sent_in_window() == 1_000_000


def test_quota_reconfigured_at_runtime_keeps_what_was_sent() -> None:
    clock = FakeClock()
    quota = RollingQuota(5, window=100.0, clock=clock)
    quota.record(5)
    assert not quota.allows(1)
    quota.configure(max_sends=6)
    assert quota.allows(1)
    quota.configure(window=10.0)
    clock.advance(10.0)
    assert quota.sent_in_window() == 0


# -- 1 request/s on non-send actions ----------------------------------------------------------


def test_each_action_gets_one_request_per_second_and_no_burst() -> None:
    clock = FakeClock()
    limit = ActionLimit(1.0, clock=clock)
    assert limit.allow("GetSendQuota")
    assert not limit.allow("GetSendQuota")  # a second call within the second
    assert limit.allow("CreateEmailIdentity")  # another action has its own second
    clock.advance(0.5)
    assert not limit.allow("GetSendQuota")
    clock.advance(0.5)
    assert limit.allow("GetSendQuota")
    clock.advance(10.0)  # a quiet spell earns no burst: still one call, then a refusal
    assert limit.allow("GetSendQuota")
    assert not limit.allow("GetSendQuota")


def test_a_zero_rate_means_no_limit_and_a_changed_rate_starts_afresh() -> None:
    clock = FakeClock()
    limit = ActionLimit(1.0, clock=clock)
    assert limit.allow("GetAccount")
    assert all(limit.allow("GetAccount", 0.0) for _ in range(100))
    assert limit.allow("GetAccount", 1.0)
    assert not limit.allow("GetAccount", 1.0)

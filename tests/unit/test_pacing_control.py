"""RateController: multiplicative cut on throttling, floor, one cut per burst, linear recovery."""

from __future__ import annotations

import pytest

from dispatcher.pacing.control import RateController
from dispatcher.pacing.settings import PacingSettings

T0 = 100.0


def test_full_rate_without_throttling() -> None:
    c = RateController(14.0)
    assert c.allowed == 14.0
    assert c.current(T0) == 14.0
    assert not c.recovering(T0)


def test_throttle_cuts_multiplicatively() -> None:
    c = RateController(10.0, PacingSettings(throttle_decrease_factor=0.7))
    assert c.on_throttled(T0)
    assert c.current(T0) == pytest.approx(7.0)
    assert c.recovering(T0)


def test_a_burst_of_throttles_cuts_once() -> None:
    c = RateController(10.0)
    assert c.on_throttled(T0)
    for dt in (0.0, 0.1, 0.5, 0.99):
        assert not c.on_throttled(T0 + dt)
    assert c.current(T0) == pytest.approx(7.0)
    # A throttle after the cut interval is a new burst: cut again, from the partly recovered rate.
    before = c.current(T0 + 1.0)
    assert c.on_throttled(T0 + 1.0)
    assert c.current(T0 + 1.0) == pytest.approx(before * 0.7)


def test_cuts_stop_at_the_floor() -> None:
    # No burst folding, so every call cuts; floor = max(10 % of 14, 0.5) = 1.4.
    c = RateController(14.0, PacingSettings(throttle_cut_interval=0.0))
    for _ in range(50):
        assert c.on_throttled(T0)
    assert c.current(T0) == pytest.approx(1.4)
    assert c.floor == pytest.approx(1.4)


def test_throttled_every_second_settles_where_cut_and_ramp_balance() -> None:
    # r = 0.7 * (r + (14 - r) / 10)  =>  r = 0.98 / 0.37: above the floor, below the ceiling.
    c = RateController(14.0)
    for i in range(100):
        assert c.on_throttled(T0 + i)
    assert c.current(T0 + 99) == pytest.approx(0.98 / 0.37)


def test_floor_is_the_absolute_minimum_for_small_rates() -> None:
    # 10 % would be 0.2/s; the absolute floor 0.5/s wins.
    c = RateController(2.0, PacingSettings(throttle_cut_interval=0.0))
    for _ in range(20):
        c.on_throttled(T0)
    assert c.current(T0) == pytest.approx(0.5)


def test_floor_never_exceeds_the_allowed_rate() -> None:
    c = RateController(0.3)
    c.on_throttled(T0)
    assert c.current(T0) == pytest.approx(0.3)


def test_recovery_is_linear_and_complete_after_recovery_seconds() -> None:
    c = RateController(10.0, PacingSettings(throttle_recovery_seconds=10.0))
    c.on_throttled(T0)  # 7.0
    assert c.current(T0 + 2.5) == pytest.approx(7.75)
    assert c.current(T0 + 5.0) == pytest.approx(8.5)
    assert c.current(T0 + 9.9) == pytest.approx(9.97)
    assert c.recovering(T0 + 9.9)
    assert c.current(T0 + 10.0) == 10.0
    assert not c.recovering(T0 + 10.0)
    assert c.current(T0 + 1000.0) == 10.0


def test_recovery_is_monotonic() -> None:
    c = RateController(50.0)
    c.on_throttled(T0)
    rates = [c.current(T0 + i / 10) for i in range(0, 120)]
    assert rates == sorted(rates)
    assert rates[-1] == 50.0


def test_set_allowed_when_steady_moves_the_rate() -> None:
    c = RateController(14.0)
    c.set_allowed(28.0, T0)
    assert c.current(T0) == 28.0
    c.set_allowed(5.0, T0 + 1)
    assert c.current(T0 + 1) == 5.0


def test_set_allowed_during_recovery_neither_jumps_nor_delays_the_end() -> None:
    c = RateController(10.0)
    c.on_throttled(T0)  # 7.0, full again at T0 + 10
    at_5 = c.current(T0 + 5)  # 8.5
    c.set_allowed(20.0, T0 + 5)
    assert c.current(T0 + 5) == pytest.approx(at_5)
    assert c.current(T0 + 7.5) == pytest.approx((at_5 + 20.0) / 2)
    assert c.current(T0 + 10) == 20.0
    assert not c.recovering(T0 + 10)


def test_set_allowed_below_the_current_rate_clamps_at_once() -> None:
    c = RateController(10.0)
    c.on_throttled(T0)  # 7.0
    c.set_allowed(3.0, T0 + 1)
    assert c.current(T0 + 1) == pytest.approx(3.0)
    assert c.current(T0 + 5) == pytest.approx(3.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_rejects_a_nonsense_rate(bad: float) -> None:
    with pytest.raises(ValueError, match="send rate"):
        RateController(bad)
    c = RateController(1.0)
    with pytest.raises(ValueError, match="send rate"):
        c.set_allowed(bad, T0)

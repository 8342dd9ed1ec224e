"""Warm-up: the schedule, the governor's cap over two processes with the day moved, spike holds."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from dispatcher.domain.quota import Quota
from dispatcher.errors import ConfigError
from dispatcher.feedback.guard import Counts
from dispatcher.pacing.governor import QuotaGovernor
from dispatcher.pacing.warmup import (
    DEFAULT_RAMP,
    MemoryDays,
    WarmupGate,
    WarmupSettings,
    cap_for,
    parse_schedule,
    spike_reason,
)

T0 = 1000.0
DAY1 = date(2026, 12, 6)
ROOMY = Quota(max_24_hour_send=1_000_000, max_send_rate=100, sent_last_24_hours=0)


def test_schedule_parses_the_users_list_and_defaults_to_the_documented_ramp() -> None:
    assert parse_schedule("100, 200,1_000") == (100, 200, 1000)
    assert parse_schedule("") == DEFAULT_RAMP
    assert DEFAULT_RAMP[:3] == (50, 100, 500)
    assert list(DEFAULT_RAMP) == sorted(DEFAULT_RAMP)
    assert cap_for((100, 200), 1) == 100 and cap_for((100, 200), 2) == 200
    assert cap_for((100, 200), 3) is None  # the ramp is over: only SES's quota applies
    with pytest.raises(ConfigError, match=r"day 2 is '-5'.*whole numbers"):
        WarmupSettings(schedule="100, -5")
    with pytest.raises(ConfigError, match="chunk"):
        WarmupSettings(chunk=10)


class Process:
    """One dispatcher process: its governor and gate, supplied from the shared day rows."""

    def __init__(self, days: MemoryDays, chunk: int = 50) -> None:
        self.days, self.chunk = days, chunk
        self.governor = QuotaGovernor()
        self.governor.observe(ROOMY, T0)
        self.gate = self.governor.warmup = WarmupGate()

    def refill(self, today: date) -> None:
        self.gate.apply(self.days.take(today, self.gate.needs(self.chunk)))

    def send_all(self, today: date, size: int = 1, limit: int = 10_000) -> tuple[int, str | None]:
        """Send messages of `size` recipients until refused for the day; (sent, reason)."""
        sent = 0
        self.refill(today)
        while sent < limit:
            a = self.governor.reserve(size, T0)
            if a.allowed:
                self.governor.answered(size)
                sent += size
            elif a.until_sync:  # the refill loop's turn
                self.refill(today)
            else:
                return sent, a.reason
        return sent, None


def test_day_one_stops_at_the_cap_across_processes_and_day_two_resumes() -> None:
    days = MemoryDays((100, 250))
    a, b = Process(days), Process(days)

    sent_a, reason = a.send_all(DAY1, size=7)
    sent_b, _ = b.send_all(DAY1, size=1)
    # Together never over the cap; what is not sent is still in a's hand (7 did not fit).
    assert sent_a + sent_b + a.gate.left + b.gate.left == 100 and a.gate.left < 7
    assert reason is not None and "warm-up day 1" in reason and "cap of 100" in reason
    assert b.governor.paused  # not even one recipient more today
    assert b.governor.pause_reason is not None and "next day" in b.governor.pause_reason

    # The next UTC day: day 2's cap, taken from a fresh row.
    day2 = DAY1 + timedelta(days=1)
    sent, reason = a.send_all(day2)
    assert sent == 250 and reason is not None and "warm-up day 2" in reason
    assert days.rows[day2][0] == 250
    # The schedule is over on day 3: no warm-up cap, only SES's quota.
    sent, reason = b.send_all(day2 + timedelta(days=1), limit=5000)
    assert sent == 5000 and reason is None


def test_a_day_without_sending_does_not_count() -> None:
    days = MemoryDays((100, 250))
    p = Process(days)
    p.send_all(DAY1)
    p.refill(DAY1 + timedelta(days=1))  # a day that only looks (nothing sent that day)
    days.rows[DAY1 + timedelta(days=1)][0] = 0.0
    sent, reason = p.send_all(DAY1 + timedelta(days=2))
    assert sent == 250 and reason is not None and "day 2" in reason


def test_left_over_room_goes_back_and_a_new_day_drops_it() -> None:
    days = MemoryDays((100, 100))
    p = Process(days)
    p.refill(DAY1)
    assert p.gate.left == 50 and days.rows[DAY1][0] == 50
    assert p.gate.give_back() == (DAY1, 50)
    p.refill(DAY1)
    p.refill(DAY1 + timedelta(days=1))  # yesterday's room is not today's
    assert p.gate.left == 0
    p.refill(DAY1 + timedelta(days=1))
    assert p.gate.left == 50 and days.rows[DAY1 + timedelta(days=1)][0] == 50


def test_a_bounce_spike_holds_the_ramp_with_the_reason() -> None:
    settings = WarmupSettings(hold_bounce_rate=0.02, min_volume=50)
    assert spike_reason(Counts(sent=100, bounced=1, complained=0), settings) is None
    assert spike_reason(Counts(sent=40, bounced=10, complained=0), settings) is None  # too few
    reason = spike_reason(Counts(sent=100, bounced=3, complained=0), settings)
    assert reason is not None and reason.startswith("warm-up held: account bounce rate 3%")

    days = MemoryDays((100, 250, 500))
    p = Process(days)
    p.send_all(DAY1)
    assert days.hold(DAY1, reason) and not days.hold(DAY1, "again")  # once a day
    # Day 1 was held: the next day is day 1 again, at day 1's cap.
    sent, why = p.send_all(DAY1 + timedelta(days=1))
    assert sent == 100 and why is not None and "warm-up day 1" in why
    sent, why = p.send_all(DAY1 + timedelta(days=2))
    assert sent == 250 and why is not None and "warm-up day 2" in why


def test_a_message_larger_than_the_room_in_hand_waits_for_a_refill_not_for_tomorrow() -> None:
    days = MemoryDays((1000,))
    p = Process(days)
    p.refill(DAY1)
    for _ in range(15):  # 45 of the 50 in hand used: 5 left, below a 50-recipient message
        assert p.governor.reserve(3, T0).allowed
    a = p.governor.check(50, T0)
    assert not a.allowed and a.until_sync
    p.refill(DAY1)
    assert p.governor.check(50, T0).allowed

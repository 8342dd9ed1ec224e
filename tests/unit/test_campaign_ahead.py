"""How far the materialiser keeps a campaign ahead of its sending (issue 19 item 5)."""

from __future__ import annotations

from dispatcher.campaigns.materialise import Ahead


def test_a_slow_account_keeps_the_floor_ready() -> None:
    ahead = Ahead(seconds=20.0, floor=2000, ceiling=200_000)
    assert ahead.target(14.0) == 2000
    assert ahead.wanted(14.0, ready=990, unmaterialised=1_000_000) == 1010


def test_a_fast_account_keeps_seconds_of_its_rate_ready_up_to_the_ceiling() -> None:
    ahead = Ahead(seconds=20.0, floor=2000, ceiling=200_000)
    assert ahead.target(3000.0) == 60_000
    assert ahead.wanted(3000.0, ready=10_000, unmaterialised=1_000_000) == 50_000
    assert ahead.target(1e9) == 200_000


def test_nothing_is_made_when_enough_is_ready_or_nobody_is_left() -> None:
    ahead = Ahead()
    assert ahead.wanted(100.0, ready=ahead.target(100.0), unmaterialised=10) == 0
    assert ahead.wanted(100.0, ready=ahead.mark(100.0), unmaterialised=10_000) == 0
    assert ahead.wanted(100.0, ready=0, unmaterialised=7) == 7
    assert ahead.wanted(100.0, ready=0, unmaterialised=0) == 0


def test_a_campaign_is_refilled_to_its_target_only_once_it_falls_below_the_mark() -> None:
    """Chunks of half the target, not a top-up of whatever was sent since the last look."""
    ahead = Ahead(seconds=3.0, floor=2000, ceiling=50_000, refill_below=0.5)
    assert ahead.target(3000.0) == 9000 and ahead.mark(3000.0) == 4500
    assert ahead.wanted(3000.0, ready=8_600, unmaterialised=1_000_000) == 0
    assert ahead.wanted(3000.0, ready=4_500, unmaterialised=1_000_000) == 0
    assert ahead.wanted(3000.0, ready=4_499, unmaterialised=1_000_000) == 4_501
    assert ahead.wanted(3000.0, ready=4_499, unmaterialised=300) == 300

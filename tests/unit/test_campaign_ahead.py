"""How far the materialiser keeps a campaign ahead of its sending (issue 19 item 5)."""

from __future__ import annotations

from dispatcher.campaigns.materialise import Ahead


def test_a_slow_account_keeps_the_floor_ready() -> None:
    ahead = Ahead(seconds=20.0, floor=2000, ceiling=200_000)
    assert ahead.target(14.0) == 2000
    assert ahead.wanted(14.0, ready=1990, unmaterialised=1_000_000) == 10


def test_a_fast_account_keeps_seconds_of_its_rate_ready_up_to_the_ceiling() -> None:
    ahead = Ahead(seconds=20.0, floor=2000, ceiling=200_000)
    assert ahead.target(3000.0) == 60_000
    assert ahead.wanted(3000.0, ready=10_000, unmaterialised=1_000_000) == 50_000
    assert ahead.target(1e9) == 200_000


def test_nothing_is_made_when_enough_is_ready_or_nobody_is_left() -> None:
    ahead = Ahead()
    assert ahead.wanted(100.0, ready=ahead.target(100.0), unmaterialised=10) == 0
    assert ahead.wanted(100.0, ready=0, unmaterialised=7) == 7
    assert ahead.wanted(100.0, ready=0, unmaterialised=0) == 0

"""CallPacer: SES's one SendBulkEmail a second, shared by the processes of an account."""

from __future__ import annotations

import itertools

import pytest

from dispatcher.pacing.calls import HOLD_SLOTS, CallPacer


def test_a_process_alone_calls_once_per_interval() -> None:
    pacer = CallPacer(1.25, 0.2)
    assert pacer.take(10.3) is True  # the first call goes at once
    assert pacer.take(10.5) is False  # too soon: the group goes one by one instead
    assert pacer.take(11.5) is False
    assert pacer.take(11.55) is True


def test_with_others_a_process_calls_early_in_its_own_slots() -> None:
    pacer = CallPacer(1.25, 0.2)
    pacer.set_turn(1, 2)
    assert pacer.take(0.1) is False  # slot 0 is rank 0's
    assert pacer.take(1.3) is True  # slot 1 (1.25)
    assert pacer.take(1.35) is False  # one call a slot
    assert pacer.take(3.8) is True  # slot 3 (3.75)
    assert pacer.take(6.3) is True  # slot 5 (6.25)
    assert pacer.take(10.1) is False  # slot 8 is rank 0's
    assert pacer.take(11.5) is False  # slot 9 began at 11.25: 0.25 s in is too late in it
    assert pacer.take(13.8) is True  # slot 11


def test_processes_of_one_account_never_call_within_a_second_of_each_other() -> None:
    """Each process tries as often as its loop comes round (every 10 ms here, with its own
    offset); together they make at most one call a slot, always >= 1.05 s apart. Paced each at
    its share alone, two processes' calls landed a moment apart and SES refused one."""
    for n in (1, 2, 3, 5):
        pacers = [CallPacer(1.25, 0.2) for _ in range(n)]
        for rank, pacer in enumerate(pacers):
            pacer.set_turn(rank, n)
        calls: list[tuple[float, int]] = []
        for tick in range(6_000):  # 60 s
            for rank, pacer in enumerate(pacers):
                now = tick * 0.01 + rank * 0.003
                if pacer.take(now):
                    calls.append((now, rank))
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(calls)]
        assert min(gaps) >= 1.05 - 1e-9, n
        assert len(calls) >= 47  # 60 s / 1.25 s = 48 slots, each used
        assert {rank for _, rank in calls} == set(range(n))  # every process gets its turns


def test_a_refused_call_holds_this_process_for_a_few_slots_once() -> None:
    pacer = CallPacer(1.25, 0.2)
    assert pacer.take(0.0) is True
    for _ in range(50):  # each of the call's recipients reports the refusal
        pacer.refused(0.1)
    held_until = 0.1 + HOLD_SLOTS * 1.25
    assert not any(pacer.take(k * 1.25) for k in range(1, HOLD_SLOTS + 1))
    assert pacer.take(held_until + 1.25 - (held_until % 1.25)) is True
    pacer.refused(6.5)  # refused again: counted anew, for this call
    assert pacer.take(7.5) is False


def test_a_rank_past_the_count_is_clamped() -> None:
    pacer = CallPacer(1.25, 0.2)
    pacer.set_turn(3, 2)  # a process counted before a peer's mark lapsed
    assert pacer.take(0.0) is False  # slot 0 is rank 0's
    assert pacer.take(1.25) is True


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="interval must be > 0"):
        CallPacer(0.0)
    with pytest.raises(ValueError, match="window must be in"):
        CallPacer(1.25, 2.0)

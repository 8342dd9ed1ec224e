"""CallPacer: SES's one SendBulkEmail a second, shared by the processes of an account."""

from __future__ import annotations

import pytest

from dispatcher.pacing.calls import CallPacer


def test_one_call_per_interval() -> None:
    pacer = CallPacer(1.25)
    assert pacer.take(10.0) is True
    assert pacer.take(10.5) is False  # too soon: the group goes one by one instead
    assert pacer.take(11.2) is False
    assert pacer.take(11.25) is True


def test_a_process_with_half_the_account_takes_half_the_calls() -> None:
    pacer = CallPacer(1.25)
    assert pacer.take(0.0, share=0.5) is True
    assert pacer.take(2.0, share=0.5) is False  # two processes: 2.5 s each
    assert pacer.take(2.5, share=0.5) is True


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval must be > 0"):
        CallPacer(0.0)

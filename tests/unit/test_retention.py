"""Retention's pure part on a moved clock: which finished mail is due, and batch sizing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatcher.config.settings import RetentionSettings
from dispatcher.errors import ConfigError
from dispatcher.retention import BatchSizer, cutoffs, due
from dispatcher.retention.policy import CONTENT_SLACK, content_since

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
DEFAULTS = RetentionSettings()  # content 7 d, rows 90 d; failed: content 30 d, rows 90 d


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.mark.parametrize(
    ("state", "age_days", "expected"),
    [
        ("sent", 6.9, "keep"),
        ("sent", 7.1, "content"),
        ("sent", 89.9, "content"),
        ("sent", 90.1, "row"),
        ("cancelled", 7.1, "content"),
        ("cancelled", 90.1, "row"),
        ("failed", 7.1, "keep"),  # failed mail keeps its content longer
        ("failed", 30.1, "content"),
        ("failed", 90.1, "row"),
        ("unknown", 10_000, "keep"),  # in doubt: a person decides first
        ("queued", 10_000, "keep"),  # not finished: scheduled or waiting
        ("held", 10_000, "keep"),
        ("in_flight", 10_000, "keep"),
    ],
)
def test_what_is_due_by_state_and_age(state: str, age_days: float, expected: str) -> None:
    assert due(DEFAULTS, state, days_ago(age_days), NOW) == expected


def test_the_clock_moving_on_makes_kept_mail_due() -> None:
    finished = NOW
    assert due(DEFAULTS, "sent", finished, NOW) == "keep"
    assert due(DEFAULTS, "sent", finished, NOW + timedelta(days=8)) == "content"
    assert due(DEFAULTS, "sent", finished, NOW + timedelta(days=91)) == "row"


def test_zero_days_keeps_that_kind_forever() -> None:
    forever = RetentionSettings(content_days=0, rows_days=0)
    assert due(forever, "sent", days_ago(10_000), NOW) == "keep"
    # the failed settings are their own
    assert due(forever, "failed", days_ago(100), NOW) == "row"
    sent = next(c for c in cutoffs(forever, NOW) if c.state == "sent")
    assert sent.content_before is None and sent.rows_before is None


def test_cutoffs_name_each_finished_state_once() -> None:
    cuts = cutoffs(DEFAULTS, NOW)
    assert [c.state for c in cuts] == ["sent", "failed", "cancelled"]
    failed = cuts[1]
    assert failed.content_before == days_ago(30) and failed.rows_before == days_ago(90)


def test_a_run_starts_content_pruning_a_little_before_the_last_mark() -> None:
    assert content_since(None) is None  # never ran: from the beginning
    assert content_since(NOW) == NOW - CONTENT_SLACK


def test_batches_shrink_when_slow_and_grow_back_when_quick() -> None:
    sizer = BatchSizer(1000, target=0.25, floor=50)
    assert sizer.size == 1000
    assert sizer.took(1.0) == 500  # a lock held a second: halve
    assert sizer.took(1.0) == 250
    for _ in range(10):
        sizer.took(5.0)
    assert sizer.size == 50  # never below the floor
    assert sizer.took(0.2) == 50  # near the target: stay
    assert sizer.took(0.01) == 75
    for _ in range(20):
        sizer.took(0.01)
    assert sizer.size == 1000  # never above the configured batch size


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content_days": -1.0}, "retention.content_days must be a number >= 0"),
        ({"rows_days": float("nan")}, "retention.rows_days must be a number >= 0"),
        ({"interval": 0.0}, "retention.interval must be a number > 0"),
        ({"batch_size": 0}, "retention.batch_size must be between 1 and 100000"),
    ],
)
def test_bad_settings_name_the_key(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RetentionSettings(**kwargs)  # type: ignore[arg-type]

"""PacingSettings: sane defaults, and an out-of-range value names the field and the range."""

from __future__ import annotations

import dataclasses

import pytest

from dispatcher.errors import ConfigError
from dispatcher.pacing.settings import PacingConfigError, PacingSettings


def test_defaults_are_valid_and_frozen() -> None:
    s = PacingSettings()
    assert s.rate_headroom == 1.0
    assert s.quota_headroom == 0.98
    assert s.poll_interval == 60.0
    assert s.poll_interval_near_limit == 5.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.poll_interval = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("rate_headroom", 0.0, r"pacing\.rate_headroom must be in \(0, 1\], got 0"),
        ("rate_headroom", 1.5, r"pacing\.rate_headroom must be in \(0, 1\]"),
        ("quota_headroom", 1.01, r"pacing\.quota_headroom must be in \(0, 1\]"),
        ("quota_headroom", -0.1, r"pacing\.quota_headroom"),
        ("near_limit_fraction", 0.0, r"pacing\.near_limit_fraction must be in \(0, 1\]"),
        ("poll_interval", 0.5, r"pacing\.poll_interval must be >= 1\.0 seconds"),
        ("poll_interval_near_limit", 0.9, r"pacing\.poll_interval_near_limit must be in \[1\.0,"),
        ("poll_interval_near_limit", 61.0, r"poll_interval=60\.0"),
        ("poll_failure_backoff", 0.1, r"pacing\.poll_failure_backoff must be >= 1\.0"),
        ("poll_failure_backoff_max", 1.0, r"pacing\.poll_failure_backoff_max must be >="),
        ("poll_timeout", 0.0, r"pacing\.poll_timeout must be > 0 seconds"),
        ("throttle_decrease_factor", 1.0, r"pacing\.throttle_decrease_factor must be in \(0, 1\)"),
        ("throttle_decrease_factor", 0.0, r"pacing\.throttle_decrease_factor"),
        ("throttle_min_rate_fraction", 1.2, r"pacing\.throttle_min_rate_fraction must be in"),
        ("throttle_min_rate", 0.0, r"pacing\.throttle_min_rate must be > 0"),
        ("throttle_cut_interval", -1.0, r"pacing\.throttle_cut_interval must be >= 0"),
        ("throttle_recovery_seconds", 0.0, r"pacing\.throttle_recovery_seconds must be > 0"),
        ("recovery_refresh_interval", -0.25, r"pacing\.recovery_refresh_interval must be > 0"),
        ("poll_interval", float("nan"), r"pacing\.poll_interval must be a finite number"),
        ("rate_headroom", "1", r"pacing\.rate_headroom must be a number"),
        ("quota_headroom", True, r"pacing\.quota_headroom must be a number"),
    ],
)
def test_out_of_range_names_the_field(field: str, value: object, expected: str) -> None:
    with pytest.raises(ValueError, match=expected) as info:
        PacingSettings(**{field: value})  # type: ignore[arg-type]
    assert isinstance(info.value, ConfigError)  # the CLI maps it to exit code 2
    assert isinstance(info.value, PacingConfigError)


def test_integers_are_accepted() -> None:
    s = PacingSettings(poll_interval=30, poll_interval_near_limit=1, rate_headroom=1)
    assert s.poll_interval == 30

"""Send windows: parsing, and when a window next opens across DST changes and time zones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.campaigns.recipients import RecipientRow, RejectedRow
from dispatcher.campaigns.windows import check_zones, parse_window, zone
from dispatcher.errors import InputError

BERLIN = zone("Europe/Berlin")
OFFICE = parse_window("Mon-Fri 09:00-18:00")


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_parses_days_and_hours_and_says_what_to_fix() -> None:
    assert OFFICE.days == frozenset(range(5))
    assert parse_window("Fri-Mon 10:00-12:00").days == frozenset({4, 5, 6, 0})  # wraps
    assert parse_window("mon, wed,Sat 08:00-09:30").days == frozenset({0, 2, 5})
    assert parse_window("08:00-24:00").days == frozenset(range(7))
    for bad, says in (
        ("Mon-Fri", "not a send window"),
        ("Mon-Fri 18:00-09:00", "end must be after the start"),
        ("Mon-Fry 09:00-18:00", "'fry' is not a weekday"),
        ("Mon 25:00-26:00", "not a time of day"),
    ):
        with pytest.raises(InputError, match=says):
            parse_window(bad)
    with pytest.raises(InputError, match="'Mars/Olympus' is not a time zone"):
        zone("Mars/Olympus")


def test_open_inside_the_window_and_next_start_outside_it() -> None:
    assert OFFICE.next_open(BERLIN, utc(2026, 1, 14, 9, 0)) is None  # Wed 10:00 CET
    # Wed 08:59 CET: opens at 09:00 CET the same day.
    assert OFFICE.next_open(BERLIN, utc(2026, 1, 14, 7, 59)) == utc(2026, 1, 14, 8, 0)
    # Wed 18:00 CET: closed (the end is exclusive) until Thursday.
    assert OFFICE.next_open(BERLIN, utc(2026, 1, 14, 17, 0)) == utc(2026, 1, 15, 8, 0)


def test_a_weekend_across_the_spring_dst_change_opens_at_nine_local() -> None:
    # Friday 27 March 2026, 18:30 CET; clocks go forward on Sunday the 29th.
    opens = OFFICE.next_open(BERLIN, utc(2026, 3, 27, 17, 30))
    assert opens == utc(2026, 3, 30, 7, 0)  # Monday 09:00 CEST, an hour earlier in UTC
    assert opens is not None and opens.astimezone(BERLIN).hour == 9


def test_starts_in_the_dst_gap_and_the_repeated_hour() -> None:
    gap = parse_window("Sun 02:30-04:00")  # 02:30 does not exist on 29 March 2026 in Berlin
    assert gap.next_open(BERLIN, utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 1, 30)
    twice = parse_window("Sun 02:30-05:00")  # 02:30 happens twice on 25 October 2026
    assert twice.next_open(BERLIN, utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 0, 30)
    # Inside during the second 02:30 too (01:30 UTC, CET).
    assert twice.next_open(BERLIN, utc(2026, 10, 25, 1, 30)) is None


def test_each_recipient_in_their_own_zone_at_one_moment() -> None:
    now = utc(2026, 6, 10, 14, 0)  # Wednesday: 16:00 Berlin, 10:00 New York, 23:00 Tokyo
    assert OFFICE.next_open(BERLIN, now) is None
    assert OFFICE.next_open(zone("America/New_York"), now) is None
    assert OFFICE.next_open(zone("Asia/Tokyo"), now) == utc(2026, 6, 11, 0, 0)  # 09:00 JST
    late = parse_window("Mon-Sun 20:00-24:00")
    assert late.next_open(zone("Asia/Tokyo"), now) is None  # 23:00 until midnight


def test_bad_zone_names_are_reported_per_row() -> None:
    rows: list[RecipientRow | RejectedRow] = [
        RecipientRow(2, "a@example.com", {"tz": "Europe/Berlin"}),
        RecipientRow(3, "b@example.com", {"tz": "Berlin"}),
        RecipientRow(4, "c@example.com", {"tz": ""}),  # the campaign's zone
        RejectedRow(5, "", "email is empty"),
    ]
    out = list(check_zones(rows, "tz"))
    assert [type(r).__name__ for r in out] == [
        "RecipientRow",
        "RejectedRow",
        "RecipientRow",
        "RejectedRow",
    ]
    bad = out[1]
    assert isinstance(bad, RejectedRow) and bad.line == 3
    assert bad.reason.startswith("column 'tz': 'Berlin' is not a time zone")

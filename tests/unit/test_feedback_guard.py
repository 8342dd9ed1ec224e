"""The guard's decision: rates against thresholds, minimum volume, account-wide trips."""

from __future__ import annotations

from dispatcher.config.settings import GuardSettings
from dispatcher.feedback.guard import Counts, Thresholds, decide, hold_reason, verdict
from dispatcher.feedback.watch import TALLY_KEEP_FLOOR, tally_keep_seconds

TH = Thresholds(bounce=0.04, complaint=0.0008, min_volume=200)


def test_below_the_minimum_volume_nothing_is_judged() -> None:
    assert verdict(Counts(sent=199, bounced=100, complained=50), TH, "campaign") is None


def test_a_bounce_rate_at_the_threshold_trips_with_a_reason_a_person_can_read() -> None:
    reason = verdict(Counts(sent=1000, bounced=40, complained=0), TH, "campaign")
    assert reason == (
        "guard: campaign bounce rate 4% (40 hard bounces), threshold 4% over 1,000 recipients sent"
    )
    assert verdict(Counts(sent=1000, bounced=39, complained=0), TH, "campaign") is None


def test_complaints_trip_on_their_own_threshold() -> None:
    reason = verdict(Counts(sent=10_000, bounced=0, complained=8), TH, "account")
    assert reason is not None and reason.startswith("guard: account complaint rate 0.08%")
    assert verdict(Counts(sent=10_000, bounced=0, complained=7), TH, "account") is None


def test_only_the_bad_campaign_pauses_while_the_account_is_fine() -> None:
    account = Counts(sent=20_000, bounced=100, complained=0)  # 0.5 %
    campaigns = {1: Counts(500, 2, 0), 2: Counts(500, 60, 0), 3: Counts(50, 40, 0)}
    paused = decide(account, campaigns, TH)
    assert list(paused) == [2] and "12%" in paused[2]


def test_an_account_wide_trip_pauses_every_running_campaign() -> None:
    account = Counts(sent=5_000, bounced=250, complained=0)  # 5 %
    paused = decide(account, {1: Counts(10, 0, 0), 2: Counts(800, 50, 0)}, TH)
    assert paused[1].startswith("guard: account bounce rate 5%")
    assert paused[2].startswith("guard: campaign bounce rate 6.25%")  # its own reason first


def test_campaigns_are_judged_by_their_own_thresholds() -> None:
    strict = Thresholds(bounce=0.02, complaint=0.0008, min_volume=200)
    account = Counts(sent=20_000, bounced=100, complained=0)
    campaigns = {1: Counts(1000, 25, 0), 2: Counts(1000, 15, 0)}  # 2.5 % and 1.5 %
    assert decide(account, campaigns, TH) == {}
    paused = decide(account, campaigns, TH, strict)
    assert list(paused) == [1] and "threshold 2%" in paused[1]


def test_with_a_hold_on_all_sending_an_account_trip_pauses_no_campaign_by_itself() -> None:
    account = Counts(sent=5_000, bounced=250, complained=0)  # 5 %
    campaigns = {1: Counts(10, 0, 0), 2: Counts(800, 50, 0)}
    paused = decide(account, campaigns, TH, account_pauses_campaigns=False)
    assert list(paused) == [2]  # only the campaign over its own threshold
    reason = hold_reason(account, TH)
    assert reason is not None and reason.startswith("guard: account bounce rate 5%")
    assert hold_reason(Counts(sent=5_000, bounced=199, complained=0), TH) is None


def test_the_guards_minute_counters_outlive_the_longest_window() -> None:
    assert tally_keep_seconds(GuardSettings(window_hours=24)) == TALLY_KEEP_FLOOR + 3600
    assert tally_keep_seconds(GuardSettings(window_hours=24 * 30)) == 30 * 86400 + 3600

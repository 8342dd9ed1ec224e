"""The simulated account's send decision: validation, quota before rate, the mailbox simulator."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dispatcher.sim.settings import SimSettings
from dispatcher.sim.state import (
    Refusal,
    SendError,
    SentMessage,
    SimState,
    address_problem,
    is_simulator,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(**settings: Any) -> tuple[SimState, FakeClock]:
    """A strict account (SES's defaults) whose sender's domain is verified."""
    clock = FakeClock()
    state = SimState(SimSettings(**settings), clock=clock, wall_clock=lambda: 1.7e9)
    state.account.verify("example.com")
    return state, clock


def send(state: SimState, *to: str, cc: tuple[str, ...] = ()) -> SentMessage | Refusal:
    return state.send(api="v2", from_addr="me@example.com", to=to, cc=cc, subject="s")


def test_accepted_message_is_recorded_with_an_ses_shaped_unique_id() -> None:
    state, _ = make()
    first = send(state, "a@example.com")
    second = send(state, "b@example.com")
    assert isinstance(first, SentMessage) and isinstance(second, SentMessage)
    pattern = (
        r"0100[0-9a-f]{12}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-000000"
    )
    assert re.fullmatch(pattern, first.message_id)
    assert first.message_id != second.message_id
    assert state.messages == [first, second]
    assert state.counters.accepted == 2


def test_daily_quota_is_checked_before_the_rate_and_spends_no_token() -> None:
    state, _ = make(max_send_rate=1.0, max_24_hour_send=1.0)
    assert isinstance(send(state, "a@example.com"), SentMessage)
    refused = send(state, "b@example.com")  # the rate is spent too: the quota answers first
    assert refused == Refusal(SendError.DAILY_QUOTA)
    assert state.counters.daily_quota_exceeded == 1
    assert state.counters.throttled == 0


def test_quota_refusal_leaves_the_rate_bucket_untouched() -> None:
    state, _ = make(max_send_rate=2.0, max_24_hour_send=0.0)
    level = state.rate.level()
    assert send(state, "a@example.com") == Refusal(SendError.DAILY_QUOTA)
    assert state.rate.level() == level


def test_rate_refusal_counts_nothing_against_the_quota() -> None:
    state, _ = make(max_send_rate=1.0)
    assert isinstance(send(state, "a@example.com"), SentMessage)
    assert send(state, "b@example.com") == Refusal(SendError.THROTTLED)
    assert state.quota.sent_in_window() == 1
    assert state.counters.throttled == 1


def test_mailbox_simulator_counts_against_the_rate_but_not_the_daily_quota() -> None:
    state, clock = make(max_send_rate=1.0, max_24_hour_send=1.0)
    assert isinstance(send(state, "bounce+x@simulator.amazonses.com"), SentMessage)
    assert state.quota.sent_in_window() == 0
    assert send(state, "success@simulator.amazonses.com") == Refusal(SendError.THROTTLED)
    clock.now += 1.0
    assert isinstance(send(state, "a@example.com"), SentMessage)  # the quota was still free
    clock.now += 1.0
    assert isinstance(send(state, "Sim <success@SIMULATOR.amazonses.com>"), SentMessage)
    assert state.quota.sent_in_window() == 1


def test_recipients_count_across_to_cc_bcc_and_more_than_50_is_rejected() -> None:
    state, _ = make(max_send_rate=1000.0)
    to = tuple(f"r{i}@example.com" for i in range(30))
    cc = tuple(f"c{i}@example.com" for i in range(20))
    assert isinstance(send(state, *to, cc=cc), SentMessage)
    assert state.quota.sent_in_window() == 50
    refused = send(state, *to, cc=(*cc, "one-more@example.com"))
    assert refused == Refusal(SendError.TOO_MANY_RECIPIENTS)
    assert state.counters.rejected == 1
    assert state.quota.sent_in_window() == 50


def test_one_invalid_recipient_rejects_the_whole_message() -> None:
    state, _ = make()
    refused = send(state, "good@example.com", "not-an-address")
    assert isinstance(refused, Refusal)
    assert refused.kind is SendError.INVALID_ADDRESS
    assert refused.detail == "not-an-address"
    assert refused.reason == "Missing final '@domain'"
    assert state.messages == []
    assert send(state) == Refusal(SendError.NO_RECIPIENTS)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("a@example.com", None),
        ("Name <a@example.com>", None),
        ('"Last, First" <a.b+tag@sub.example.com>', None),
        ("example.com", "Missing final '@domain'"),
        ("", "Missing final '@domain'"),
        ("@example.com", "Missing local name"),
        ("a@", "Missing domain"),
        ("a@exa mple.com", "Domain contains control or whitespace"),
        ("a b@example.com", "Local address contains control or whitespace"),
        # SES's address rules (issue 15): a trailing dot, no dot, non-ASCII.
        ("francois@brave.com.", "Missing domain"),
        ("user@localhost", "Missing domain"),
        ("Ann <user@localhost>", "Missing domain"),
        ("dån@example.com", "Local address contains control or whitespace"),
        ("a@bücher.example", "Domain contains illegal character"),
        ("a@xn--bcher-kva.example", None),
        ("=?utf-8?q?Zo=C3=AB?= <zoe@example.com>", None),
        ("Zoë <zoe@example.com>", None),
    ],
)
def test_address_problem(address: str, problem: str | None) -> None:
    assert address_problem(address) == problem


def test_is_simulator() -> None:
    assert is_simulator("ooto@simulator.amazonses.com")
    assert is_simulator("X <complaint+1@simulator.amazonses.com>")
    assert not is_simulator("a@simulator.amazonses.com.example.com")


def test_configure_and_reset() -> None:
    state, _ = make(max_send_rate=1.0)
    send(state, "a@example.com")
    send(state, "b@example.com")
    new = state.configure({"max_send_rate": 50, "max_24_hour_send": -1})
    assert new.max_send_rate == 50.0 and new.max_24_hour_send == -1.0
    assert state.settings is new
    with pytest.raises(ValueError, match="max_send_rate"):
        state.configure({"max_send_rate": 0})
    with pytest.raises(ValueError, match="unknown setting"):
        state.configure({"nope": 1})
    assert state.settings is new  # a bad change changes nothing
    state.reset()
    assert state.messages == [] and state.counters.accepted == 0
    assert state.counters.throttled == 0
    assert state.rate.level() == 50.0
    assert state.quota.sent_in_window() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_send_rate", 0.0),
        ("max_send_rate", float("nan")),
        ("max_24_hour_send", -2.0),
        ("burst_seconds", -1.0),
        ("quota_window_seconds", 0.0),
        ("latency_ms", -5.0),
        ("region", ""),
    ],
)
def test_settings_name_the_bad_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        SimSettings(**{field: value})  # type: ignore[arg-type]


def test_non_send_actions_are_limited_unless_lenient_and_counted() -> None:
    state, clock = make()
    assert state.allow_action("GetSendQuota")
    assert not state.allow_action("GetSendQuota")
    assert state.counters.api_throttled == 1
    clock.now += 1.0
    assert state.allow_action("GetSendQuota")
    state.configure({"lenient": True})
    assert all(state.allow_action("GetSendQuota") for _ in range(5))
    state.configure({"lenient": False, "api_requests_per_second": 0})
    assert all(state.allow_action("GetSendQuota") for _ in range(5))

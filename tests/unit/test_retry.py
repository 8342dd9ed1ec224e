"""The retry decision: what a user sees happen to a message after each kind of SES answer."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dispatcher.app import retry_policy
from dispatcher.config import Config
from dispatcher.domain.outcome import Outcome, SendResult
from dispatcher.domain.retry import backoff_delay, decide

POLICY = replace(retry_policy(Config()), max_attempts=5, backoff_base=2.0, backoff_max=60.0)


def test_sent_is_final() -> None:
    d = decide(SendResult(Outcome.SENT, ses_message_id="m-1"), 0, POLICY, 0.5)
    assert d.state == "sent"


@pytest.mark.parametrize("outcome", [Outcome.THROTTLED, Outcome.DAILY_QUOTA])
def test_throttle_and_quota_requeue_without_using_an_attempt(outcome: Outcome) -> None:
    # Even on what would be the last attempt: these refusals are never the message's fault.
    d = decide(SendResult(outcome, code="Throttling", reason="x"), 4, POLICY, 0.5)
    assert (d.state, d.attempt_used) == ("queued", False)


def test_config_error_holds_without_failing() -> None:
    d = decide(SendResult(Outcome.CONFIG_ERROR, code="ConfigurationSetDoesNotExist"), 7, POLICY, 0)
    assert d.state == "queued" and not d.attempt_used
    assert d.delay == POLICY.config_error_delay


def test_account_paused_holds_without_failing() -> None:
    paused = SendResult(Outcome.ACCOUNT_PAUSED, code="AccountSendingPausedException")
    d = decide(paused, 0, POLICY, 0)
    assert d.state == "queued" and not d.attempt_used and d.delay == POLICY.account_paused_delay


def test_rejected_fails_at_once_with_ses_reason() -> None:
    rejected = SendResult(
        Outcome.REJECTED, code="MessageRejected", reason="Email address is not verified."
    )
    d = decide(rejected, 0, POLICY, 0.5)
    assert d.state == "failed"
    assert d.error == "MessageRejected: Email address is not verified."


def test_transient_backs_off_then_fails_at_the_limit() -> None:
    result = SendResult(Outcome.TRANSIENT, code="InternalFailure", reason="boom")
    delays = []
    for attempts in range(POLICY.max_attempts - 1):
        d = decide(result, attempts, POLICY, 0.0)
        assert d.state == "queued" and d.attempt_used
        delays.append(d.delay)
    assert delays == sorted(delays) and delays[0] < delays[-1]
    last = decide(result, POLICY.max_attempts - 1, POLICY, 0.0)
    assert last.state == "failed"
    assert "gave up after 5 attempts" in (last.error or "")


def test_backoff_is_capped_and_jittered() -> None:
    low = backoff_delay(30, POLICY, 0.0)
    high = backoff_delay(30, POLICY, 0.999)
    assert low == POLICY.backoff_max / 2
    assert POLICY.backoff_max / 2 < high <= POLICY.backoff_max


@pytest.mark.parametrize(("policy", "state"), [("hold", "unknown"), ("resend", "queued")])
def test_in_doubt_follows_policy(policy: str, state: str) -> None:
    p = replace(retry_policy(Config()), in_doubt=policy)  # type: ignore[arg-type]
    d = decide(SendResult(Outcome.IN_DOUBT, reason="read timeout"), 0, p, 0.5)
    assert d.state == state

"""What to do with a message after one send attempt: a pure function of the result and history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dispatcher.domain.jobs import SettleState
from dispatcher.domain.outcome import Outcome, SendResult

InDoubtPolicy = Literal["hold", "resend"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Limits for retrying; the delays for held senders and a paused account are in seconds.
    Built from the config (`app.retry_policy`), where the defaults live."""

    max_attempts: int
    backoff_base: float
    backoff_max: float
    config_error_delay: float
    account_paused_delay: float
    in_doubt: InDoubtPolicy


@dataclass(frozen=True, slots=True)
class Decision:
    """The new state of the job; `attempt_used` is False for refusals that are not its fault."""

    state: SettleState
    outcome: str
    delay: float = 0.0
    attempt_used: bool = False
    error: str | None = None


def backoff_delay(attempts_before: int, policy: RetryPolicy, rand: float) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, capped.

    `attempts_before` is the number of attempts already used before the one that failed;
    `rand` is uniform in [0, 1) (injected so the decision stays pure and testable).
    """
    exp = min(policy.backoff_max, policy.backoff_base * (2.0 ** min(attempts_before, 32)))
    return exp / 2.0 + exp / 2.0 * rand


def describe(result: SendResult) -> str | None:
    """SES's own words, as stored in `last_error`: `Code: message`."""
    if result.code and result.reason:
        return f"{result.code}: {result.reason}"
    return result.reason or result.code


def decide(result: SendResult, attempts_before: int, policy: RetryPolicy, rand: float) -> Decision:
    """Map one send's result to the job's next state (see SES-FACTS.md, error table)."""
    outcome = result.outcome
    error = describe(result)
    name = outcome.value
    if outcome is Outcome.SENT:
        return Decision("sent", name)
    if outcome is Outcome.THROTTLED or outcome is Outcome.DAILY_QUOTA:
        # Not the message's fault: back in the queue at once, no attempt spent; the limiter
        # slows down / the governor pauses, which is what actually delays the next try.
        return Decision("queued", name, 0.0, False, error)
    if outcome is Outcome.ACCOUNT_PAUSED:
        return Decision("queued", name, policy.account_paused_delay, False, error)
    if outcome is Outcome.CONFIG_ERROR:
        # Shared by every message of this sender / configuration set: hold them all, fail none.
        return Decision("queued", name, policy.config_error_delay, False, error)
    if outcome is Outcome.REJECTED:
        return Decision("failed", name, 0.0, True, error)
    if outcome is Outcome.IN_DOUBT:
        if policy.in_doubt == "resend":
            return Decision("queued", name, policy.backoff_base, True, error)
        return Decision("unknown", name, 0.0, True, error)
    # TRANSIENT
    if attempts_before + 1 >= policy.max_attempts:
        gave_up = f"gave up after {attempts_before + 1} attempts: {error}"
        return Decision("failed", name, 0.0, True, gave_up)
    return Decision("queued", name, backoff_delay(attempts_before, policy, rand), True, error)

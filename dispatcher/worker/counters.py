"""What a worker did, and how its run ended: read by the progress display and the final report."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EXIT_HELD", "EXIT_OK", "EXIT_QUOTA_SPENT", "Counters", "RunReport"]

EXIT_OK = 0
EXIT_QUOTA_SPENT = 3  # run --drain: the daily quota is spent with mail still queued
EXIT_HELD = 4  # run --drain: the rest is held by a sending error that needs a person


@dataclass(slots=True)
class Counters:
    """What this process did."""

    attempts: int = 0  # messages handed to SES
    ses_calls: int = 0  # SendEmail / SendBulkEmail requests made
    sent: int = 0
    recipients_sent: int = 0
    throttled: int = 0
    daily_quota: int = 0
    failed: int = 0
    retried: int = 0
    in_doubt: int = 0
    held: int = 0
    lease_lost: int = 0
    first_send_at: float | None = None
    last_send_at: float | None = None
    # Latency samples for /metrics, None unless it is served (dispatcher.obs.metrics sets lists
    # and moves them into histograms every second, so the send path only appends): SES call
    # seconds; (campaign mail?, seconds from enqueue to SES accepting it).
    send_seconds: list[float] | None = None
    accepted_after: list[tuple[bool, float]] | None = None


@dataclass(frozen=True, slots=True)
class RunReport:
    """How a run ended: the exit code the CLI returns and a sentence for the operator."""

    exit_code: int
    reason: str
    counters: Counters
    elapsed: float

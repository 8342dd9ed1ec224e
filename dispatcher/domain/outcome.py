"""What one send attempt came to, sorted into the few kinds a sender must react to differently."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    """The kinds of result of handing one message to SES (see shared/SES-FACTS.md, error table)."""

    SENT = "sent"
    THROTTLED = "throttled"  # over MaxSendRate: requeue without using an attempt, slow down
    DAILY_QUOTA = "daily_quota"  # Max24HourSend spent: requeue, pause until the window frees
    ACCOUNT_PAUSED = "account_paused"  # account paused or suspended: stop all sending
    CONFIG_ERROR = "config_error"  # shared by every message of that sender/configuration set
    REJECTED = "rejected"  # this message refused: permanent failure
    TRANSIENT = "transient"  # 5xx, connection refused before sending: retry with backoff
    IN_DOUBT = "in_doubt"  # timed out after the request was sent: SES may have accepted it


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one send with SES's own words kept for the record."""

    outcome: Outcome
    ses_message_id: str | None = None
    code: str | None = None  # SES error code as on the wire, e.g. "Throttling"
    reason: str | None = None  # SES error message text, or the exception text

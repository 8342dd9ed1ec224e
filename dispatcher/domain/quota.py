"""The account's sending limits as GetSendQuota reports them."""

from __future__ import annotations

from dataclasses import dataclass

# Seconds between two calls of an SES action limited to one request a second (every action but
# SendEmail, SendRawEmail, SendTemplatedEmail: SES-FACTS "Quotas and rate"). Callers space the
# starts of their calls; SES counts arrivals, and a call slowed by its connection's set-up
# arrives late: the quarter second leaves room for that (at 1.0 s the strict simulator refused
# the second page of a suppression list).
API_CALL_INTERVAL = 1.25


@dataclass(frozen=True, slots=True)
class Quota:
    """SES GetSendQuota: Max24HourSend (-1 = unlimited), MaxSendRate per second, SentLast24Hours."""

    max_24_hour_send: float
    max_send_rate: float
    sent_last_24_hours: float

    @property
    def unlimited(self) -> bool:
        return self.max_24_hour_send < 0

"""The account's sending limits as GetSendQuota reports them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Quota:
    """SES GetSendQuota: Max24HourSend (-1 = unlimited), MaxSendRate per second, SentLast24Hours."""

    max_24_hour_send: float
    max_send_rate: float
    sent_last_24_hours: float

    @property
    def unlimited(self) -> bool:
        return self.max_24_hour_send < 0

"""The error the SES adapter raises where it cannot return an Outcome (GetSendQuota)."""

from __future__ import annotations

from dispatcher.domain.outcome import Outcome
from dispatcher.errors import DispatcherError


class SesError(DispatcherError):
    """An SES call failed; `outcome` says how to react, `code` is SES's wire code if any."""

    def __init__(
        self, operation: str, outcome: Outcome, code: str | None, reason: str | None
    ) -> None:
        self.operation = operation
        self.outcome = outcome
        self.code = code
        self.reason = reason
        detail = f"{code}: {reason}" if code else (reason or "no detail")
        super().__init__(f"SES {operation} failed ({outcome.value}): {detail}")

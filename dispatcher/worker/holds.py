"""Who may not send for a while: the whole account (SES paused it) or one sender (a configuration
error SES reports for that From address and configuration set). Pure: times are given."""

from __future__ import annotations

from dispatcher.domain.message import OutgoingMessage

__all__ = ["Holds", "sender_key"]

SenderKey = tuple[str, str | None]


def sender_key(msg: OutgoingMessage) -> SenderKey:
    """What an SES configuration error is about: the From address and the configuration set."""
    return (msg.from_addr, msg.configuration_set)


class Holds:
    """Hold times on one clock; a new hold never shortens a running one."""

    __slots__ = ("_account_until", "_senders")

    def __init__(self) -> None:
        self._account_until = 0.0
        self._senders: dict[SenderKey, float] = {}

    def account(self, now: float) -> float:
        """Seconds the account is still held (0 if not)."""
        return max(self._account_until - now, 0.0)

    def sender(self, msg: OutgoingMessage, now: float) -> float:
        """Seconds the sender of `msg` is still held (0 if not)."""
        if not self._senders:  # the common case: nobody held (no key built)
            return 0.0
        return max(self._senders.get(sender_key(msg), 0.0) - now, 0.0)

    def hold_account(self, now: float, seconds: float) -> bool:
        """Hold all sending for `seconds`; True if it was not held already (worth a log line)."""
        fresh = self._account_until < now
        self._account_until = max(self._account_until, now + seconds)
        return fresh

    def hold_sender(self, msg: OutgoingMessage, now: float, seconds: float) -> bool:
        """Hold the sender of `msg` for `seconds`; True if it was not held already."""
        key = sender_key(msg)
        until = self._senders.get(key, 0.0)
        self._senders[key] = max(until, now + seconds)
        return until < now

"""SNS's signing rules as AWS documents them (SES-FACTS.md, "Verifying SNS"), written here and not
taken from the code under test: a string to sign that leaves out or reorders a key must fail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SIGNED_KEYS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION,
    "UnsubscribeConfirmation": _CONFIRMATION,
}


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """ "Key\\nValue\\n" for each key SNS signs that the message has, in SNS's order."""
    keys = SIGNED_KEYS[str(message["Type"])]
    return "".join(f"{k}\n{message[k]}\n" for k in keys if message.get(k) is not None).encode()

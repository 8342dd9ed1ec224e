"""The MessageId the SES-compatible endpoint answers, and back: our message id in a form an
application stores like an SES MessageId and hands back to `dispatcher status` or the HTTP API,
which then show the real SES MessageId and its events."""

from __future__ import annotations

import re

__all__ = ["PREFIX", "message_id_of", "ses_message_id"]

PREFIX = "dispatcher-"
BIGINT_MAX = 2**63 - 1
_FORM = re.compile(r"(?:dispatcher-)?([1-9][0-9]{0,18})")


def ses_message_id(message_id: int) -> str:
    """The MessageId answered for our message `message_id`: ``dispatcher-<id>``."""
    return f"{PREFIX}{message_id}"


def message_id_of(text: str) -> int | None:
    """Our message id from ``dispatcher-<id>`` or a bare ``<id>``; None for anything else."""
    found = _FORM.fullmatch(text.strip())
    if found is None:
        return None
    value = int(found.group(1))
    return value if value <= BIGINT_MAX else None

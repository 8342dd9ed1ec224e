"""Checks on a message before it is queued, so a bad one fails at enqueue and not at SES.

Pure: no I/O, tested without Postgres. Every error says what to change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dispatcher.errors import InputError

if TYPE_CHECKING:
    from dispatcher.queue.repository import NewMessage

__all__ = [
    "MAX_IDEMPOTENCY_KEY",
    "MAX_RECIPIENTS",
    "MAX_TAG_LENGTH",
    "RESERVED_TAG",
    "validate_message",
]

MAX_RECIPIENTS = 50  # SES: To + Cc + Bcc of one message
MAX_IDEMPOTENCY_KEY = 200
MAX_TAG_LENGTH = 256  # SES: a tag name or value is shorter than 256 characters
RESERVED_TAG = "dispatcher_id"  # the adapter sends our message id under this tag
SMALLINT_MIN, SMALLINT_MAX = -32768, 32767
_TAG_CHARS = re.compile(r"[A-Za-z0-9_-]+")


def _check_address(field: str, address: object) -> None:
    if not isinstance(address, str) or not address.strip():
        raise InputError(f"{field} is empty; give an email address like name@example.com")
    if "\r" in address or "\n" in address:
        raise InputError(f"{field} {address!r} contains a line break; remove it")
    if "@" not in address:
        raise InputError(
            f"{field} {address!r} is not an email address (no '@'); "
            "give an address like name@example.com"
        )


def _check_addresses(field: str, addresses: object) -> None:
    if isinstance(addresses, str | bytes):
        raise InputError(f"{field} must be a tuple of addresses, not a single string")
    if not isinstance(addresses, Iterable):
        raise InputError(f"{field} must be a tuple of addresses, not {addresses!r}")
    for i, address in enumerate(addresses):
        _check_address(f"{field}[{i}]", address)


def _check_tag_part(what: str, text: object, name: object) -> None:
    if not isinstance(text, str) or not text:
        raise InputError(f"tag {name!r} has an empty {what}; give a non-empty one")
    if len(text) >= MAX_TAG_LENGTH:
        raise InputError(
            f"tag {name!r} has a {what} of {len(text)} characters; "
            f"SES accepts at most {MAX_TAG_LENGTH - 1}"
        )
    if not _TAG_CHARS.fullmatch(text):
        raise InputError(
            f"tag {what} {text!r} may contain only ASCII letters, digits, '_' and '-' (an SES rule)"
        )


def validate_message(msg: NewMessage) -> None:
    """Raise InputError naming the first problem of ``msg``; return None if it can be queued."""
    _check_address("from_addr", msg.from_addr)
    for field in ("to", "cc", "bcc", "reply_to"):
        _check_addresses(field, getattr(msg, field))
    count = msg.recipient_count
    if count == 0:
        raise InputError("the message has no recipient; give at least one address in to, cc or bcc")
    if count > MAX_RECIPIENTS:
        raise InputError(
            f"SES accepts at most {MAX_RECIPIENTS} recipients per message (To+Cc+Bcc); "
            f"this one has {count}. Split it into several messages."
        )

    if msg.raw is not None:
        if msg.text is not None or msg.html is not None:
            raise InputError(
                "a message has either raw (a complete MIME message) or text/html, not both; "
                "put the body inside the raw message or drop raw"
            )
        if not isinstance(msg.raw, bytes) or not msg.raw:
            raise InputError("raw is empty; give the complete MIME message as bytes")
    else:
        if not msg.text and not msg.html:
            raise InputError("the message has no body; give text, html (or both), or raw")
        if not msg.subject:
            raise InputError("the message has no subject; give a subject (or send it as raw)")

    if isinstance(msg.priority, bool) or not isinstance(msg.priority, int):
        raise InputError(f"priority must be an integer, not {msg.priority!r}")
    if not SMALLINT_MIN <= msg.priority <= SMALLINT_MAX:
        raise InputError(
            f"priority {msg.priority} is out of range; use {SMALLINT_MIN}..{SMALLINT_MAX} "
            "(higher is sent first)"
        )

    if msg.send_after is not None and msg.send_after.utcoffset() is None:
        raise InputError(
            f"send_after {msg.send_after.isoformat()} has no time zone; "
            "give an aware datetime, e.g. datetime.now(timezone.utc)"
        )

    for name, value in msg.tags.items():
        _check_tag_part("name", name, name)
        _check_tag_part("value", value, name)
        if name == RESERVED_TAG:
            raise InputError(
                f"the tag name {RESERVED_TAG!r} is reserved: the dispatcher sets it to the "
                "message id; choose another name"
            )

    key = msg.idempotency_key
    if key is not None:
        if not key:
            raise InputError("idempotency_key is empty; leave it None or give a non-empty key")
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise InputError(
                f"idempotency_key is {len(key)} characters long; "
                f"use at most {MAX_IDEMPOTENCY_KEY} (e.g. a hash of a longer key)"
            )

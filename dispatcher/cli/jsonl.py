"""Messages from JSON: one object per line for `dispatcher enqueue` (pure parsing, no I/O)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatcher.domain.validate import validate_message
from dispatcher.errors import InputError
from dispatcher.queue.repository import NewMessage

FIELDS = (
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "text",
    "html",
    "reply_to",
    "configuration_set",
    "tags",
    "idempotency_key",
    "priority",
    "send_after",
)


@dataclass(frozen=True, slots=True)
class BadLine:
    line: int
    error: str


def _addresses(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InputError(f'"{key}" must be an address or a list of addresses')


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InputError(f'"{key}" must be a string')


def parse_send_after(text: str) -> datetime:
    """ISO 8601 with a timezone (`2026-11-28T15:00:00Z`); a time without one is refused."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(
            f"send_after {text!r} is not an ISO 8601 time; use e.g. 2026-11-28T15:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise InputError(f"send_after {text!r} has no timezone; add one, e.g. Z or +01:00")
    return when


def message_from_json(obj: object) -> NewMessage:
    """Build and validate one message; InputError says which field is wrong and how."""
    if not isinstance(obj, dict):
        raise InputError("each line must be a JSON object")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    sender = obj.get("from")
    if not isinstance(sender, str):
        raise InputError('"from" is required: the sender address')
    priority = obj.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InputError('"priority" must be an integer')
    tags = obj.get("tags") or {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise InputError('"tags" must be an object of string names to string values')
    send_after_text = _optional_str(obj, "send_after")
    msg = NewMessage(
        from_addr=sender,
        to=_addresses(obj, "to"),
        cc=_addresses(obj, "cc"),
        bcc=_addresses(obj, "bcc"),
        subject=_optional_str(obj, "subject") or "",
        text=_optional_str(obj, "text"),
        html=_optional_str(obj, "html"),
        reply_to=_addresses(obj, "reply_to"),
        configuration_set=_optional_str(obj, "configuration_set"),
        tags=dict(tags),
        idempotency_key=_optional_str(obj, "idempotency_key"),
        priority=priority,
        send_after=parse_send_after(send_after_text) if send_after_text else None,
    )
    validate_message(msg)
    return msg


def parse_lines(lines: Iterable[str]) -> Iterator[tuple[int, NewMessage | BadLine]]:
    """(line number, message or what is wrong with it) for every non-blank line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            # Without its line end: a line cut short would otherwise be reported at "column 1"
            # (of the next line, as json sees the newline).
            obj = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            yield number, BadLine(number, f"not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        try:
            yield number, message_from_json(obj)
        except InputError as exc:
            yield number, BadLine(number, str(exc))

"""A message as JSON: what a line of `dispatcher enqueue` and the HTTP API's body hold (pure).

`message_from_json` turns one decoded JSON value into a validated NewMessage, or raises an
InputError that names the wrong field (``exc.field``) and says how to fix it; `unstorable` finds
what Postgres cannot keep (a NUL, a lone surrogate) before anything is built from it.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.mime import Attachment
from dispatcher.domain.validate import validate_message
from dispatcher.errors import InputError

__all__ = [
    "FIELDS",
    "message_from_json",
    "parse_send_after",
    "unstorable",
    "validated_from_json",
]

FIELDS = (
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "text",
    "html",
    "attachments",
    "reply_to",
    "configuration_set",
    "tags",
    "idempotency_key",
    "priority",
    "send_after",
)


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


ATTACHMENT_FIELDS = ("filename", "content_type", "content_base64")


def _attachments(obj: dict[str, Any]) -> tuple[Attachment, ...]:
    """`"attachments": [{"filename", "content_type", "content_base64"}]`, the content strict
    base64 (no line breaks, padded); what the files may be is validate's to say."""
    value = obj.get("attachments")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InputError(
            '"attachments" must be a list of {"filename", "content_type", "content_base64"}',
            field="attachments",
        )
    out: list[Attachment] = []
    for i, item in enumerate(value):
        where = f"attachments[{i}]"
        if not isinstance(item, dict):
            raise InputError(
                f'{where} must be an object with "filename", "content_type" and "content_base64"',
                field="attachments",
            )
        unknown = sorted(set(item) - set(ATTACHMENT_FIELDS))
        if unknown:
            raise InputError(
                f"{where}: unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(ATTACHMENT_FIELDS)}",
                field="attachments",
            )
        missing = [k for k in ATTACHMENT_FIELDS if not isinstance(item.get(k), str)]
        if missing:
            raise InputError(
                f"{where}: {', '.join(missing)} missing or not a string; "
                f"give {', '.join(ATTACHMENT_FIELDS)}",
                field="attachments",
            )
        try:
            content = base64.b64decode(item["content_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise InputError(
                f'{where} {item["filename"]!r}: "content_base64" is not valid base64; encode '
                "the file in the standard alphabet, padded, without line breaks (base64 -w0)",
                field="attachments",
            ) from None
        out.append(Attachment(item["filename"], item["content_type"], content))
    return tuple(out)


def parse_send_after(text: str) -> datetime:
    """ISO 8601 with a timezone (`2026-11-28T15:00:00Z`), in UTC; a time without one is refused."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(
            f"send_after {text!r} is not an ISO 8601 time; use e.g. 2026-11-28T15:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise InputError(f"send_after {text!r} has no timezone; add one, e.g. Z or +01:00")
    try:
        # In UTC now: year 1 at +01:00 (or 9999 at -01:00) has no UTC time, and would
        # otherwise fail only when the database driver converts it.
        return when.astimezone(UTC)
    except OverflowError:
        raise InputError(
            f"send_after {text!r} is out of range; give a time between years 1 and 9999 in UTC"
        ) from None


def message_from_json(obj: object) -> NewMessage:
    """Build and validate one message; InputError says which field is wrong and how.

    What comes back is the message as given, not as validation normalises it: `enqueue`'s
    default idempotency keys hash it (a built MIME message has a new Date each time). A door
    that queues at once keeps the validated one instead: `validated_from_json`.
    """
    msg = _from_json(obj)
    validate_message(msg)
    return msg


def validated_from_json(obj: object) -> NewMessage:
    """The message `validate_message` makes of `obj` (attachments built into its MIME message
    once); the same InputError as `message_from_json` otherwise."""
    return validate_message(_from_json(obj))


def _from_json(obj: object) -> NewMessage:
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
    return NewMessage(
        from_addr=sender,
        to=_addresses(obj, "to"),
        cc=_addresses(obj, "cc"),
        bcc=_addresses(obj, "bcc"),
        subject=_optional_str(obj, "subject") or "",
        text=_optional_str(obj, "text"),
        html=_optional_str(obj, "html"),
        attachments=_attachments(obj),
        reply_to=_addresses(obj, "reply_to"),
        configuration_set=_optional_str(obj, "configuration_set"),
        tags=dict(tags),
        idempotency_key=_optional_str(obj, "idempotency_key"),
        priority=priority,
        send_after=parse_send_after(send_after_text) if send_after_text else None,
    )


def unstorable(obj: object) -> str | None:
    """What Postgres cannot store in a text (a NUL, a lone surrogate), or None.

    Iterative, so the check itself cannot overflow the stack on a deeply nested value.
    """
    stack: list[tuple[str, object]] = [("", obj)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((where or key, key))
                stack.append((where or key, item))
        elif isinstance(value, list):
            stack.extend((where, item) for item in value)
        elif isinstance(value, str):
            field = f'"{where}" ' if where else ""
            if "\x00" in value:
                return f"{field}contains a NUL character (\\u0000); remove it"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return (
                    f"{field}contains a lone surrogate (\\u{ord(value[exc.start]):04x}), which "
                    "is not a character; escape non-BMP characters as a surrogate pair"
                )
    return None

"""Parse SES event JSON, both formats, into what the feedback loop acts on. Pure: no I/O.

Identity notifications carry ``notificationType``; configuration-set events ``eventType``.
The affected recipients come from ``bouncedRecipients`` / ``complainedRecipients`` (and
``delivery.recipients``), never from ``mail.destination``: one message to several people can
bounce for one of them. Unknown fields are ignored; SES adds new ones.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dispatcher.domain.message import DISPATCHER_ID_TAG
from dispatcher.domain.validate import suppression_key
from dispatcher.errors import InputError

__all__ = [
    "DISPATCHER_ID_TAG",
    "EventKind",
    "MalformedEvent",
    "ParsedEvent",
    "Recipient",
    "failure_reason",
    "normalize_address",
    "parse_event",
    "storable",
    "suppression_reason",
]

# Postgres text and jsonb cannot hold NUL, nor a lone surrogate (a "\ud800" escape in JSON):
# each is replaced by U+FFFD (visible, and never part of a real address, so a scrubbed address
# cannot turn into another one).
REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class MalformedEvent(InputError):
    """The SES event JSON is not one this module can read; the text says what is wrong."""


class EventKind(enum.StrEnum):
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    DELIVERY = "delivery"
    DELIVERY_DELAY = "delivery_delay"  # SES is still trying: shown per message
    REJECT = "reject"  # SES accepted the call, then refused the content (virus): not sent
    RENDERING_FAILURE = "rendering_failure"  # the template could not be rendered: not sent
    OTHER = "other"  # Send, Open, Click, Subscription, ...


_KINDS = {
    "Bounce": EventKind.BOUNCE,
    "Complaint": EventKind.COMPLAINT,
    "Delivery": EventKind.DELIVERY,
    "DeliveryDelay": EventKind.DELIVERY_DELAY,
    "Reject": EventKind.REJECT,
    "Rendering Failure": EventKind.RENDERING_FAILURE,
}


@dataclass(frozen=True, slots=True)
class Recipient:
    """One affected address (lower-cased) with what the receiving server said, if anything."""

    address: str
    status: str | None = None
    diagnostic: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    kind: EventKind
    event_type: str  # as SES wrote it: Bounce, Send, "Rendering Failure", ...
    ses_message_id: str
    message_id: int | None  # ours, from the dispatcher_id tag
    timestamp: datetime | None  # when it happened (the event's own time, else the send time)
    recipients: tuple[Recipient, ...] = ()
    bounce_type: str | None = None  # Permanent, Transient, Undetermined
    bounce_subtype: str | None = None
    complaint_type: str | None = None  # complaintFeedbackType (abuse, ...), often absent
    feedback_id: str | None = None
    tags: dict[str, list[str]] | None = None
    detail: str | None = None  # what SES said, in one line: a Reject's reason, a delay, ...

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "event_type": self.event_type,
            "ses_message_id": self.ses_message_id,
            "message_id": self.message_id,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "recipients": [
                {"address": r.address, "status": r.status, "diagnostic": r.diagnostic}
                for r in self.recipients
            ],
            "bounce_type": self.bounce_type,
            "bounce_subtype": self.bounce_subtype,
            "complaint_type": self.complaint_type,
            "feedback_id": self.feedback_id,
            "tags": self.tags,
            "detail": self.detail,
        }


def normalize_address(address: str) -> str:
    """The form suppressions are keyed on (``dispatcher.domain.validate.suppression_key``)."""
    return suppression_key(address)


def storable(value: Any) -> Any:
    """``value`` (JSON data: strings, lists, objects) with every NUL and lone surrogate
    replaced, keys included: what Postgres can store."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT, value)
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


def _str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{where}.{key} is not a string")
    return value


def _obj(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise MalformedEvent(f"{where}.{key} is missing or not an object")
    return value


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedEvent(f"timestamp {value[:40]!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        return None
    try:
        parsed.astimezone(UTC)  # year 1 at +05:00 is before year 1 in UTC: nothing can store it
    except OverflowError:
        raise MalformedEvent(f"timestamp {value[:40]!r} is out of range") from None
    return parsed


def _tags(mail: dict[str, Any]) -> dict[str, list[str]]:
    raw = mail.get("tags")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MalformedEvent("mail.tags is not an object")
    tags: dict[str, list[str]] = {}
    for name, value in raw.items():
        if isinstance(value, str):  # tolerated: SES writes lists, others may not
            tags[name] = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            tags[name] = list(value)
        else:
            raise MalformedEvent(f"mail.tags.{name} is not a list of strings")
    return tags


def _our_id(tags: dict[str, list[str]]) -> int | None:
    values = tags.get(DISPATCHER_ID_TAG) or []
    for value in values:
        if value.isascii() and value.isdigit() and len(value) <= 18:
            return int(value)
    return None  # absent or not ours: the caller may fall back to the SES message id


def _recipients(body: dict[str, Any], key: str, where: str) -> tuple[Recipient, ...]:
    items = body.get(key)
    if not isinstance(items, list):
        raise MalformedEvent(f"{where}.{key} is missing or not a list")
    out: dict[str, Recipient] = {}
    for i, item in enumerate(items):
        if isinstance(item, str):  # delivery.recipients is a list of addresses
            address, status, diagnostic = item, None, None
        elif isinstance(item, dict):
            address = _str(item, "emailAddress", f"{where}.{key}[{i}]") or ""
            status = _str(item, "status", f"{where}.{key}[{i}]")
            diagnostic = _str(item, "diagnosticCode", f"{where}.{key}[{i}]")
        else:
            raise MalformedEvent(f"{where}.{key}[{i}] is neither an address nor an object")
        normalized = normalize_address(address)
        if "@" not in normalized:
            raise MalformedEvent(f"{where}.{key}[{i}] has no email address")
        out.setdefault(normalized, Recipient(normalized, status, diagnostic))
    return tuple(out.values())


def parse_event(data: str | bytes | dict[str, Any]) -> ParsedEvent:
    """One SES event (the SNS ``Message`` string, or its decoded JSON); MalformedEvent if not."""
    if isinstance(data, bytes):
        data = data.replace(b"\x00", REPLACEMENT.encode())
    elif isinstance(data, str):
        data = _UNSTORABLE.sub(REPLACEMENT, data)
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            raise MalformedEvent("the SES event is not JSON") from None
    try:
        data = storable(data)  # a \u0000 or lone \ud800 escape inside the JSON
    except RecursionError:
        raise MalformedEvent("the SES event is nested too deeply") from None
    if not isinstance(data, dict):
        raise MalformedEvent("the SES event is not a JSON object")
    event_type = data.get("eventType", data.get("notificationType"))
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("neither eventType nor notificationType is a non-empty string")
    mail = _obj(data, "mail", "event")
    ses_message_id = _str(mail, "messageId", "mail")
    if not ses_message_id:
        raise MalformedEvent("mail.messageId is missing")
    tags = _tags(mail)
    kind = _KINDS.get(event_type, EventKind.OTHER)
    mail_time = _time(_str(mail, "timestamp", "mail"))
    common: dict[str, Any] = {
        "event_type": event_type,
        "ses_message_id": ses_message_id,
        "message_id": _our_id(tags),
        "tags": tags,
    }
    if kind is EventKind.BOUNCE:
        body = _obj(data, "bounce", "event")
        return ParsedEvent(
            kind,
            timestamp=_time(_str(body, "timestamp", "bounce")) or mail_time,
            recipients=_recipients(body, "bouncedRecipients", "bounce"),
            bounce_type=_str(body, "bounceType", "bounce") or "Undetermined",
            bounce_subtype=_str(body, "bounceSubType", "bounce"),
            feedback_id=_str(body, "feedbackId", "bounce"),
            **common,
        )
    if kind is EventKind.COMPLAINT:
        body = _obj(data, "complaint", "event")
        return ParsedEvent(
            kind,
            timestamp=_time(_str(body, "timestamp", "complaint")) or mail_time,
            recipients=_recipients(body, "complainedRecipients", "complaint"),
            complaint_type=_str(body, "complaintFeedbackType", "complaint"),
            feedback_id=_str(body, "feedbackId", "complaint"),
            **common,
        )
    if kind is EventKind.DELIVERY:
        body = _obj(data, "delivery", "event")
        return ParsedEvent(
            kind,
            timestamp=_time(_str(body, "timestamp", "delivery")) or mail_time,
            recipients=_recipients(body, "recipients", "delivery"),
            **common,
        )
    if kind is EventKind.DELIVERY_DELAY:
        body = _obj(data, "deliveryDelay", "event")
        delayed = "delayedRecipients" in body
        expires = _str(body, "expirationTime", "deliveryDelay")
        detail = _str(body, "delayType", "deliveryDelay") or "delayed"
        return ParsedEvent(
            kind,
            timestamp=_time(_str(body, "timestamp", "deliveryDelay")) or mail_time,
            recipients=_recipients(body, "delayedRecipients", "deliveryDelay") if delayed else (),
            detail=f"{detail}; SES gives up at {expires}" if expires else detail,
            **common,
        )
    if kind is EventKind.REJECT:
        rejected = data.get("reject")
        reason = _str(rejected, "reason", "reject") if isinstance(rejected, dict) else None
        return ParsedEvent(kind, timestamp=mail_time, detail=reason, **common)
    if kind is EventKind.RENDERING_FAILURE:
        return ParsedEvent(kind, timestamp=mail_time, detail=_rendering_failure(data), **common)
    return ParsedEvent(kind, timestamp=mail_time, **common)


def _rendering_failure(data: dict[str, Any]) -> str:
    """The reason a Rendering Failure event gives: `failure.errorMessage` and the template."""
    failure = data.get("failure")
    if not isinstance(failure, dict):
        return "SES could not render the template (no detail given)"
    error = _str(failure, "errorMessage", "failure") or "SES could not render the template"
    template = _str(failure, "templateName", "failure")
    return f"{error} (template {template})" if template else error


def failure_reason(event: ParsedEvent) -> str | None:
    """Why this event means the message was never delivered though SES accepted the call
    (its job is `sent`): a Rendering Failure or a Reject; None for every other event."""
    if event.kind is EventKind.RENDERING_FAILURE:
        return f"Rendering Failure: {event.detail}"
    if event.kind is EventKind.REJECT:
        return f"Reject: {event.detail or 'no reason given'}"
    return None


def suppression_reason(event: ParsedEvent) -> str | None:
    """Why this event's recipients must never be mailed again, or None (transient bounces are
    counted elsewhere; undetermined ones are not acted on)."""
    if event.kind is EventKind.COMPLAINT:
        return f"complaint ({event.complaint_type or 'no feedback type'})"
    if event.kind is EventKind.BOUNCE and event.bounce_type == "Permanent":
        return f"bounce Permanent/{event.bounce_subtype or 'General'}"
    return None

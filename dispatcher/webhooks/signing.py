"""How a webhook POST is signed and what it carries. Pure: no I/O.

The signature is HMAC-SHA256 with the endpoint's secret over ``f"{timestamp}.{body}"``, sent as
``Dispatcher-Signature: t=<unix seconds>,v1=<hex>``; the README's "Webhooks" section shows a
receiver's check (its code block is run by tests/e2e/test_webhooks.py, so the two agree).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "Event",
    "body_of",
    "headers",
    "signature",
]

SIGNATURE_HEADER = "Dispatcher-Signature"
EVENT_ID_HEADER = "Dispatcher-Event-Id"  # the same on every retry: receivers deduplicate on it
EVENT_TYPE_HEADER = "Dispatcher-Event-Type"
USER_AGENT = "dispatcher-webhooks/1"


@dataclass(frozen=True, slots=True)
class Event:
    """One event for one endpoint, as stored in the outbox."""

    id: int
    type: str
    created_at: datetime
    message_id: int | None
    data: dict[str, Any]


def body_of(event: Event) -> bytes:
    """The JSON body: ``{"id", "type", "created_at", "message_id", "data"}`` (ASCII, compact)."""
    created = event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    doc = {
        "id": event.id,
        "type": event.type,
        "created_at": created,
        "message_id": event.message_id,
        "data": event.data,
    }
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` under ``secret``."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def headers(secret: str, timestamp: int, event: Event, body: bytes) -> dict[str, str]:
    """The headers of one attempt (signed anew each time, so the timestamp is fresh)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: str(event.id),
        EVENT_TYPE_HEADER: event.type,
        SIGNATURE_HEADER: f"t={timestamp},v1={signature(secret, timestamp, body)}",
    }

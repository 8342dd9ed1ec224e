"""A Django e-mail backend that queues mail in the dispatcher's outbox, in Django's transaction.

    EMAIL_BACKEND = "dispatcher.integrations.django.EmailBackend"
    DISPATCHER_DATABASE = "default"  # the Django database alias that holds the dispatcher schema

Each message is queued with ``dispatcher.enqueue_raw(...)`` on Django's own connection (psycopg 3
or psycopg2), so inside ``transaction.atomic()`` it is queued if and only if the block commits;
in autocommit mode it is committed at once. The MIME message Django builds is kept byte for byte
(attachments, alternatives, headers) and sent as SES Raw content; the envelope is ``from_email``
and ``to + cc + bcc``, so a Bcc recipient gets the message without appearing in it. Addresses and
limits are checked by the validator every door uses (dispatcher.domain.validate) before any SQL.

Settings: DISPATCHER_PRIORITY (0), DISPATCHER_CONFIGURATION_SET (None), DISPATCHER_TAGS ({});
``get_connection(priority=..., configuration_set=..., tags=..., database=...)`` overrides them
per connection, and the headers in CONTROL_HEADERS per message (they are never sent).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.generator import BytesGenerator
from email.message import Message
from email.utils import formataddr
from typing import Any

try:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.mail import EmailMessage
    from django.core.mail.backends.base import BaseEmailBackend
    from django.db import DatabaseError, connections, transaction
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "dispatcher.integrations.django needs Django: pip install 'dispatcher[django]'"
    ) from exc

from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.validate import (
    MAX_MESSAGE_BYTES,
    check_header_text,
    validate_envelope,
    validate_message,
)
from dispatcher.domain.wire import parse_send_after
from dispatcher.errors import InputError

__all__ = ["CONTROL_HEADERS", "EmailBackend"]

# Standard logging, not structlog: this runs inside the Django process, under its LOGGING.
log = logging.getLogger("dispatcher.integrations.django")

PRIORITY_HEADER = "X-Dispatcher-Priority"
IDEMPOTENCY_HEADER = "X-Dispatcher-Idempotency-Key"
SEND_AFTER_HEADER = "X-Dispatcher-Send-After"
CONFIGURATION_SET_HEADER = "X-Dispatcher-Configuration-Set"
TAGS_HEADER = "X-Dispatcher-Tags"
CONTROL_HEADERS = (
    PRIORITY_HEADER,
    IDEMPOTENCY_HEADER,
    SEND_AFTER_HEADER,
    CONFIGURATION_SET_HEADER,
    TAGS_HEADER,
)
"""Per-message options in ``EmailMessage.headers``; removed from the message that is sent."""
_CONTROL_PREFIX = "x-dispatcher-"

_ENQUEUE_RAW = """
SELECT dispatcher.enqueue_raw(
    from_addr => %s, to_addrs => %s::text[], raw => %s::bytea, cc_addrs => %s::text[],
    bcc_addrs => %s::text[], idempotency_key => %s, priority => %s::smallint,
    send_after => %s::timestamptz, tags => %s::jsonb, configuration_set => %s)
"""


class EmailBackend(BaseEmailBackend):
    """Queues each EmailMessage in the dispatcher's outbox; ``send_messages`` counts those queued.

    A message with no recipient is skipped, as Django's SMTP backend does. Each message that
    is queued gets its dispatcher id as ``message.dispatcher_id`` (``dispatcher status ID``).
    """

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        database: str | None = None,
        priority: int | None = None,
        configuration_set: str | None = None,
        tags: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.database = str(database or getattr(settings, "DISPATCHER_DATABASE", "default"))
        if priority is None:
            priority = getattr(settings, "DISPATCHER_PRIORITY", 0)
        if configuration_set is None:
            configuration_set = getattr(settings, "DISPATCHER_CONFIGURATION_SET", None)
        if tags is None:
            tags = getattr(settings, "DISPATCHER_TAGS", {})
        try:  # a wrong setting is said once, here, not as an error of every message
            envelope = validate_envelope(
                "settings@example.com", (), configuration_set, tags, priority
            )
        except InputError as exc:
            raise ImproperlyConfigured(
                f"DISPATCHER_PRIORITY, DISPATCHER_CONFIGURATION_SET or DISPATCHER_TAGS: {exc}"
            ) from None
        self.priority = envelope.priority
        self.configuration_set = envelope.configuration_set
        self.tags = envelope.tags

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue each message (one savepoint each); the number queued."""
        queued = 0
        for message in email_messages:
            try:
                queued += self._queue(message)
            except (InputError, ValueError, DatabaseError) as exc:
                # ValueError: Django's own refusals (BadHeaderError, an address it cannot parse).
                if not self.fail_silently:
                    raise
                log.warning("dispatcher: message not queued: %s", exc)
        return queued

    def _queue(self, message: EmailMessage) -> bool:
        """Validate and queue one message; False if it has no recipient."""
        if not message.recipients():
            return False
        controls = {k.lower(): str(v) for k, v in message.extra_headers.items() if _is_control(k)}
        unknown = sorted(set(controls) - {h.lower() for h in CONTROL_HEADERS})
        if unknown:
            raise InputError(
                f"unknown header {unknown[0]!r}; the dispatcher reads {', '.join(CONTROL_HEADERS)}"
            )
        if message.subject:  # refused as at every other door, though Django would encode it
            check_header_text("subject", str(message.subject), header="Subject")
        size = _content_size(message)
        if size > MAX_MESSAGE_BYTES:  # said before Django spends seconds encoding it
            raise InputError(
                f"the message is {size:,} bytes (before MIME encoding); SES takes at most "
                f"{MAX_MESSAGE_BYTES:,} bytes ({MAX_MESSAGE_BYTES // 2**20} MiB) including "
                "encoding: host large content elsewhere and link to it"
            )
        mime = message.message()
        for name in (*CONTROL_HEADERS, "Bcc"):  # control headers are for us, not the recipients
            del mime[name]
        new = validate_message(
            NewMessage(
                from_addr=_address(message.from_email),
                to=_addresses(message.to),
                cc=_addresses(message.cc),
                bcc=_addresses(message.bcc),
                reply_to=_addresses(message.reply_to),  # checked only: it is in the raw header
                raw=_mime_bytes(mime),
                configuration_set=controls.get(
                    CONFIGURATION_SET_HEADER.lower(), self.configuration_set
                ),
                tags={**self.tags, **_tags(controls.get(TAGS_HEADER.lower()))},
                idempotency_key=controls.get(IDEMPOTENCY_HEADER.lower()),
                priority=_priority(controls.get(PRIORITY_HEADER.lower()), self.priority),
                send_after=_send_after(controls.get(SEND_AFTER_HEADER.lower())),
            )
        )
        connection = connections[self.database]
        if connection.vendor != "postgresql":
            raise ImproperlyConfigured(
                f"DISPATCHER_DATABASE {self.database!r} is a {connection.vendor} database; the "
                "dispatcher's queue is in PostgreSQL: name the alias of that database"
            )
        # A savepoint inside the application's transaction: a refused message must not abort it.
        with transaction.atomic(using=self.database), connection.cursor() as cursor:
            cursor.execute(
                _ENQUEUE_RAW,
                [
                    new.from_addr,
                    list(new.to),
                    new.raw,
                    list(new.cc),
                    list(new.bcc),
                    new.idempotency_key,
                    new.priority,
                    new.send_after,
                    json.dumps(dict(new.tags)),
                    new.configuration_set,
                ],
            )
            row = cursor.fetchone()
        assert row is not None  # a SELECT of one function call returns one row
        message.dispatcher_id = int(row[0])  # type: ignore[attr-defined]
        return True


def _is_control(name: object) -> bool:
    return isinstance(name, str) and name.lower().startswith(_CONTROL_PREFIX)


def _address(value: object) -> str:
    """An address as Django allows it: a string (maybe lazy) or a (name, address) pair."""
    if isinstance(value, tuple) and len(value) == 2:
        return formataddr((str(value[0]), str(value[1])))
    return str(value)


def _addresses(values: Sequence[object]) -> tuple[str, ...]:
    return tuple(_address(v) for v in values if v)  # Django skips empty entries too


def _content_size(message: EmailMessage) -> int:
    """Bytes of the body, alternatives and attachments before MIME encoding (a lower bound)."""
    parts: list[object] = [message.body]
    parts += [alternative[0] for alternative in getattr(message, "alternatives", ())]
    parts += [a[1] for a in message.attachments if isinstance(a, tuple) and len(a) == 3]
    return sum(
        len(p) if isinstance(p, bytes) else len(str(p).encode(errors="surrogateescape"))
        for p in parts
        if p is not None
    )


def _mime_bytes(mime: Message) -> bytes:
    """The message as SMTP would carry it (CRLF), a line beginning with "From " left alone."""
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=mime.policy.clone(linesep="\r\n")).flatten(mime)
    return out.getvalue()


def _priority(text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        return int(text.strip())
    except ValueError:
        raise InputError(
            f"{PRIORITY_HEADER} {text!r} is not an integer; give e.g. 10 (higher is sent first)"
        ) from None


def _send_after(text: str | None) -> datetime | None:
    return None if text is None else parse_send_after(text.strip())


def _tags(text: str | None) -> dict[str, str]:
    """``name=value, name=value`` (the form of SES's X-SES-MESSAGE-TAGS header)."""
    if text is None:
        return {}
    tags: dict[str, str] = {}
    for pair in text.split(","):
        name, sep, value = pair.partition("=")
        if not sep:
            raise InputError(
                f"{TAGS_HEADER} {text!r} is not a list of name=value pairs; give e.g. "
                "'flow=signup, step=1'"
            )
        tags[name.strip()] = value.strip()
    return tags

"""What the SMTP door answers, decided without I/O: who may send as whom, how many recipients,
what a refusal says, and the message it queues (the envelope decides, the bytes stay as sent)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.validate import MAX_RECIPIENTS, parse_mailbox
from dispatcher.doors.keys import ApiKey
from dispatcher.errors import InputError

__all__ = [
    "MAX_REPLY_TEXT",
    "SENDER_HEADERS",
    "display_subject",
    "header_sender_refusal",
    "idempotency_key",
    "mail_from_refusal",
    "rcpt_refusal",
    "reply",
    "submission",
]

MAX_REPLY_TEXT = 400  # RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its code
MAX_SUBJECT = 998  # what `status` shows of a raw message's Subject: one header line at most
SENDER_HEADERS = ("From", "Sender")  # the addresses a raw message shows as its sender
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
_SPACES = re.compile(r"\s+")


def reply(code: int, status: str, text: str) -> str:
    """One SMTP reply line: `code status text`, the text made one printable ASCII line."""
    line = _UNPRINTABLE.sub(" ", text).strip()
    if len(line) > MAX_REPLY_TEXT:
        line = line[: MAX_REPLY_TEXT - 3] + "..."
    return f"{code} {status} {line}".rstrip()


def _may_use(key: ApiKey) -> str:
    return ", ".join(key.senders)


def mail_from_refusal(key: ApiKey, address: str) -> str | None:
    """The reply refusing MAIL FROM:<address> for `key`, or None when it may go on."""
    if not address:
        return reply(
            553,
            "5.1.7",
            "a null sender (MAIL FROM:<>) cannot be queued; give the address the mail is from",
        )
    try:
        parse_mailbox("from", address)
    except InputError as exc:
        return reply(553, "5.1.7", str(exc))
    if not key.allows_sender(address):
        return reply(
            553,
            "5.7.1",
            f"key {key.id} may not send as {address}; it may use {_may_use(key)}",
        )
    return None


def rcpt_refusal(accepted: int, address: str) -> str | None:
    """The reply refusing RCPT TO:<address> after `accepted` recipients, or None."""
    if accepted >= MAX_RECIPIENTS:
        return reply(
            452,
            "4.5.3",
            f"too many recipients: SES takes at most {MAX_RECIPIENTS} per message "
            "(To+Cc+Bcc); send the others in another message",
        )
    try:
        parse_mailbox("to", address)
    except InputError as exc:
        return reply(553, "5.1.3", str(exc))
    return None


def _head(raw: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(raw, headersonly=True)


def header_sender_refusal(key: ApiKey, raw: bytes) -> str | None:
    """The reply refusing a message whose From:/Sender: shows an address the key may not use.

    A key limited to senders also needs every such header to name an address it can read:
    a header nobody here can parse might still be read by SES as someone else's."""
    if not key.senders:
        return None
    head = _head(raw)
    for name in SENDER_HEADERS:
        for value in head.get_all(name, []):
            addresses = [addr for _, addr in getaddresses([str(value)])]
            # An empty entry is a part the parser could not read (`a@a.example>`): SES might.
            if not addresses or not all(addresses):
                return reply(
                    550,
                    "5.7.1",
                    f"the {name}: header names no address key {key.id} may use "
                    f"({_may_use(key)}); write it as {name}: Name <user@domain>",
                )
            for addr in addresses:
                if not key.allows_sender(addr):
                    return reply(
                        550,
                        "5.7.1",
                        f"key {key.id} may not send as {addr} (the {name}: header); "
                        f"it may use {_may_use(key)}",
                    )
    return None


def display_subject(raw: bytes) -> str:
    """The Subject header, decoded for `dispatcher status` (the message itself is untouched)."""
    value = _head(raw).get("Subject")
    if value is None:
        return ""
    try:
        text = str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError):
        text = str(value)
    text = _SPACES.sub(" ", "".join(c if c.isprintable() else " " for c in text)).strip()
    return text[:MAX_SUBJECT]


def idempotency_key(key: ApiKey, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> str | None:
    """The key that makes a resend after a lost `250` the same message, or None.

    Only a message with a Message-ID header gets one: that header says the message is unique,
    so the same bytes to the same envelope again are a resend. Without it, two identical alerts
    sent a day apart are two messages. Scoped to the API key, so keys never collide."""
    if _head(raw).get("Message-ID") is None:
        return None
    digest = hashlib.sha256()
    for part in (mail_from, *rcpt_tos):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(raw)
    return f"smtp:{key.id}:{digest.hexdigest()}"


def submission(key: ApiKey, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> NewMessage:
    """The message to queue: the envelope's sender and recipients (Bcc-only ones too, which is
    why they all go in `to`: SES sends a raw message to its Destinations and shows the headers),
    the bytes as received, at the highest priority the key allows up to 0."""
    priority = 0 if key.max_priority is None else min(0, key.max_priority)
    return NewMessage(
        from_addr=mail_from,
        to=tuple(rcpt_tos),
        raw=raw,
        subject=display_subject(raw),
        priority=priority,
        idempotency_key=idempotency_key(key, mail_from, rcpt_tos, raw),
    )

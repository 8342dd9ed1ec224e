"""Reading a raw MIME message's headers (recipients, sender, subject) for SendRawEmail / Raw."""

from __future__ import annotations

from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

_header_parser = BytesHeaderParser(policy=compat32)  # headers only: the body is never parsed


def parse_raw_headers(data: bytes) -> Message:
    """The header block of a MIME message (the body is not parsed)."""
    return _header_parser.parsebytes(data)


def header_addresses(headers: Message, name: str) -> list[str]:
    values = headers.get_all(name)
    if not values:
        return []
    return [addr for _, addr in getaddresses([str(v) for v in values]) if addr]


def header_text(headers: Message, name: str) -> str:
    value = headers.get(name)
    if value is None:
        return ""
    value = str(value)
    if "=?" in value:  # RFC 2047 encoded words
        try:
            return str(make_header(decode_header(value)))
        except (ValueError, LookupError):
            return value
    return value


def event_publishing(headers: Message) -> tuple[str | None, dict[str, str]]:
    """(configuration set, message tags) from a raw message's SES headers.

    `X-SES-CONFIGURATION-SET: name`, `X-SES-MESSAGE-TAGS: a=1, b=2`; the API parameters win
    over them (https://docs.aws.amazon.com/ses/latest/dg/event-publishing-send-email.html).
    """
    name = headers.get("X-SES-CONFIGURATION-SET")
    tags: dict[str, str] = {}
    for value in headers.get_all("X-SES-MESSAGE-TAGS") or ():
        for pair in str(value).split(","):
            key, sep, tag = pair.partition("=")
            if sep and key.strip():
                tags[key.strip()] = tag.strip()
    return (str(name).strip() or None) if name is not None else None, tags


def contains(raw: bytes, needle: bytes) -> bool:
    """`needle` anywhere in a MIME message, its parts decoded (base64, quoted-printable)."""
    if needle in raw:
        return True
    for part in message_from_bytes(raw, policy=compat32).walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and needle in payload:
                return True
    return False


def sender_headers(headers: Message) -> list[str]:
    """The addresses of a raw message's From and Sender headers, which SES checks as senders."""
    return header_addresses(headers, "From") + header_addresses(headers, "Sender")

"""Reading a raw MIME message's headers (recipients, sender, subject) for SendRawEmail / Raw."""

from __future__ import annotations

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


def ses_headers(headers: Message) -> tuple[str | None, dict[str, str]]:
    """A raw message's X-SES-CONFIGURATION-SET and X-SES-MESSAGE-TAGS (`a=1, b=2`) headers."""
    configuration_set = headers.get("X-SES-CONFIGURATION-SET")
    tags: dict[str, str] = {}
    for value in headers.get_all("X-SES-MESSAGE-TAGS") or ():
        for pair in str(value).split(","):
            name, sep, tag_value = pair.partition("=")
            if sep and name.strip():
                tags[name.strip()] = tag_value.strip()
    return (str(configuration_set).strip() or None) if configuration_set else None, tags


def sender_headers(headers: Message) -> list[str]:
    """The addresses of a raw message's From and Sender headers, which SES checks as senders."""
    return header_addresses(headers, "From") + header_addresses(headers, "Sender")

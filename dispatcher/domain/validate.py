"""What a valid message is, for every way in (send, enqueue, the outbox, campaigns, later doors).

Pure: no I/O, tested without Postgres. A door hands its input to ``validate_message`` (or, for a
campaign's options, ``validate_envelope``) and queues what comes back: addresses normalised once
(display name kept apart and quoted, whitespace stripped, domain lower-cased and in ASCII), and
anything SES can never take (a header line break, a bad address, more than 50 recipients, more
than 40 MiB) refused with an InputError that says what to change. A message with attachments
comes back built into its MIME message, as raw. Addresses themselves (parsing, normalising, the
suppression key) are `dispatcher.domain.address`'s; their names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC

from dispatcher.domain.address import (
    MAX_HEADER_LINE,
    Mailbox,
    check_encodable,
    is_normal_plain,
    parse_mailbox,
    suppression_key,
)
from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.message import DISPATCHER_ID_TAG
from dispatcher.domain.mime import MAX_ATTACHMENTS, build_mime, check_attachment
from dispatcher.errors import InputError

__all__ = [
    "CAMPAIGN_RESERVED_TAGS",
    "MAX_HEADER_LINE",
    "MAX_IDEMPOTENCY_KEY",
    "MAX_MESSAGE_BYTES",
    "MAX_RECIPIENTS",
    "MAX_TAG_LENGTH",
    "RESERVED_TAG",
    "Envelope",
    "Mailbox",
    "check_header_text",
    "check_list_management",
    "check_one_line",
    "message_size",
    "parse_mailbox",
    "suppression_key",
    "validate_envelope",
    "validate_message",
]

MAX_RECIPIENTS = 50  # SES: To + Cc + Bcc of one message
MAX_MESSAGE_BYTES = 40 * 1024 * 1024  # SES v2 SendEmail: "Message length is more than 41943040"
MAX_IDEMPOTENCY_KEY = 200
# SES: a template name is letters, digits, _ and -, at most 64; TemplateData a JSON object of
# at most 262,144 characters (sesv2 EmailTemplateData).
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TEMPLATE_DATA = 262_144
MAX_TAG_LENGTH = 256  # SES: a tag name or value is shorter than 256 characters
RESERVED_TAG = DISPATCHER_ID_TAG  # the adapter sends our message id under this tag
CAMPAIGN_RESERVED_TAGS = (RESERVED_TAG, "campaign_id")  # the import tags each campaign message
SMALLINT_MIN, SMALLINT_MAX = -32768, 32767
_TAG_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_CONFIG_SET = re.compile(r"[A-Za-z0-9_-]{1,64}")  # SES's rule for a configuration set name
_CONTROL_BUT_TAB = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# A line longer than SES takes. Tried only where a line starts (the lookbehind): tried at every
# byte, each attempt ran to the end of its line, seconds for a 40 MiB message of 76-character
# lines. The first match is the same (a long run always starts a line).
_LONG_LINE = re.compile(rb"(?<![^\r\n])[^\r\n]{%d,}" % (MAX_HEADER_LINE + 1))
# A subject that check_header_text passes as it is: printable ASCII or tab, short enough.
_PLAIN_SUBJECT = re.compile(rf"[\t\x20-\x7e]{{1,{MAX_HEADER_LINE - len('Subject: ')}}}")


@dataclass(frozen=True, slots=True)
class Envelope:
    """A campaign's sender options, normalised: what every one of its messages will carry."""

    from_addr: str
    reply_to: tuple[str, ...]
    configuration_set: str | None
    tags: dict[str, str]
    priority: int


def check_one_line(field: str, value: str) -> None:
    """Text bound for a mail header (or a template of one): no line break or control character."""
    check_encodable(field, value)
    if _CONTROL_BUT_TAB.search(value):
        raise InputError(
            f"{field} {value!r} contains a line break or control character; a mail header "
            "cannot hold one: write it on one line"
        )


def check_header_text(field: str, value: str, *, header: str) -> None:
    """A value that becomes one mail header: one line, no control character, not too long."""
    check_one_line(field, value)
    line = len(header) + 2 + len(value)
    if line > MAX_HEADER_LINE:
        raise InputError(
            f"{field} is {len(value)} characters long; as the {header} header that is a line of "
            f"{line}, and SES takes at most {MAX_HEADER_LINE}: shorten it"
        )


def _mailboxes(field: str, addresses: object) -> tuple[str, ...]:
    if addresses == ():  # the common cc, bcc and reply_to: nothing to check
        return ()
    if isinstance(addresses, str | bytes):
        raise InputError(f"{field} must be a tuple of addresses, not a single string")
    if not isinstance(addresses, Iterable):
        raise InputError(f"{field} must be a tuple of addresses, not {addresses!r}")
    return tuple(parse_mailbox(f"{field}[{i}]", a).formatted for i, a in enumerate(addresses))


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


def _check_tags(tags: object, reserved: Iterable[str]) -> dict[str, str]:
    if not isinstance(tags, Mapping):
        raise InputError(f"tags must be a mapping of names to values, not {tags!r}")
    for name, value in tags.items():
        _check_tag_part("name", name, name)
        _check_tag_part("value", value, name)
        if name in reserved:
            raise InputError(
                f"the tag name {name!r} is reserved: the dispatcher sets it itself; "
                "choose another name"
            )
    return dict(tags)


def _check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InputError(f"priority must be an integer, not {priority!r}")
    if not SMALLINT_MIN <= priority <= SMALLINT_MAX:
        raise InputError(
            f"priority {priority} is out of range; use {SMALLINT_MIN}..{SMALLINT_MAX} "
            "(higher is sent first)"
        )
    return priority


def _check_configuration_set(name: object) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not _CONFIG_SET.fullmatch(name):
        raise InputError(
            f"configuration set {name!r} is not a valid name: SES takes 1 to 64 ASCII letters, "
            "digits, '_' and '-'"
        )
    return name


def check_list_management(contact_list: object, topic: object) -> tuple[str, str | None] | None:
    """A campaign's SES contact list and topic (ListManagementOptions), or None without one."""
    if contact_list is None:
        if topic is not None:
            raise InputError("a topic needs its contact list: add --contact-list NAME")
        return None
    # Not confirmed by the API model (a plain string there): the console's rule, as for
    # configuration sets; a name outside it would be refused by SES at the first send.
    for what, name in (("contact list", contact_list), ("topic", topic)):
        if name is not None and (not isinstance(name, str) or not _CONFIG_SET.fullmatch(name)):
            raise InputError(
                f"{what} {str(name)[:80]!r} is not a valid name: SES takes 1 to 64 ASCII "
                "letters, digits, '_' and '-'"
            )
    assert isinstance(contact_list, str) and (topic is None or isinstance(topic, str))
    return contact_list, topic


def validate_envelope(
    from_addr: object,
    reply_to: object = (),
    configuration_set: object = None,
    tags: object = None,
    priority: object = 0,
    *,
    reserved_tags: Iterable[str] = (RESERVED_TAG,),
) -> Envelope:
    """The sender options shared by a message and a campaign, checked and normalised."""
    return Envelope(
        from_addr=parse_mailbox("from_addr", from_addr).formatted,
        reply_to=_mailboxes("reply_to", reply_to),
        configuration_set=_check_configuration_set(configuration_set),
        tags=_check_tags({} if tags is None else tags, set(reserved_tags)),
        priority=_check_priority(priority),
    )


def message_size(msg: NewMessage) -> int:
    """Bytes of the message before MIME encoding: a lower bound of what SES counts."""
    if msg.raw is not None:
        return len(msg.raw)
    return sum(len(p.encode("utf-8")) for p in (msg.subject, msg.text, msg.html) if p)


def _check_template(msg: NewMessage) -> None:
    """A message SES renders from a template in the account: no content of its own."""
    if msg.raw is not None or msg.text is not None or msg.html is not None or msg.attachments:
        raise InputError(
            "a message sent with an SES template has no text, html, raw or attachments of its "
            "own; SES renders the template's"
        )
    name = msg.template_name
    if not isinstance(name, str) or not _TEMPLATE_NAME.fullmatch(name):
        raise InputError(
            f"template name {str(name)[:80]!r} is not an SES template name: letters, digits, "
            "_ and -, at most 64"
        )
    data = "{}" if msg.template_data is None else msg.template_data
    if not isinstance(data, str) or len(data) > MAX_TEMPLATE_DATA:
        raise InputError(
            f"template data must be a JSON object of at most {MAX_TEMPLATE_DATA:,} characters"
        )
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InputError('template data must be a JSON object, e.g. {"name": "Ana"}')


def _check_body(msg: NewMessage) -> None:
    if msg.template_name is not None or msg.template_data is not None:
        _check_template(msg)
        return
    if msg.raw is not None:
        if msg.attachments:
            raise InputError(
                "a message has either raw (a complete MIME message) or attachments, not both; "
                "put the attachments inside the raw message",
                field="attachments",
            )
        if msg.text is not None or msg.html is not None:
            raise InputError(
                "a message has either raw (a complete MIME message) or text/html, not both; "
                "put the body inside the raw message or drop raw"
            )
        if not isinstance(msg.raw, bytes) or not msg.raw:
            raise InputError("raw is empty; give the complete MIME message as bytes")
        long_line = _LONG_LINE.search(msg.raw)
        if long_line is not None:
            line = msg.raw.count(b"\n", 0, long_line.start()) + 1
            raise InputError(
                f"raw has a line of {long_line.end() - long_line.start()} characters (line "
                f"{line}); SES takes at most {MAX_HEADER_LINE}: fold long headers and encode "
                "the body (quoted-printable or base64)"
            )
    else:
        for field in ("text", "html"):
            value = getattr(msg, field)
            if value is not None:
                if not isinstance(value, str):
                    raise InputError(f"{field} must be a string, not {type(value).__name__}")
                check_encodable(field, value)
        if not msg.text and not msg.html and not msg.attachments:
            raise InputError("the message has no body; give text, html (or both), or raw")
        if not isinstance(msg.subject, str) or not msg.subject:
            raise InputError("the message has no subject; give a subject (or send it as raw)")
        check_header_text("subject", msg.subject, header="Subject")
    size = message_size(msg)
    if size > MAX_MESSAGE_BYTES:
        raise InputError(
            f"the message is {size:,} bytes (before MIME encoding); SES takes at most "
            f"{MAX_MESSAGE_BYTES:,} bytes ({MAX_MESSAGE_BYTES // 2**20} MiB) including encoding: "
            "host large content elsewhere and link to it"
        )


def _body_size(value: object) -> int | None:
    """UTF-8 bytes of a text or html body that check_encodable passes, else None."""
    if type(value) is not str or "\x00" in value:
        return None
    if value.isascii():
        return len(value)
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return None


@functools.lru_cache(maxsize=256)
def _normal_sender(address: str) -> bool:
    """is_normal_plain for From addresses: a batch repeats a few senders for every message."""
    return is_normal_plain(address)


def _already_valid(msg: NewMessage) -> bool:
    """True if ``msg`` is the common case already in normal form: plain ASCII addresses in to
    only, a subject and text/html, no tags, schedule, template, raw or attachments. The full
    checks would return it unchanged; a bulk enqueue spent most of its validation on them."""
    if (
        msg.cc != ()
        or msg.bcc != ()
        or msg.reply_to != ()
        or msg.attachments
        or msg.raw is not None
        or msg.template_name is not None
        or msg.template_data is not None
        or msg.send_after is not None
        or type(msg.tags) is not dict
        or msg.tags
        or type(msg.priority) is not int
        or not SMALLINT_MIN <= msg.priority <= SMALLINT_MAX
        or type(msg.to) is not tuple
        or not 0 < len(msg.to) <= MAX_RECIPIENTS
        or type(msg.subject) is not str
        or not _PLAIN_SUBJECT.fullmatch(msg.subject)
        or type(msg.from_addr) is not str
        or not _normal_sender(msg.from_addr)
    ):
        return False
    cs, key = msg.configuration_set, msg.idempotency_key
    if cs is not None and (type(cs) is not str or not _CONFIG_SET.fullmatch(cs)):
        return False
    if key is not None and (
        type(key) is not str or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or _body_size(key) is None
    ):
        return False
    if not (msg.text or msg.html):
        return False
    size = len(msg.subject)
    for body in (msg.text, msg.html):
        if body is not None:
            n = _body_size(body)
            if n is None:
                return False
            size += n
    if size > MAX_MESSAGE_BYTES:
        return False
    return all(type(a) is str and is_normal_plain(a) for a in msg.to)


def validate_message(msg: NewMessage) -> NewMessage:
    """``msg`` with its addresses normalised; InputError naming the first problem otherwise."""
    return msg if _already_valid(msg) else _validate_full(msg)


def _validate_full(msg: NewMessage) -> NewMessage:
    """validate_message without the shortcut for the common case."""
    envelope = validate_envelope(
        msg.from_addr, msg.reply_to, msg.configuration_set, msg.tags, msg.priority
    )
    to = _mailboxes("to", msg.to)
    cc = _mailboxes("cc", msg.cc)
    bcc = _mailboxes("bcc", msg.bcc)
    count = len(to) + len(cc) + len(bcc)
    if count == 0:
        raise InputError("the message has no recipient; give at least one address in to, cc or bcc")
    if count > MAX_RECIPIENTS:
        raise InputError(
            f"SES accepts at most {MAX_RECIPIENTS} recipients per message (To+Cc+Bcc); "
            f"this one has {count}. Split it into several messages."
        )
    _check_body(msg)

    if msg.send_after is not None:
        if msg.send_after.utcoffset() is None:
            raise InputError(
                f"send_after {msg.send_after.isoformat()} has no time zone; "
                "give an aware datetime, e.g. datetime.now(timezone.utc)"
            )
        try:
            msg.send_after.astimezone(UTC)
        except OverflowError:
            raise InputError(
                f"send_after {msg.send_after.isoformat()} is out of range; give a real time"
            ) from None

    key = msg.idempotency_key
    if key is not None:
        if not isinstance(key, str) or not key:
            raise InputError("idempotency_key is empty; leave it None or give a non-empty key")
        check_encodable("idempotency_key", key)
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise InputError(
                f"idempotency_key is {len(key)} characters long; "
                f"use at most {MAX_IDEMPOTENCY_KEY} (e.g. a hash of a longer key)"
            )
    if (
        # Already normal (the common case in bulk): the message itself, not a copy of it.
        not msg.attachments
        and envelope.from_addr == msg.from_addr
        and to == msg.to
        and cc == msg.cc
        and bcc == msg.bcc
        and envelope.reply_to == msg.reply_to
        and type(msg.tags) is dict
    ):
        return msg
    valid = dataclasses.replace(
        msg,
        from_addr=envelope.from_addr,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=envelope.reply_to,
        tags=envelope.tags,
    )
    return _with_attachments(valid) if msg.attachments else valid


def _too_large(what: str, size: int) -> InputError:
    return InputError(
        f"the message {what} {size:,} bytes; SES takes at most {MAX_MESSAGE_BYTES:,} bytes "
        f"({MAX_MESSAGE_BYTES // 2**20} MiB) in all: send smaller files or link to them",
        field="attachments",
    )


def _with_attachments(msg: NewMessage) -> NewMessage:
    """``msg`` built into its MIME message and queued as raw (its subject kept for display)."""
    if isinstance(msg.attachments, str | bytes) or not isinstance(msg.attachments, Iterable):
        raise InputError("attachments must be a tuple of Attachment", field="attachments")
    given = tuple(msg.attachments)
    if len(given) > MAX_ATTACHMENTS:
        raise InputError(
            f"the message has {len(given)} attachments; the dispatcher takes at most "
            f"{MAX_ATTACHMENTS}: send them in several messages, or as one archive",
            field="attachments",
        )
    attachments = [check_attachment(i, a) for i, a in enumerate(given)]
    total = sum(len(a.content) for a in attachments)
    if total > MAX_MESSAGE_BYTES:  # refused before base64 makes it a third larger still
        raise _too_large("has attachments of", total)
    raw = build_mime(
        from_addr=msg.from_addr,
        to=msg.to,
        cc=msg.cc,  # Bcc recipients are only in the envelope: never a header
        reply_to=msg.reply_to,
        subject=msg.subject,
        text=msg.text,
        html=msg.html,
        attachments=attachments,
    )
    if len(raw) > MAX_MESSAGE_BYTES:
        raise _too_large("with its attachments, base64-encoded, is", len(raw))
    return dataclasses.replace(msg, raw=raw, text=None, html=None, attachments=())

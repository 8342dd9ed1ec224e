"""What a `POST /v1/messages` body means (pure): one message or a batch, each read as a line of
`dispatcher enqueue` is, with the client's idempotency keys scoped to its API key.

Whatever the body holds, the answer is a list of messages or a BadBody that says what is wrong
and names the field (and the batch index) at fault: the HTTP API answers it as a 400.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.validate import MAX_IDEMPOTENCY_KEY
from dispatcher.domain.wire import FIELDS, unstorable, validated_from_json
from dispatcher.errors import InputError

__all__ = [
    "DOOR",
    "BadBody",
    "Body",
    "comparable_raw",
    "field_of",
    "read_body",
    "scoped_key",
    "unscoped_key",
]

BOM = b"\xef\xbb\xbf"
DOOR = "http"  # the prefix of the idempotency keys this door stores

# What an InputError's text starts with -> the field it is about, for errors raised without
# one (the validator names fields in its own words: from_addr, to[3], "configuration set").
_FIELD_PATTERNS: tuple[tuple[re.Pattern[str], str | None], ...] = (
    (re.compile(r"unknown field\(s\) ([^,;]+)"), "*"),  # "*": the unknown name itself
    (re.compile(r'"([a-z_]+)"'), None),
    (re.compile(r"from_addr\b"), "from"),
    (re.compile(r"(to|cc|bcc|reply_to|subject|text|html|priority|send_after|tags)\b"), None),
    (re.compile(r"idempotency_key\b"), "idempotency_key"),
    (re.compile(r"configuration set\b"), "configuration_set"),
    (re.compile(r"(?:the )?tag\b"), "tags"),
    (re.compile(r"the message has no recipient|SES accepts at most \d+ recipients"), "to"),
    (re.compile(r"the message has no body"), "text"),
    (re.compile(r"the message has no subject"), "subject"),
)
_INDEX_PREFIX = re.compile(r"message \d+: ")
_TOO_LARGE = re.compile(r"the message is [\d,]+ bytes")
_PARTS = ("text", "html", "subject")  # what a message's size is made of


def field_of(exc: InputError) -> str | None:
    """The message field `exc` is about (its own ``field``, else read from its text), or None."""
    if exc.field is not None:
        return exc.field
    text = _INDEX_PREFIX.sub("", str(exc), count=1)
    for pattern, field in _FIELD_PATTERNS:
        match = pattern.match(text)
        if match is not None:
            if field == "*":
                return match.group(1)
            name = field or match.group(1)
            return name if name in FIELDS else None
    return None


class BadBody(Exception):
    """Why the body cannot be queued; `field` and `index` (in a batch) name where."""

    def __init__(self, error: str, field: str | None = None, index: int | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.field = field
        self.index = index


def _largest_part(obj: dict[str, Any]) -> str:
    """The part of an oversized message that makes most of its size."""
    return max(_PARTS, key=lambda p: len(v) if isinstance(v := obj.get(p), str) else 0)


@dataclass(frozen=True, slots=True)
class Body:
    """The messages of a request, keys scoped; `batch` when the body was a JSON array."""

    messages: list[NewMessage]
    batch: bool


_BOUNDARY = re.compile(rb'boundary="?([^";\r\n]+)"?', re.IGNORECASE)
_UNIQUE_HEADERS = (b"date", b"message-id")  # a new value each time a MIME message is built


def comparable_raw(raw: bytes) -> bytes:
    """A MIME message without what building it again changes (its Date, its Message-ID, its
    boundaries): two builds of one message compare equal, another message does not."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    kept: list[bytes] = []
    dropping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):  # a folded line belongs to the header above
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() in _UNIQUE_HEADERS
        if not dropping:
            kept.append(line)
    out = b"".join(kept) + sep + body
    for n, boundary in enumerate(dict.fromkeys(_BOUNDARY.findall(out))):
        out = out.replace(boundary, b"<boundary %d>" % n)
    return out


def max_given_key(key_id: str) -> int:
    """The longest idempotency key a client of `key_id` may give (room for the scope)."""
    return MAX_IDEMPOTENCY_KEY - len(scoped_key(key_id, ""))


def scoped_key(key_id: str, given: str) -> str:
    """The stored form of a client's idempotency key: another API key can never reach it."""
    return f"{DOOR}:{key_id}:{given}"


def unscoped_key(key_id: str, stored: str | None) -> str | None:
    """The client's own key back from the stored form (None if it is not this door's)."""
    prefix = scoped_key(key_id, "")
    if stored is None or not stored.startswith(prefix):
        return None
    return stored[len(prefix) :]


def _check_given(key_id: str, given: str, where: str, index: int | None) -> None:
    limit = max_given_key(key_id)
    if not given or len(given) > limit or not given.isprintable():
        raise BadBody(
            f"{where} must be 1 to {limit} printable characters (got {len(given)}); "
            "use e.g. a UUID or a hash of a longer key",
            "idempotency_key",
            index,
        )


def _one(obj: object, key_id: str, index: int | None, default_key: str | None) -> NewMessage:
    where = "" if index is None else f"message {index}: "
    if not isinstance(obj, dict):
        what = "the body" if index is None else f"message {index}"
        raise BadBody(
            f"{what} must be a JSON object with the fields of a message ({', '.join(FIELDS)})",
            None,
            index,
        )
    problem = unstorable(obj)
    if problem is not None:
        raise BadBody(where + problem, field_of(InputError(problem)), index)
    try:
        # Validated here, once: the door queues this one (a MIME message is built once).
        msg = validated_from_json(obj)
    except InputError as exc:
        field = field_of(exc)
        if field is None and _TOO_LARGE.match(str(exc)):
            field = _largest_part(obj)
        raise BadBody(where + str(exc), field, index) from None
    given = msg.idempotency_key
    if given is not None:
        _check_given(key_id, given, where + '"idempotency_key"', index)
    elif default_key is not None:
        given = default_key
    if given is None:
        return msg
    return dataclasses.replace(msg, idempotency_key=scoped_key(key_id, given))


def read_body(raw: bytes, key_id: str, header_key: str | None) -> Body:
    """The messages `raw` holds for the API key `key_id`; BadBody says what is wrong.

    The Idempotency-Key header is the key of a single message (a body key must then be the
    same); for a batch, element i without its own key gets ``HEADER:i``, so the whole batch
    can be sent again safely.
    """
    if header_key is not None:
        _check_given(key_id, header_key, "the Idempotency-Key header", None)
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]  # an editor's byte-order mark, skipped as `enqueue` skips it
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(
            f"the body is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "send JSON encoded as UTF-8"
        ) from None
    if not text.strip():
        raise BadBody("the body is empty; send a message as a JSON object, or an array of them")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadBody(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BadBody("the body is not valid JSON here: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise BadBody(f"the body is not valid JSON here: {exc}") from None
    if isinstance(obj, list):
        if not obj:
            raise BadBody("the batch is empty; send at least one message")
        if header_key is not None:
            # Element i gets HEADER:i: room for the largest index.
            _check_given(
                key_id, f"{header_key}:{len(obj) - 1}", "the Idempotency-Key header (with :N)", None
            )
        return Body(
            [
                _one(item, key_id, i, None if header_key is None else f"{header_key}:{i}")
                for i, item in enumerate(obj)
            ],
            batch=True,
        )
    msg = _one(obj, key_id, None, header_key)
    if header_key is not None and msg.idempotency_key != scoped_key(key_id, header_key):
        raise BadBody(
            "the Idempotency-Key header and the body's idempotency_key differ; give one of them",
            "idempotency_key",
        )
    return Body([msg], batch=False)

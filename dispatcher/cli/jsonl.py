"""Messages from JSON: one object per line for `dispatcher enqueue` (pure parsing, no I/O).

Whatever a line holds, it becomes a message or a BadLine that says what is wrong with it: never
an exception that would stop the lines after it. A line without an idempotency key gets one
from its content (see DefaultKeys), so enqueueing the same file again queues nothing twice.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO

from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.validate import MAX_MESSAGE_BYTES
from dispatcher.domain.wire import message_from_json, unstorable
from dispatcher.errors import InputError

BOM = b"\xef\xbb\xbf"
DEFAULT_PREFIX = "jsonl"
HASH_CHARS = 32  # 128 bits of SHA-256: no two different lines share a key by chance
MAX_PREFIX = 100  # an idempotency key has at most 200 characters: room for ":HASH:N"
MIB = 1024 * 1024
# The longest line read: SES's largest message (40 MiB) and its JSON escaping, with room. A longer
# line can never be sent; reading on would hold a 2 GB line (or /dev/zero) in memory.
MAX_LINE_BYTES = MAX_MESSAGE_BYTES + 24 * MIB
SKIP_BLOCK = MIB  # an overlong line is dropped this much at a time


class Overlong(enum.Enum):
    """Markers `capped_lines` yields for a line over the limit."""

    FOUND = "found"  # this line is over the limit (it counts as a line)
    MORE = "more"  # one more block of it was dropped (not a line: a moment to look at signals)


@dataclass(frozen=True, slots=True)
class BadLine:
    line: int
    error: str


def parse_line(number: int, raw: bytes) -> NewMessage | BadLine | None:
    """One line of the file as a message, or what is wrong with it; None for a blank line."""
    if number == 1 and raw.startswith(BOM):
        raw = raw[len(BOM) :]  # an editor's byte-order mark, read as the CSV import reads it
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadLine(
            number,
            f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
            "save the file as UTF-8",
        )
    if not line.strip():
        return None
    try:
        # Without its line end: a line cut short would otherwise be reported at "column 1"
        # (of the next line, as json sees the newline).
        obj = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        return BadLine(number, f"not valid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return BadLine(number, "not valid JSON here: nested too deeply")
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        return BadLine(number, f"not valid JSON here: {exc}")
    problem = unstorable(obj)
    if problem is not None:
        return BadLine(number, problem)
    try:
        return message_from_json(obj)
    except InputError as exc:
        return BadLine(number, str(exc))


class DefaultKeys:
    """Idempotency keys for lines without one: `PREFIX:HASH:N`.

    HASH is a SHA-256 of the message the line describes (every field in a fixed order, so the
    spacing or key order of the line does not change it; attachments by name, type and the
    SHA-256 of their bytes) and N counts the lines with that very
    content in this input, so two identical lines are two messages. A rerun of the same file,
    or of the file with bad lines fixed or lines added, gives every line queued before the
    same key: it is not queued again.
    """

    __slots__ = ("_prefix", "_seen")

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self._prefix = prefix
        self._seen: dict[str, int] = {}

    def key(self, msg: NewMessage) -> str:
        content: dict[str, object] = {
            "from": msg.from_addr,
            "to": msg.to,
            "cc": msg.cc,
            "bcc": msg.bcc,
            "subject": msg.subject,
            "text": msg.text,
            "html": msg.html,
            "reply_to": msg.reply_to,
            "configuration_set": msg.configuration_set,
            "tags": dict(msg.tags),
            "priority": msg.priority,
            "send_after": None if msg.send_after is None else msg.send_after.isoformat(),
        }
        if msg.attachments:  # only then: the keys of messages without any stay what they were
            content["attachments"] = [
                [a.filename, a.content_type, hashlib.sha256(a.content).hexdigest()]
                for a in msg.attachments
            ]
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]
        n = self._seen.get(digest, 0) + 1
        self._seen[digest] = n
        return f"{self._prefix}:{digest}:{n}"

    def assign(self, msg: NewMessage) -> NewMessage:
        """``msg`` with a default key, unless the line gave its own."""
        if msg.idempotency_key is not None:
            return msg
        return replace(msg, idempotency_key=self.key(msg))


def capped_lines(
    stream: IO[bytes], limit: int = MAX_LINE_BYTES, block: int = SKIP_BLOCK
) -> Iterator[bytes | Overlong]:
    """The lines of `stream`; a line over `limit` bytes is Overlong.FOUND, then its rest is read
    and dropped a block at a time (Overlong.MORE each), never held, up to the next line end."""
    while line := stream.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        yield Overlong.FOUND
        while rest := stream.readline(block):
            if rest.endswith(b"\n"):
                break
            yield Overlong.MORE


def parse_lines(
    lines: Iterable[bytes | Overlong], keys: DefaultKeys | None = None
) -> Iterator[tuple[int, NewMessage | BadLine | None]]:
    """(line number, message or what is wrong with it) for every non-blank line; (number, None)
    while the rest of an overlong line is dropped (`capped_lines`)."""
    number = 0
    for raw in lines:
        if raw is Overlong.MORE:
            yield number, None
            continue
        number += 1
        if raw is Overlong.FOUND:
            yield (
                number,
                BadLine(
                    number,
                    f"longer than {MAX_LINE_BYTES // MIB} MiB, more than any message SES takes "
                    f"({MAX_MESSAGE_BYTES // MIB} MiB); skipped to the next line",
                ),
            )
            continue
        item = parse_line(number, raw)
        if item is None:
            continue
        if keys is not None and isinstance(item, NewMessage):
            item = keys.assign(item)
        yield number, item

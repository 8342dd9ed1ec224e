"""`dispatcher enqueue`'s line parser: any line becomes a message or a BadLine, never an
exception, and lines without a key get one from their content."""

from __future__ import annotations

import io
import json

import pytest

from dispatcher.cli.jsonl import (
    BadLine,
    DefaultKeys,
    Overlong,
    capped_lines,
    parse_line,
    parse_lines,
)
from dispatcher.domain.jobs import NewMessage

GOOD = {"from": "a@example.com", "to": ["b@example.com"], "subject": "s", "text": "x"}


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (line({**GOOD, "subject": "\ud800"}), '"subject" contains a lone surrogate (\\ud800)'),
        (b'{"from": "a@example.com", "text": "\xed\xa0\x80"}\n', "not UTF-8 (byte 0xed"),
        (line({**GOOD, "text": "a\x00b"}), '"text" contains a NUL character'),
        (line({**GOOD, "tags": {"k\x00": "v"}}), '"tags" contains a NUL character'),
        (line({**GOOD, "send_after": "0001-01-01T00:00:00+01:00"}), "is out of range"),
        (line({**GOOD, "send_after": "9999-12-31T23:59:59-01:00"}), "is out of range"),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
        (line(GOOD)[:-2] + b', "priority": ' + b"9" * 5000 + b"}\n", "4300 digits"),
        ('{"subject": "Grüße"}\n'.encode("latin-1"), "not UTF-8 (byte 0xfc at column 16)"),
        (b'{"from": NaN}\n', '"from" is required'),
    ],
)
def test_a_hostile_line_is_a_bad_line_that_says_why(raw: bytes, says: str) -> None:
    item = parse_line(7, raw)

    assert isinstance(item, BadLine), item
    assert item.line == 7
    assert says in item.error


def test_a_bom_on_the_first_line_is_read_like_the_csv_import_reads_it() -> None:
    item = parse_line(1, b"\xef\xbb\xbf" + line(GOOD))

    assert isinstance(item, NewMessage) and item.from_addr == "a@example.com"
    assert isinstance(parse_line(2, b"\xef\xbb\xbf" + line(GOOD)), BadLine)


def test_send_after_is_kept_in_utc() -> None:
    item = parse_line(1, line({**GOOD, "send_after": "0001-01-01T01:00:00+01:00"}))

    assert isinstance(item, NewMessage) and item.send_after is not None
    assert item.send_after.isoformat() == "0001-01-01T00:00:00+00:00"


def test_default_keys_come_from_content_and_count_identical_lines() -> None:
    lines = [
        line(GOOD),
        b"\n",
        b'{"text": "x", "subject": "s", "to": ["b@example.com"], "from": "a@example.com"}\n',
        line({**GOOD, "to": ["c@example.com"]}),
        line({**GOOD, "idempotency_key": "mine"}),
    ]

    def keys(lines: list[bytes], prefix: str = "jsonl") -> list[str | None]:
        parsed = [m for _, m in parse_lines(lines, DefaultKeys(prefix))]
        return [m.idempotency_key for m in parsed if isinstance(m, NewMessage)]

    first = keys(lines)
    again = keys(lines[2:], "x")

    assert len(first) == 4 and first[3] == "mine"
    assert first[0] is not None and first[0].startswith("jsonl:") and first[0].endswith(":1")
    # The same message written another way is the second copy of the first, not a new one.
    assert first[1] == first[0].removesuffix(":1") + ":2"
    assert first[2] != first[0] and first[2] is not None and first[2].endswith(":1")
    assert again[0] == "x:" + first[0].split(":")[1] + ":1"


def test_a_line_over_the_cap_is_one_bad_line_dropped_in_blocks_and_the_next_line_counts() -> None:
    long = b'{"from": "' + b"x" * 1000 + b'"}\n'
    stream = io.BytesIO(line(GOOD) + long + line(GOOD) + b"y" * 50)  # the last: no line end

    items = list(capped_lines(stream, limit=200, block=64))

    assert items[0] == line(GOOD) and items[1] is Overlong.FOUND
    # The other 800 bytes of the long line: dropped a block at a time, none of them yielded.
    assert items[2:-2] == [Overlong.MORE] * (len(items) - 4) and len(items) > 10
    assert items[-2:] == [line(GOOD), b"y" * 50]
    parsed = [(n, item) for n, item in parse_lines(items) if item is not None]
    assert [n for n, _ in parsed] == [1, 2, 3, 4]
    assert isinstance(parsed[1][1], BadLine) and "longer than 64 MiB" in parsed[1][1].error
    assert isinstance(parsed[2][1], NewMessage) and isinstance(parsed[3][1], BadLine)

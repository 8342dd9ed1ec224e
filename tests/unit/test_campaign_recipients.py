"""iter_recipients: good rows, rejected rows with line and reason, unusable files, flat memory."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator

import psutil
import pytest

from dispatcher.campaigns.recipients import (
    MAX_VARIABLE_BYTES,
    RecipientReader,
    RecipientRow,
    RejectedRow,
    dedupe_key,
    iter_recipients,
)
from dispatcher.errors import InputError


def read(data: bytes) -> list[RecipientRow | RejectedRow]:
    return list(iter_recipients(io.BytesIO(data), source="list.csv"))


def error(data: bytes) -> str:
    with pytest.raises(InputError) as info:
        read(data)
    return str(info.value)


def test_good_file() -> None:
    rows = read(
        b"email,first_name,city\r\n"
        b"Jane.Doe@Example.COM,Jane,Oslo\r\n"
        b'jo@example.com,"Smith, Jo",""\r\n'
        b"al@b\xc3\xbccher.example,Al,K\xc3\xb6ln\r\n"
    )
    assert rows == [
        RecipientRow(2, "Jane.Doe@example.com", {"first_name": "Jane", "city": "Oslo"}),
        RecipientRow(3, "jo@example.com", {"first_name": "Smith, Jo", "city": ""}),
        RecipientRow(4, "al@xn--bcher-kva.example", {"first_name": "Al", "city": "Köln"}),
    ]


def test_header_is_trimmed_email_matched_case_insensitively_columns_exposed() -> None:
    reader = RecipientReader(io.BytesIO(b" EMail , name ,\nx@example.com,X,\n"), source="l.csv")
    assert reader.columns == ("name",)  # the unnamed trailing column is ignored
    assert list(reader) == [RecipientRow(2, "x@example.com", {"name": "X"})]


def test_missing_email_column() -> None:
    message = error(b"mail,name\nx@example.com,X\n")
    assert message == (
        "list.csv has no `email` column; columns: 'mail', 'name'; add a column named email"
    )


def test_semicolon_separated_file_is_explained() -> None:
    assert "does not look comma-separated" in error(b"email;name\nx@example.com;X\n")


def test_semicolon_files_excel_writes_are_explained_however_they_split() -> None:
    for data in (
        b'"email";"name"\n"x@example.com";"X"\n',  # quoted: csv reads one odd column
        b"email;name, full\nx@example.com;X\n",  # a comma in a header: two odd columns
        b"email\tname\nx@example.com\tX\n",
    ):
        assert "does not look comma-separated" in error(data), data


def test_a_header_with_no_recipient_under_it_is_refused() -> None:
    expected = "list.csv has a header but no recipients; add one row per recipient under the header"
    assert error(b"email,name\n") == expected
    assert error(b"email,name\r\n\r\n,\n") == expected  # blank and empty rows are no rows


def test_duplicate_columns() -> None:
    assert "column 'name' appears twice (columns 2 and 3)" in error(b"email,name,name\n")
    assert "two email columns" in error(b"email,Email\n")


def test_empty_file() -> None:
    assert "list.csv is empty" in error(b"")
    assert "list.csv is empty" in error(b"\n\n")


def test_malformed_addresses_are_rejected_with_their_lines() -> None:
    rows = read(
        b"email,name\n"
        b"ok@example.com,A\n"
        b"no-at-sign.example.com,B\n"
        b",\n"  # an empty row (as spreadsheets export them): skipped, but it counts as a line
        b"two@@example.com,C\n"
        b"Jane <jane@example.com>,D\n"
        b"j\xc3\xb6rg@example.com,E\n"
        b",F\n"
        b"   ,G\n"
    )
    assert rows[0] == RecipientRow(2, "ok@example.com", {"name": "A"})
    rejected = rows[1:]
    assert all(isinstance(r, RejectedRow) for r in rejected)
    assert [(r.line, r.email) for r in rejected] == [
        (3, "no-at-sign.example.com"),
        (5, "two@@example.com"),
        (6, "Jane <jane@example.com>"),
        (7, "jörg@example.com"),
        (8, ""),
        (9, ""),
    ]
    reasons = [r.reason for r in rejected if isinstance(r, RejectedRow)]
    assert reasons[0] == (
        "'no-at-sign.example.com' is not a valid address: An email address must have an @-sign."
    )
    assert "angle brackets" in reasons[2]
    assert "Internationalized characters before the @-sign" in reasons[3]
    assert reasons[4] == reasons[5] == "email is empty"


def test_line_break_inside_a_quoted_field_rejects_the_row_naming_the_column() -> None:
    rows = read(
        b"email,first_name,note\n"
        b'a@example.com,"Jo\r\nBcc: victim@example.com",x\n'
        b'b@example.com,Al,"two\nlines"\n'
        b"c@example.com,Cy,ok\n"
    )
    assert [(r.line, type(r).__name__) for r in rows] == [
        (2, "RejectedRow"),
        (4, "RejectedRow"),
        (6, "RecipientRow"),  # lines 2-3 and 4-5 each held one row
    ]
    assert isinstance(rows[0], RejectedRow) and isinstance(rows[1], RejectedRow)
    assert rows[0].reason.startswith("column 'first_name' contains a line break")
    assert rows[1].reason.startswith("column 'note' contains a line break")


@pytest.mark.parametrize(
    "brk", ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
)
def test_a_lone_line_break_of_any_kind_in_a_field_rejects_the_row(brk: str) -> None:
    # A lone CR (no LF after it) is a header line break to a mail client all the same.
    data = f'email,first_name\na@example.com,"Jo{brk}Bcc: victim@example.com"\nb@example.com,B\n'
    rows = read(data.encode())
    rejected = [r for r in rows if isinstance(r, RejectedRow)]
    good = [r for r in rows if isinstance(r, RecipientRow)]
    assert len(rejected) == 1, rows
    assert rejected[0].reason.startswith("column 'first_name' contains a line break")
    assert [r.email for r in good] == ["b@example.com"]
    assert all("Bcc" not in v for r in good for v in r.variables.values())


def test_wrong_field_count_rejects_the_row() -> None:
    rows = read(b"email,name\na@example.com,A,extra\nb@example.com\nc@example.com,C\n")
    assert rows[0] == RejectedRow(
        2,
        "a@example.com",
        'has 3 fields but the header has 2; quote fields that contain commas ("Smith, Jo")',
    )
    assert isinstance(rows[1], RejectedRow)
    assert (rows[1].line, rows[1].reason[:33]) == (3, "has 1 fields but the header has 2")
    assert rows[2] == RecipientRow(4, "c@example.com", {"name": "C"})


def test_oversized_field_rejects_the_row() -> None:
    big = b"x" * (MAX_VARIABLE_BYTES + 1)
    rows = read(b"email,bio\na@example.com," + big + b"\nb@example.com,short\n")
    assert isinstance(rows[0], RejectedRow)
    assert rows[0].reason == (
        f"column 'bio' is {MAX_VARIABLE_BYTES + 1} bytes; at most {MAX_VARIABLE_BYTES} bytes "
        "per field"
    )
    assert isinstance(rows[1], RecipientRow)


def test_non_utf8_file_names_line_and_byte() -> None:
    message = error(b"email,name\na@example.com,Ana\nb@example.com,Jos\xe9\n")
    assert message == (
        "list.csv: line 3 is not UTF-8 (byte 0xe9 at column 18, file offset 46); "
        "save the file as UTF-8 (in Excel: CSV UTF-8)"
    )


def test_utf16_file_is_explained() -> None:
    assert "is UTF-16" in error("email\na@example.com\n".encode("utf-16"))


def test_byte_order_mark_is_ignored() -> None:
    rows = read(b"\xef\xbb\xbfemail,name\na@example.com,A\n")
    assert rows == [RecipientRow(2, "a@example.com", {"name": "A"})]


def test_dedupe_key_ignores_case() -> None:
    assert dedupe_key("Jane.Doe@example.com") == dedupe_key("jane.doe@EXAMPLE.com")
    assert dedupe_key("a@example.com") != dedupe_key("b@example.com")


class GeneratedCSV(io.RawIOBase):
    """A file made up while it is read: never all in memory at once."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            line = next(self._lines, None)
            if line is None:
                return 0
            self._pending = line
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def generated_lines(rows: int, padding: int) -> Iterator[bytes]:
    yield b"email,first_name,note\n"
    pad = "p" * padding
    for i in range(rows):
        yield f"user{i}@example.com,Name{i},{pad}\n".encode()


def stream_rows(rows: int, padding: int) -> Iterator[RecipientRow | RejectedRow]:
    return iter_recipients(
        io.BufferedReader(GeneratedCSV(generated_lines(rows, padding))), source="big.csv"
    )


def test_rows_are_not_held_tracemalloc() -> None:
    # 3,000 rows of 8 KB: a 24 MB file; a reader that kept it would peak above that.
    tracemalloc.start()
    try:
        count = sum(1 for row in stream_rows(3_000, 8_000) if isinstance(row, RecipientRow))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 3_000
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1024 / 1024:.1f} MB"


@pytest.mark.slow
def test_200k_row_file_streams_in_flat_memory() -> None:
    # ~65 MB of CSV (held as rows it would take ~160 MB); tracemalloc would make this take
    # minutes, so resident memory is sampled instead.
    process = psutil.Process()
    baseline = 0
    growth = 0
    count = 0
    last_line = 0
    for row in stream_rows(200_000, 300):
        assert isinstance(row, RecipientRow)
        count += 1
        last_line = row.line
        if count == 1_000:
            baseline = process.memory_info().rss
        elif count % 10_000 == 0:
            growth = max(growth, process.memory_info().rss - baseline)
    assert (count, last_line) == (200_000, 200_001)
    assert growth < 20 * 1024 * 1024, f"resident memory grew {growth / 1024 / 1024:.1f} MB"

"""A campaign's recipient list (CSV, UTF-8, an ``email`` column) read as a stream of rows.

Pure and memory-flat: the file is read one physical line at a time and each row is handed on
as soon as it is parsed, so a list of any length costs the same memory. Rows that cannot be
sent to come back as ``RejectedRow`` with the line and reason; a file that cannot be read at
all raises ``InputError``. Duplicates are not removed here (the database does, by
``dedupe_key``).
"""

from __future__ import annotations

import csv
import operator
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final, NamedTuple

from email_validator import EmailNotValidError

from dispatcher.campaigns.addresses import normalize
from dispatcher.domain.validate import suppression_key
from dispatcher.errors import InputError

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_VARIABLE_BYTES",
    "RecipientReader",
    "RecipientRow",
    "RejectedRow",
    "dedupe_key",
    "iter_recipients",
    "separator_hint",
]

MAX_VARIABLE_BYTES: Final = 10 * 1024  # one field; larger is a mistake, not a variable
MAX_LINE_BYTES: Final = 4 * 1024 * 1024  # one physical line; bounds memory on a non-CSV file
EMAIL_COLUMN: Final = "email"

_BOM: Final = b"\xef\xbb\xbf"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
# Everything str.splitlines() breaks on, plus NUL (the same set render.py refuses in headers):
# reported here by line at import rather than failing the recipient at send time.
_LINE_BREAK: Final = re.compile("[\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


_OTHER_SEPARATORS: Final = ";\t|"


def separator_hint(columns: Sequence[str]) -> str | None:
    """What to tell a user whose header was not split on commas (a semicolon CSV from a
    European Excel, a TSV): the email column is then hidden inside a longer name."""
    names = [c.strip() for c in columns if c.strip()]
    if any(name.lower() == EMAIL_COLUMN for name in names):
        return None
    if any(sep in name for name in names for sep in _OTHER_SEPARATORS):
        return (
            "the file does not look comma-separated (its header holds ';', tabs or '|'); "
            "save it as CSV with commas (in Excel: CSV UTF-8, comma delimited)"
        )
    return None


class RecipientRow(NamedTuple):
    """A row to send to: ``email`` normalized, ``variables`` the other named columns (in the
    header's order). A tuple: a million of them are made per million-row import."""

    line: int  # physical line the row starts on (1 = the header)
    email: str
    variables: dict[str, str]


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that will not be sent to, and why (the reason says what to fix)."""

    line: int
    email: str  # as written in the file ("" if there was none)
    reason: str


def dedupe_key(email: str) -> str:
    """The key two addresses are duplicates under, and suppressions are compared on."""
    return suppression_key(email)


class RecipientReader:
    """Reads the header on construction (``columns``), then yields one item per data row."""

    __slots__ = (
        "_email_index",
        "_first",
        "_lines",
        "_names",
        "_reader",
        "_stream",
        "columns",
        "source",
    )

    def __init__(self, stream: BinaryIO, *, source: str) -> None:
        self.source = source
        self._stream = stream
        self._lines = self._decoded_lines()
        self._reader = csv.reader(self._lines)
        header = self._read_header()
        self._names = [name.strip() for name in header]
        self._email_index = self._find_email_column(header)
        # The variable columns: named ones other than email (unnamed columns are ignored).
        self.columns: tuple[str, ...] = tuple(
            name for i, name in enumerate(self._names) if name and i != self._email_index
        )
        # Read ahead now: a header with no row under it would make a campaign of nobody.
        self._first = self._next_row()
        if self._first is None:
            raise InputError(
                f"{self.source} has a header but no recipients; add one row per recipient "
                "under the header"
            )

    def _decoded_lines(self) -> Iterator[str]:
        """Physical lines as text, line endings kept (csv needs them inside quoted fields)."""
        readline, limit = self._stream.readline, MAX_LINE_BYTES + 1
        number = 1
        offset = 0  # of the line's first byte in the file
        raw = readline(limit)
        too_long = len(raw) > MAX_LINE_BYTES  # (the BOM counts, as on any line)
        if raw.startswith(_UTF16_BOMS):
            raise InputError(f"{self.source} is UTF-16; save it as UTF-8 (in Excel: CSV UTF-8)")
        if raw.startswith(_BOM):
            raw, offset = raw[len(_BOM) :], len(_BOM)
        while raw:  # (once per line of a million-row list: kept short)
            if too_long or len(raw) > MAX_LINE_BYTES:
                raise InputError(
                    f"{self.source}: line {number} is longer than {MAX_LINE_BYTES} bytes; "
                    "is this a CSV file?"
                )
            try:
                yield raw.decode()
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{self.source}: line {number} is not UTF-8 (byte 0x{raw[exc.start]:02x} "
                    f"at column {exc.start + 1}, file offset {offset + exc.start}); "
                    "save the file as UTF-8 (in Excel: CSV UTF-8)"
                ) from None
            offset += len(raw)
            number += 1
            raw = readline(limit)

    def _next_row(self) -> tuple[int, list[str]] | None:
        """The next row with any content and the line it starts on; None at the end."""
        while True:
            line = self._reader.line_num + 1
            try:
                row = next(self._reader)
            except StopIteration:
                return None
            except csv.Error as exc:
                raise InputError(
                    f"{self.source}: line {line}: {exc}; check that it is a comma-separated CSV "
                    "file with properly quoted fields"
                ) from None
            if "".join(row).strip():  # skips blank lines and ",,,," rows
                return line, row

    def _read_header(self) -> list[str]:
        first = self._next_row()
        if first is None:
            raise InputError(
                f"{self.source} is empty; its first line must be a header with an email column"
            )
        return first[1]

    def _find_email_column(self, header: list[str]) -> int:
        seen: dict[str, int] = {}
        email_index: int | None = None
        for i, name in enumerate(self._names):
            if not name:
                continue
            if name in seen:
                raise InputError(
                    f"{self.source}: column {name!r} appears twice (columns {seen[name] + 1} and "
                    f"{i + 1}); rename or remove one"
                )
            seen[name] = i
            if name.lower() == EMAIL_COLUMN:
                if email_index is not None:
                    raise InputError(
                        f"{self.source}: two email columns ({self._names[email_index]!r} and "
                        f"{name!r}); keep one"
                    )
                email_index = i
        if email_index is None:
            columns = ", ".join(repr(name) for name in header)
            hint = separator_hint(header) or "add a column named email"
            raise InputError(f"{self.source} has no `email` column; columns: {columns}; {hint}")
        return email_index

    def _rows(self) -> Iterator[tuple[int, list[str], str]]:
        """The data rows and their fields joined: the one read ahead at construction, then
        the rest (`_next_row` inlined: this runs once per row of a million-row list)."""
        item, self._first = self._first, None
        if item is None:
            return
        yield item[0], item[1], "".join(item[1])
        reader = self._reader
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(
                    f"{self.source}: line {line}: {exc}; check that it is a comma-separated CSV "
                    "file with properly quoted fields"
                ) from None
            joined = "".join(row)
            if joined.strip():  # skips blank lines and ",,,," rows
                yield line, row, joined

    def __iter__(self) -> Iterator[RecipientRow | RejectedRow]:
        # The hot loop of a million-row import: one regex per row for line breaks, the size
        # test only for a long row, and the address through `normalize` (its fast path).
        width = len(self._names)
        at = self._email_index
        keep = [i for i, name in enumerate(self._names) if name and i != at]
        names = [self._names[i] for i in keep]
        # The variables of a row without a comprehension per row (a frame each, in 3.11).
        pick = operator.itemgetter(*keep) if len(keep) > 1 else None
        only = keep[0] if len(keep) == 1 else None
        make = tuple.__new__  # RecipientRow(...) without NamedTuple's Python-level __new__
        for line, row, joined in self._rows():
            email = row[at].strip() if len(row) > at else ""
            if len(row) != width:
                yield RejectedRow(
                    line,
                    email,
                    f"has {len(row)} fields but the header has {width}; quote fields that "
                    'contain commas ("Smith, Jo")',
                )
                continue
            if _LINE_BREAK.search(joined) is not None or len(joined) * 4 > MAX_VARIABLE_BYTES:
                reason = self._bad_field(row)
                if reason is not None:
                    yield RejectedRow(line, email, reason)
                    continue
            if not email:
                yield RejectedRow(line, email, "email is empty")
                continue
            try:
                normalized = normalize(email)
            except EmailNotValidError as exc:
                yield RejectedRow(line, email, f"{email!r} is not a valid address: {exc}")
                continue
            if pick is not None:
                variables = dict(zip(names, pick(row), strict=True))
            else:
                variables = {} if only is None else {names[0]: row[only]}
            yield make(RecipientRow, (line, normalized, variables))

    def _bad_field(self, row: list[str]) -> str | None:
        """Why a field makes the row unusable (line break, oversize), or None."""
        for name, value in zip(self._names, row, strict=True):
            column = name or "(unnamed)"
            if _LINE_BREAK.search(value) is not None:
                return (
                    f"column {column!r} contains a line break; remove it (a line break in a "
                    "variable could end up in a mail header)"
                )
            # Cheap first test: a str of n characters is at most 4n bytes in UTF-8.
            if len(value) * 4 > MAX_VARIABLE_BYTES and len(value.encode()) > MAX_VARIABLE_BYTES:
                return (
                    f"column {column!r} is {len(value.encode())} bytes; at most "
                    f"{MAX_VARIABLE_BYTES} bytes per field"
                )
        return None


def iter_recipients(stream: BinaryIO, *, source: str) -> Iterator[RecipientRow | RejectedRow]:
    """Rows of a recipient CSV, one at a time; InputError if the file itself is unusable.

    ``source`` names the file in error messages.
    """
    yield from RecipientReader(stream, source=source)

"""What the command line writes: CSV cells escaped against formula injection, one way to open an
output file, and a quiet end when the reader of stdout leaves.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (and, OWASP adds, a tab or a
carriage return) as a formula, so an address like `=HYPERLINK(...)@example.com` in a report
would run when the report is opened. Such a cell is written with a leading `'`, which
spreadsheets show as text; `unescape_cell` undoes it when the tool reads its own export back.
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from dispatcher.errors import InputError

__all__ = [
    "FORMULA_START",
    "SafeWriter",
    "discard_stdout",
    "escape_cell",
    "open_output",
    "unescape_cell",
]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"


def escape_cell(value: object) -> object:
    """``value`` made inert for a spreadsheet: a formula-like text gets a leading quote.

    A text that already starts with a quote gets one more, so `unescape_cell` can tell an
    escaped cell from one that was written with a quote of its own.
    """
    if isinstance(value, str) and value.startswith((*FORMULA_START, _QUOTE)):
        return _QUOTE + value
    return value


def unescape_cell(text: str) -> str:
    """The value `escape_cell` was given (a cell of the tool's own CSV, read back)."""
    if text.startswith(_QUOTE) and text[1:2] and text[1:].startswith((*FORMULA_START, _QUOTE)):
        return text[1:]
    return text


class SafeWriter:
    """`csv.writer` whose every cell goes through `escape_cell`."""

    __slots__ = ("_writer",)

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([escape_cell(cell) for cell in row])


@contextlib.contextmanager
def open_output(name: str | Path) -> Iterator[TextIO]:
    """A file to write CSV into (`-`: stdout); InputError, not a traceback, if it cannot be."""
    if str(name) == "-":
        yield sys.stdout
        return
    try:
        f = Path(name).open("w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"cannot write {name}: {exc.strerror or exc}") from None
    with f:
        yield f


def discard_stdout() -> None:
    """After the reader of stdout left (`... | head`): later writes, and Python's flush at exit,
    go nowhere instead of raising BrokenPipeError again."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

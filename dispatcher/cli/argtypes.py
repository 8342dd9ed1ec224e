"""Argument types for the command line: a number out of range is a usage error (exit 2), not a
traceback from the database driver that could not fit it in a bigint."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from dispatcher.doors.ses_ids import message_id_of

__all__ = [
    "BIGINT_MAX",
    "OneLineParser",
    "bounded_int",
    "message_ref",
    "non_utf8_argument",
    "positive_int",
    "row_id",
]

BIGINT_MAX = 2**63 - 1  # ids are Postgres bigints


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line that names the command and says what to fix, exit 2 (not the
    usage block; `--help` shows that). Subcommands inherit the class."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


class _BoundedInt:
    """A type= callable: a whole number within [low, high]."""

    numeric = True  # read by the hostile-argument test: a slot that only takes a number

    def __init__(self, low: int, high: int, what: str) -> None:
        self._low = low
        self._high = high
        self._what = what
        self.__name__ = what  # argparse names the type in "invalid <name> value"

    def __call__(self, text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:  # not a number, or one of more than 4300 digits
            value = None
        if value is None or not self._low <= value <= self._high:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {self._what} from {self._low} to {self._high}"
            )
        return value


def bounded_int(low: int, high: int, what: str = "a whole number") -> Callable[[str], int]:
    """A whole number within [low, high]."""
    return _BoundedInt(low, high, what)


row_id = bounded_int(1, BIGINT_MAX, "an id (a whole number)")
positive_int = bounded_int(1, BIGINT_MAX, "a whole number")


def non_utf8_argument(argv: Sequence[str]) -> str | None:
    """The first argument that was not valid UTF-8 on the command line, shown readably, or None.

    Python hands such bytes over as lone surrogates, which no file, database or SES takes.
    """
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return None


class _MessageRef:
    """A type= callable: a message id, or the MessageId the SES-compatible endpoint answered
    (`dispatcher-<id>`)."""

    numeric = True  # read by the hostile-argument test: "1" is a plausible value
    __name__ = "message id"

    def __call__(self, text: str) -> int:
        value = message_id_of(text)
        if value is None:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a message id (a whole number from 1 to {BIGINT_MAX}, or the "
                "MessageId the SES-compatible endpoint answered: dispatcher-<id>)"
            )
        return value


message_ref = _MessageRef()

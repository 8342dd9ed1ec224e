"""Argument types for the command line: a number out of range is a usage error (exit 2), not a
traceback from the database driver that could not fit it in a bigint."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence

__all__ = [
    "BIGINT_MAX",
    "bounded_float",
    "bounded_int",
    "non_utf8_argument",
    "positive_int",
    "row_id",
]

BIGINT_MAX = 2**63 - 1  # ids are Postgres bigints


class _Bounded:
    """A type= callable that parses a number and keeps it within [low, high]."""

    numeric = True  # read by the hostile-argument test: a slot that only takes a number

    def __init__(self, parse: Callable[[str], float], low: float, high: float, what: str) -> None:
        self._parse = parse
        self._low = low
        self._high = high
        self._what = what
        self.__name__ = what  # argparse names the type in "invalid <name> value"

    def __call__(self, text: str) -> float:
        try:
            value = self._parse(text.strip())
        except ValueError:
            value = math.nan
        if not (self._low <= value <= self._high):  # also refuses NaN
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {self._what} from {_show(self._low)} to {_show(self._high)}"
            )
        return value


def _show(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def bounded_int(low: int, high: int, what: str = "a whole number") -> Callable[[str], int]:
    """A whole number within [low, high]."""
    return _Bounded(int, low, high, what)  # type: ignore[return-value]


def bounded_float(low: float, high: float, what: str = "a number") -> Callable[[str], float]:
    """A finite number within [low, high]."""
    return _Bounded(float, low, high, what)


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

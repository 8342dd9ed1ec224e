"""Named SQL queries: each feature ships a ``.sql`` file next to its store, read here once."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from importlib import resources

__all__ = ["named_queries", "parse"]

# "-- name: X" opens block X, which runs to the next "-- name:" line (or the end of the file).
_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse(text: str, source: str = "the sql file") -> dict[str, str]:
    """Split a queries file into {name: sql}; text before the first name line is ignored."""
    blocks: dict[str, str] = {}
    matches = list(_NAME_LINE.finditer(text))
    for i, match in enumerate(matches):
        name = match.group(1)
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        if name in blocks:
            raise ValueError(f"{source} defines the query {name!r} twice")
        blocks[name] = text[match.end() : end].strip()
    return blocks


@functools.cache
def _load(package: str, filename: str) -> dict[str, str]:
    """Every named query of ``filename`` shipped in ``package``."""
    return parse((resources.files(package) / filename).read_text("utf-8"), filename)


def named_queries(package: str, filename: str) -> Callable[[str], str]:
    """The ``query(name)`` of one file: the SQL of its block ``-- name: <name>``.

    Read on first use; an unknown name raises KeyError listing the file's names.
    """

    def query(name: str) -> str:
        found = _load(package, filename)
        try:
            return found[name]
        except KeyError:
            known = ", ".join(sorted(found))
            raise KeyError(f"no query named {name!r} in {filename} (known: {known})") from None

    return query

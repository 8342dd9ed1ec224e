"""The named queries of ``sql/*.sql``, read once from the installed package."""

from __future__ import annotations

import functools
import re
from importlib import resources

__all__ = ["names", "query"]

# "-- name: X" opens block X, which runs to the next "-- name:" line (or the end of the file).
_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a queries file into {name: sql}; text before the first name line is ignored."""
    blocks: dict[str, str] = {}
    matches = list(_NAME_LINE.finditer(text))
    for i, match in enumerate(matches):
        name = match.group(1)
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        if name in blocks:
            raise ValueError(f"queries.sql defines the query {name!r} twice")
        blocks[name] = text[match.end() : end].strip()
    return blocks


@functools.cache
def _queries() -> dict[str, str]:
    """Every named query of every ``sql/*.sql`` file (queries.sql, campaigns.sql, ...)."""
    found: dict[str, str] = {}
    folder = resources.files("dispatcher.queue") / "sql"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql") and entry.is_file():
            for name, sql in parse(entry.read_text("utf-8")).items():
                if name in found:
                    raise ValueError(f"the query {name!r} is defined in two sql files")
                found[name] = sql
    return found


def query(name: str) -> str:
    """The SQL of the block ``-- name: <name>``; KeyError naming the known ones otherwise."""
    try:
        return _queries()[name]
    except KeyError:
        known = ", ".join(sorted(_queries()))
        raise KeyError(f"no query named {name!r} in queries.sql (known: {known})") from None


def names() -> list[str]:
    """Every query name in the file, sorted."""
    return sorted(_queries())

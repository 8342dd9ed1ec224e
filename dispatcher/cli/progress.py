"""Progress bars for the long commands (prune, imports): tqdm on stderr when stderr is a
terminal; nothing at all otherwise, so pipes, cron mail and JSON logs stay clean."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import NoReturn, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def on_terminal() -> bool:
    """Whether a person watches stderr (and so a bar helps rather than clutters)."""
    return sys.stderr.isatty()


def bar(desc: str, *, total: int | None = None, unit: str = "row") -> tqdm[NoReturn]:
    """A bar to `update(n)` by hand; disabled (all calls free) when not on a terminal."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not on_terminal(),
        dynamic_ncols=True,
    )


def counted(items: Iterable[T], desc: str, *, unit: str = "row") -> Iterator[T]:
    """`items`, counted on a bar as they are taken."""
    with bar(desc, unit=unit) as b:
        for item in items:
            yield item
            b.update(1)

"""Which finished mail is due for pruning, and how big each batch is: pure, clock passed in.

A job's age counts from when it reached its finished state: `sent_at` for sent mail (when SES
took it, or when a person resolved an in-doubt send as sent), `updated_at` for failed and
cancelled mail (it changes only with the state). In-doubt mail (`unknown`) is never due: it
waits for a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from dispatcher.config.settings import RetentionSettings

FINISHED = ("sent", "failed", "cancelled")
# A run's content pruning starts this long before where the last one stopped: a row committed
# a little late (a slow transaction) with an older updated_at is still seen.
CONTENT_SLACK = timedelta(hours=1)

Due = Literal["keep", "content", "row"]


@dataclass(frozen=True, slots=True)
class Cutoff:
    """For one finished state: mail that reached it before these times is due (None: never)."""

    state: str
    content_before: datetime | None
    rows_before: datetime | None


def _before(now: datetime, days: float) -> datetime | None:
    return None if days == 0 else now - timedelta(days=days)


def cutoffs(settings: RetentionSettings, now: datetime) -> tuple[Cutoff, ...]:
    """The cutoff of each finished state at `now` (the database's clock, one per run)."""
    out = []
    for state in FINISHED:
        failed = state == "failed"
        content_days = settings.failed_content_days if failed else settings.content_days
        rows_days = settings.failed_rows_days if failed else settings.rows_days
        out.append(Cutoff(state, _before(now, content_days), _before(now, rows_days)))
    return tuple(out)


def due(settings: RetentionSettings, state: str, finished_at: datetime, now: datetime) -> Due:
    """What retention does to one job in `state` since `finished_at` (the rule the SQL applies)."""
    for cut in cutoffs(settings, now):
        if cut.state != state:
            continue
        if cut.rows_before is not None and finished_at < cut.rows_before:
            return "row"
        if cut.content_before is not None and finished_at < cut.content_before:
            return "content"
    return "keep"


def content_since(mark: datetime | None) -> datetime | None:
    """Where a run's content pruning starts: a little before the last run's mark (None: all)."""
    return None if mark is None else mark - CONTENT_SLACK


class BatchSizer:
    """Rows per statement: shrinks when a batch took longer than `target` seconds (a lock held
    that long would be felt), grows back while batches are quick; never above `ceiling`."""

    __slots__ = ("_size", "ceiling", "floor", "target")

    def __init__(self, ceiling: int, target: float = 0.25, floor: int = 50) -> None:
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.target = target
        self._size = ceiling

    @property
    def size(self) -> int:
        return self._size

    def took(self, seconds: float) -> int:
        """Record how long the last batch took; returns the next batch's size."""
        if seconds > self.target:
            self._size = max(self.floor, self._size // 2)
        elif seconds < self.target / 2:
            self._size = min(self.ceiling, self._size + max(1, self._size // 2))
        return self._size

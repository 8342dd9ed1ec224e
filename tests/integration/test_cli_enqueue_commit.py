"""`dispatcher enqueue`'s safety net: a chunk the database refuses is retried line by line, so
one line the parser let through costs only that line."""

from __future__ import annotations

import pytest

from dispatcher.cli.enqueue import Tally, _commit
from dispatcher.domain.jobs import NewMessage
from dispatcher.queue.repository import Queue


def message(text: str) -> NewMessage:
    return NewMessage(from_addr="a@example.com", to=("b@example.com",), subject="s", text=text)


async def test_a_refused_chunk_is_queued_line_by_line_and_the_culprit_named(
    queue: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = Tally()
    # Postgres refuses a NUL in a text column; the parser would have caught it, this test skips it.
    chunk = [(1, message("one")), (2, message("nul \x00")), (3, message("three"))]

    await _commit(queue, chunk, tally, "f.jsonl")

    assert (tally.queued, tally.existing, [b.line for b in tally.bad]) == (2, 0, [2])
    assert capsys.readouterr().err.startswith("f.jsonl: line 2: refused: ")
    assert (await queue.counts())["queued"] == 2

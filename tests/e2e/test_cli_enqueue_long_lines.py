"""`dispatcher enqueue` and a line longer than any message: reported by number and skipped
without being held in memory, the lines around it queued, and SIGINT still stops an endless
one (/dev/zero). The child runs with its address space capped at 1 GiB, so a reader that holds
the line fails the test (MemoryError) instead of the machine."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import time
from pathlib import Path

from dispatcher.cli.jsonl import MAX_LINE_BYTES
from tests.support.cli import cli_env, fetch, start_cli

GOOD = {"from": "a@example.com", "to": ["b@example.com"], "subject": "s", "text": "x"}
MEMORY_CAP = 1024 * 1024 * 1024  # far above a capped reader's 64 MiB, far below a 2 GB line


def good(i: int) -> bytes:
    return json.dumps({**GOOD, "subject": f"good {i}"}).encode() + b"\n"


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


async def test_a_line_over_the_cap_is_reported_and_skipped_and_the_lines_around_it_queued(
    pg_dsn: str, tmp_path: Path
) -> None:
    # One byte over the cap: the JSON is valid, so only the cap can refuse it.
    head = b'{"from": "a@example.com", "to": ["b@example.com"], "subject": "s", "text": "'
    tail = b'"}\n'
    long_line = head + b"x" * (MAX_LINE_BYTES + 1 - len(head) - len(tail) + 1) + tail
    path = tmp_path / "long.jsonl"
    with path.open("wb") as f:
        f.write(good(1) + good(2))
        f.write(long_line)
        f.write(good(4) + good(5))
    env = cli_env(tmp_path, dsn=pg_dsn)
    output = tmp_path / "out"

    proc = await start_cli(env, "enqueue", str(path), output=output, preexec=_cap_memory)
    code = await asyncio.wait_for(proc.wait(), 120)

    said = output.read_text()
    assert code == 2, said
    assert "Traceback" not in said, said
    assert f"{path}: line 3: longer than 64 MiB" in said, said
    assert "queued 4 message(s); 1 bad line(s) skipped" in said, said
    rows = await fetch(pg_dsn, "SELECT subject FROM dispatcher.messages ORDER BY id")
    assert [r["subject"] for r in rows] == ["good 1", "good 2", "good 4", "good 5"]


async def test_enqueue_dev_zero_reports_the_line_and_sigint_stops_it(
    pg_dsn: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    output = tmp_path / "out"

    proc = await start_cli(env, "enqueue", "/dev/zero", output=output, preexec=_cap_memory)
    try:
        for _ in range(600):  # 64 MiB of zeros are read in well under a second (60 s if busy)
            if "line 1" in output.read_text() or proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        said = output.read_text()
        assert "/dev/zero: line 1: longer than 64 MiB" in said, said
        await asyncio.sleep(0.5)  # skipping zeros now, with no line end ever to come
        assert proc.returncode is None, said
        proc.send_signal(signal.SIGINT)
        began = time.monotonic()
        code = await asyncio.wait_for(proc.wait(), 30)
        took = time.monotonic() - began
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    said = output.read_text()
    assert code == 130, said
    assert took < 5, f"stopped {took:.1f} s after SIGINT\n{said}"
    assert "Traceback" not in said, said
    assert "queued 0 message(s); 1 bad line(s) skipped" in said, said
    assert "SIGINT: stopped after line 1" in said, said

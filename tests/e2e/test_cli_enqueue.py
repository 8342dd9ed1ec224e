"""`dispatcher enqueue FILE` against hostile files and an interrupt, as a user runs it: every
bad line reported by number and skipped, the rest queued, and a rerun never duplicates."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from tests.support.cli import cli_env, fetch, run_cli, start_cli, state_counts

GOOD = {"from": "a@example.com", "to": ["b@example.com"], "subject": "s", "text": "x"}


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def good(i: int) -> bytes:
    return line({**GOOD, "subject": f"good {i}"})


async def test_each_hostile_line_is_reported_by_number_and_the_rest_queued(
    pg_dsn: str, tmp_path: Path
) -> None:
    hostile = [
        line({**GOOD, "subject": "\ud800"}),  # 2: a lone surrogate, escaped in the JSON
        line({**GOOD, "text": "nul \x00 here"}),  # 4
        line({**GOOD, "send_after": "0001-01-01T00:00:00+01:00"}),  # 6
        line({**GOOD, "send_after": "9999-12-31T23:59:59-01:00"}),  # 8
        b"[" * 100_000 + b"]" * 100_000 + b"\n",  # 10
        '{"from": "a@example.com", "subject": "Grüße"}\n'.encode("latin-1"),  # 12
    ]
    content = b"\xef\xbb\xbf" + good(1)  # a BOM, as editors on Windows write it
    for i, bad in enumerate(hostile):
        content += bad + good(i + 2)
    (tmp_path / "hostile.jsonl").write_bytes(content)
    env = cli_env(tmp_path, dsn=pg_dsn)

    result = await run_cli(env, "enqueue", "hostile.jsonl", cwd=tmp_path)

    assert result.code == 2, result
    assert "Traceback" not in result.err
    assert result.out.strip() == (
        "queued 7 message(s); 6 bad line(s) skipped (fix and enqueue them again)"
    ), result
    reported = [m.split(": ", 2) for m in result.messages]
    assert [r[:2] for r in reported] == [
        ["hostile.jsonl", f"line {n}"] for n in (2, 4, 6, 8, 10, 12)
    ], result
    assert "lone surrogate" in reported[0][2]
    assert "NUL" in reported[1][2]
    assert "out of range" in reported[2][2] and "out of range" in reported[3][2]
    assert "nested too deeply" in reported[4][2]
    assert "not UTF-8" in reported[5][2]
    rows = await fetch(pg_dsn, "SELECT subject FROM dispatcher.messages ORDER BY id")
    assert [r["subject"] for r in rows] == [f"good {i}" for i in range(1, 8)]

    # The same file again: nothing new, nothing twice.
    again = await run_cli(env, "enqueue", "hostile.jsonl", cwd=tmp_path)
    assert again.out.strip().startswith(
        "queued 0 message(s); 7 already queued under the same idempotency key"
    ), again
    assert await state_counts(pg_dsn) == {"queued": 7}


async def test_sigint_mid_import_reports_what_is_queued_and_a_rerun_queues_the_rest_once(
    pg_dsn: str, tmp_path: Path
) -> None:
    n = 60_000
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"".join(line({**GOOD, "to": [f"r{i}@example.com"]}) for i in range(n)))
    env = cli_env(tmp_path, dsn=pg_dsn)
    output = tmp_path / "first.out"

    proc = await start_cli(env, "enqueue", str(path), output=output)
    count = 0
    for _ in range(3000):  # the first chunk is committed within a second (60 s on a busy host)
        count = (await fetch(pg_dsn, "SELECT count(*) AS n FROM dispatcher.jobs"))[0]["n"]
        if count:
            break
        await asyncio.sleep(0.02)
    assert 0 < count < n, f"{count} queued before the interrupt: no chance to interrupt"
    proc.send_signal(signal.SIGINT)
    code = await asyncio.wait_for(proc.wait(), 30)

    said = output.read_text()
    assert code == 130, said
    assert "Traceback" not in said
    queued = (await fetch(pg_dsn, "SELECT count(*) AS n FROM dispatcher.jobs"))[0]["n"]
    assert 0 < queued < n, said
    assert f"queued {queued} message(s) (through line {queued})" in said
    assert f"SIGINT: stopped after line {queued}" in said

    rerun = await run_cli(env, "enqueue", str(path))

    assert rerun.code == 0, rerun
    assert rerun.out.strip() == (
        f"queued {n - queued} message(s); {queued} already queued under the same idempotency key"
    )
    rows = await fetch(
        pg_dsn,
        "SELECT count(*) AS n, count(DISTINCT to_addrs) AS distinct_to FROM dispatcher.messages",
    )
    assert dict(rows[0]) == {"n": n, "distinct_to": n}

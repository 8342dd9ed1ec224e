"""Long commands draw a progress bar when stderr is a terminal (a pty here), and nothing when it
is a pipe (tests/integration/test_retention.py checks that side)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from tests.support.cli import cli_env


def run_on_terminal(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`dispatcher ARGS` with stderr on a pseudo-terminal; (exit code, stdout, terminal text)."""
    master, slave = pty.openpty()
    # A new pty is 0 columns wide; a person's terminal is not.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dispatcher.cli.main", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            cwd=env["DISPATCHER_DATA_DIR"],
            timeout=60,
            check=False,
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    return proc.returncode, proc.stdout.decode(), b"".join(chunks).decode(errors="replace")


async def test_prune_and_suppression_import_show_progress_on_a_terminal(
    pg_dsn: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            """WITH m AS (
                   INSERT INTO dispatcher.messages (from_addr, to_addrs, subject, text_body)
                   SELECT 'a@example.com', ARRAY['x' || g || '@example.com'], 's', 't'
                   FROM generate_series(1, 50) g RETURNING id)
               INSERT INTO dispatcher.jobs (id, state, recipients, updated_at, sent_at)
               SELECT id, 'sent', 1, now() - interval '100 days', now() - interval '100 days'
               FROM m"""
        )
    finally:
        await conn.close()
    env = cli_env(tmp_path, dsn=pg_dsn, DISPATCHER_LOG__FORMAT="console")

    code, out, terminal = await asyncio.to_thread(run_on_terminal, env, "prune")
    assert code == 0, terminal
    assert "rows removed: sent 50" in out
    assert "pruning: 100%" in terminal and "50/50" in terminal  # the bar, with its total

    listing = tmp_path / "bounced.csv"
    listing.write_text("".join(f"old{i}@example.com\n" for i in range(30)))
    code, out, terminal = await asyncio.to_thread(
        run_on_terminal, env, "suppression", "import", str(listing)
    )
    assert code == 0, terminal
    assert out == "30 added\n"
    assert "importing: 30" in terminal

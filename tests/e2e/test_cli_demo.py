"""First run on a fresh machine: `dispatcher demo` on the embedded Postgres it starts itself, and
`dispatcher sim` as a standalone server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from dispatcher.db.embedded import EmbeddedPostgres
from tests.support.cli import cli_env, run_cli
from tests.support.dispatch import dispatcher_ids


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty data dir; the embedded server the command leaves running is stopped after."""
    path = tmp_path / "data"
    path.mkdir()
    yield path
    if (path / "pg").exists():
        EmbeddedPostgres(path).stop()


async def test_demo_on_a_fresh_data_dir_sends_everything_exactly_once(data_dir: Path) -> None:
    env = cli_env(data_dir)

    result = await run_cli(env, "demo", "--count", "200", "--rate", "200", limit=90)

    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == f"postgres: {data_dir} (demo database dispatcher_demo)"
    assert lines[1].startswith("simulator: http://127.0.0.1:")
    assert "queued 200 messages (240 recipients)" in lines[2]
    # "  sent       200 of 200 ..." -> {"sent": "sent 200 of 200 ..."}
    report = {line.split()[0]: " ".join(line.split()) for line in lines if line.startswith("  ")}
    assert "demo finished: drained: nothing left to send" in lines
    assert "sent 200 of 200 messages (240 recipients)" in report["sent"]
    assert "accepted 200 messages, 200 distinct (each message exactly once)" in report["simulator"]
    # Exactly once as SES saw it, from the simulator's own record (not the demo's count).
    record = json.loads((data_dir / "demo-ses-record.json").read_text())
    assert Counter(dispatcher_ids(record)) == Counter(range(1, 201))
    assert sum(len(m["to"]) + len(m["cc"]) + len(m["bcc"]) for m in record) == 240
    achieved = re.match(r"rate ([\d.]+) recipients/s achieved vs 200 allowed", report["rate"])
    assert achieved, report["rate"]
    assert float(achieved.group(1)) > 100  # paced, not stalled
    assert report["failed"] == "failed 0"
    assert report["in"] == "in doubt 0"
    # The first run created the cluster under the data dir and left it running for the next.
    assert (data_dir / "pg" / "PG_VERSION").exists()
    assert EmbeddedPostgres(data_dir).is_running()


async def test_demo_with_a_bad_count_is_bad_input(data_dir: Path) -> None:
    result = await run_cli(cli_env(data_dir), "demo", "--count", "0")

    assert result.code == 2, result
    assert result.messages == ["dispatcher: error: --count must be at least 1, got 0"]
    assert not (data_dir / "pg").exists()  # refused before starting anything


async def test_sim_serves_until_sigterm(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher.cli.main",
        "sim",
        "--port",
        "0",
        "--max-send-rate",
        "7",
        "--max-24h-send",
        "1234",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(tmp_path),
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        found = re.fullmatch(r"dispatcher-sim listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert found, line
        url = found.group(1)
        assert int(found.group(2)) > 0
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/_sim/stats") as resp:
                assert resp.status == 200
                stats = await resp.json()
            async with http.get(f"{url}/_sim/config") as resp:
                config = await resp.json()
        assert stats["accepted"] == 0
        assert config["max_send_rate"] == 7 and config["max_24_hour_send"] == 1234

        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, (out, err)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert not os.listdir(tmp_path)  # the simulator needs no database and wrote nothing

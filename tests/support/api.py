"""The HTTP API as users reach it: `dispatcher run` with `[api]` enabled, keys made with
`dispatcher keys create`, and requests sent with the `curl` binary.

    async with api_daemon(env, tmp_path) as base_url:
        status, body = await curl(base_url + "/v1/messages", "-u", f"{key}:{secret}", ...)
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli, start_cli, stop_cli
from tests.support.dispatch import eventually

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(
    CURL is None, reason="the curl binary is not installed (.ci/run installs it)"
)


async def create_key(env: dict[str, str], name: str, *args: str) -> tuple[str, str]:
    """`dispatcher keys create NAME ARGS --json`: (id, secret)."""
    made = await run_cli(env, "keys", "create", name, *args, "--json")
    assert made.code == 0, made
    key = json.loads(made.out)
    return key["id"], key["secret"]


def listening_port(log_file: Path) -> int | None:
    """The port of the `api.listening` log record, once the daemon wrote it."""
    for line in log_file.read_text(errors="replace").splitlines():
        if '"api.listening"' in line:
            return int(json.loads(line)["port"])
    return None


def tail(log_file: Path) -> str:
    """The end of a daemon's log, for an assertion's message."""
    return log_file.read_text(errors="replace")[-3000:]


@asynccontextmanager
async def api_daemon(
    env: dict[str, str], log_file: Path, *args: str
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`dispatcher run` serving the HTTP API on a free loopback port: (base URL, process);
    stopped with SIGTERM on exit."""
    env = {**env, "DISPATCHER_API__ENABLED": "true", "DISPATCHER_API__LISTEN_PORT": "0"}
    proc = await start_cli(env, "run", *args, output=log_file)
    try:

        async def up() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"the daemon exited\n{tail(log_file)}")
            # Listening, and its worker past start-up (a test may stop Postgres next).
            text = await asyncio.to_thread(log_file.read_text, errors="replace")
            started = '"worker.started"' in text
            return started and listening_port(log_file) is not None

        await eventually(up, limit=60)
        yield f"http://127.0.0.1:{listening_port(log_file)}", proc
    finally:
        if proc.returncode is None:
            await stop_cli(proc)


async def curl(url: str, *args: str, limit: float = 60.0) -> tuple[int, Any]:
    """`curl -sS ARGS URL`: the HTTP status and the JSON body (None if it is not JSON)."""
    assert CURL is not None
    proc = await asyncio.create_subprocess_exec(
        CURL,
        "-sS",
        "--max-time",
        str(limit),
        "-w",
        "\n%{http_code}",
        *args,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit + 5)
    assert proc.returncode == 0, err.decode(errors="replace")
    body, _, code = out.decode().rpartition("\n")
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return int(code), parsed

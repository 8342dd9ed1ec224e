"""Run the `dispatcher` command as a user does: a child process, config through the environment.

    async def test_x(pg_dsn, tmp_path):
        env = cli_env(tmp_path, dsn=pg_dsn)
        result = await run_cli(env, "send", "--from", ...)
        assert result.code == 0, result

The child runs under this interpreter (`sys.executable -m dispatcher.cli.main`), so any venv
works, and with asyncio's subprocess API, so a simulator in this event loop can still answer.
Logs are JSON on stderr; `CliResult.messages` is what is left for a person to read.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 60.0  # seconds a command may take before the test fails


@dataclass(frozen=True, slots=True)
class CliResult:
    """Exit code and output of one `dispatcher` run."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON log records on stderr."""
        return [rec for _, rec in self._stderr_lines() if rec is not None]

    @property
    def messages(self) -> list[str]:
        """Stderr lines that are not log records: errors, notes, reports meant for a person."""
        return [line for line, rec in self._stderr_lines() if rec is None and line.strip()]

    def event_names(self) -> list[str]:
        return [str(rec.get("event")) for rec in self.events]

    def _stderr_lines(self) -> list[tuple[str, dict[str, Any] | None]]:
        out: list[tuple[str, dict[str, Any] | None]] = []
        for line in self.err.splitlines():
            rec: dict[str, Any] | None = None
            if line.startswith("{"):
                try:
                    parsed = json.loads(line)
                except json.JSONDecodeError:
                    parsed = None
                if isinstance(parsed, dict) and "event" in parsed:
                    rec = parsed
            out.append((line, rec))
        return out

    def __str__(self) -> str:  # shown by `assert ..., result`
        return (
            f"dispatcher {' '.join(self.args)} -> exit {self.code}\n"
            f"--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"
        )


def cli_env(
    data_dir: Path,
    *,
    dsn: str | None = None,
    endpoint_url: str | None = None,
    **settings: str,
) -> dict[str, str]:
    """The environment for one test's commands.

    Inherited DISPATCHER_* and AWS_* variables are dropped so the developer's shell cannot leak
    in; the data dir is always set, so a command never starts a cluster under the repository.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCHER_", "AWS_"))}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
            "DISPATCHER_DATA_DIR": str(data_dir),
            "DISPATCHER_LOG__FORMAT": "json",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    if dsn is not None:
        env["DISPATCHER_DATABASE_URL"] = dsn
    if endpoint_url is not None:
        env["DISPATCHER_SES_ENDPOINT_URL"] = endpoint_url
    env.update(settings)
    return env


async def run_cli(
    env: dict[str, str],
    *args: str,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    limit: float = DEFAULT_TIMEOUT,
) -> CliResult:
    """`python -m dispatcher.cli.main ARGS` to completion; killed if it outlives `limit` s."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher.cli.main",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(cwd or env["DISPATCHER_DATA_DIR"]),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"dispatcher {' '.join(args)} did not finish within {limit} s\n"
            f"--- stdout ---\n{out.decode(errors='replace')}\n"
            f"--- stderr ---\n{err.decode(errors='replace')}"
        ) from None
    assert proc.returncode is not None
    return CliResult(
        tuple(args), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )


async def fetch(dsn: str, query: str, *params: Any) -> list[asyncpg.Record]:
    """Rows of one query on a fresh connection (the test's view of the database)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *params)
        return rows
    finally:
        await conn.close()


async def state_counts(dsn: str) -> dict[str, int]:
    """Jobs per state; states with no job are absent."""
    rows = await fetch(
        dsn, "SELECT state::text AS state, count(*) AS n FROM dispatcher.jobs GROUP BY 1"
    )
    return {r["state"]: r["n"] for r in rows}


async def start_cli(
    env: dict[str, str],
    *args: str,
    output: Path,
    preexec: Callable[[], None] | None = None,
) -> asyncio.subprocess.Process:
    """`python -m dispatcher.cli.main ARGS` in the background (a daemon: `run`).

    Stdout and stderr go to the file `output`, not a pipe: a daemon logging every message
    would block on a full pipe that nobody reads. Stop it with `stop_cli` or `proc.kill()`.
    `preexec` runs in the child before the command (e.g. to cap its memory).
    """
    with output.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatcher.cli.main",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=env["DISPATCHER_DATA_DIR"],
            preexec_fn=preexec,
        )


async def stop_cli(proc: asyncio.subprocess.Process, limit: float = 30.0) -> int:
    """SIGTERM, then its exit code; SIGKILL (and a failed test) if it outlives `limit` s."""
    if proc.returncode is None:
        proc.terminate()
    try:
        return await asyncio.wait_for(proc.wait(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"the process did not stop within {limit} s of SIGTERM") from None

"""`status` when SES hangs, and any command run against SES without access keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from dispatcher.queue.repository import Queue
from tests.support.cli import cli_env, run_cli
from tests.support.dispatch import batch
from tests.support.sim import SimHandle


@asynccontextmanager
async def silent_endpoint() -> AsyncIterator[str]:
    """An HTTP endpoint that accepts connections and never answers (a hanging SES)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_status_shows_local_counts_when_ses_hangs(
    queue: Queue, pg_dsn: str, tmp_path: Path
) -> None:
    await queue.enqueue_many(batch(3))
    async with silent_endpoint() as url:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=url)
        started = time.monotonic()
        status = await run_cli(env, "status", limit=30)
        took = time.monotonic() - started

    assert status.code == 0, status
    lines = status.out.splitlines()
    assert lines[0] == "messages:" and ["queued", "3"] in [line.split() for line in lines], status
    assert "pacing: SES did not answer GetSendQuota within 5 s" in lines, status
    assert took < 12, f"status took {took:.1f} s with SES silent"  # SES's read timeout is 15 s


async def test_run_and_quota_without_access_keys_say_what_to_set(
    pg_dsn: str, tmp_path: Path, sim: SimHandle
) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url, HOME=str(tmp_path))
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]

    run = await run_cli(env, "run", "--drain")
    quota = await run_cli(env, "quota")

    assert quota.code == 2 and quota.messages == run.messages, quota
    assert run.code == 2, run
    assert run.messages == [
        f"dispatcher: error: no AWS access keys for SES at {sim.endpoint_url}: set "
        "ses.access_key_id and ses.secret_access_key (or AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws); the simulator accepts any, e.g. "
        "AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x"
    ], run


async def test_status_reads_without_writing(pg_blank_dsn: str, tmp_path: Path) -> None:
    """On a database that was never migrated, status says so and leaves it as it was."""
    env = cli_env(tmp_path, dsn=pg_blank_dsn, DISPATCHER_DATABASE__MIGRATE_ON_START="true")
    status = await run_cli(env, "status")
    assert status.code != 0 and "Traceback" not in status.err
    assert "not migrated" in status.err and "dispatcher migrate" in status.err
    conn = await asyncpg.connect(pg_blank_dsn)
    try:
        schema = await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'dispatcher'"
        )
    finally:
        await conn.close()
    assert schema == 0

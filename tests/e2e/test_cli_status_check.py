"""`dispatcher status --check` for systemd and cron: `ready` and exit 0, or one line per reason
mail is not going out and exit 1; judged from Postgres alone, without a daemon to ask."""

from __future__ import annotations

import uuid
from pathlib import Path

from dispatcher.domain.quota import Quota
from dispatcher.queue.repository import Queue
from dispatcher.worker.quota_store import SharedQuotaStore
from tests.support.cli import cli_env, fetch, run_cli


async def test_ready_once_a_reading_is_published_then_held_names_the_hold(
    queue: Queue, pg_dsn: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    before = await run_cli(env, "status", "--check")
    board = SharedQuotaStore(queue.pool)
    owner = uuid.uuid4()
    epoch = await board.begin(owner)
    await board.publish(
        owner, epoch, Quota(max_24_hour_send=50_000, max_send_rate=14, sent_last_24_hours=0)
    )
    ready = await run_cli(env, "status", "--check")
    await fetch(pg_dsn, "INSERT INTO dispatcher.sending_hold (reason) VALUES ('bounce rate 6%')")
    held = await run_cli(env, "status", "--check")

    assert before.code == 1, before
    assert before.out.splitlines() == ["no GetSendQuota reading yet: is a daemon running?"]
    assert (ready.code, ready.out) == (0, "ready\n"), ready
    assert held.code == 1, held
    assert held.out.splitlines() == [
        "all sending held: bounce rate 6% (check, then `dispatcher resume --force`)"
    ]


async def test_an_unmigrated_database_is_one_line_that_says_what_to_run(
    pg_blank_dsn: str, tmp_path: Path
) -> None:
    result = await run_cli(cli_env(tmp_path, dsn=pg_blank_dsn), "status", "--check")

    assert result.code == 1, result
    [line] = result.out.splitlines()
    assert line.startswith("Postgres is not usable: database schema is not migrated"), line
    assert "dispatcher migrate" in line
    assert "Traceback" not in result.err

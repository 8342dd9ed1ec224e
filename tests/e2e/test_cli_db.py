"""`dispatcher db status | stop`: the embedded Postgres a user did not start by hand."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import cli_env, run_cli


async def test_db_status_and_stop_of_the_embedded_server(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    before = await run_cli(env, "db", "status")
    assert before.code == 0 and "yet" in before.out, before

    migrated = await run_cli(env, "migrate")  # the first command starts the embedded server
    assert migrated.code == 0, migrated
    running = await run_cli(env, "db", "status")
    assert running.code == 0 and ": running, pid" in running.out, running
    assert "db.embedded.started" in migrated.event_names()

    stopped = await run_cli(env, "db", "stop")
    assert stopped.code == 0 and "stopped" in stopped.out, stopped
    after = await run_cli(env, "db", "status")
    assert after.out.strip().endswith(": stopped"), after


async def test_db_commands_refuse_when_a_database_url_is_set(tmp_path: Path) -> None:
    env = cli_env(tmp_path, dsn="postgresql://u:p@127.0.0.1:1/x")
    result = await run_cli(env, "db", "stop")
    assert result.code == 2
    assert result.messages == [
        "dispatcher: error: database.url is set: the dispatcher uses that server, "
        "not an embedded one"
    ], result

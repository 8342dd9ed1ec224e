"""`dispatcher db status | stop | url`: the embedded Postgres a user did not start by hand."""

from __future__ import annotations

from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from dispatcher.db.embedded import EmbeddedPostgres
from tests.support.cli import cli_env, fetch, run_cli, start_cli, stop_cli
from tests.support.dispatch import eventually
from tests.support.sim import SimHandle


async def test_db_status_and_stop_of_the_embedded_server(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    before = await run_cli(env, "db", "status")
    assert before.code == 0 and "yet" in before.out, before

    migrated = await run_cli(env, "migrate")  # the first command starts the embedded server
    assert migrated.code == 0, migrated
    running = await run_cli(env, "db", "status")
    assert running.code == 0 and ": running, pid" in running.out, running
    assert "db.embedded.started" in migrated.event_names()

    url = await run_cli(env, "db", "url")  # what psql, pg_dump or the outbox connect with
    assert url.code == 0 and url.out.startswith("postgresql://"), url
    conn = await asyncpg.connect(url.out.strip())
    try:
        assert await conn.fetchval("SELECT count(*) FROM dispatcher.schema_migrations") > 0
    finally:
        await conn.close()

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


async def test_db_stop_under_a_daemon_warns_and_the_daemon_carries_on(
    tmp_path: Path, sim: SimHandle
) -> None:
    env = cli_env(tmp_path, endpoint_url=sim.endpoint_url)
    assert (await run_cli(env, "migrate")).code == 0
    port = (await run_cli(env, "db", "status")).out.split("port ")[-1].strip()
    daemon = await start_cli(env, "run", output=tmp_path / "run.log")
    try:
        dsn = await EmbeddedPostgres(tmp_path).open()
        await eventually(lambda: _has_worker(dsn), limit=30)

        refused = await run_cli(env, "db", "stop")
        stopped = await run_cli(env, "db", "stop", "--force")
        sent = await run_cli(env, *SEND)  # starts the server again
        status = await run_cli(env, "db", "status")

        await eventually(lambda: _received(sim), limit=30)
    finally:
        code = await stop_cli(daemon)
        EmbeddedPostgres(tmp_path).stop()
    assert refused.code == 2, refused
    assert len(refused.messages) == 1 and "is in use: daemon(s) " in refused.messages[0], refused
    assert "--force" in refused.messages[0], refused
    assert stopped.code == 0 and sent.code == 0, (stopped, sent)
    assert status.out.strip().endswith(f"port {port}"), status  # where the daemon looks
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]


SEND: tuple[str, ...] = (
    "send",
    "--from",
    "a@example.com",
    "--to",
    "success@simulator.amazonses.com",
)
SEND += ("--subject", "after the restart", "--text", "hi")


async def _has_worker(dsn: str) -> bool:
    return bool(await fetch(dsn, "SELECT 1 FROM dispatcher.workers"))


async def _received(sim: SimHandle) -> bool:
    return any(m["subject"] == "after the restart" for m in await sim.messages())


async def test_commands_from_any_working_directory_use_one_cluster(tmp_path: Path) -> None:
    home = tmp_path / "home"
    one, other = tmp_path / "project", tmp_path / "elsewhere"
    for d in (home, one, other):
        d.mkdir()
    env = cli_env(tmp_path, endpoint_url="http://127.0.0.1:9", HOME=str(home))
    del env["DISPATCHER_DATA_DIR"]  # the default, as a user has it
    cluster = home / ".local" / "share" / "dispatcher"
    try:
        queued = await run_cli(env, *SEND, cwd=one)
        status = await run_cli(env, "status", "--json", cwd=other)
        where = await run_cli(env, "db", "status", cwd=other)
    finally:
        EmbeddedPostgres(cluster).stop()
    assert queued.code == 0, queued
    assert status.code == 0 and '"queued": 1' in status.out, status
    assert where.out.startswith(f"embedded Postgres under {cluster}: running"), where
    assert not (one / ".dispatcher").exists() and not (other / ".dispatcher").exists()

"""Schema migrations against a real Postgres: applied once, in order, safe to run concurrently."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

from dispatcher.db.migrate import migrate, migrations, pending_migrations, require_migrated
from dispatcher.errors import DatabaseError
from dispatcher.queue.repository import Queue

ALL = [m.name for m in migrations()]


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert ALL[0] == "0001_init"
    assert [m.version for m in migrations()] == list(range(1, len(ALL) + 1))


async def test_fresh_database_migrates_then_second_run_is_a_no_op(pg_blank_dsn: str) -> None:
    conn = await asyncpg.connect(pg_blank_dsn)
    try:
        assert await pending_migrations(conn) == ALL
        assert await migrate(conn) == ALL
        assert await pending_migrations(conn) == []
        assert await migrate(conn) == []

        rows = await conn.fetch("SELECT version, name FROM dispatcher.schema_migrations")
        assert [(r["version"], r["name"]) for r in rows] == [
            (m.version, m.name) for m in migrations()
        ]
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'dispatcher' ORDER BY 1"
        )
        assert [t["tablename"] for t in tables] == [
            "accounts",
            "api_keys",
            "campaign_pruned",
            "campaign_recipients",
            "campaigns",
            "events",
            "guard_account_tally",
            "guard_campaign_tally",
            "jobs",
            "lane_backoffs",
            "lane_days",
            "message_feedback",
            "messages",
            "mx_cache",
            "quota_spend",
            "recipient_events",
            "retention_marks",
            "routes",
            "schema_migrations",
            "send_quota",
            "sending_hold",
            "suppressions",
            "warmup_days",
            "webhook_deliveries",
            "webhook_endpoints",
            "workers",
        ]
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_migration_once(pg_blank_dsn: str) -> None:
    conns = [await asyncpg.connect(pg_blank_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = [name for result in results for name in result]
        # Each one applied by exactly one of the three (which one applies which is a race).
        assert sorted(applied) == ALL
        count = await conns[0].fetchval("SELECT count(*) FROM dispatcher.schema_migrations")
        assert count == len(ALL)
    finally:
        for conn in conns:
            await conn.close()


async def test_require_migrated_says_how_to_fix(pg_blank_dsn: str) -> None:
    conn = await asyncpg.connect(pg_blank_dsn)
    try:
        with pytest.raises(DatabaseError) as info:
            await require_migrated(conn)
        assert str(info.value) == (
            f"database schema is not migrated (pending: {', '.join(ALL)}); "
            "run `dispatcher migrate` "
            "or set database.migrate_on_start = true"
        )
        await migrate(conn)
        await require_migrated(conn)
    finally:
        await conn.close()


async def test_connect_refuses_an_unmigrated_database_unless_asked_to_migrate(
    pg_blank_dsn: str,
) -> None:
    with pytest.raises(DatabaseError, match="not migrated"):
        async with Queue.connect(pg_blank_dsn):
            pass
    async with Queue.connect(pg_blank_dsn, migrate=True) as queue:
        assert (await queue.counts())["queued"] == 0


async def test_connection_failure_names_the_server_but_not_the_password() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://mailer:s3cret-pw@127.0.0.1:{port}/maildb"
    with pytest.raises(DatabaseError) as info:
        async with Queue.connect(dsn):
            pass
    text = str(info.value)
    assert f"127.0.0.1:{port}/maildb" in text
    assert "s3cret-pw" not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_wrong_password_is_reported_without_echoing_it(pg_dsn: str) -> None:
    parts = urlsplit(pg_dsn)
    netloc = f"{parts.username}:wrong-pw-4711@{parts.hostname}:{parts.port}"
    with pytest.raises(DatabaseError) as info:
        async with Queue.connect(urlunsplit(parts._replace(netloc=netloc))):
            pass
    text = str(info.value)
    assert "password authentication failed" in text
    assert "wrong-pw-4711" not in text


async def test_malformed_url_is_a_database_error() -> None:
    with pytest.raises(DatabaseError, match="cannot connect"):
        async with Queue.connect("postgresql://u:pw@127.0.0.1:notaport/db"):
            pass


async def test_migration_11_rekeys_suppressions_on_the_bare_lower_cased_address(
    pg_blank_dsn: str,
) -> None:
    conn = await asyncpg.connect(pg_blank_dsn)
    try:
        await conn.execute(
            "CREATE SCHEMA dispatcher; CREATE TABLE dispatcher.schema_migrations "
            "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL "
            "DEFAULT now())"
        )
        for m in migrations()[:10]:
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO dispatcher.schema_migrations VALUES ($1, $2)", m.version, m.name
            )
        await conn.execute(
            "INSERT INTO dispatcher.suppressions (address, reason, created_at) VALUES "
            "('jane doe <jane@example.com>', 'first', now() - interval '2 days'), "
            "('jane@example.com ', 'second', now() - interval '1 day'), "
            "('<bob@example.com>', 'bob', now()), ('al@example.com', 'al', now())"
        )
        assert (await migrate(conn))[0] == "0011_validation"
        rows = await conn.fetch(
            "SELECT address, reason FROM dispatcher.suppressions ORDER BY address"
        )
    finally:
        await conn.close()
    assert [(r["address"], r["reason"]) for r in rows] == [
        ("al@example.com", "al"),
        ("bob@example.com", "bob"),
        ("jane@example.com", "first"),
    ]

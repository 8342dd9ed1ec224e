"""`dispatcher keys ...` as a user runs it: create (secret once), list, revoke."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from dispatcher.doors.keys import KeyStore
from tests.support.cli import cli_env, run_cli


async def test_create_list_revoke_and_only_a_hash_is_stored(pg_dsn: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    made = await run_cli(
        env,
        "keys",
        "create",
        "shop-web",
        "--from",
        "*@shop.example",
        "--max-priority",
        "5",
        "--json",
    )
    assert made.code == 0, made
    key = json.loads(made.out)
    assert key["name"] == "shop-web" and key["senders"] == ["*@shop.example"]
    assert key["max_priority"] == 5 and key["id"].startswith("DK") and len(key["secret"]) == 40

    plain = await run_cli(env, "keys", "create", "ops")
    assert plain.code == 0 and "secret: " in plain.out and "shown only now" in plain.out

    listed = await run_cli(env, "keys", "list", "--json")
    rows = [json.loads(line) for line in listed.out.splitlines()]
    assert [r["name"] for r in rows] == ["shop-web", "ops"]
    assert all("secret" not in r for r in rows) and key["secret"] not in listed.out

    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        dump = await pool.fetchval("SELECT string_agg(t::text, ' ') FROM dispatcher.api_keys t")
        assert key["secret"] not in dump
        store = KeyStore(pool)
        found = await store.authenticate(key["id"], key["secret"])
        assert found is not None and found.senders == ("*@shop.example",)
        assert await store.authenticate(key["id"], key["secret"] + "x") is None

        revoked = await run_cli(env, "keys", "revoke", key["id"])
        assert revoked.code == 0 and "revoked" in revoked.out, revoked
        assert await store.authenticate(key["id"], key["secret"]) is None
    finally:
        await pool.close()
    table = await run_cli(env, "keys", "list")
    assert "revoked" in table.out and "active" in table.out

    unknown = await run_cli(env, "keys", "revoke", "DKNOPE")
    assert unknown.code == 2 and unknown.messages == [
        "dispatcher: error: no key 'DKNOPE'; `dispatcher keys list` shows the ids"
    ], unknown
    bad = await run_cli(env, "keys", "create", "x", "--from", "a b@c")
    assert bad.code == 2 and len(bad.messages) == 1 and "sender pattern" in bad.messages[0]

"""`dispatcher migrate | send | enqueue | in-doubt list | cancel` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from dispatcher.db.migrate import migrations
from tests.support.cli import cli_env, fetch, run_cli, state_counts


async def message_count(dsn: str) -> int:
    rows = await fetch(dsn, "SELECT count(*) AS n FROM dispatcher.messages")
    return int(rows[0]["n"])


async def test_migrate_applies_the_schema_once_then_reports_up_to_date(
    pg_blank_dsn: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, dsn=pg_blank_dsn)
    names = [m.name for m in migrations()]

    first = await run_cli(env, "migrate")

    assert first.code == 0, first
    assert "0001_init" in names
    assert first.out.strip() == (
        f"applied {len(names)} migration(s) to the database: {', '.join(names)}"
    )
    applied = await fetch(
        pg_blank_dsn, "SELECT name FROM dispatcher.schema_migrations ORDER BY version"
    )
    assert [r["name"] for r in applied] == names

    second = await run_cli(env, "migrate")

    assert second.code == 0, second
    assert second.out.strip() == "the database is up to date"


async def test_send_prints_the_id_and_an_idempotency_key_queues_once(
    pg_dsn: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    base = ("send", "--from", "a@example.com", "--to", "b@example.com", "--subject", "Hi")

    plain = await run_cli(env, *base, "--text", "Hello")
    first = await run_cli(env, *base, "--text", "Hello", "--idempotency-key", "order-7")
    again = await run_cli(env, *base, "--text", "Hello again", "--idempotency-key", "order-7")

    for result in (plain, first, again):
        assert result.code == 0, result
        assert result.out.strip().isdigit(), result
    assert plain.out != first.out
    assert again.out == first.out
    assert first.messages == []
    (note,) = again.messages
    assert "order-7" in note and "nothing new was queued" in note
    rows = await fetch(
        pg_dsn,
        "SELECT m.id, m.subject, m.text_body, m.to_addrs, j.state::text AS state "
        "FROM dispatcher.messages m JOIN dispatcher.jobs j USING (id) ORDER BY m.id",
    )
    assert [r["id"] for r in rows] == [int(plain.out), int(first.out)]
    assert rows[1]["text_body"] == "Hello"  # the first send under the key won
    assert all(r["state"] == "queued" and r["to_addrs"] == ["b@example.com"] for r in rows)


async def test_send_with_bad_input_exits_2_naming_the_problem_and_queues_nothing(
    pg_dsn: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    base = ("send", "--from", "a@example.com", "--subject", "Hi", "--text", "Hello")
    too_many = [arg for i in range(51) for arg in ("--to", f"u{i}@example.com")]
    cases = {
        "not-an-address": [*base, "--to", "not-an-address"],
        "at most 50 recipients": [*base, *too_many],
        "no timezone": [*base, "--to", "b@example.com", "--send-after", "2026-11-28T15:00:00"],
    }
    for expected, args in cases.items():
        result = await run_cli(env, *args)
        assert result.code == 2, result
        assert result.out == ""
        (message,) = result.messages
        assert message.startswith("dispatcher: error: ") and expected in message, result
    assert await message_count(pg_dsn) == 0


def jsonl(*objects: object) -> str:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objects)


GOOD = {"from": "a@example.com", "to": ["b@example.com"], "subject": "one", "text": "x"}
CUT_SHORT = '{"from": "a@example.com", "to": "b@example.com"'


async def test_enqueue_queues_the_good_lines_and_reports_each_bad_one_by_number(
    pg_dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_text(
        jsonl(
            GOOD,  # 1
            CUT_SHORT,  # 2
            {"to": ["b@example.com"], "subject": "s", "text": "x"},  # 3: no sender
            {**GOOD, "colour": "red"},  # 4: unknown field
            {**GOOD, "send_after": "2026-11-28T15:00:00"},  # 5: no timezone
            "",  # 6: blank lines are skipped
            {**GOOD, "to": "c@example.com", "html": "<p>x</p>", "text": None},  # 7
            {**GOOD, "to": ["d@example.com"], "send_after": "2030-01-01T00:00:00Z"},  # 8
        )
    )
    env = cli_env(tmp_path, dsn=pg_dsn)

    result = await run_cli(env, "enqueue", "batch.jsonl", cwd=tmp_path)

    assert result.code == 2, result
    assert result.out.strip() == (
        "queued 3 message(s); 4 bad line(s) skipped (fix and enqueue them again)"
    )
    bad = result.messages
    assert [m.split(": ")[:2] for m in bad] == [
        ["batch.jsonl", "line 2"],
        ["batch.jsonl", "line 3"],
        ["batch.jsonl", "line 4"],
        ["batch.jsonl", "line 5"],
    ], result
    assert bad[0].endswith(
        f"not valid JSON: Expecting ',' delimiter at column {len(CUT_SHORT) + 1}"
    )
    assert '"from" is required' in bad[1]
    assert "colour" in bad[2]
    assert "no timezone" in bad[3]
    rows = await fetch(
        pg_dsn,
        "SELECT m.to_addrs, j.scheduled FROM dispatcher.messages m "
        "JOIN dispatcher.jobs j USING (id) ORDER BY m.id",
    )
    assert [(r["to_addrs"], r["scheduled"]) for r in rows] == [
        (["b@example.com"], False),
        (["c@example.com"], False),
        (["d@example.com"], True),
    ]


async def test_enqueue_from_stdin(pg_dsn: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    lines = jsonl(
        {**GOOD, "idempotency_key": "k1"},
        {**GOOD, "idempotency_key": "k2", "cc": ["c@example.com"], "priority": 5},
        {**GOOD, "idempotency_key": "k1"},  # the same message again: not queued twice
    )

    result = await run_cli(env, "enqueue", "-", stdin=lines.encode())

    assert result.code == 0, result
    assert result.out.strip() == (
        "queued 2 message(s); 1 already queued under the same idempotency key"
    )
    assert result.messages == []
    assert await state_counts(pg_dsn) == {"queued": 2}


async def test_enqueue_an_unreadable_file_exits_2_naming_it(pg_dsn: str, tmp_path: Path) -> None:
    result = await run_cli(cli_env(tmp_path, dsn=pg_dsn), "enqueue", "nowhere.jsonl")

    assert result.code == 2, result
    assert result.messages == [
        "dispatcher: error: cannot read nowhere.jsonl: No such file or directory"
    ]


async def test_enqueue_a_large_file(pg_dsn: str, tmp_path: Path) -> None:
    n = 20_000
    path = tmp_path / "large.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "from": "news@example.com",
                        "to": [f"reader{i}@example.com"],
                        "subject": f"issue {i}",
                        "text": "hello " * 20,
                        "idempotency_key": f"large-{i}",
                        "tags": {"campaign": "large"},
                    }
                )
                + "\n"
            )

    result = await run_cli(cli_env(tmp_path, dsn=pg_dsn), "enqueue", str(path))

    assert result.code == 0, result
    assert result.out.strip() == f"queued {n} message(s)"
    assert await state_counts(pg_dsn) == {"queued": n}
    rows = await fetch(
        pg_dsn, "SELECT count(DISTINCT idempotency_key) AS n FROM dispatcher.messages"
    )
    assert rows[0]["n"] == n


async def test_in_doubt_list_when_none_and_cancel(pg_dsn: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    sent = await run_cli(
        env, "send", "--from", "a@example.com", "--to", "b@example.com", "--subject", "s",
        "--text", "t",
    )  # fmt: skip
    assert sent.code == 0, sent
    message_id = sent.out.strip()

    listed = await run_cli(env, "in-doubt", "list")
    assert listed.code == 0, listed
    assert listed.out.strip() == "no messages in doubt"

    cancelled = await run_cli(env, "cancel", message_id)
    assert cancelled.code == 0, cancelled
    assert cancelled.out.strip() == "1 message(s) cancelled"
    assert await state_counts(pg_dsn) == {"cancelled": 1}

    unknown = await run_cli(env, "cancel", "987654")
    assert unknown.code == 1, unknown
    assert unknown.out.strip() == "0 message(s) cancelled"
    assert unknown.messages == ["not cancelled (unknown, or already sending or done): 987654"]

    again = await run_cli(env, "cancel", message_id)  # already cancelled: nothing to do
    assert again.code == 1, again
    assert message_id in again.messages[0]

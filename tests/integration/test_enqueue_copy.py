"""Queue.enqueue_many of more than a part goes in by COPY: it stores what the one-statement path
stores, keys stored or repeated are not inserted again, a key another transaction stores while
the batch is copied in is skipped, and the routing trigger still decides each job's account."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from dispatcher.accounts.settings import RouteSettings
from dispatcher.accounts.store import AccountStore
from dispatcher.domain.jobs import Enqueued, NewMessage
from dispatcher.errors import InputError
from dispatcher.queue import enqueue
from dispatcher.queue.repository import Queue
from tests.support.plans import explained

PART = enqueue.OVERLAP_PART
WHEN = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)


RAW = b"From: s@example.com\r\nTo: r@example.com\r\nSubject: raw\r\n\r\nbody\r\n"


def varied(n: int) -> NewMessage:
    """Message n, with every optional field set in some rows and left out in others."""
    content: dict[str, Any] = {
        "subject": f'Subject {n} with "quotes", {{braces}} and \\ backslash',
        "text": None if n % 13 == 0 and n % 2 else f"text {n}",
        "html": f"<p>{n}</p>" if n % 2 else None,
    }
    if n % 19 == 0:
        content = {"raw": RAW}
    elif n % 23 == 0:
        content = {"template_name": "welcome", "template_data": f'{{"n": {n}}}'}
    return NewMessage(
        from_addr=f"s{n % 3}@example.com",
        to=(f"r{n}@example.com",),
        cc=(f"c{n}@example.com",) if n % 5 == 0 else (),
        bcc=(f"b{n}@example.com", "b@example.com") if n % 7 == 0 else (),
        reply_to=("reply@example.com",) if n % 11 == 0 else (),
        configuration_set="cs" if n % 17 == 0 else None,
        tags={"n": str(n)} if n % 3 == 0 else {},
        idempotency_key=f"key-{n}" if n % 4 else None,
        priority=n % 4 - 1,
        send_after=WHEN + timedelta(seconds=n) if n % 9 == 0 else None,
        key_id="k1" if n % 29 == 0 else None,
        **content,
    )


MESSAGE_COLUMNS = [
    *("idempotency_key", "from_addr", "to_addrs", "cc_addrs", "bcc_addrs", "reply_to"),
    *("subject", "text_body", "html_body", "raw", "configuration_set", "tags", "key_id"),
    *("template_name", "template_data", "campaign_id", "variables", "content_pruned_at"),
]
JOB_COLUMNS = [
    *("state", "priority", "recipients", "attempts", "scheduled", "lease_owner", "lease_token"),
    *("sent_at", "campaign_id", "account", "fallback"),
]


async def stored(queue: Queue, ids: list[int]) -> list[dict[str, Any]]:
    """Every column a user could see of these messages and their jobs, in the order of ids
    (run_at as the instant given, or whether it is the enqueue's own now())."""
    columns = [f"m.{c}" for c in MESSAGE_COLUMNS] + [f"j.{c}" for c in JOB_COLUMNS]
    async with queue.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT m.id, {', '.join(columns)}, CASE WHEN j.scheduled THEN j.run_at END AS after,"
            " j.run_at = m.created_at AS run_now, j.updated_at = m.created_at AS updated_now"
            " FROM dispatcher.messages m JOIN dispatcher.jobs j ON j.id = m.id"
            " WHERE m.id = ANY($1::bigint[])",
            ids,
        )
    by_id = {row["id"]: {k: v for k, v in row.items() if k != "id"} for row in rows}
    return [by_id[i] for i in ids]


async def test_a_copied_batch_stores_what_the_statement_stores(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with queue.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO dispatcher.api_keys (id, name, secret_sha256) VALUES ('k1', 'shop', '')"
        )
    msgs = [varied(n) for n in range(2 * PART + 7)]
    copied = await queue.enqueue_many(msgs)
    assert all(r.created for r in copied)
    got = await stored(queue, [r.id for r in copied])
    async with queue.pool.acquire() as conn:  # the same again by the one-statement path
        await conn.execute("TRUNCATE dispatcher.jobs, dispatcher.messages")
    monkeypatch.setattr(enqueue, "OVERLAP_PART", len(msgs))
    inserted = await queue.enqueue_many(msgs)
    assert all(r.created for r in inserted)
    want = await stored(queue, [r.id for r in inserted])
    assert got == want
    assert [g["after"] for g in got[:10]] == [WHEN, *[None] * 8, WHEN + timedelta(seconds=9)]
    assert all(g["run_now"] for g in got if g["after"] is None)


async def test_keys_stored_or_repeated_are_not_copied_again(queue: Queue) -> None:
    before = await queue.enqueue_many(
        [
            NewMessage(
                "s@example.com", ("a@example.com",), subject="old", text="t", idempotency_key="old"
            )
        ]
    )
    keys = ["old", "x", None, "x", "y", None, "old"] + [None] * PART + ["y", "z", "x"]
    batch = [
        NewMessage(
            "s@example.com", (f"r{i}@example.com",), subject=f"m{i}", text="t", idempotency_key=k
        )
        for i, k in enumerate(keys)
    ]
    results = await queue.enqueue_many(batch)
    first: dict[str, int] = {"old": before[0].id}
    for key, result in zip(keys, results, strict=True):
        if key is None:
            assert result.created
        elif key in first:
            assert result == Enqueued(first[key], created=False)
        else:
            assert result.created
            first[key] = result.id
    created = [r.id for r in results if r.created]
    assert created == sorted(created)  # drawn in input order: claims stay first-in first-out
    assert (await queue.counts())["queued"] == 1 + len(created) == 1 + 4 + PART + 1


async def test_a_key_stored_by_another_transaction_during_the_copy_is_skipped(
    queue: Queue, pg_dsn: str
) -> None:
    """The batch looked the key up before the other transaction committed it: its COPY waits
    for that transaction, fails on the key, and the batch goes again (INSERT ... ON CONFLICT)."""
    batch = [
        NewMessage(
            "s@example.com", (f"r{i}@example.com",), subject="m", text="t", idempotency_key=f"k{i}"
        )
        for i in range(PART + 20)
    ]
    other = await asyncpg.connect(pg_dsn)
    try:
        async with other.transaction():
            winner = await other.fetchval(
                "SELECT dispatcher.enqueue('s@example.com', '{w@example.com}', 'won', 'body', "
                "idempotency_key => $1)",
                f"k{PART + 5}",
            )
            task = asyncio.create_task(queue.enqueue_many(batch))
            for _ in range(500):
                waiting = await other.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
                if waiting:
                    break
                await asyncio.sleep(0.01)
            assert waiting, "the batch never waited for the other transaction"
        results = await task
    finally:
        await other.close()
    assert results[PART + 5] == Enqueued(winner, created=False)
    assert all(r.created for i, r in enumerate(results) if i != PART + 5)
    assert len({r.id for r in results}) == len(batch)
    assert (await queue.counts())["queued"] == len(batch)


async def test_a_copied_batch_is_routed_by_the_trigger(queue: Queue) -> None:
    await AccountStore(queue.pool).put(
        ["a", "b"], (RouteSettings(account="b", from_domain=("b.example",)),)
    )
    batch = [
        NewMessage(
            f"s@{'b' if i % 2 else 'a'}.example", (f"r{i}@x.example",), subject="s", text="t"
        )
        for i in range(PART + 3)
    ]
    results = await queue.enqueue_many(batch)
    async with queue.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, account FROM dispatcher.jobs WHERE id = ANY($1::bigint[])",
            [r.id for r in results],
        )
    account = {row["id"]: row["account"] for row in rows}
    assert [account[r.id] for r in results] == ["b" if i % 2 else "a" for i in range(PART + 3)]


async def test_the_key_lookup_reads_only_the_rows_of_keys_already_stored(queue: Queue) -> None:
    """A copied part's cost does not grow with the table: a key is one index probe."""
    old = [
        NewMessage("s@example.com", (f"r{i}@example.com",), subject="m", text="t")
        for i in range(3000)
    ]
    await queue.enqueue_many([replace(m, idempotency_key=f"old-{i}") for i, m in enumerate(old)])
    keys = [f"old-{i}" if i < 5 else (None if i % 2 else f"new-{i}") for i in range(20)]
    sql = enqueue.query("enqueue_reserve")
    async with queue.pool.acquire() as conn:
        await conn.execute("ANALYZE dispatcher.messages")
    nodes = await explained(queue.pool, sql, 20, keys)
    async with queue.pool.acquire() as conn:
        row = await conn.fetchrow(sql, 20, keys)
    read = [n for n in nodes if n.get("Relation Name") == "messages"]
    assert read and all(n["Node Type"] == "Index Scan" for n in read), read
    assert sum(n["Actual Loops"] for n in read) == 20  # a probe per key, none of the 3,000
    assert [i is not None for i in row["stored"]] == [True] * 5 + [False] * 15


@pytest.mark.parametrize("bad", ["k\x00", "k\ud800", 7])
async def test_a_bad_key_late_in_a_copied_batch_is_named_and_nothing_is_queued(
    queue: Queue, bad: object
) -> None:
    """The batch's keys are looked up before its messages are checked: a key Postgres cannot
    take must not turn the message's error into a database error."""
    batch = [
        NewMessage("s@example.com", (f"r{i}@example.com",), subject="m", text="t")
        for i in range(PART + 10)
    ]
    batch[PART + 3] = replace(batch[PART + 3], idempotency_key=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=rf"^message {PART + 3}: idempotency_key"):
        await queue.enqueue_many(batch)
    assert not any((await queue.counts()).values())

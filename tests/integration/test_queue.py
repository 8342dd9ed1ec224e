"""The queue against a real Postgres: what only Postgres adds to the store's promises (concurrent
sessions, statement sizes, SQL details). The promises themselves: tests/conformance/."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from dispatcher.db.connect import stateless
from dispatcher.domain.jobs import Enqueued, NewMessage, Recovered, Settlement
from dispatcher.domain.message import OutgoingMessage
from dispatcher.errors import InputError
from dispatcher.queue import enqueue
from dispatcher.queue.repository import Queue, query
from tests.support.plans import explained

LEASE = 30.0


def msg(n: int = 0, **changes: Any) -> NewMessage:
    fields: dict[str, Any] = {
        "from_addr": "sender@example.com",
        "to": (f"r{n}@example.com",),
        "subject": f"Message {n}",
        "text": "Hello",
    }
    fields.update(changes)
    return NewMessage(**fields)


async def fetch(queue: Queue, sql: str, *args: Any) -> list[Any]:
    async with queue.pool.acquire() as conn:
        return list(await conn.fetch(sql, *args))


async def job_row(queue: Queue, job_id: int) -> Any:
    rows = await fetch(queue, "SELECT * FROM dispatcher.jobs WHERE id = $1", job_id)
    return rows[0]


async def silence(queue: Queue, owner: uuid.UUID) -> None:
    """Make ``owner`` look dead: its last heartbeat is older than its lease."""
    await fetch(
        queue,
        "UPDATE dispatcher.workers SET heartbeat_at = now() - interval '1 hour' WHERE id = $1",
        owner,
    )


async def worker(queue: Queue) -> uuid.UUID:
    owner = uuid.uuid4()
    await queue.register_worker(owner, LEASE)
    return owner


# --- enqueue ---------------------------------------------------------------------------------


async def test_enqueue_stores_the_message_as_the_worker_gets_it(queue: Queue) -> None:
    new = NewMessage(
        from_addr="Sender <sender@example.com>",
        to=("a@example.com", "b@example.com"),
        cc=("c@example.com",),
        bcc=("d@example.com",),
        reply_to=("reply@example.com",),
        subject="Spring sale",
        text="plain",
        html="<p>html</p>",
        configuration_set="marketing",
        tags={"campaign": "spring", "tier": "gold"},
        idempotency_key="order-1",
        priority=3,
    )
    result = await queue.enqueue(new)
    assert result.created and result.id > 0

    [job] = await queue.claim(await worker(queue), 10)
    assert job.id == result.id
    assert (job.attempts, job.priority) == (0, 3)
    assert job.message == OutgoingMessage(
        id=result.id,
        from_addr='"Sender" <sender@example.com>',  # normalised: the display name quoted
        to=("a@example.com", "b@example.com"),
        cc=("c@example.com",),
        bcc=("d@example.com",),
        reply_to=("reply@example.com",),
        subject="Spring sale",
        text="plain",
        html="<p>html</p>",
        configuration_set="marketing",
        tags={"campaign": "spring", "tier": "gold"},
    )
    assert (await job_row(queue, result.id))["recipients"] == 4


async def test_raw_message_round_trips_byte_for_byte(queue: Queue) -> None:
    raw = b"From: s@example.com\r\nSubject: caf\xc3\xa9\r\n\r\n\x00\xffbody"
    result = await queue.enqueue(msg(subject="", text=None, raw=raw))
    [job] = await queue.claim(uuid.uuid4(), 1)
    assert job.id == result.id
    assert job.message.raw == raw
    assert (job.message.text, job.message.html, job.message.subject) == (None, None, "")


async def test_duplicate_keys_inside_one_batch(queue: Queue) -> None:
    results = await queue.enqueue_many(
        [
            msg(0, idempotency_key="a"),
            msg(1, idempotency_key="b"),
            msg(2, idempotency_key="a"),
            msg(3),
            msg(4),
            msg(5, idempotency_key="b"),
        ]
    )
    assert [r.created for r in results] == [True, True, False, True, True, False]
    assert results[2].id == results[0].id and results[5].id == results[1].id
    assert len({r.id for r in results}) == 4
    assert (await queue.counts())["queued"] == 4


async def test_keys_that_look_like_internal_dedup_keys_are_not_confused(queue: Queue) -> None:
    # Regression: rows without a key were deduplicated as 'ord:<n>', so a real key 'ord:1'
    # swallowed the first keyless row of the batch.
    keys = [None, "ord:1", "n:1", "k:x", None]
    results = await queue.enqueue_many([msg(i, idempotency_key=k) for i, k in enumerate(keys)])
    assert all(r.created for r in results)
    assert len({r.id for r in results}) == 5


async def test_batch_ids_follow_input_order_so_claims_are_fifo(queue: Queue) -> None:
    results = await queue.enqueue_many([msg(i) for i in range(25)])
    ids = [r.id for r in results]
    assert ids == sorted(ids)
    claimed = await queue.claim(uuid.uuid4(), 100)
    assert [j.id for j in claimed] == ids


async def test_concurrent_insert_of_the_same_key_returns_the_winners_id(
    queue: Queue, pg_dsn: str
) -> None:
    other = await asyncpg.connect(pg_dsn)
    try:
        async with other.transaction():
            [row] = await other.fetch(
                query("enqueue_many"),
                ["race"],
                ["s@example.com"],
                ['{"x@example.com"}'],
                ["{}"],
                ["{}"],
                ["{}"],
                ["s"],
                ["t"],
                [None],
                [None],
                [None],
                ["{}"],
                [0],
                [None],
                [1],
                [None],
                [None],
                [None],
            )
            # Our enqueue blocks on the uncommitted row with the same key...
            task = asyncio.create_task(queue.enqueue(msg(idempotency_key="race")))
            for _ in range(200):
                waiting = await other.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
                if waiting:
                    break
                await asyncio.sleep(0.01)
            assert waiting, "the second enqueue never waited for the first"
        # ...and after the commit finds its row invisible to its snapshot: the NULL-id path.
        assert await task == Enqueued(row["id"], created=False)
    finally:
        await other.close()
    assert (await queue.counts())["queued"] == 1


async def test_ten_thousand_messages_in_one_transaction(pg_dsn: str) -> None:
    logged: list[str] = []

    async def log_queries(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: logged.append(record.query))

    async def no_reset(conn: asyncpg.Connection) -> None:
        """Skip the pool's reset queries on release, so only our statements are logged."""

    pool = await asyncpg.create_pool(
        pg_dsn, min_size=1, max_size=1, init=log_queries, reset=no_reset
    )
    try:
        queue = Queue(pool)
        # Warm up: asyncpg introspects the types of the statements and COPYs once.
        await queue.enqueue(msg(-1))
        await queue.enqueue_many([msg(-2, idempotency_key="w")] * (enqueue.OVERLAP_PART + 1))
        msgs = [msg(i, idempotency_key=f"k{i}" if i % 2 else None) for i in range(10_000)]
        logged.clear()
        results = await queue.enqueue_many(msgs)
        # One transaction: the batch's ids and stored keys, then parts, each checked while
        # the one before is copied in (two COPYs each, which the query logger omits).
        assert logged[1:-1] == [query("enqueue_reserve")]
        assert [logged[0], logged[-1]] == ["BEGIN;", "COMMIT;"]
        assert len(results) == 10_000 and all(r.created for r in results)
        assert len({r.id for r in results}) == 10_000
        assert (await queue.counts())["queued"] == 10_002
        [row] = await fetch(queue, "SELECT count(*) AS n FROM dispatcher.messages")
        assert row["n"] == 10_002
    finally:
        await pool.close()


async def test_enqueue_reads_only_the_rows_of_keys_already_stored(queue: Queue) -> None:
    """An enqueue's cost does not grow with the table: an existing key is one index probe (the
    statement hashed every stored message for each batch)."""
    await queue.enqueue_many([msg(i, idempotency_key=f"old-{i}") for i in range(3000)])
    await fetch(queue, "ANALYZE dispatcher.messages")
    batch = [msg(i, idempotency_key=f"old-{i}" if i < 5 else None) for i in range(20)]
    nodes = await explained(
        queue.pool,
        query("enqueue_many"),
        *enqueue._params(enqueue.validate_all(batch)),  # OLD,
    )
    read = [n for n in nodes if n.get("Relation Name") == "messages" and "Scan" in n["Node Type"]]
    assert read and all(n["Node Type"] == "Index Scan" for n in read), read
    assert sum(n["Actual Rows"] * n["Actual Loops"] for n in read) == 5
    results = await queue.enqueue_many(batch)
    assert [r.created for r in results] == [False] * 5 + [True] * 15


async def test_a_batch_larger_than_a_chunk_runs_as_several_statements(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(enqueue, "ENQUEUE_CHUNK", 3)
    keys = ["a", None, "b", None, "a", None, "b"]  # repeats span chunks
    results = await queue.enqueue_many([msg(i, idempotency_key=k) for i, k in enumerate(keys)])
    assert [r.created for r in results] == [True, True, True, True, False, True, False]
    assert results[4].id == results[0].id and results[6].id == results[2].id
    ids = [r.id for i, r in enumerate(results) if r.created]
    assert ids == sorted(ids)
    assert (await queue.counts())["queued"] == 5


async def test_a_batch_in_overlapped_parts_is_all_or_nothing(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts checked while the one before is inserted: a bad message in a later part names its
    index in the whole batch and queues nothing; keys repeated across parts are one message."""
    monkeypatch.setattr(enqueue, "OVERLAP_PART", 3)
    bad = [msg(i) for i in range(7)] + [msg(7, to=("not an address",))]
    with pytest.raises(InputError, match=r"^message 7: to\[0\] 'not an address'"):
        await queue.enqueue_many(bad)
    assert (await queue.counts())["queued"] == 0
    [row] = await fetch(queue, "SELECT count(*) AS n FROM dispatcher.messages")
    assert row["n"] == 0
    keys = ["a", None, "b", None, "a", None, "b"]
    results = await queue.enqueue_many([msg(i, idempotency_key=k) for i, k in enumerate(keys)])
    assert [r.created for r in results] == [True, True, True, True, False, True, False]
    assert results[4].id == results[0].id and results[6].id == results[2].id
    assert (await queue.counts())["queued"] == 5


async def test_enqueue_many_of_nothing(queue: Queue) -> None:
    assert await queue.enqueue_many([]) == []


# --- claim -------------------------------------------------------------------------------------


async def test_concurrent_claimers_never_share_a_job(queue: Queue) -> None:
    ids = {r.id for r in await queue.enqueue_many([msg(i) for i in range(2000)])}

    async def claim_all(owner: uuid.UUID) -> list[int]:
        got: list[int] = []
        while jobs := await queue.claim(owner, 25):
            got += [j.id for j in jobs]
        return got

    owners = [uuid.uuid4() for _ in range(4)]
    per_owner = await asyncio.gather(*(claim_all(o) for o in owners))
    claimed = [i for got in per_owner for i in got]
    assert len(claimed) == len(set(claimed)) == 2000  # no job handed out twice
    assert set(claimed) == ids
    rows = await fetch(
        queue, "SELECT lease_owner, count(*) AS n FROM dispatcher.jobs GROUP BY lease_owner"
    )
    assert {r["lease_owner"]: r["n"] for r in rows} == {
        o: len(got) for o, got in zip(owners, per_owner, strict=True) if got
    }


async def test_launch_settle_and_release_look_jobs_up_by_key(queue: Queue) -> None:
    """A worker holding many claimed jobs launches (settles, releases) a few: only those rows are
    read, one index probe each, not every job it holds (the planner, told by the statistics that
    claimed jobs are rare, scanned the owner's whole lease index for each launch: 2-10 ms instead
    of 0.3) nor the whole table (settle hashed it for mid-sized batches)."""
    await queue.enqueue_many([msg(i) for i in range(3000)])
    await fetch(queue, "ANALYZE dispatcher.jobs")  # the statistics: every job queued
    owner = await worker(queue)
    jobs = [j for _ in range(20) for j in await queue.claim(owner, 100)]
    few = jobs[:30]
    ids, tokens = [j.id for j in few], [j.token for j in few]
    settle = [[s.id, s.token, "sent", "ses-1", "sent", None, 1, 0.0] for s in few]
    # (every column as an array; the five values read once when alike stay NULL)
    settle_args = (*(list(column) for column in zip(*settle, strict=True)), *[None] * 5)
    statements = (
        ("launch", (ids, tokens, owner)),
        ("settle", settle_args),
        ("release", (ids, owner, 0.0, False)),
    )
    for name, args in statements:
        nodes = await explained(queue.pool, query(name), *args)
        read = [n for n in nodes if n.get("Relation Name") == "jobs" and "Index Name" in n]
        assert read and all(n["Index Name"] == "jobs_pkey" for n in read), (name, read)
        assert max(n["Actual Rows"] * n["Actual Loops"] for n in read) <= len(few)
    assert await queue.launch(owner, few) == set(ids)


async def test_a_launch_matches_each_job_with_its_token_once(queue: Queue) -> None:
    """A launch of n jobs reads n rows and checks n tokens: the planner, told by the owner filter
    that one row matches, joined every job with every (id, token) pair, so a launch of 400 jobs
    pushed 160,000 rows through its join filter (most of the worker's Postgres time per job)."""
    await queue.enqueue_many([msg(i) for i in range(3000)])
    owner = await worker(queue)
    for _ in range(10):  # a worker under way: the statistics see sent jobs and a few held
        done = await queue.claim(owner, 100)
        await queue.launch(owner, done)
        await queue.settle([Settlement(j.id, j.token, "sent", "ses-1", "sent") for j in done])
    jobs = await queue.claim(owner, 100)
    await fetch(queue, "ANALYZE dispatcher.jobs")
    stale = jobs[0]
    pairs = [(stale.id, stale.token - 1)] + [(j.id, j.token) for j in jobs[1:]]
    nodes = await explained(
        queue.pool, query("launch"), [p[0] for p in pairs], [p[1] for p in pairs], owner
    )
    discarded = sum(
        n.get("Rows Removed by Join Filter", 0) * n.get("Actual Loops", 1) for n in nodes
    )
    assert discarded <= len(pairs), (discarded, [n["Node Type"] for n in nodes])
    # Still the fencing token of each job, not any token of the batch.
    assert await queue.launch(owner, pairs) == {j.id for j in jobs[1:]}


async def test_a_claim_takes_other_jobs_than_a_claim_running_at_the_same_time(
    queue: Queue,
) -> None:
    """Two claims at once (a worker keeps two on their way, and several workers claim too) take
    different jobs, a full batch each: the second one was offered the same first rows, found
    them all locked by the first and came back empty."""
    await queue.enqueue_many([msg(i) for i in range(300)])
    a, b = await worker(queue), await worker(queue)
    async with queue.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()  # the first claim's rows stay locked until it commits
        first = await conn.fetch(query("claim"), a, 100, "default")
        second = await queue.claim(b, 100)
        await tx.commit()
    assert len(first) == len(second) == 100
    assert not {r["id"] for r in first} & {j.id for j in second}
    assert {j.id for j in await queue.claim(b, 200)}.isdisjoint(
        {r["id"] for r in first} | {j.id for j in second}
    )


async def test_a_claim_reads_only_what_it_takes_even_before_the_statistics(queue: Queue) -> None:
    """Right after a large enqueue, before autovacuum has analysed the table (a new deployment,
    a burst), the claim still looks its jobs up by key: the planner, guessing, had scanned the
    whole table once per candidate (0.5 s per claim at 20,000 queued jobs)."""
    await queue.enqueue_many([msg(i) for i in range(3000)])
    await fetch(queue, "DELETE FROM pg_statistic WHERE starelid = 'dispatcher.jobs'::regclass")
    owner = await worker(queue)
    nodes = await explained(queue.pool, query("claim"), owner, 100, "default")
    scanned = [
        n for n in nodes if n.get("Relation Name") == "jobs" and n["Node Type"] == "Seq Scan"
    ]
    assert not scanned, [(n["Node Type"], n["Actual Rows"] * n["Actual Loops"]) for n in scanned]


async def test_a_claim_locks_and_looks_up_each_job_it_takes_once(queue: Queue) -> None:
    """The lane's offer locks a job (re-reading it as it is now); the claim then updates the
    jobs it picked by key, not locking and looking them up a second time, and not comparing
    every picked job with every other (a fifth of a claim's Postgres time, ~5 us per job)."""
    await queue.enqueue_many([msg(i) for i in range(300)])
    owner = await worker(queue)
    nodes = await explained(queue.pool, query("claim"), owner, 100, "default")
    locked = sum(
        n["Actual Rows"] * n["Actual Loops"] for n in nodes if n["Node Type"] == "LockRows"
    )
    assert locked == 100, f"{locked} row locks for a claim of 100"
    compared = sum(n.get("Rows Removed by Join Filter", 0) for n in nodes)
    assert compared < 100, f"{compared} rows compared and dropped by a join filter"


async def test_a_slow_worker_that_lost_its_jobs_writes_nothing_while_another_holds_them(
    pg_dsn: str,
) -> None:
    """Two daemons on one database: A, alive but slow, lost its lease; B took its jobs over.

    A's late launch and late settlement (a result arriving while B holds the job, and after B
    settled it) must change nothing: the final state is B's.
    """
    async with Queue.connect(pg_dsn) as qa, Queue.connect(pg_dsn) as qb:
        ids = [e.id for e in await qa.enqueue_many([msg(i) for i in range(2)])]
        a, b = await worker(qa), await worker(qb)
        unsent, on_wire = sorted(await qa.claim(a, 10), key=lambda j: j.id)
        # A launches one job (its send then hangs); the other waits in its buffer for a token.
        assert await qa.launch(a, [on_wire]) == {on_wire.id}
        await silence(qa, a)
        assert await qb.recover("resend") == Recovered(requeued=1, in_doubt=1)
        taken = {j.id: j for j in await qb.claim(b, 10)}
        assert sorted(taken) == ids
        assert all(taken[j.id].token != j.token for j in (unsent, on_wire))

        # A wakes up: the job it never launched may not go out; B's launch holds.
        assert await qa.launch(a, [unsent]) == set()
        assert await qb.launch(b, list(taken.values())) == set(ids)
        # A's hung send returns while B's is on the wire: A's result is not recorded.
        late = [
            Settlement(on_wire.id, on_wire.token, "failed", outcome="rejected", error="late"),
            Settlement(unsent.id, unsent.token, "queued", outcome="throttled", delay=60.0),
        ]
        assert await qa.settle(late) == set()
        for job in taken.values():
            row = await job_row(qb, job.id)
            assert (row["state"], row["lease_owner"], row["lease_token"]) == (
                "in_flight",
                b,
                job.token,
            )
        assert await qb.settle(
            [
                Settlement(j.id, j.token, "sent", ses_message_id=f"ses-b-{j.id}")
                for j in taken.values()
            ]
        ) == set(ids)
        # And once more after B settled: still nothing.
        assert await qa.settle(late) == set()
        for job_id in ids:
            view = await qb.get(job_id)
            assert view is not None
            assert (view.state, view.ses_message_id, view.last_error) == (
                "sent",
                f"ses-b-{job_id}",
                None,
            )
        # Resend counted the attempt A may have used once; A's late result added none.
        attempts = {i: (await job_row(qb, i))["attempts"] for i in ids}
        assert attempts == {unsent.id: 0, on_wire.id: 1}


# --- workers and recovery ----------------------------------------------------------------------


async def test_concurrent_recoveries_take_each_job_once(queue: Queue) -> None:
    dead = await worker(queue)
    await queue.enqueue_many([msg(i) for i in range(200)])
    jobs = await queue.claim(dead, 200)
    await queue.launch(dead, jobs[:80])
    await silence(queue, dead)
    results = await asyncio.gather(*(queue.recover("hold") for _ in range(4)))
    assert sum(r.requeued for r in results) == 120
    assert sum(r.in_doubt for r in results) == 80
    counts = await queue.counts()
    assert (counts["queued"], counts["unknown"], counts["claimed"]) == (120, 80, 0)


async def test_register_and_heartbeat(queue: Queue) -> None:
    owner = uuid.uuid4()
    assert await queue.heartbeat(owner) is False
    await queue.register_worker(owner, 12.5)
    await queue.register_worker(owner, 12.5)  # again: harmless
    assert await queue.heartbeat(owner) is True
    [row] = await fetch(queue, "SELECT * FROM dispatcher.workers")
    assert (row["id"], row["lease_seconds"]) == (owner, 12.5)
    assert row["hostname"] and row["pid"] > 0
    await queue.unregister_worker(owner)
    assert await queue.heartbeat(owner) is False


# --- inspection and operator actions ------------------------------------------------------------


async def _unknown(queue: Queue, n: int) -> list[int]:
    owner = await worker(queue)
    await queue.enqueue_many([msg(i) for i in range(n)])
    jobs = await queue.claim(owner, n)
    await queue.launch(owner, jobs)
    await silence(queue, owner)
    assert await queue.recover("hold") == Recovered(0, n)
    return sorted(j.id for j in jobs)


async def test_cancel_only_queued_or_unknown(queue: Queue) -> None:
    [unknown] = await _unknown(queue, 1)
    ids = [r.id for r in await queue.enqueue_many([msg(i) for i in range(3)])]
    owner = uuid.uuid4()
    claimed, to_send = await queue.claim(owner, 2)
    await queue.launch(owner, [to_send])
    await queue.settle([Settlement(to_send.id, to_send.token, "sent")])
    queued = ids[2]

    cancelled = await queue.cancel([unknown, claimed.id, to_send.id, queued, 999_999])
    assert cancelled == sorted([unknown, queued])
    assert (await job_row(queue, claimed.id))["state"] == "claimed"
    assert (await job_row(queue, to_send.id))["state"] == "sent"
    assert await queue.claim(owner, 10) == []
    assert await queue.cancel([]) == []


async def test_get(queue: Queue) -> None:
    assert await queue.get(12345) is None
    result = await queue.enqueue(
        msg(7, cc=("c@example.com",), bcc=("b@example.com",), idempotency_key="k7", priority=2)
    )
    view = await queue.get(result.id)
    assert view is not None
    assert (view.id, view.state, view.attempts, view.priority) == (result.id, "queued", 0, 2)
    assert (view.to, view.cc, view.bcc) == (
        ("r7@example.com",),
        ("c@example.com",),
        ("b@example.com",),
    )
    assert (view.subject, view.from_addr, view.idempotency_key) == (
        "Message 7",
        "sender@example.com",
        "k7",
    )
    assert view.sent_at is None and view.ses_message_id is None and view.last_error is None
    assert view.created_at.tzinfo is not None and view.run_at >= view.created_at


# --- giving connections back -----------------------------------------------------------------


async def test_a_queue_statement_gives_its_connection_back_without_the_reset(pg_dsn: str) -> None:
    """The reset on release (a round trip) is skipped after statements that leave no session
    state; any other use of a pooled connection, or a failed one, is still reset."""
    async with Queue.connect(pg_dsn, min_size=1, max_size=1) as queue:
        pool = queue.pool

        async def setting() -> str:
            async with pool.acquire() as conn:
                return str(await conn.fetchval("SHOW application_name"))

        async with stateless(pool) as conn:
            await conn.execute("SET application_name = 'left behind'")  # (a misuse, to see it)
        assert await setting() == "left behind"  # not reset: no round trip was spent on it
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'left behind'")
        assert await setting() == ""  # an ordinary borrower is reset as before
        with pytest.raises(asyncpg.PostgresError):
            async with stateless(pool) as conn:
                await conn.execute("SET application_name = 'failed'")
                await conn.execute("SELECT 1/0")
        assert await setting() == ""  # a failed statement: reset
        owner = await worker(queue)
        assert await queue.hold_session(owner)
        await queue.end_session(owner)  # the session lock is freed by the reset, as before
        async with pool.acquire() as conn:
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )
        assert held == 0
        assert (await queue.counts())["queued"] == 0


async def test_address_lists_reach_postgres_as_given(queue: Queue) -> None:
    """The array literals enqueue_many sends keep every character of every element."""
    hostile = [
        'Jane "J" Doe <jane@example.com>',
        "back\\slash <b@example.com>",
        "{braces}, commas <c@example.com>",
        "NULL",
        "  spaced  ",
        "é€ <u@example.com>",
        "",
    ]
    for values in ([], hostile[:1], hostile):
        got = await fetch(queue, "SELECT $1::text::text[] AS a", enqueue.array_literal(values))
        assert got[0]["a"] == values


async def test_a_column_alike_in_a_whole_batch_is_sent_empty_and_stored_as_given(
    queue: Queue,
) -> None:
    """A uniform column goes as an empty array (nothing for asyncpg to encode per row); the
    rows store the same values as a batch where the column differs."""
    from datetime import UTC, datetime

    plain = [msg(i) for i in range(3)]
    params = enqueue._params(enqueue.validate_all(plain))
    assert [len(p) for p in params] == [0, 3, 3, 0, 0, 0, 3, 3] + [0] * 6 + [3] + [0] * 3
    later = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    varied = msg(
        9,
        cc=("c@example.com",),
        bcc=("b@example.com",),
        reply_to=("r@example.com",),
        html="<p>x</p>",
        configuration_set="cs",
        tags={"k": "v"},
        priority=7,
        send_after=later,
        idempotency_key="key-9",
    )
    ids = [r.id for r in await queue.enqueue_many([*plain, varied])]
    rows = await fetch(
        queue,
        "SELECT m.cc_addrs, m.bcc_addrs, m.reply_to, m.tags::text AS tags, m.html_body,"
        " m.configuration_set, m.idempotency_key, j.priority, j.scheduled, j.run_at"
        " FROM dispatcher.messages m JOIN dispatcher.jobs j USING (id)"
        " WHERE id = ANY($1::bigint[]) ORDER BY id",
        ids,
    )
    for row in rows[:3]:
        assert (row["cc_addrs"], row["bcc_addrs"], row["reply_to"], row["tags"]) == (
            [],
            [],
            [],
            "{}",
        )
        assert (row["html_body"], row["configuration_set"], row["idempotency_key"]) == (None,) * 3
        assert (row["priority"], row["scheduled"]) == (0, False)
    last = rows[3]
    assert (last["cc_addrs"], last["bcc_addrs"], last["reply_to"]) == (
        ["c@example.com"],
        ["b@example.com"],
        ["r@example.com"],
    )
    assert json.loads(last["tags"]) == {"k": "v"}
    assert (last["html_body"], last["configuration_set"], last["idempotency_key"]) == (
        "<p>x</p>",
        "cs",
        "key-9",
    )
    assert (last["priority"], last["scheduled"], last["run_at"]) == (7, True, later)
    uniform = await queue.enqueue_many(
        [msg(20, priority=3, cc=("c@example.com",)), msg(21, priority=3, cc=("c@example.com",))]
    )
    again = await fetch(
        queue,
        "SELECT m.cc_addrs, j.priority FROM dispatcher.messages m JOIN dispatcher.jobs j"
        " USING (id) WHERE id = ANY($1::bigint[])",
        [r.id for r in uniform],
    )
    assert [(r["cc_addrs"], r["priority"]) for r in again] == [(["c@example.com"], 3)] * 2

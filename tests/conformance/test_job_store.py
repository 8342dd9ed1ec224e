"""One suite, two stores: the Postgres queue and its in-memory twin keep the same promises.

Leases, fencing tokens, recovery and the states a job goes through, as the worker relies on
them. What only Postgres adds (concurrent sessions, SKIP LOCKED, statement sizes) is tested in
tests/integration/test_queue.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatcher.domain.jobs import STATES, ClaimedJob, NewMessage, Pending, Recovered
from dispatcher.domain.jobs import Settlement as S
from dispatcher.errors import InputError
from dispatcher.queue.memory import MemoryJobStore
from dispatcher.queue.repository import Queue
from tests.support.pg import PgCluster

LEASE = 30.0
Store = Queue | MemoryJobStore


@dataclass
class Harness:
    """A store plus the one thing the tests cannot do through it: make a worker look dead."""

    store: Store

    async def silence(self, owner: uuid.UUID) -> None:
        """`owner`'s last heartbeat is now older than its lease."""
        if isinstance(self.store, MemoryJobStore):
            self.store._workers[owner].heartbeat_at -= timedelta(hours=1)
            return
        async with self.store.pool.acquire() as conn:
            await conn.execute(
                "UPDATE dispatcher.workers SET heartbeat_at = now() - interval '1 hour' "
                "WHERE id = $1",
                owner,
            )

    async def age(self, owner: uuid.UUID, seconds: float, *, from_start: bool = False) -> None:
        """`owner`'s last heartbeat is `seconds` old (`from_start`: that long before the
        database server started)."""
        if isinstance(self.store, MemoryJobStore):
            if from_start:
                self.store.restart()
            base = self.store.server_started or datetime.now(UTC)
            self.store._workers[owner].heartbeat_at = base - timedelta(seconds=seconds)
            return
        base_sql = "pg_postmaster_start_time()" if from_start else "now()"
        async with self.store.pool.acquire() as conn:
            up = await conn.fetchval(
                "SELECT extract(epoch FROM now() - pg_postmaster_start_time())"
            )
            if not from_start and up < seconds + 0.5:  # a heartbeat must be since the start
                await asyncio.sleep(float(seconds + 0.5 - float(up)))
            await conn.execute(
                f"UPDATE dispatcher.workers SET heartbeat_at = {base_sql} - make_interval("
                "secs => $2) WHERE id = $1",
                owner,
                seconds,
            )

    async def state(self, job_id: int) -> str:
        view = await self.store.get(job_id)
        assert view is not None
        return view.state

    async def worker(self) -> uuid.UUID:
        owner = uuid.uuid4()
        await self.store.register_worker(owner, LEASE)
        return owner


@pytest.fixture(params=["memory", "postgres"])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        yield Harness(MemoryJobStore())
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")  # started only for this side
    dsn = await cluster.create_database()
    try:
        async with Queue.connect(dsn) as queue:
            yield Harness(queue)
    finally:
        await cluster.drop_database(dsn)


def msg(n: int = 0, **changes: Any) -> NewMessage:
    fields: dict[str, Any] = {
        "from_addr": "sender@example.com",
        "to": (f"r{n}@example.com",),
        "subject": f"Message {n}",
        "text": "Hello",
    }
    fields.update(changes)
    return NewMessage(**fields)


# --- enqueue -----------------------------------------------------------------------------------


async def test_the_worker_gets_the_message_as_it_was_queued(h: Harness) -> None:
    sent = msg(
        1,
        cc=("c@example.com",),
        bcc=("b@example.com",),
        reply_to=("r@example.com",),
        html="<p>Hi</p>",
        configuration_set="cs",
        tags={"kind": "welcome"},
        priority=3,
    )
    [enq] = await h.store.enqueue_many([sent])
    [job] = await h.store.claim(uuid.uuid4(), 1)
    m = job.message
    assert (job.id, job.attempts, job.priority, job.campaign_id) == (enq.id, 0, 3, None)
    assert (m.from_addr, m.to, m.cc, m.bcc, m.reply_to) == (
        sent.from_addr,
        sent.to,
        sent.cc,
        sent.bcc,
        sent.reply_to,
    )
    assert (m.subject, m.text, m.html, m.configuration_set, m.tags) == (
        "Message 1",
        "Hello",
        "<p>Hi</p>",
        "cs",
        {"kind": "welcome"},
    )


async def test_same_idempotency_key_twice_returns_the_first_id(h: Harness) -> None:
    first = await h.store.enqueue(msg(1, idempotency_key="k"))
    again = await h.store.enqueue(msg(2, idempotency_key="k"))
    assert first.created and not again.created and again.id == first.id
    assert (await h.store.counts())["queued"] == 1


async def test_one_bad_message_rejects_the_whole_batch(h: Harness) -> None:
    with pytest.raises(InputError, match="message 1"):
        await h.store.enqueue_many([msg(0), msg(1, to=())])
    assert await h.store.counts() == dict.fromkeys(STATES, 0)


# --- claim -------------------------------------------------------------------------------------


async def test_claim_takes_highest_priority_first(h: Harness) -> None:
    results = await h.store.enqueue_many(
        [msg(i, priority=p) for i, p in enumerate([0, 5, -3, 5, 1])]
    )
    ids = [r.id for r in results]
    owner = uuid.uuid4()
    [first] = await h.store.claim(owner, 1)
    assert first.id == ids[1]
    rest = await h.store.claim(owner, 10)
    assert [j.id for j in rest] == [ids[3], ids[4], ids[0], ids[2]]
    assert await h.store.claim(owner, 10) == []
    assert await h.store.claim(owner, 0) == []


async def test_a_claim_never_hands_out_a_job_twice_and_each_claim_has_a_new_token(
    h: Harness,
) -> None:
    await h.store.enqueue_many([msg(i) for i in range(5)])
    a = await h.store.claim(uuid.uuid4(), 3)
    b = await h.store.claim(uuid.uuid4(), 3)
    assert len(a) == 3 and len(b) == 2
    assert not {j.id for j in a} & {j.id for j in b}
    assert {j.token for j in a}.isdisjoint({j.token for j in b})


async def test_mail_scheduled_for_later_is_not_claimed(h: Harness) -> None:
    now = datetime.now(UTC)
    later = await h.store.enqueue(msg(1, send_after=now + timedelta(hours=1)))
    due = await h.store.enqueue(msg(2, send_after=now - timedelta(seconds=1)))
    claimed = await h.store.claim(uuid.uuid4(), 10)
    assert [j.id for j in claimed] == [due.id]
    assert await h.state(later.id) == "queued"


# --- launch and settle: the fencing token ------------------------------------------------------


async def test_launch_only_with_the_current_token_and_owner(h: Harness) -> None:
    await h.store.enqueue(msg())
    owner = uuid.uuid4()
    [job] = await h.store.claim(owner, 1)
    assert await h.store.launch(owner, [(job.id, job.token + 1)]) == set()
    assert await h.store.launch(uuid.uuid4(), [job]) == set()
    assert await h.state(job.id) == "claimed"
    assert await h.store.launch(owner, [job]) == {job.id}
    assert await h.state(job.id) == "in_flight"
    # The same launch again (its answer was lost to a cut connection) is the same launch.
    assert await h.store.launch(owner, [job]) == {job.id}
    assert await h.store.launch(uuid.uuid4(), [job]) == set()


async def test_orphan_claims_go_back_but_held_ones_stay(h: Harness) -> None:
    await h.store.enqueue_many([msg(i) for i in range(3)])
    owner = uuid.uuid4()
    jobs = await h.store.claim(owner, 3)
    assert await h.store.release_orphans(owner, [jobs[0].id]) == 2
    assert [await h.state(j.id) for j in jobs] == ["claimed", "queued", "queued"]
    again = await h.store.claim(uuid.uuid4(), 3)
    assert sorted(j.id for j in again) == sorted(j.id for j in jobs[1:])


async def test_a_worker_that_lost_its_lease_can_neither_launch_nor_settle(h: Harness) -> None:
    [enq] = await h.store.enqueue_many([msg()])
    a, b = await h.worker(), await h.worker()
    [job_a] = await h.store.claim(a, 10)
    await h.silence(a)
    assert await h.store.recover("hold") == Recovered(requeued=1, in_doubt=0)
    assert await h.store.heartbeat(a) is False  # A learns it was declared dead

    [job_b] = await h.store.claim(b, 10)
    assert job_b.id == job_a.id == enq.id and job_b.token != job_a.token
    assert await h.store.launch(a, [job_a]) == set()
    assert await h.store.launch(b, [job_b]) == {enq.id}
    late = S(enq.id, job_a.token, "failed", outcome="rejected", error="late")
    assert await h.store.settle([late]) == set()  # while B's send is on the wire
    sent = S(enq.id, job_b.token, "sent", ses_message_id="ses-b", outcome="sent")
    assert await h.store.settle([sent]) == {enq.id}
    assert await h.store.settle([late]) == set()  # and after it
    view = await h.store.get(enq.id)
    assert view is not None
    assert (view.state, view.ses_message_id, view.last_error) == ("sent", "ses-b", None)
    assert view.sent_at is not None


async def test_a_result_for_mail_the_reaper_took_is_kept_when_it_was_sent(h: Harness) -> None:
    """The reaper marked it unknown (or requeued it), but the send did go out: that is the
    truth and is recorded; a failure arriving that late changes nothing."""
    await h.store.enqueue_many([msg(1), msg(2)])
    owner = await h.worker()
    jobs = await h.store.claim(owner, 2)
    await h.store.launch(owner, jobs)
    await h.silence(owner)
    assert await h.store.recover("hold") == Recovered(0, 2)
    assert await h.store.settle([S(jobs[0].id, jobs[0].token, "sent", "ses-1")]) == {jobs[0].id}
    assert await h.state(jobs[0].id) == "sent"
    assert await h.store.settle([S(jobs[1].id, jobs[1].token, "sent", "ses-2")]) == {jobs[1].id}
    owner2 = await h.worker()
    await h.store.enqueue(msg(3))
    [other] = await h.store.claim(owner2, 1)
    await h.store.launch(owner2, [other])
    await h.silence(owner2)
    assert await h.store.recover("resend") == Recovered(0, 1)
    late = S(other.id, other.token, "failed", outcome="rejected")
    assert await h.store.settle([late]) == set()  # requeued: only "sent" is still news
    assert await h.state(other.id) == "queued"


async def test_settle_records_a_batch_whose_results_are_alike(h: Harness) -> None:
    """The same state, outcome, error, attempt and delay for every result (read once by the
    statement, not per row): each job gets all of them, and its own SES message id."""
    ids = [r.id for r in await h.store.enqueue_many([msg(i) for i in range(3)])]
    owner = await h.worker()
    jobs = {j.id: j for j in await h.store.claim(owner, 10)}
    await h.store.launch(owner, list(jobs.values()))
    before = datetime.now(UTC)
    retry = [
        S(i, jobs[i].token, "queued", f"m-{i}", "transient", "timeout", True, 3600) for i in ids
    ]
    assert await h.store.settle(retry) == set(ids)
    for i in ids:
        view = await h.store.get(i)
        assert view is not None and (view.state, view.attempts) == ("queued", 1)
        assert (view.last_outcome, view.last_error) == ("transient", "timeout")
        assert view.ses_message_id == f"m-{i}" and view.run_at > before + timedelta(seconds=3500)


async def test_settle_records_each_result(h: Harness) -> None:
    ids = [r.id for r in await h.store.enqueue_many([msg(i) for i in range(4)])]
    owner = await h.worker()
    jobs = {j.id: j for j in await h.store.claim(owner, 10)}
    await h.store.launch(owner, list(jobs.values()))
    before = datetime.now(UTC)
    t = [jobs[i].token for i in ids]
    recorded = await h.store.settle(
        [
            S(ids[0], t[0], "sent", ses_message_id="m-0", outcome="sent"),
            S(ids[1], t[1], "failed", outcome="rejected", error="bad address"),
            S(ids[2], t[2], "queued", outcome="transient", attempt_used=True, delay=3600),
            S(ids[3], t[3], "unknown", outcome="in_doubt", error="timeout"),
        ]
    )
    assert recorded == set(ids)
    views = [await h.store.get(i) for i in ids]
    assert [v.state if v else None for v in views] == ["sent", "failed", "queued", "unknown"]
    retry = views[2]
    assert retry is not None and retry.attempts == 1 and retry.last_outcome == "transient"
    assert retry.run_at > before + timedelta(seconds=3500)
    assert await h.store.claim(owner, 10) == []  # the retry waits for its delay
    assert views[1] is not None and views[1].attempts == 0
    assert await h.store.settle([]) == set()
    with pytest.raises(InputError, match="cannot settle to state 'claimed'"):
        await h.store.settle([S(1, 1, "claimed")])  # type: ignore[arg-type]


async def test_release_returns_jobs_without_using_an_attempt(h: Harness) -> None:
    ids = [r.id for r in await h.store.enqueue_many([msg(i) for i in range(3)])]
    owner = uuid.uuid4()
    jobs = await h.store.claim(owner, 10)
    assert await h.store.release(uuid.uuid4(), ids) == 0  # not the holder
    assert await h.store.release(owner, ids[:2]) == 2
    assert await h.store.release(owner, [ids[2]], delay=3600) == 1
    views = [await h.store.get(i) for i in ids]
    assert all(v is not None and v.state == "queued" and v.attempts == 0 for v in views)
    again = await h.store.claim(owner, 10)
    assert sorted(j.id for j in again) == ids[:2]  # the delayed one is not due yet
    assert all(j.token != jobs[0].token for j in again)
    assert await h.store.release(owner, []) == 0


# --- workers and recovery ----------------------------------------------------------------------


async def _claimed_and_in_flight(h: Harness, owner: uuid.UUID) -> tuple[ClaimedJob, ClaimedJob]:
    await h.store.enqueue_many([msg(1), msg(2)])
    claimed, flying = await h.store.claim(owner, 2)
    assert await h.store.launch(owner, [flying]) == {flying.id}
    return claimed, flying


async def test_recover_hold(h: Harness) -> None:
    dead, live = await h.worker(), await h.worker()
    claimed, flying = await _claimed_and_in_flight(h, dead)
    live_claimed, live_flying = await _claimed_and_in_flight(h, live)
    await h.silence(dead)
    assert await h.store.recover("hold") == Recovered(requeued=1, in_doubt=1)
    c, f = await h.store.get(claimed.id), await h.store.get(flying.id)
    assert c is not None and (c.state, c.attempts) == ("queued", 0)
    assert f is not None and (f.state, f.attempts, f.last_outcome) == ("unknown", 0, "in_doubt")
    assert f.last_error is not None and "worker lost" in f.last_error
    assert await h.state(live_claimed.id) == "claimed"
    assert await h.state(live_flying.id) == "in_flight"
    assert await h.store.heartbeat(live) is True
    assert await h.store.recover("hold") == Recovered(0, 0)
    with pytest.raises(InputError, match="'hold' or 'resend'"):
        await h.store.recover("drop")  # type: ignore[arg-type]


async def test_recover_resend_requeues_in_doubt_mail_with_an_attempt(h: Harness) -> None:
    dead = await h.worker()
    await h.store.enqueue(msg(0))
    [job] = await h.store.claim(dead, 1)
    await h.store.launch(dead, [job])
    await h.store.settle([S(job.id, job.token, "queued", attempt_used=True)])
    [claimed] = await h.store.claim(dead, 1)
    assert claimed.attempts == 1
    await h.store.enqueue(msg(1))
    [flying] = await h.store.claim(dead, 1)
    await h.store.launch(dead, [flying])
    await h.silence(dead)
    assert await h.store.recover("resend") == Recovered(requeued=1, in_doubt=1)
    c, f = await h.store.get(claimed.id), await h.store.get(flying.id)
    assert c is not None and (c.state, c.attempts) == ("queued", 1)
    assert f is not None and (f.state, f.attempts, f.last_outcome) == ("queued", 1, "in_doubt")


async def test_recover_takes_jobs_of_a_worker_that_left_or_never_registered(h: Harness) -> None:
    gone = await h.worker()
    await h.store.enqueue_many([msg(1), msg(2)])
    await h.store.claim(gone, 1)
    await h.store.claim(uuid.uuid4(), 1)  # never registered
    await h.store.unregister_worker(gone)
    assert await h.store.recover("hold") == Recovered(requeued=2, in_doubt=0)
    assert (await h.store.counts())["queued"] == 2


async def test_a_worker_whose_session_ended_is_recovered_once_its_heartbeat_is_a_grace_old(
    h: Harness,
) -> None:
    dead, live = await h.worker(), await h.worker()
    assert await h.store.hold_session(dead) and await h.store.hold_session(live)
    assert await h.store.hold_session(live)  # held already: the same lock
    claimed, flying = await _claimed_and_in_flight(h, dead)
    live_claimed, live_flying = await _claimed_and_in_flight(h, live)
    await h.store.end_session(dead)  # its process died: Postgres ended its session
    # Its heartbeat is fresh: it may be a live worker taking its lock again after a cut.
    assert await h.store.recover("hold", session_grace=1.0) == Recovered(0, 0)
    await h.age(dead, 2.0)
    await h.age(live, 2.0)  # a live one that missed heartbeats keeps its jobs: its lock is held
    assert await h.store.recover("hold") == Recovered(0, 0)  # leases only: 2 s is no expiry
    assert await h.store.recover("hold", session_grace=1.0) == Recovered(requeued=1, in_doubt=1)
    assert (await h.state(claimed.id), await h.state(flying.id)) == ("queued", "unknown")
    assert (await h.state(live_claimed.id), await h.state(live_flying.id)) == (
        "claimed",
        "in_flight",
    )
    assert await h.store.heartbeat(dead) is False  # declared dead: it must register again
    assert await h.store.heartbeat(live) is True
    await h.store.end_session(live)
    await h.store.end_session(live)  # again: nothing


async def test_a_free_lock_says_nothing_of_a_worker_not_seen_since_the_server_started(
    h: Harness,
) -> None:
    owner = uuid.uuid4()
    await h.store.register_worker(owner, 10 * 365 * 86400.0)
    await h.store.enqueue(msg(0))
    [job] = await h.store.claim(owner, 1)
    await h.age(owner, 1.0, from_start=True)  # a restart ended its session before it came back
    assert await h.store.recover("hold", session_grace=1.0) == Recovered(0, 0)
    assert await h.state(job.id) == "claimed"
    assert await h.store.heartbeat(owner) is True


async def test_register_and_heartbeat(h: Harness) -> None:
    owner = uuid.uuid4()
    assert await h.store.heartbeat(owner) is False
    await h.store.register_worker(owner, 12.5)
    await h.store.register_worker(owner, 12.5)  # again: harmless
    assert await h.store.heartbeat(owner) is True
    await h.store.unregister_worker(owner)
    assert await h.store.heartbeat(owner) is False


async def test_rate_share_counts_the_other_busy_workers(h: Harness) -> None:
    a, b, c = await h.worker(), await h.worker(), await h.worker()
    assert (await h.store.rate_share(a, True, 60)).others == 0
    assert (await h.store.rate_share(b, True, 60)).others == 1
    assert (await h.store.rate_share(c, False, 60)).others == 2  # idle: no part, sees the others
    assert (await h.store.rate_share(a, False, 60)).others == 1  # a went idle: only b counts
    assert (await h.store.rate_share(c, True, 60)).others == 1


async def test_rate_share_ranks_the_busy_workers_alike_in_each(h: Harness) -> None:
    """Each busy worker learns its own turn (0..n-1) for SES's one bulk call a second: the
    turns of the busy ones are all different, whatever order they count in."""
    owners = [await h.worker() for _ in range(4)]
    for owner in owners:
        await h.store.rate_share(owner, True, 60)
    seen = [await h.store.rate_share(owner, True, 60) for owner in reversed(owners)]
    assert [p.others for p in seen] == [3, 3, 3, 3]
    assert sorted(p.before for p in seen) == [0, 1, 2, 3]
    await h.store.rate_share(owners[0], False, 60)  # one goes idle: the others close ranks
    rest = [await h.store.rate_share(owner, True, 60) for owner in owners[1:]]
    assert sorted(p.before for p in rest) == [0, 1, 2]


# --- inspection and operator actions -----------------------------------------------------------


async def test_counts_lists_every_state(h: Harness) -> None:
    assert await h.store.counts() == dict.fromkeys(STATES, 0)
    await h.store.enqueue_many([msg(i) for i in range(3)])
    owner = uuid.uuid4()
    [job] = await h.store.claim(owner, 1)
    await h.store.launch(owner, [job])
    counts = await h.store.counts()
    assert list(counts) == list(STATES)
    assert counts == {**dict.fromkeys(STATES, 0), "queued": 2, "in_flight": 1}


async def test_pending(h: Harness) -> None:
    assert await h.store.pending() == Pending(0, 0, None)
    now = datetime.now(UTC)
    await h.store.enqueue_many(
        [
            msg(1),
            msg(2),
            msg(3, send_after=now + timedelta(seconds=30)),
            msg(4, send_after=now + timedelta(hours=2)),
        ]
    )
    owner = uuid.uuid4()
    [job] = await h.store.claim(owner, 1)
    [other] = await h.store.claim(owner, 1)
    await h.store.settle([S(other.id, other.token, "sent")])  # done: not pending
    pending = await h.store.pending()
    assert (pending.waiting, pending.scheduled_later) == (1, 2)  # the claimed job
    assert pending.next_run_at is not None
    assert now + timedelta(seconds=29) < pending.next_run_at < now + timedelta(seconds=31)
    assert (await h.store.pending(60)).waiting == 2  # the 30 s one is within a minute
    assert (await h.store.pending(60)).scheduled_later == 1
    assert job.id != other.id


async def test_held_reports_mail_waiting_out_a_configuration_error(h: Harness) -> None:
    assert await h.store.held() == (await h.store.held()).__class__(0, None)
    await h.store.enqueue_many([msg(1), msg(2)])
    owner = await h.worker()
    a, b = await h.store.claim(owner, 2)
    await h.store.settle(
        [
            S(a.id, a.token, "queued", outcome="config_error", error="no such set", delay=600),
            S(b.id, b.token, "queued", outcome="transient", error="503", delay=600),
        ]
    )
    held = await h.store.held()
    assert (held.count, held.reason) == (1, "no such set")


async def test_list_and_resolve_unknown(h: Harness) -> None:
    owner = await h.worker()
    await h.store.enqueue_many([msg(i) for i in range(4)])
    jobs = await h.store.claim(owner, 4)
    await h.store.launch(owner, jobs)
    await h.silence(owner)
    assert await h.store.recover("hold") == Recovered(0, 4)
    ids = sorted(j.id for j in jobs)
    unknown = await h.store.list_unknown()
    assert [u.id for u in unknown] == ids
    assert unknown[0].to == ("r0@example.com",) and unknown[0].subject == "Message 0"
    assert [u.id for u in await h.store.list_unknown(limit=2)] == ids[:2]
    assert await h.store.resolve_unknown([ids[0], 999_999], "sent") == [ids[0]]
    assert await h.store.resolve_unknown([ids[1]], "failed") == [ids[1]]
    assert await h.store.resolve_unknown([ids[0]], "queued") == []  # no longer unknown
    assert await h.store.resolve_unknown(None, "queued") == ids[2:]
    assert [await h.state(i) for i in ids] == ["sent", "failed", "queued", "queued"]
    failed = await h.store.get(ids[1])
    assert failed is not None and failed.last_error == "resolved by operator"
    sent = await h.store.get(ids[0])  # retention ages sent mail by sent_at: resolving sets it
    assert sent is not None and sent.sent_at is not None
    resent = await h.store.claim(uuid.uuid4(), 10)
    assert sorted(j.id for j in resent) == ids[2:]
    with pytest.raises(InputError, match="queued, sent or failed"):
        await h.store.resolve_unknown(None, "cancelled")  # type: ignore[arg-type]


async def test_cancel_only_queued_or_unknown(h: Harness) -> None:
    dead = await h.worker()
    await h.store.enqueue(msg(9))
    [doubt] = await h.store.claim(dead, 1)
    await h.store.launch(dead, [doubt])
    await h.silence(dead)
    await h.store.recover("hold")
    ids = [r.id for r in await h.store.enqueue_many([msg(i) for i in range(3)])]
    owner = uuid.uuid4()
    claimed, to_send = await h.store.claim(owner, 2)
    await h.store.launch(owner, [to_send])
    await h.store.settle([S(to_send.id, to_send.token, "sent")])
    cancelled = await h.store.cancel([doubt.id, claimed.id, to_send.id, ids[2], 999_999])
    assert cancelled == sorted([doubt.id, ids[2]])
    assert await h.state(claimed.id) == "claimed"
    assert await h.state(to_send.id) == "sent"
    assert await h.store.claim(owner, 10) == []
    assert await h.store.cancel([]) == []
    assert await h.store.get(12345) is None

"""Several accounts in Postgres (migration 0021): every way mail enters gets the account the
rules name, the same as the Python rules; mail already waiting follows a change of the rules; a
paused account's mail moves to its fallback only where a route opted in; each account has its
own warm-up ramp and is judged by the reputation guard on its own numbers."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from types import SimpleNamespace
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

from dispatcher.accounts.routing import route
from dispatcher.accounts.settings import RouteSettings
from dispatcher.accounts.store import AccountStore
from dispatcher.accounts.watch import run_pause_watch
from dispatcher.campaigns.store import CampaignStore
from dispatcher.config.settings import GuardSettings
from dispatcher.domain.jobs import NewMessage
from dispatcher.errors import DatabaseError
from dispatcher.feedback.guard import Counts
from dispatcher.feedback.store import FeedbackStore
from dispatcher.feedback.watch import check_once
from dispatcher.pacing.warmup import WarmupSettings
from dispatcher.queue.repository import Queue
from dispatcher.worker.counters import Counters
from dispatcher.worker.holds import Holds
from dispatcher.worker.warmup_store import WarmupStore
from tests.support.dispatch import eventually
from tests.support.guard import event, send

ROUTES = (
    RouteSettings(account="b", from_domain=("b.example", "*.b.example")),
    RouteSettings(account="camp", campaign=("spring",)),
    RouteSettings(account="keyed", key=("shop",)),
    RouteSettings(account="tenant", tag=("tenant=acme",), fallback="a"),
)
ACCOUNTS = ["a", "b", "camp", "keyed", "tenant"]


async def account_of(queue: Queue, job_id: int) -> tuple[str, str | None]:
    async with queue.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT account, fallback FROM dispatcher.jobs WHERE id = $1", job_id
        )
    return row["account"], row["fallback"]


def message(from_addr: str, **kw: object) -> NewMessage:
    return NewMessage(from_addr=from_addr, to=("r@x.example",), subject="s", text="t", **kw)  # type: ignore[arg-type]


async def test_every_way_in_is_routed_as_the_python_rules_say(queue: Queue) -> None:
    store = AccountStore(queue.pool)
    await store.put(ACCOUNTS, ROUTES)
    async with queue.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO dispatcher.api_keys (id, name, secret_sha256) VALUES ('k1', 'shop', '')"
        )
        campaign_id = await conn.fetchval(
            "INSERT INTO dispatcher.campaigns (name, from_addr, subject, html) "
            "VALUES ('spring', 'x@a.example', 's', 'h') RETURNING id"
        )
        # An application's transaction (dispatcher.enqueue) and a campaign's rows.
        by_sql = await conn.fetchval(
            "SELECT dispatcher.enqueue('News <news@mail.B.example>', '{r@x.example}', 's', 't')"
        )
        campaign_job = await conn.fetchval(
            "INSERT INTO dispatcher.messages (from_addr, to_addrs, subject, campaign_id) "
            "VALUES ('x@a.example', '{r@x.example}', 's', $1) RETURNING id",
            campaign_id,
        )
        await conn.execute(
            "INSERT INTO dispatcher.jobs (id, recipients, campaign_id) VALUES ($1, 1, $2)",
            campaign_job,
            campaign_id,
        )
    keyed, tagged, plain = await queue.enqueue_many(
        [
            message("x@a.example", key_id="k1"),
            message("x@a.example", tags={"tenant": "acme"}),
            message("x@a.example"),
        ]
    )
    got = {
        "sql": await account_of(queue, by_sql),
        "campaign": await account_of(queue, campaign_job),
        "keyed": await account_of(queue, keyed.id),
        "tagged": await account_of(queue, tagged.id),
        "plain": await account_of(queue, plain.id),
    }
    python = {
        "sql": route(ROUTES, "a", from_addr="News <news@mail.B.example>"),
        "campaign": route(ROUTES, "a", from_addr="x@a.example", campaign=(1, "spring")),
        "keyed": route(ROUTES, "a", from_addr="x@a.example", key_name="shop"),
        "tagged": route(ROUTES, "a", from_addr="x@a.example", tags={"tenant": "acme"}),
        "plain": route(ROUTES, "a", from_addr="x@a.example"),
    }
    assert got == {k: (r.account, r.fallback) for k, r in python.items()}
    assert got["sql"] == ("b", None) and got["tagged"] == ("tenant", "a")


async def test_waiting_mail_follows_new_rules_and_a_pause_moves_only_opted_in_mail(
    queue: Queue,
) -> None:
    store = AccountStore(queue.pool)
    first = await queue.enqueue_many(
        [message("x@b.example"), message("x@b.example", tags={"tenant": "acme"})]
    )
    # Queued under the plain config: the one account, 'default'.
    assert [await account_of(queue, e.id) for e in first] == [("default", None)] * 2
    rules = (
        RouteSettings(account="b", tag=("tenant=acme",), fallback="a"),
        RouteSettings(account="b", from_domain=("b.example",)),
    )
    assert await store.put(["a", "b"], rules) == 2  # both rerouted at start
    assert [await account_of(queue, e.id) for e in first] == [("b", None), ("b", "a")]
    assert await store.put(["a", "b"], rules) == 0  # the same rules again: nothing to do

    # SES pauses b: its opted-in waiting mail moves to a, and so does new such mail.
    assert await store.mark_paused("b", "paused by SES") == 1
    assert [await account_of(queue, e.id) for e in first] == [("b", None), ("a", None)]
    (later,) = await queue.enqueue_many([message("y@b.example", tags={"tenant": "acme"})])
    assert await account_of(queue, later.id) == ("a", None)
    (overview_b,) = [r for r in await store.overview() if r.name == "b"]
    assert overview_b.paused_reason == "paused by SES" and overview_b.queued == 1

    # Back to one account: the trigger is off again and everything waits for 'default'.
    await store.mark_paused("b", None)
    await store.put(["default"], ())
    async with queue.pool.acquire() as conn:
        enabled = await conn.fetchval(
            "SELECT tgenabled <> 'D' FROM pg_trigger WHERE tgname = 'jobs_route'"
        )
        accounts = await conn.fetch("SELECT DISTINCT account FROM dispatcher.jobs")
        routes = await conn.fetchval("SELECT count(*) FROM dispatcher.routes")
    assert not enabled and routes == 0
    assert [r["account"] for r in accounts] == ["default"]
    assert json.dumps([r.name for r in await store.overview()]) == '["default"]'


async def test_each_account_ramps_up_on_its_own(queue: Queue) -> None:
    settings = WarmupSettings(enabled=True, schedule="100, 200")
    old, new = WarmupStore(queue.pool, settings), WarmupStore(queue.pool, settings, "new")
    assert (await old.take(100)).granted == 100
    async with queue.pool.acquire() as conn:  # the old account sent yesterday: day 2 today
        await conn.execute("UPDATE dispatcher.warmup_days SET day = day - 1")
    assert (await old.take(150)).granted == 150 and (await old.look()).cap == 200
    day = await new.take(150)  # a new account starts at day 1, its cap its own
    assert (day.day, day.cap, day.granted) == (1, 100, 100)


async def sent_with_bounces(queue: Queue, from_addr: str, n: int, bounces: int) -> list[int]:
    """n messages from `from_addr` sent (claimed, settled) and the first `bounces` of them
    hard-bounced (the events recorded and processed), as the daemon does it."""
    ids = [e.id for e in await queue.enqueue_many([message(from_addr) for _ in range(n)])]
    account, _ = await account_of(queue, ids[0])
    assert sorted(await send(queue, account)) == sorted(ids)
    feedback = FeedbackStore(queue.pool)
    for i, job_id in enumerate(ids[:bounces]):
        await event(feedback, job_id, "Bounce", [f"b{i}@x.example"])
    return ids


async def running_campaign(queue: Queue, name: str, from_addr: str) -> int:
    """A running campaign with one recipient waiting."""
    async with queue.pool.acquire() as conn:
        campaign_id: int = await conn.fetchval(
            "INSERT INTO dispatcher.campaigns (name, state, from_addr, subject, html) "
            "VALUES ($1, 'running', $2, 's', 'h') RETURNING id",
            name,
            from_addr,
        )
        job = await conn.fetchval(
            "INSERT INTO dispatcher.messages (from_addr, to_addrs, subject, campaign_id) "
            "VALUES ($1, '{r@x.example}', 's', $2) RETURNING id",
            from_addr,
            campaign_id,
        )
        await conn.execute(
            "INSERT INTO dispatcher.jobs (id, recipients, campaign_id) VALUES ($1, 1, $2)",
            job,
            campaign_id,
        )
    return campaign_id


async def test_the_guard_judges_each_account_on_its_own_numbers(queue: Queue) -> None:
    accounts = AccountStore(queue.pool)
    await accounts.put(["a", "b"], (RouteSettings(account="b", from_domain=("b.example",)),))
    await sent_with_bounces(queue, "x@a.example", 40, 0)
    await sent_with_bounces(queue, "x@b.example", 20, 2)  # 10 %; both together: 3.3 %
    counts = await accounts.guard_counts(3600.0)
    assert counts == {
        "a": Counts(sent=40, bounced=0, complained=0),
        "b": Counts(sent=20, bounced=2, complained=0),
    }
    feedback, campaigns = FeedbackStore(queue.pool), CampaignStore(queue.pool)
    on_a = await running_campaign(queue, "on-a", "x@a.example")
    on_b = await running_campaign(queue, "on-b", "x@b.example")

    # "campaigns": b's running campaign is paused, a's goes on.
    settings = GuardSettings(min_volume=10)
    paused = await check_once(feedback, campaigns, settings, accounts)
    assert paused == {
        on_b: "guard: account b bounce rate 10% (2 hard bounces), threshold 4% "
        "over 20 recipients sent"
    }
    assert (await campaigns.get(on_a)).state == "running"

    # "all": b's sending is held, a's is not.
    await check_once(feedback, campaigns, replace(settings, account_action="all"), accounts)
    held = {r.name: r.held_reason for r in await accounts.overview()}
    assert held["a"] is None and (held["b"] or "").startswith("guard: account b bounce rate 10%")
    await queue.enqueue_many([message("y@a.example"), message("y@b.example")])
    owner = uuid.uuid4()
    await queue.for_account("b").register_worker(owner, 30.0)
    assert await queue.for_account("b").claim(owner, 10) == []
    claimed = await queue.for_account("a").claim(owner, 10)
    # a's new mail and its running campaign's recipient
    assert sorted(j.message.from_addr for j in claimed) == ["x@a.example", "y@a.example"]


async def test_the_pause_watch_tells_postgres_when_ses_pauses_an_account(queue: Queue) -> None:
    store = AccountStore(queue.pool)
    rules = (RouteSettings(account="b", from_domain=("b.example",), fallback="a"),)
    await store.put(["a", "b"], rules)
    (waiting,) = await queue.enqueue_many([message("x@b.example")])
    # What the watch reads of a pool: the account hold SES's answers set, and the sends.
    pool = SimpleNamespace(admission=SimpleNamespace(holds=Holds()), counters=Counters())
    stop = asyncio.Event()
    watch = asyncio.create_task(run_pause_watch(store, "b", pool, stop))  # type: ignore[arg-type]
    try:
        pool.admission.holds.hold_account(asyncio.get_running_loop().time(), 60.0)
        await eventually(lambda: _account_is(queue, waiting.id, "a"), limit=5)
        (b,) = [r for r in await store.overview() if r.name == "b"]
        assert b.paused_reason is not None
        pool.admission.holds = Holds()  # the hold ran out, and a send went through
        pool.counters.sent += 1
        await eventually(lambda: _paused(store, "b", None), limit=5)
    finally:
        stop.set()
        await watch


async def _account_is(queue: Queue, job_id: int, account: str) -> bool:
    return (await account_of(queue, job_id))[0] == account


async def _paused(store: AccountStore, name: str, reason: str | None) -> bool:
    return [r.paused_reason for r in await store.overview() if r.name == name] == [reason]


async def test_a_user_that_cannot_switch_routing_gets_one_clear_line(
    queue: Queue, pg_dsn: str
) -> None:
    async with queue.pool.acquire() as conn:
        await conn.execute(
            "DROP ROLE IF EXISTS routing_sender; CREATE ROLE routing_sender LOGIN "
            "PASSWORD 'sender-password'; GRANT USAGE ON SCHEMA dispatcher TO routing_sender; "
            "GRANT ALL ON ALL TABLES IN SCHEMA dispatcher TO routing_sender"
        )
    parts = urlsplit(pg_dsn)
    dsn = parts._replace(
        netloc=f"routing_sender:sender-password@{parts.hostname}:{parts.port}"
    ).geturl()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        with pytest.raises(DatabaseError) as err:
            await AccountStore(pool).put(["a", "b"], ROUTES[:1])
    finally:
        await pool.close()
    assert "the database user must own dispatcher.jobs" in str(err.value)
    async with queue.pool.acquire() as conn:  # nothing half-written
        assert await conn.fetchval("SELECT count(*) FROM dispatcher.routes") == 0
        await conn.execute("DROP OWNED BY routing_sender; DROP ROLE routing_sender")

"""Several accounts in Postgres (migration 0021): every way mail enters gets the account the
rules name, the same as the Python rules; mail already waiting follows a change of the rules; a
paused account's mail moves to its fallback only where a route opted in; each account has its
own warm-up ramp."""

from __future__ import annotations

import json

from dispatcher.accounts.routing import route
from dispatcher.accounts.settings import RouteSettings
from dispatcher.accounts.store import AccountStore
from dispatcher.domain.jobs import NewMessage
from dispatcher.pacing.warmup import WarmupSettings
from dispatcher.queue.repository import Queue
from dispatcher.worker.warmup_store import WarmupStore

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

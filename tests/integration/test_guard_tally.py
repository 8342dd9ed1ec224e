"""The reputation guard's counters (migration 0025) give the numbers its full scans of the rows
gave, after a mix of sends, failures, retries, in-doubt mail resolved both ways, feedback of
every kind (tagged, tagless and linked late, for no known job), a Reject that un-sends, and
pruning; the migration's backfill gives them too; and a guard read reads no row of mail."""

from __future__ import annotations

import io
import uuid
from typing import Any

from dispatcher.accounts.settings import RouteSettings
from dispatcher.accounts.store import AccountStore
from dispatcher.campaigns.recipients import iter_recipients
from dispatcher.campaigns.store import CampaignSpec, CampaignStore
from dispatcher.config.settings import RetentionSettings
from dispatcher.db.migrate import migrations
from dispatcher.db.sql import named_queries
from dispatcher.domain.jobs import NewMessage, Settlement
from dispatcher.feedback.store import FeedbackStore
from dispatcher.queue.repository import Queue
from dispatcher.retention import Pruner
from tests.support.guard import (
    OLD_ACCOUNT,
    OLD_CAMPAIGNS,
    OLD_COUNTS,
    OLD_KINDS,
    event,
    send,
    ses_id,
)
from tests.support.plans import explained

WINDOW = 3600.0
METRICS = named_queries("dispatcher.obs", "metrics.sql")
MAIL_TABLES = {"jobs", "messages", "recipient_events", "events", "message_feedback"}


async def guard_numbers(queue: Queue, cid: int) -> dict[str, Any]:
    """What the guard reads now, through its stores."""
    feedback, accounts = FeedbackStore(queue.pool), AccountStore(queue.pool)
    account = await feedback.account_counts(WINDOW)
    campaigns = await feedback.campaign_counts(cid)
    async with queue.pool.acquire() as conn:
        kinds = await conn.fetch(METRICS("feedback_kinds"), WINDOW)
    return {
        "kinds": {r["kind"]: r["n"] for r in kinds},
        "account": (account.sent, account.bounced, account.complained),
        "counts": {
            k: (v.sent, v.bounced, v.complained)
            for k, v in (await accounts.guard_counts(WINDOW)).items()
        },
        "campaign": {
            k: (v.counts.sent, v.counts.bounced, v.bounced_any, v.counts.complained, v.delivered)
            for k, v in campaigns.items()
        },
    }


async def old_numbers(queue: Queue, cid: int) -> dict[str, Any]:
    """What the guard's full scans read from the rows."""
    async with queue.pool.acquire() as conn:
        a = await conn.fetchrow(OLD_ACCOUNT, WINDOW)
        counts = await conn.fetch(OLD_COUNTS, WINDOW)
        campaigns = await conn.fetch(OLD_CAMPAIGNS, cid)
        kinds = await conn.fetch(OLD_KINDS, WINDOW)
    return {
        "kinds": {r["kind"]: r["n"] for r in kinds},
        "account": (a["sent"], a["bounced"], a["complained"]),
        "counts": {r["name"]: (r["sent"], r["bounced"], r["complained"]) for r in counts},
        "campaign": {
            r["campaign_id"]: (
                r["sent"],
                r["bounced"],
                r["bounced_any"],
                r["complained"],
                r["delivered"],
            )
            for r in campaigns
        },
    }


def message(from_addr: str, to: str, **kw: Any) -> NewMessage:
    return NewMessage(from_addr=from_addr, to=(to,), subject="s", text="t", **kw)


async def a_mix(queue: Queue) -> int:
    """Mail of two accounts and a campaign through every path that changes the guard's
    numbers; the campaign's id."""
    accounts, feedback = AccountStore(queue.pool), FeedbackStore(queue.pool)
    campaigns = CampaignStore(queue.pool)
    await accounts.put(["a", "b"], (RouteSettings(account="b", from_domain=("b.example",)),))
    rows = "email,name\n" + "".join(f"c{i}@example.com,P{i}\n" for i in range(12))
    created = await campaigns.create(
        CampaignSpec(name="spring", from_addr="news@a.example", subject="Hi", html="<p>Hi</p>"),
        iter_recipients(io.BytesIO(rows.encode()), source="list.csv"),
    )
    cid = created.id
    await campaigns.start(cid)
    # plain mail to several recipients (to + cc + bcc), on both accounts
    await queue.enqueue_many([
        message("app@a.example", f"t{i}@example.com", cc=("cc@example.com",),
                bcc=("bcc1@example.com", "bcc2@example.com"))
        for i in range(5)
    ] + [message("app@b.example", f"u{i}@example.com") for i in range(6)])  # fmt: skip

    # account a: its first claim partly fails, partly is retried, partly is sent
    view = queue.for_account("a")
    owner = uuid.uuid4()
    await view.register_worker(owner, 30.0)
    jobs = await view.claim(owner, 8)
    await view.launch(owner, jobs)
    await view.settle(
        [Settlement(j.id, j.token, "failed", outcome="rejected") for j in jobs[:2]]
        + [Settlement(j.id, j.token, "queued", delay=0.0) for j in jobs[2:4]]
        + [Settlement(j.id, j.token, "sent", ses_id(j.id)) for j in jobs[4:]]
    )
    # then a worker dies with mail on the wire: in doubt, resolved by a person both ways
    dead = uuid.uuid4()
    await view.register_worker(dead, 30.0)
    lost = await view.claim(dead, 4)
    await view.launch(dead, lost)
    await view.unregister_worker(dead)
    assert (await view.recover("hold")).in_doubt == 4
    assert await view.resolve_unknown([lost[0].id, lost[1].id], "sent") == sorted(
        [lost[0].id, lost[1].id]
    )
    await view.resolve_unknown([lost[2].id], "queued")
    sent_a = [j.id for j in jobs[4:]] + [lost[0].id, lost[1].id] + await send(queue, "a")
    sent_b = await send(queue, "b")

    # feedback of every kind
    await event(feedback, sent_a[0], "Delivery", ["x@example.com"])
    await event(feedback, sent_a[1], "Bounce", ["h1@example.com", "h2@example.com"])
    await event(feedback, sent_a[2], "Bounce", ["s1@example.com"], bounce_type="Transient")
    await event(feedback, sent_a[3], "Complaint", ["k1@example.com"])
    await event(feedback, sent_b[0], "Bounce", ["hb@example.com"])
    await event(feedback, sent_b[1], "Complaint", ["kb@example.com"])
    await event(feedback, 999_999_999, "Bounce", ["nobody@example.com"])  # no such job
    # tagless: tied by SES's MessageId at once, or (no job has it yet) linked later
    await event(feedback, None, "Bounce", ["tl@example.com"], ses_message_id=ses_id(sent_b[2]))
    await event(feedback, None, "Complaint", ["late@example.com"], ses_message_id="ses-late")
    async with queue.pool.acquire() as conn:
        await conn.execute(
            "UPDATE dispatcher.jobs SET ses_message_id = 'ses-late' WHERE id = $1", sent_a[4]
        )
    assert await feedback.link_late() == 1
    # every campaign message delivered, two hard-bounced; then a Reject un-sends one
    async with queue.pool.acquire() as conn:
        mine = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM dispatcher.jobs WHERE campaign_id = $1 AND state = 'sent' "
                "ORDER BY id",
                cid,
            )
        ]
    assert len(mine) >= 6
    for i, job_id in enumerate(mine):
        await event(feedback, job_id, "Delivery", [f"c{i}@example.com"])
    await event(feedback, mine[0], "Bounce", ["c0@example.com"])
    await event(feedback, mine[1], "Bounce", ["c1@example.com"], bounce_type="Transient")
    await event(feedback, mine[2], "Complaint", ["c2@example.com"])
    await event(feedback, mine[3], "Reject", [])
    await event(feedback, sent_b[3], "Reject", [])
    return cid


async def test_the_counters_give_the_full_scans_numbers_through_every_path(
    queue: Queue,
) -> None:
    cid = await a_mix(queue)
    now = await guard_numbers(queue, cid)
    assert now == await old_numbers(queue, cid)
    assert now["account"][0] > 0 and now["campaign"][cid][0] > 0  # (a test that can fail)
    assert now["counts"]["a"][1] == 4  # h1, h2, the campaign's, and the jobless one's
    assert all(now["kinds"].values()), now["kinds"]  # deliveries, bounces, complaints

    # folding and ageing the per-minute rows changes nothing the window holds
    feedback = FeedbackStore(queue.pool)
    async with queue.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dispatcher.guard_account_tally") > 0
        for sql in (
            "UPDATE dispatcher.guard_account_tally SET bucket = bucket - interval '10 min'",
            "UPDATE dispatcher.jobs SET sent_at = sent_at - interval '10 min'",
            "UPDATE dispatcher.recipient_events SET occurred_at = occurred_at - interval '10 min'",
        ):
            await conn.execute(sql)
    await feedback.fold_tallies(86400.0)
    async with queue.pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM dispatcher.guard_account_tally WHERE shard <> 0"
            )
            == 0
        )
    assert await guard_numbers(queue, cid) == await old_numbers(queue, cid) == now

    # retention prunes every finished row (100 days on): a campaign's totals stay, as the
    # scans kept them (campaign_pruned); the window's numbers stay too (the scans lost them:
    # they forgot mail sent in the window once it was pruned, which the defaults never do)
    report = await Pruner(queue.pool, RetentionSettings()).run(
        at=await queue.pool.fetchval("SELECT now() + interval '100 days'")
    )
    assert report is not None and report.rows["sent"] > 0
    after = await guard_numbers(queue, cid)
    old = await old_numbers(queue, cid)
    assert after["campaign"] == old["campaign"] == now["campaign"]
    assert after == now and old["account"][0] == 0

    # ... and the guard drops the minutes past every window it is asked for
    await feedback.fold_tallies(60.0)
    gone = await guard_numbers(queue, cid)
    assert gone["account"] == (0, 0, 0) and set(gone["kinds"].values()) == {0}


async def test_the_migration_backfills_the_counters_from_the_rows(queue: Queue) -> None:
    cid = await a_mix(queue)
    await Pruner(queue.pool, RetentionSettings(rows_days=0.0001)).run(
        at=await queue.pool.fetchval("SELECT now() + interval '1 hour'")
    )  # (only the sent mail: a campaign's pruned totals are backfilled too)
    async with queue.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dispatcher.campaign_pruned") > 0
        await conn.execute(
            "DROP TABLE dispatcher.guard_account_tally, dispatcher.guard_campaign_tally;"
            "DROP FUNCTION dispatcher.minute_of, dispatcher.tally_shard"
        )
        (m,) = [m for m in migrations() if m.version == 25]
        await conn.execute(m.sql)
    assert await guard_numbers(queue, cid) == await old_numbers(queue, cid)


async def test_a_guard_read_reads_no_row_of_mail(queue: Queue) -> None:
    await a_mix(queue)
    feedback_sql = named_queries("dispatcher.feedback", "feedback.sql")
    accounts_sql = named_queries("dispatcher.accounts", "accounts.sql")
    for sql, args in (
        (feedback_sql("guard_account"), (86400.0,)),
        (feedback_sql("guard_campaigns"), (None,)),
        (accounts_sql("guard_counts"), (86400.0,)),
        (METRICS("feedback_kinds"), (86400.0,)),
    ):
        read = {n.get("Relation Name") for n in await explained(queue.pool, sql, *args)}
        assert read & {"guard_account_tally", "guard_campaign_tally"}, read
        assert not read & MAIL_TABLES, read

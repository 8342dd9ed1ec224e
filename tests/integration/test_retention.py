"""Retention on real Postgres: backdated finished mail is pruned as configured, unfinished and
in-doubt mail is kept, campaign totals survive, one pruner at a time, and `dispatcher prune`."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from dispatcher.app import run_worker
from dispatcher.campaigns.recipients import iter_recipients
from dispatcher.campaigns.store import CampaignSpec, CampaignStore
from dispatcher.cli.campaign import _report as report_command
from dispatcher.config.settings import RetentionSettings
from dispatcher.feedback.events import parse_event
from dispatcher.feedback.store import FeedbackStore
from dispatcher.queue.repository import Queue
from dispatcher.retention import Pruner, run_pruner
from dispatcher.retention.store import LOCK_KEY
from tests.support.cli import cli_env, run_cli
from tests.support.dispatch import eventually, make_config
from tests.support.sim import SimHandle

SETTINGS = RetentionSettings()  # content 7 d, rows 90 d; failed: content 30 d, rows 90 d


async def seed(
    conn: asyncpg.Connection,
    state: str,
    age_days: float,
    *,
    campaign_id: int | None = None,
    outcome: str | None = None,
) -> int:
    """One message with every kind of content, its job in `state` since `age_days` ago."""
    message_id: int = await conn.fetchval(
        """INSERT INTO dispatcher.messages (from_addr, to_addrs, subject, text_body, html_body,
                                            raw, variables, campaign_id, created_at)
           VALUES ('a@example.com', ARRAY['x@example.com'], 'hello', 'text', '<p>html</p>',
                   '\\x00'::bytea, '{"name": "X"}', $1, now() - make_interval(days => $2 + 1))
           RETURNING id""",
        campaign_id,
        int(age_days),
    )
    await conn.execute(
        """INSERT INTO dispatcher.jobs (id, state, recipients, campaign_id, last_outcome,
                                        updated_at, sent_at)
           VALUES ($1, $2::dispatcher.job_state, 1, $3, $4,
                   now() - make_interval(secs => $5 * 86400),
                   CASE WHEN $2 = 'sent' THEN now() - make_interval(secs => $5 * 86400) END)""",
        message_id,
        state,
        campaign_id,
        outcome,
        age_days,
    )
    return message_id


async def content_of(conn: asyncpg.Connection, message_id: int) -> str:
    """'full', 'pruned' or 'gone' (no row)."""
    row = await conn.fetchrow(
        "SELECT text_body, html_body, raw, variables, content_pruned_at, subject "
        "FROM dispatcher.messages WHERE id = $1",
        message_id,
    )
    if row is None:
        assert (
            await conn.fetchval("SELECT count(*) FROM dispatcher.jobs WHERE id = $1", message_id)
            == 0
        )
        return "gone"
    if row["text_body"] is None:
        assert row["html_body"] is None and row["raw"] is None and row["variables"] is None
        assert row["content_pruned_at"] is not None and row["subject"] == "hello"
        return "pruned"
    return "full"


async def untied_event(conn: asyncpg.Connection, age_days: float) -> int:
    event_id: int = await conn.fetchval(
        """INSERT INTO dispatcher.events (sns_message_id, topic_arn, kind, raw, received_at,
                                          processed_at)
           VALUES ($1, 'arn:t', 'notification', '{}',
                   now() - make_interval(days => $2), now() - make_interval(days => $2))
           RETURNING id""",
        str(uuid.uuid4()),
        int(age_days),
    )
    return event_id


async def test_backdated_mail_is_pruned_as_configured(queue: Queue) -> None:
    async with queue.pool.acquire() as conn:
        ids = {
            name: await seed(conn, state, age)
            for name, state, age in [
                ("sent_fresh", "sent", 3),
                ("sent_week", "sent", 10),
                ("sent_old", "sent", 100),
                ("failed_week", "failed", 10),
                ("failed_month", "failed", 40),
                ("failed_old", "failed", 100),
                ("cancelled_old", "cancelled", 100),
                ("unknown_old", "unknown", 200),  # in doubt: kept whole until resolved
                ("queued_old", "queued", 200),  # waiting (scheduled long ago): not finished
                ("held_old", "held", 200),
            ]
        }
        old_event, fresh_event = await untied_event(conn, 100), await untied_event(conn, 3)

    pruner = Pruner(queue.pool, SETTINGS)
    plan = await pruner.run(dry_run=True)
    assert plan is not None and plan.dry_run
    assert plan.rows == {"sent": 1, "failed": 1, "cancelled": 1}
    assert plan.content == {"sent": 1, "failed": 1, "cancelled": 0}
    assert plan.events == 1
    async with queue.pool.acquire() as conn:
        assert {await content_of(conn, i) for i in ids.values()} == {"full"}  # dry: untouched

    report = await pruner.run()
    assert report is not None
    assert (report.rows, report.content, report.events) == (plan.rows, plan.content, 1)
    async with queue.pool.acquire() as conn:
        seen = {name: await content_of(conn, i) for name, i in ids.items()}
        events = {r[0] for r in await conn.fetch("SELECT id FROM dispatcher.events")}
    assert seen == {
        "sent_fresh": "full",
        "sent_week": "pruned",
        "sent_old": "gone",
        "failed_week": "full",
        "failed_month": "pruned",
        "failed_old": "gone",
        "cancelled_old": "gone",
        "unknown_old": "full",
        "queued_old": "full",
        "held_old": "full",
    }
    assert events == {fresh_event} and old_event not in events

    again = await pruner.run()  # nothing left to do
    assert again is not None and again.total == 0


async def test_resolving_in_doubt_mail_starts_its_clock(queue: Queue) -> None:
    async with queue.pool.acquire() as conn:
        message_id = await seed(conn, "unknown", 200)
        now: datetime = await conn.fetchval("SELECT now()")
    pruner = Pruner(queue.pool, SETTINGS)
    await pruner.run()
    await queue.resolve_unknown([message_id], "sent")  # a person decided: it went out
    await pruner.run(at=now + timedelta(days=6))
    async with queue.pool.acquire() as conn:
        assert await content_of(conn, message_id) == "full"  # 7 days from the resolution
    await pruner.run(at=now + timedelta(days=8))
    async with queue.pool.acquire() as conn:
        assert await content_of(conn, message_id) == "pruned"
    await pruner.run(at=now + timedelta(days=91))
    async with queue.pool.acquire() as conn:
        assert await content_of(conn, message_id) == "gone"


HTML = (
    "<html><body><p>Hello {{ name }}</p><a href='{{ unsubscribe }}'>unsubscribe</a></body></html>"
)


async def test_campaign_totals_survive_the_pruning_of_its_rows(
    queue: Queue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    campaigns = CampaignStore(queue.pool)
    feedback = FeedbackStore(queue.pool)
    rows = "email,name,unsubscribe\n" + "".join(
        f"r{i}@example.com,P{i},https://u/{i}\n" for i in range(6)
    )
    created = await campaigns.create(
        CampaignSpec(
            name="spring",
            from_addr="news@example.com",
            subject="Hi {{ name }}",
            html=HTML,
            unsubscribe_url="https://example.com/u?e={{ email|urlencode }}",
        ),
        iter_recipients(io.BytesIO(rows.encode()), source="list.csv"),
    )
    cid = created.id
    await campaigns.start(cid)  # its recipients become message + job rows
    async with queue.pool.acquire() as conn:
        ids = [
            r[0]
            for r in await conn.fetch(
                "SELECT id FROM dispatcher.jobs WHERE campaign_id = $1 ORDER BY id", cid
            )
        ]
        # four sent, one failed for good, one transient failure: all finished long ago
        for job_id, state, outcome in zip(
            ids,
            ["sent", "sent", "sent", "sent", "failed", "failed"],
            [None, None, None, None, "rejected", "transient"],
            strict=True,
        ):
            await conn.execute(
                "UPDATE dispatcher.jobs SET state = $2::dispatcher.job_state, last_outcome = $3 "
                "WHERE id = $1",
                job_id,
                state,
                outcome,
            )
        await conn.execute("UPDATE dispatcher.campaigns SET state = 'finished' WHERE id = $1", cid)
    # a hard bounce for the first recipient, recorded and processed as the daemon does
    body = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "Message": json.dumps({
            "notificationType": "Bounce",
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                       "bouncedRecipients": [{"emailAddress": "r0@example.com"}]},
            "mail": {"messageId": "ses-1", "tags": {"dispatcher_id": [str(ids[0])]}},
        }),
    }  # fmt: skip
    event_id = await feedback.record(
        sns_message_id=body["MessageId"], topic_arn="arn:t", raw=body,
        event=parse_event(body["Message"]),
    )  # fmt: skip
    assert event_id is not None
    await feedback.process(event_id)
    async with queue.pool.acquire() as conn:
        # the transient failure 40 days ago (its variables go), the rest 100 days ago
        await conn.execute(
            "UPDATE dispatcher.jobs SET updated_at = now() - make_interval(days => "
            "CASE WHEN last_outcome = 'transient' THEN 40 ELSE 100 END), "
            "sent_at = CASE WHEN state = 'sent' THEN now() - interval '100 days' END "
            "WHERE campaign_id = $1",
            cid,
        )

    before = await campaigns.status(cid)
    fb_before = (await feedback.campaign_counts(cid))[cid]
    report = await Pruner(queue.pool, SETTINGS).run()
    assert report is not None and report.rows == {"sent": 4, "failed": 1, "cancelled": 0}
    after = await campaigns.status(cid)
    fb_after = (await feedback.campaign_counts(cid))[cid]

    assert after.counts == before.counts and after.counts["sent"] == 4
    assert after.failures == before.failures == {"rejected": 1, "transient": 1}
    assert after.pruned == {"sent": 4, "failed": 1}
    assert (fb_after.delivered, fb_after.bounced_any, fb_after.counts.bounced) == (
        fb_before.delivered,
        fb_before.bounced_any,
        fb_before.counts.bounced,
    )
    assert fb_after.counts.bounced == 1
    async with queue.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dispatcher.events") == 0
        # the suppression the bounce added stays: it is not the mail's to take along
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM dispatcher.suppressions WHERE address = 'r0@example.com'"
            )
            == 1
        )
    # the transient failure lost its variables: retrying it would render without them
    assert await campaigns.retry_failed(cid) == 0

    # the report still gives the totals, and says why the CSV has fewer rows
    csv_path = tmp_path / "report.csv"
    assert await report_command(campaigns, cid, csv_path) == 0
    shown = capsys.readouterr().out.splitlines()
    assert "  sent               4" in shown and "  failed             2" in shown
    assert (
        "  5 of them are counted above but not in the CSV: their rows were removed under "
        "[retention]" in shown
    )
    assert len(csv_path.read_text().splitlines()) == 1 + 1  # the header, the transient failure


async def test_one_pruner_at_a_time(queue: Queue, pg_dsn: str, tmp_path: Path) -> None:
    async with queue.pool.acquire() as conn:
        old = await seed(conn, "sent", 100)
    other = await asyncpg.connect(pg_dsn)  # another process, pruning
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        assert await Pruner(queue.pool, SETTINGS).run() is None
        result = await run_cli(cli_env(tmp_path, dsn=pg_dsn), "prune")
        assert result.code == 1, result
        assert result.messages == [
            "dispatcher: error: another process is pruning right now (it holds the pruner's "
            "lock); try again when it is done"
        ]
        async with queue.pool.acquire() as conn:
            assert await content_of(conn, old) == "full"
    finally:
        await other.close()  # its lock goes with its session
    report = await Pruner(queue.pool, SETTINGS).run()
    assert report is not None and report.rows["sent"] == 1


async def test_daemon_loop_prunes_and_stops(queue: Queue) -> None:
    async with queue.pool.acquire() as conn:
        old = await seed(conn, "sent", 100)
    stop = asyncio.Event()
    loop = asyncio.create_task(run_pruner(Pruner(queue.pool, replace(SETTINGS, interval=60)), stop))
    async with queue.pool.acquire() as conn:
        for _ in range(100):
            if await content_of(conn, old) == "gone":
                break
            await asyncio.sleep(0.05)
        assert await content_of(conn, old) == "gone"
    stop.set()
    await asyncio.wait_for(loop, 5)  # the wait for the next run ends with the daemon


async def test_cli_prune_dry_run_then_prune(pg_dsn: str, tmp_path: Path, queue: Queue) -> None:
    async with queue.pool.acquire() as conn:
        old, week = await seed(conn, "sent", 100), await seed(conn, "sent", 10)
    env = cli_env(tmp_path, dsn=pg_dsn)

    dry = await run_cli(env, "prune", "--dry-run")
    assert dry.code == 0, dry
    assert dry.out.splitlines() == [
        "content (bodies, raw MIME, campaign variables) would remove: sent 1",
        "rows would remove: sent 1",
        "feedback events would remove: 0",
    ]
    assert "pruning" not in dry.err  # not a terminal: no progress bar
    async with queue.pool.acquire() as conn:
        assert (await content_of(conn, old), await content_of(conn, week)) == ("full", "full")

    done = await run_cli(env, "prune", "--json")
    assert done.code == 0, done
    out = json.loads(done.out)
    assert (out["dry_run"], out["rows"]["sent"], out["content"]["sent"]) == (False, 1, 1)
    assert "pruning" not in done.err
    async with queue.pool.acquire() as conn:
        assert (await content_of(conn, old), await content_of(conn, week)) == ("gone", "pruned")


async def test_the_daemon_prunes_while_it_runs(pg_dsn: str, queue: Queue, sim: SimHandle) -> None:
    async with queue.pool.acquire() as conn:
        old, fresh = await seed(conn, "sent", 100), await seed(conn, "sent", 1)
    cfg = make_config(pg_dsn, sim.endpoint_url)
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_worker(cfg, stop))
    try:

        async def pruned() -> bool:
            async with queue.pool.acquire() as conn:
                return await content_of(conn, old) == "gone"

        await eventually(pruned, limit=20)
        async with queue.pool.acquire() as conn:
            assert await content_of(conn, fresh) == "full"
    finally:
        stop.set()
        report = await asyncio.wait_for(daemon, 30)
    assert report.exit_code == 0

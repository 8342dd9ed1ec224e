"""Campaigns end to end on real Postgres and the simulator: import, run, pause, cancel, retry."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from dispatcher.app import run_worker
from dispatcher.campaigns.recipients import iter_recipients
from dispatcher.campaigns.sending import CampaignSender
from dispatcher.campaigns.store import CampaignSpec, CampaignStore
from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.plan import Send, Wait
from dispatcher.errors import InputError
from dispatcher.queue.repository import Queue
from dispatcher.worker.pool import EXIT_OK
from tests.support.dispatch import dispatcher_ids, eventually, make_config
from tests.support.sim import SimFactory, SimHandle

HTML = (
    "<html><body><p>Hello {{ name }}</p><a href='{{ unsubscribe }}'>unsubscribe</a></body></html>"
)


def spec(**kw: object) -> CampaignSpec:
    base: dict[str, object] = {
        "name": "autumn",
        "from_addr": "news@example.com",
        "subject": "Hi {{ name }}",
        "html": HTML,
        "unsubscribe_url": "https://example.com/u?e={{ email|urlencode }}&c={{ campaign_id }}",
        "tags": {"kind": "news"},
    }
    base.update(kw)
    return CampaignSpec(**base)  # type: ignore[arg-type]


def csv_bytes(n: int, *, extra: str = "", domain: str = "simulator.amazonses.com") -> bytes:
    lines = ["email,name,unsubscribe"]
    lines += [f"success+r{i}@{domain},Person {i},https://u/{i}" for i in range(n)]
    return ("\n".join(lines) + "\n" + extra).encode()


async def accepted_at_least(sim: SimHandle, n: int) -> bool:
    return int((await sim.stats())["accepted"]) >= n


async def campaign_state(queue: Queue, campaign_id: int) -> str:
    async with queue.pool.acquire() as conn:
        state: str = await conn.fetchval(
            "SELECT state::text FROM dispatcher.campaigns WHERE id = $1", campaign_id
        )
    return state


async def job_ids(queue: Queue, campaign_id: int) -> list[int]:
    async with queue.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id FROM dispatcher.jobs WHERE campaign_id = $1 ORDER BY id", campaign_id
        )
    return [r["id"] for r in rows]


async def create(store: CampaignStore, data: bytes, **kw: object) -> int:
    result = await store.create(spec(**kw), iter_recipients(io.BytesIO(data), source="list.csv"))
    return result.id


async def test_import_skips_duplicates_bad_rows_and_suppressed_addresses(queue: Queue) -> None:
    store = CampaignStore(queue.pool)
    async with queue.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO dispatcher.suppressions (address, reason) VALUES ($1, 'bounce')",
            "success+r3@simulator.amazonses.com",
        )
    extra = (
        "SUCCESS+R1@simulator.amazonses.com,Again,x\n"  # duplicate of line 3 (case-insensitive)
        "not-an-address,Bad,x\n"
    )
    data = csv_bytes(5, extra=extra)
    result = await store.create(spec(), iter_recipients(io.BytesIO(data), source="list.csv"))
    assert result.imported == 4  # 5 + 2 extra lines - duplicate - bad - suppressed
    reasons = {r.line: r.reason for r in result.rejected}
    assert reasons[7] == "duplicate of line 3"
    assert 8 in reasons and "suppressed" in reasons[5]
    status = await store.status(result.id)
    assert status.campaign.state == "draft" and status.counts["held"] == 4
    assert (await queue.counts())["queued"] == 0  # nothing goes out before `start`


async def test_strict_import_with_a_bad_row_leaves_no_campaign(queue: Queue) -> None:
    store = CampaignStore(queue.pool)
    data = csv_bytes(3, extra="broken@,x,y\n")
    with pytest.raises(InputError, match="line 5"):
        await store.create(
            spec(), iter_recipients(io.BytesIO(data), source="list.csv"), strict=True
        )
    assert await store.list() == []
    assert sum((await queue.counts()).values()) == 0


async def test_a_campaign_sends_each_recipient_once_rendered_for_them(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    store = CampaignStore(queue.pool)
    campaign_id = await create(store, csv_bytes(300))
    await store.start(campaign_id)
    async with sim_process(max_send_rate=1000) as sim:
        report = await asyncio.wait_for(
            run_worker(make_config(pg_dsn, sim.endpoint_url), asyncio.Event(), drain=True), 60
        )
        received = await sim.messages(body=True)
    assert report.exit_code == EXIT_OK
    assert len(received) == 300
    assert Counter(m["to"][0] for m in received).most_common(1)[0][1] == 1
    one = next(m for m in received if m["to"] == ["success+r7@simulator.amazonses.com"])
    assert one["subject"] == "Hi Person 7"
    assert "Hello Person 7" in one["html"] and "Hello Person 7" in one["text"]
    assert one["tags"]["campaign_id"] == str(campaign_id) and one["tags"]["kind"] == "news"
    url = f"https://example.com/u?e=success%2Br7%40simulator.amazonses.com&c={campaign_id}"
    assert one["headers"] == [
        ["List-Unsubscribe", f"<{url}>"],
        ["List-Unsubscribe-Post", "List-Unsubscribe=One-Click"],
    ]
    # The daemon itself marked the campaign finished (no status command was needed).
    assert await campaign_state(queue, campaign_id) == "finished"
    status = await store.status(campaign_id)
    assert status.counts["sent"] == 300


async def test_each_recipient_gets_the_campaigns_css_inlined_with_their_own_values(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    html = (
        "<html><head><style>p.hi { color: red } a { color: blue }</style></head><body>"
        "<p class='hi'>Hello {{ name }} &amp; co</p><a href='{{ unsubscribe }}'>unsubscribe</a>"
    )
    store = CampaignStore(queue.pool)
    campaign_id = await create(
        store,
        csv_bytes(20, extra='success+q@simulator.amazonses.com,"Al ""A"" <b>",x'),
        html=html,
        text="Hi {{ name }}",
    )
    await store.start(campaign_id)
    async with sim_process(max_send_rate=1000) as sim:
        report = await asyncio.wait_for(
            run_worker(make_config(pg_dsn, sim.endpoint_url), asyncio.Event(), drain=True), 60
        )
        received = {m["to"][0]: m for m in await sim.messages(body=True)}
    assert report.exit_code == EXIT_OK and len(received) == 21
    for i in range(20):
        one = received[f"success+r{i}@simulator.amazonses.com"]["html"]
        assert f'<p class="hi" style="color: red;">Hello Person {i} &amp; co</p>' in one
        assert f'<a href="https://u/{i}" style="color: blue;">unsubscribe</a>' in one
        assert "<style>" not in one
    odd = received["success+q@simulator.amazonses.com"]["html"]
    assert '<p class="hi" style="color: red;">Hello Al "A" &lt;b&gt; &amp; co</p>' in odd


async def test_pause_stops_every_daemon_at_once_and_resume_continues_exactly(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    store = CampaignStore(queue.pool)
    campaign_id = await create(store, csv_bytes(400))
    await store.start(campaign_id)
    async with sim_process(max_send_rate=100) as sim:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(make_config(pg_dsn, sim.endpoint_url), stop))
        try:
            await eventually(lambda: accepted_at_least(sim, 50))
            assert await store.pause(campaign_id)
            await asyncio.sleep(1.0)  # in-flight sends finish within the second
            after_pause = (await sim.stats())["accepted"]
            await asyncio.sleep(1.5)
            assert (await sim.stats())["accepted"] == after_pause  # nothing more went out
            assert after_pause < 400
            status = await store.status(campaign_id)
            assert status.campaign.state == "paused"
            assert status.counts["queued"] == status.counts["claimed"] == 0
            await store.start(campaign_id)  # resume
            for _ in range(200):
                if (await store.status(campaign_id)).campaign.state == "finished":
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)
        received = await sim.messages()
    counts = Counter(m["to"][0] for m in received)
    assert len(counts) == 400 and max(counts.values()) == 1  # nobody skipped, nobody twice


async def test_cancel_keeps_sent_mail_sent_and_cancels_the_rest(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    store = CampaignStore(queue.pool)
    campaign_id = await create(store, csv_bytes(300))
    await store.start(campaign_id)
    async with sim_process(max_send_rate=100) as sim:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(make_config(pg_dsn, sim.endpoint_url), stop))
        try:
            await eventually(lambda: accepted_at_least(sim, 30))
            await store.cancel(campaign_id)
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)
        accepted = (await sim.stats())["accepted"]
    status = await store.status(campaign_id)
    assert status.campaign.state == "cancelled"
    assert status.counts["sent"] == accepted
    assert status.counts["cancelled"] == 300 - accepted
    assert status.counts["queued"] == status.counts["held"] == 0


async def test_retry_failed_requeues_only_retryable_failures(queue: Queue) -> None:
    store = CampaignStore(queue.pool)
    campaign_id = await create(store, csv_bytes(6))
    await store.start(campaign_id)
    ids = await job_ids(queue, campaign_id)
    async with queue.pool.acquire() as conn:
        await conn.execute(
            "UPDATE dispatcher.jobs SET state = 'failed', last_outcome = 'transient' "
            "WHERE id = ANY($1)",
            ids[:2],
        )
        await conn.execute(
            "UPDATE dispatcher.jobs SET state = 'failed', last_outcome = 'rejected' WHERE id = $1",
            ids[2],
        )
    assert await store.retry_failed(campaign_id) == 2
    status = await store.status(campaign_id)
    assert status.counts["failed"] == 1 and status.counts["queued"] == 5


async def test_transactional_mail_goes_before_a_running_campaign(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    store = CampaignStore(queue.pool)
    campaign_id = await create(store, csv_bytes(300))
    await store.start(campaign_id)
    async with sim_process(max_send_rate=60) as sim:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(make_config(pg_dsn, sim.endpoint_url), stop))
        try:
            await eventually(lambda: accepted_at_least(sim, 30))
            urgent = await queue.enqueue(
                NewMessage(
                    from_addr="app@example.com",
                    to=("success+reset@simulator.amazonses.com",),
                    subject="Password reset",
                    text="reset link",
                )
            )
            arrived_after = None
            for _ in range(100):
                ids = dispatcher_ids(await sim.messages())
                if urgent.id in ids:
                    arrived_after = ids.index(urgent.id)
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)
    # It went out within the worker's read-ahead (about 2 s of campaign mail at 60/s), not
    # behind the 270 campaign messages still queued.
    assert arrived_after is not None, "the transactional message was not sent within 5 s"
    assert arrived_after < 30 + 2 * 60 + 20


async def test_two_running_campaigns_take_turns_instead_of_one_waiting_for_the_other(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    store = CampaignStore(queue.pool)
    first = await create(store, csv_bytes(400), name="first")
    second = await create(store, csv_bytes(400, domain="example.com"), name="second")
    await store.start(first)
    await store.start(second)  # later: its mail is due after all of the first's
    async with sim_process(max_send_rate=400) as sim:
        report = await asyncio.wait_for(
            run_worker(make_config(pg_dsn, sim.endpoint_url), asyncio.Event(), drain=True), 60
        )
        received = sorted(await sim.messages(), key=lambda m: m["accepted_at"])
    assert report.exit_code == 0 and len(received) == 800
    early = Counter(m["tags"]["campaign_id"] for m in received[:400])
    # Taking turns, each has about half of the first 400 sends (first come: 400 and 0).
    assert early[str(second)] >= 150 and early[str(first)] >= 150, early


async def test_ses_template_campaign_sends_in_bulk_within_ses_limit_and_templated_between(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    store = CampaignStore(queue.pool)
    extra = "stranger@unverified.example.org,Stranger,x\n"  # refused on its own: sandbox
    result = await store.create(
        spec(
            subject="Hi {{name}}",
            html='<p>Hello {{name}}</p><a href="{{unsubscribe_url}}">unsubscribe</a>',
            mode="ses_template",
        ),
        iter_recipients(io.BytesIO(csv_bytes(120, extra=extra)), source="list.csv"),
    )
    await store.start(result.id)
    async with sim_process(sandbox=True, max_send_rate=1000, max_24_hour_send=10000) as sim:
        await sim.verify("example.com", "simulator.amazonses.com")
        report = await asyncio.wait_for(
            run_worker(make_config(pg_dsn, sim.endpoint_url), asyncio.Event(), drain=True), 60
        )
        received = await sim.messages(body=True)
    assert report.exit_code == EXIT_OK
    assert len(received) == 120 and len({m["to"][0] for m in received}) == 120
    one = next(m for m in received if m["to"] == ["success+r7@simulator.amazonses.com"])
    assert one["subject"] == "Hi Person 7"  # rendered by SES from the template data
    # SES renders the body; the List-Unsubscribe headers are ours, one set per bulk entry.
    url = f"https://example.com/u?e=success%2Br7%40simulator.amazonses.com&c={result.id}"
    assert one["headers"] == [
        ["List-Unsubscribe", f"<{url}>"],
        ["List-Unsubscribe-Post", "List-Unsubscribe=One-Click"],
    ]
    assert f'href="{url}"' in one["html"]
    assert one["tags"]["campaign_id"] == str(result.id)
    status = await store.status(result.id)
    assert status.counts["sent"] == 120 and status.counts["failed"] == 1
    async with queue.pool.acquire() as conn:
        error = await conn.fetchval(
            "SELECT j.last_error FROM dispatcher.jobs j JOIN dispatcher.messages m USING (id) "
            "WHERE m.to_addrs[1] = 'stranger@unverified.example.org'"
        )
    assert "Email address is not verified" in error  # SES's reason, this recipient only
    # SES allows one SendBulkEmail a second: the first group of up to 50 went in one bulk call,
    # the rest as SendEmail calls with the same SES template (rendered by SES), none throttled.
    operations = Counter(m["operation"] for m in received)
    assert 1 <= operations["SendBulkEmail"] <= 50
    assert operations["SendBulkEmail"] + operations["SendEmail"] == 120
    # Every recipient's mail carries its own List-Unsubscribe, bulk entry or templated SendEmail.
    urls = {
        m["to"][0]: f"https://example.com/u?e={quote(m['to'][0])}&c={result.id}" for m in received
    }
    assert all(
        m["headers"][:1] == [["List-Unsubscribe", f"<{urls[m['to'][0]]}>"]] for m in received
    )
    assert report.counters.attempts == 121 and report.counters.throttled == 0
    assert await campaign_state(queue, result.id) == "finished"


async def test_campaign_rate_share_keeps_the_rest_of_the_rate_free(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    store = CampaignStore(queue.pool)
    campaign_id = await create(store, csv_bytes(150))
    await store.start(campaign_id)
    async with sim_process(max_send_rate=80) as sim:
        cfg = make_config(pg_dsn, sim.endpoint_url, delivery={"campaign_rate_share": 0.5})
        report = await asyncio.wait_for(run_worker(cfg, asyncio.Event(), drain=True), 60)
        stamps = sorted(m["accepted_at"] for m in await sim.messages())
    assert report.exit_code == EXIT_OK and len(stamps) == 150
    steady = [t for t in stamps if t > stamps[0] + 1.0]
    rate = len(steady) / (steady[-1] - stamps[0] - 1.0)
    assert 0.45 * 80 <= rate <= 0.55 * 80, f"campaign ran at {rate:.1f}/s, half of 80 is 40"


async def test_retry_failed_on_a_finished_campaign_runs_it_again_with_the_retried_mail_queued(
    queue: Queue,
) -> None:
    store = CampaignStore(queue.pool)
    campaign_id = await create(store, csv_bytes(4))
    await store.start(campaign_id)
    ids = await job_ids(queue, campaign_id)
    async with queue.pool.acquire() as conn:
        await conn.execute("UPDATE dispatcher.jobs SET state = 'sent' WHERE id = ANY($1)", ids[1:])
        await conn.execute(
            "UPDATE dispatcher.jobs SET state = 'failed', last_outcome = 'transient' WHERE id = $1",
            ids[0],
        )
    assert await store.finish_done(campaign_id) == [campaign_id]
    assert (await store.get(campaign_id)).state == "finished"

    assert await store.retry_failed(campaign_id) == 1
    status = await store.status(campaign_id)
    assert status.campaign.state == "running"
    assert status.counts["queued"] == 1  # sendable now, not held behind a finished campaign
    assert [j.message.id for j in await queue.claim(uuid.uuid4(), 10)] == [ids[0]]


async def test_send_window_per_recipient_zone_as_the_clock_moves(queue: Queue) -> None:
    store = CampaignStore(queue.pool)
    data = (
        b"email,name,unsubscribe,tz\n"
        b"success+berlin@simulator.amazonses.com,B,https://u/1,\n"  # the campaign's zone
        b"success+ny@simulator.amazonses.com,N,https://u/2,America/New_York\n"
        b"success+tokyo@simulator.amazonses.com,T,https://u/3,Asia/Tokyo\n"
    )
    campaign_id = await create(
        store,
        data,
        send_window="Mon-Fri 09:00-18:00",
        timezone="Europe/Berlin",
        timezone_column="tz",
    )
    await store.start(campaign_id)
    jobs = {
        j.message.to[0].split("+")[1].split("@")[0]: j for j in await queue.claim(uuid.uuid4(), 10)
    }
    now = datetime(2026, 6, 10, 14, 0, tzinfo=UTC)  # Wed: Berlin 16:00, New York 10:00, Tokyo 23:00
    sender = CampaignSender(store, clock=lambda: now)

    assert await sender.window_wait(jobs["berlin"]) is None
    assert await sender.window_wait(jobs["ny"]) is None
    assert await sender.window_wait(jobs["tokyo"]) == 10 * 3600  # Thu 09:00 JST
    assert isinstance(await sender.plan(jobs["tokyo"]), Wait)
    assert isinstance(await sender.plan(jobs["ny"]), Send)

    now = datetime(2026, 6, 12, 17, 0, tzinfo=UTC)  # Fri: Berlin 19:00, NY 13:00, Tokyo Sat 02:00
    monday_berlin = datetime(2026, 6, 15, 7, 0, tzinfo=UTC)
    assert await sender.window_wait(jobs["berlin"]) == (monday_berlin - now).total_seconds()
    assert await sender.window_wait(jobs["ny"]) is None
    monday_tokyo = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)
    assert await sender.window_wait(jobs["tokyo"]) == (monday_tokyo - now).total_seconds()

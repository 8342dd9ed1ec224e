"""The reputation guard end to end: the simulator sends signed bounce events to the daemon's
endpoint, the guard pauses a campaign with a bad list before the account's bounce rate reaches
AWS's 5 % review level, and the addresses that bounced or complained are never mailed again."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from dispatcher.app import run_worker
from dispatcher.campaigns.recipients import iter_recipients
from dispatcher.campaigns.store import CampaignSpec, CampaignStore
from dispatcher.config import Config
from dispatcher.domain.jobs import NewMessage, Settlement
from dispatcher.feedback.events import parse_event
from dispatcher.feedback.store import FeedbackStore
from dispatcher.feedback.watch import check_once
from dispatcher.queue.repository import Queue
from tests.support.cli import cli_env, run_cli
from tests.support.dispatch import eventually, make_config
from tests.support.moto import free_port
from tests.support.sim import SimFactory, SimHandle

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
SIM = "simulator.amazonses.com"


async def scalar(dsn: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


@asynccontextmanager
async def daemon_with_feedback(
    cfg: Config, sim: SimHandle, **guard: object
) -> AsyncIterator[asyncio.Task[object]]:
    """`run_worker` with the SNS endpoint on, subscribed to the simulator's events."""
    port = free_port()
    cfg = replace(
        cfg,
        feedback=replace(
            cfg.feedback,
            enabled=True,
            listen_port=port,
            allowed_topics=TOPIC,
            trusted_simulator=sim.endpoint_url,
        ),
        guard=replace(cfg.guard, **guard),  # type: ignore[arg-type]
    )
    stop = asyncio.Event()
    worker: asyncio.Task[object] = asyncio.create_task(run_worker(cfg, stop))
    try:

        async def listening() -> bool:
            if worker.done():
                worker.result()  # surface a start-up error
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return False
            writer.close()
            await writer.wait_closed()
            return True

        await eventually(listening, limit=20)
        endpoint = f"http://127.0.0.1:{port}/sns"
        await sim.admin("POST", "/_sim/subscriptions", {"endpoint": endpoint, "topic_arn": TOPIC})

        async def confirmed() -> bool:
            return any(s["confirmed"] for s in await sim.admin("GET", "/_sim/subscriptions"))

        await eventually(confirmed, limit=20)
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)


def spec(name: str) -> CampaignSpec:
    return CampaignSpec(
        name=name,
        from_addr="news@example.com",
        subject="Hello {{ name }}",
        html="<p>Hello {{ name }}</p>",
        text="Hello {{ name }}",
    )


async def create_campaign(store: CampaignStore, name: str, addresses: list[str]) -> int:
    data = "email,name\n" + "".join(f"{a},P{i}\n" for i, a in enumerate(addresses))
    result = await store.create(
        spec(name), iter_recipients(io.BytesIO(data.encode()), source="x.csv")
    )
    return result.id


async def test_guard_pauses_a_bad_list_before_the_account_reaches_5_percent(
    queue: Queue, pg_dsn: str, sim_process: SimFactory
) -> None:
    store = CampaignStore(queue.pool)
    # The campaign's list: 1,500 recipients, every tenth a hard bounce. Sent in full after the
    # account's 1,500 good sends, it would take the account to 150 / 3,000 = 5 %.
    bad_list = [f"bounce+c{i}@{SIM}" if i % 10 == 9 else f"success+c{i}@{SIM}" for i in range(1500)]
    campaign = await create_campaign(store, "bad list", bad_list)
    async with (
        # 150/s: the list takes 10 s, time for its feedback to arrive on a loaded machine (at
        # 300/s the whole list once went out before the first bounces were counted)
        sim_process(max_send_rate=150, max_24_hour_send=-1) as sim,
        daemon_with_feedback(
            make_config(pg_dsn, sim.endpoint_url), sim, min_volume=100, check_interval=0.2
        ),
    ):
        # Good history first: 1,499 delivered, one complaint.
        history = [f"success+t{i}@{SIM}" for i in range(1499)] + [f"complaint+t@{SIM}"]
        await queue.enqueue_many(
            [
                NewMessage(from_addr="app@example.com", to=(a,), subject="r", text="r")
                for a in history
            ]
        )

        async def history_sent() -> bool:
            return (await queue.counts())["sent"] >= 1500

        await eventually(history_sent, limit=40)
        await store.start(campaign)

        async def paused() -> bool:
            return (await store.get(campaign)).state == "paused"

        await eventually(paused, limit=40)
        # Let every event of what was sent arrive (the simulator publishes right after sending).
        last = -1
        for _ in range(40):
            n = await scalar(pg_dsn, "SELECT count(*) FROM dispatcher.events")
            if n == last:
                break
            last = n
            await asyncio.sleep(0.5)
        status = await store.status(campaign)
        sent_total = await scalar(
            pg_dsn, "SELECT count(*) FROM dispatcher.jobs WHERE state = 'sent'"
        )
        hard = await scalar(
            pg_dsn,
            "SELECT count(*) FROM dispatcher.recipient_events "
            "WHERE kind = 'bounce' AND bounce_type = 'Permanent'",
        )
        reason = (await store.get(campaign)).pause_reason or ""
        summary = f"sent {sent_total}, hard bounces {hard}, campaign {status.counts}, {reason!r}"
        assert reason.startswith("guard: campaign bounce rate"), summary
        assert status.counts["held"] > 0, summary  # stopped before the end of the list
        assert hard / sent_total < 0.05, summary  # the account stays below AWS's review level
        assert hard >= 4, summary  # 4 % of min_volume: the guard acted on real bounces

        # A later campaign with the bounced and complained addresses: they are skipped.
        bounced = [
            str(r)
            for r in await asyncpg_column(
                pg_dsn, "SELECT address FROM dispatcher.recipient_events WHERE kind = 'bounce'"
            )
        ]
        picked = bounced[:20]  # as many as bounced before the pause (at least 10, see above)
        again = [*picked, f"complaint+t@{SIM}", *(f"success+n{i}@{SIM}" for i in range(30))]
        result = await store.create(
            spec("next"),
            iter_recipients(
                io.BytesIO(("email,name\n" + "".join(f"{a},X\n" for a in again)).encode()),
                source="next.csv",
            ),
        )
        assert result.imported == 30 and result.suppressed == len(picked) + 1, result
        await store.start(result.id)

        async def next_done() -> bool:
            return (await store.status(result.id)).counts.get("sent", 0) == 30

        await eventually(next_done, limit=30)
        received = Counter(m["to"][0] for m in await sim.messages())
    assert all(received[a] == 1 for a in [*picked, f"complaint+t@{SIM}"]), received


async def asyncpg_column(dsn: str, sql: str) -> list[object]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_account_action_all_holds_every_claim_until_resume_force(
    queue: Queue, pg_dsn: str, tmp_path: Path, sim: SimHandle
) -> None:
    """With `account_action = "all"`, an account over its bounce threshold stops every claim
    (transactional too, in every daemon: the claim query reads the hold); only a person lifts it,
    with `dispatcher resume --force`; `status` says so meanwhile."""
    # 250 recipients sent, 15 of them hard-bounced: 6 % over the account's window.
    await queue.enqueue_many(
        [
            NewMessage("app@example.com", to=(f"u{i}@example.com",), subject="s", text="t")
            for i in range(250)
        ]
    )
    owner = uuid.uuid4()
    jobs = await queue.claim(owner, 250)
    assert len(jobs) == 250
    await queue.launch(owner, jobs)
    await queue.settle(
        [
            Settlement(id=j.id, token=j.token, state="sent", ses_message_id=f"ses-{j.id}")
            for j in jobs
        ]
    )
    feedback = FeedbackStore(queue.pool)
    for job in jobs[:15]:
        body = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "Message": json.dumps(
                {
                    "notificationType": "Bounce",
                    "bounce": {
                        "bounceType": "Permanent",
                        "bounceSubType": "General",
                        "bouncedRecipients": [{"emailAddress": job.message.to[0]}],
                    },
                    "mail": {"messageId": f"ses-{job.id}", "tags": {}},  # tied by MessageId
                }
            ),
        }
        event_id = await feedback.record(
            sns_message_id=body["MessageId"],
            topic_arn=TOPIC,
            raw=body,
            event=parse_event(body["Message"]),
        )
        assert event_id is not None
    await feedback.process_pending()
    store = CampaignStore(queue.pool)
    campaign = await create_campaign(store, "fine", [f"c{i}@example.com" for i in range(5)])
    await store.start(campaign)
    settings = replace(Config().guard, account_action="all")

    assert await check_once(feedback, store, settings) == {}  # no campaign paused by itself
    assert (await store.get(campaign)).state == "running"
    hold = await feedback.sending_hold()
    assert hold is not None and hold[0].startswith("guard: account bounce rate 6%"), hold
    await queue.enqueue(
        NewMessage("app@example.com", to=("reset@example.com",), subject="s", text="t")
    )
    assert await queue.claim(uuid.uuid4(), 100) == []  # neither the campaign nor transactional

    env = cli_env(
        tmp_path,
        dsn=pg_dsn,
        endpoint_url=sim.endpoint_url,
        DISPATCHER_GUARD__ACCOUNT_ACTION="all",
    )
    drain = await run_cli(env, "run", "--drain")  # ends (exit 4, held) instead of waiting
    assert drain.code == 4 and "guard: account bounce rate 6%" in drain.out + drain.err, drain
    assert await sim.messages() == []
    assert (await store.get(campaign)).state == "running"  # its own daemon's guard agrees
    status = await run_cli(env, "status", "--json")
    assert status.code == 0, status
    held = json.loads(status.out)["reputation"]["sending_held"]
    assert held["reason"] == hold[0]
    human = await run_cli(env, "status")
    assert "ALL SENDING HELD" in human.out and "resume --force" in human.out, human
    refused = await run_cli(env, "resume")
    assert refused.code == 2 and "--force" in refused.err, refused
    assert await queue.claim(uuid.uuid4(), 100) == []
    resumed = await run_cli(env, "resume", "--force")
    assert resumed.code == 0 and "sending resumed" in resumed.out, resumed
    assert len(await queue.claim(uuid.uuid4(), 100)) == 6  # 5 campaign mails + the reset

"""SES's "Email address is not verified" on a running daemon against the simulator: an
unverified sender is held (shown in `status`, nothing failed) and sent once verified, without a
restart; in the sandbox, mail to an unverified recipient fails with SES's words (issue 15)."""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from pathlib import Path

import aioboto3
import pytest

from dispatcher.app import run_worker
from dispatcher.campaigns.recipients import iter_recipients
from dispatcher.campaigns.store import CampaignSpec, CampaignStore
from dispatcher.domain.jobs import NewMessage
from dispatcher.queue.repository import Queue
from dispatcher.worker.pool import EXIT_OK
from tests.support.cli import CliResult, cli_env, run_cli
from tests.support.dispatch import SIM_OK, dispatcher_ids, eventually, make_config
from tests.support.sim import SimFactory, SimHandle

HOLD = 4.0  # delivery.config_error_delay: long enough for `status` to see the hold


async def verify_identity(sim: SimHandle, name: str) -> None:
    """As a user does: CreateEmailIdentity through the API, then the simulator's verification
    step (SES's, once DNS or the confirmation link checks out)."""
    await sim.verify(name)


def mail(sender: str, to: str, n: int, prefix: str) -> list[NewMessage]:
    return [
        NewMessage(from_addr=sender, to=(to,), subject=f"{prefix} {i}", text="t") for i in range(n)
    ]


async def test_an_unverified_sender_is_held_then_sent_once_verified_without_restart(
    queue: Queue, pg_dsn: str, sim_inprocess: SimFactory, tmp_path: Path
) -> None:
    async with sim_inprocess(require_verified_sender=True, max_send_rate=100) as sim:
        await verify_identity(sim, "ok@example.com")
        new_ids = [
            m.id for m in await queue.enqueue_many(mail("New <new@example.org>", SIM_OK, 4, "n"))
        ]
        ok_ids = [m.id for m in await queue.enqueue_many(mail("ok@example.com", SIM_OK, 3, "k"))]
        cfg = make_config(
            pg_dsn,
            sim.endpoint_url,
            delivery={"config_error_delay": HOLD},
            queue={"poll_interval": 0.1},
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(cfg, stop))  # the daemon, not drain
        try:

            async def others_sent_and_sender_held() -> bool:
                jobs = [await queue.get(i) for i in new_ids + ok_ids]
                return all(
                    j is not None and j.state == "sent" for j in jobs[len(new_ids) :]
                ) and any(
                    j is not None and j.last_outcome == "config_error" for j in jobs[: len(new_ids)]
                )

            await eventually(others_sent_and_sender_held, limit=20)
            # Held, not failed: every message of the sender waits with its attempts untouched.
            for i in new_ids:
                job = await queue.get(i)
                assert job is not None and job.state in ("queued", "claimed"), job
                assert job.attempts == 0, job
            env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)
            shown: dict[str, CliResult] = {}

            async def status_shows_the_hold() -> bool:
                # The hold lapses every HOLD s and is taken again at the sender's next try: a
                # `status` started in that gap (a slow machine) sees none, so look again.
                shown["json"] = await run_cli(env, "status", "--json")
                shown["text"] = await run_cli(env, "status")
                return bool(json.loads(shown["json"].out)["held_senders"]) and (
                    "new@example.org" in shown["text"].out
                )

            await eventually(status_shows_the_hold, limit=HOLD * 3)
            status, text = shown["json"], shown["text"]

            async with aioboto3.Session().client("sesv2", **sim.client_kwargs()) as ses:
                await ses.create_email_identity(EmailIdentity="new@example.org")
            await verify_identity(sim, "new@example.org")

            async def all_sent() -> bool:
                return (await queue.counts()).get("sent", 0) == len(new_ids) + len(ok_ids)

            await eventually(all_sent, limit=HOLD * 4)
        finally:
            stop.set()
            report = await asyncio.wait_for(worker, 30)
        received = await sim.messages()
    assert report.exit_code == EXIT_OK
    assert Counter(dispatcher_ids(received)) == Counter(new_ids + ok_ids)  # each once
    assert (await queue.counts()).get("failed", 0) == 0
    assert status.code == 0, status
    [held] = json.loads(status.out)["held_senders"]
    assert held["from"] == '"New" <new@example.org>'
    assert "Email address is not verified" in held["reason"]
    assert "new@example.org" in held["reason"]
    assert text.code == 0, text
    assert '"New" <new@example.org>' in text.out and "retried at" in text.out, text
    assert "Email address is not verified" in text.out


async def test_in_the_sandbox_mail_to_an_unverified_recipient_fails_with_ses_text(
    queue: Queue, pg_dsn: str, sim_inprocess: SimFactory
) -> None:
    async with sim_inprocess(sandbox=True, max_send_rate=50) as sim:
        await verify_identity(sim, "ok@example.com")
        await verify_identity(sim, "friend@example.net")
        [friend] = await queue.enqueue_many(mail("ok@example.com", "friend@example.net", 1, "f"))
        [stranger] = await queue.enqueue_many(
            mail("ok@example.com", "stranger@example.net", 1, "s")
        )
        cfg = make_config(pg_dsn, sim.endpoint_url)
        report = await asyncio.wait_for(run_worker(cfg, asyncio.Event(), drain=True), 60)
    assert report.exit_code == EXIT_OK, report
    sent, failed = await queue.get(friend.id), await queue.get(stranger.id)
    assert sent is not None and sent.state == "sent"
    assert failed is not None and failed.state == "failed"
    assert failed.last_error == (
        "MessageRejected: Email address is not verified. The following identities failed the "
        "check in region US-EAST-1: stranger@example.net"
    )


@pytest.mark.parametrize("mode", ["render", "ses_template"])  # SendEmail, SendBulkEmail
async def test_a_campaign_from_an_unverified_sender_pauses_and_fails_nobody(
    queue: Queue, pg_dsn: str, sim_inprocess: SimFactory, mode: str
) -> None:
    store = CampaignStore(queue.pool)
    rows = "email,name\n" + "".join(
        f"success+r{i}@simulator.amazonses.com,P{i}\n" for i in range(20)
    )
    spec = CampaignSpec(
        name="autumn",
        from_addr="news@example.com",
        subject="Hi {{ name }}",
        html="<p>{{ name }}</p>",
    )
    created = await store.create(spec, iter_recipients(io.BytesIO(rows.encode()), source="l.csv"))
    await store.start(created.id)
    # identities=(): nothing set up yet (the fixture's default verifies example.com).
    async with sim_inprocess(identities=(), max_send_rate=100) as sim:
        cfg = make_config(pg_dsn, sim.endpoint_url)
        await asyncio.wait_for(run_worker(cfg, asyncio.Event(), drain=True), 60)
        paused = await store.status(created.id)
        # A person verifies the identity and resumes: every recipient gets it, once.
        await verify_identity(sim, "news@example.com")
        await store.start(created.id)
        report = await asyncio.wait_for(run_worker(cfg, asyncio.Event(), drain=True), 60)
        received = await sim.messages()
    assert paused.campaign.state == "paused"
    assert paused.campaign.pause_reason is not None
    assert "Email address is not verified" in paused.campaign.pause_reason
    assert paused.counts.get("failed", 0) == 0
    assert report.exit_code == EXIT_OK
    assert len(received) == 20 and len({m["to"][0] for m in received}) == 20
    assert (await store.status(created.id)).counts.get("sent") == 20


async def test_in_the_sandbox_a_bulk_campaign_fails_only_the_unverified_recipient(
    queue: Queue, pg_dsn: str, sim_inprocess: SimFactory
) -> None:
    store = CampaignStore(queue.pool)
    rows = "email,name\nsuccess+a@simulator.amazonses.com,A\nstranger@example.net,S\n"
    rows += "success+b@simulator.amazonses.com,B\n"
    spec = CampaignSpec(
        name="b",
        from_addr="news@example.com",
        subject="Hi",
        html="<p>{{name}}</p>",
        mode="ses_template",
    )
    created = await store.create(spec, iter_recipients(io.BytesIO(rows.encode()), source="l.csv"))
    await store.start(created.id)
    async with sim_inprocess(sandbox=True, max_send_rate=100) as sim:
        await verify_identity(sim, "news@example.com")
        cfg = make_config(pg_dsn, sim.endpoint_url)
        report = await asyncio.wait_for(run_worker(cfg, asyncio.Event(), drain=True), 60)
        received = await sim.messages()
    assert report.exit_code == EXIT_OK, report
    assert sorted(m["to"][0] for m in received) == [
        "success+a@simulator.amazonses.com",
        "success+b@simulator.amazonses.com",
    ]
    status = await store.status(created.id)
    assert status.campaign.state == "finished"
    assert (status.counts.get("sent"), status.counts.get("failed")) == (2, 1)

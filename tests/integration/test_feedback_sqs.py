"""The SQS intake against moto's SQS: envelopes recorded then deleted, the simulator's signed
events verified, forgeries and unknown topics left on the queue and never recorded."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aioboto3
import aiohttp
import asyncpg  # type: ignore[import-untyped]

from dispatcher.accounts.settings import AccountSettings
from dispatcher.app import run_worker
from dispatcher.config import Config
from dispatcher.config.settings import FeedbackSettings
from dispatcher.feedback.endpoint import certificate_fetcher
from dispatcher.feedback.sns import SnsVerifier
from dispatcher.feedback.sqs import run_sqs_poller
from dispatcher.feedback.store import FeedbackStore
from dispatcher.queue.repository import Queue
from tests.support.dispatch import eventually, make_config
from tests.support.moto import MotoServer
from tests.support.sim import SimFactory, sns_receiver

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
SIM = "simulator.amazonses.com"


def envelope(address: str, *, topic: str = TOPIC, message_as_object: bool = False) -> str:
    ses_event = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": address}],
        },
        "mail": {"messageId": f"ses-{address}", "destination": [address], "tags": {}},
    }
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": f"sns-{address}",
            "TopicArn": topic,
            "Message": ses_event if message_as_object else json.dumps(ses_event),
            "Timestamp": "2026-11-28T00:00:00.000Z",
        }
    )


@asynccontextmanager
async def sqs_queue(moto: MotoServer, name: str) -> AsyncIterator[tuple[Any, str]]:
    session = aioboto3.Session(
        region_name=moto.region, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    async with session.client("sqs", endpoint_url=moto.endpoint_url) as sqs:
        created = await sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "1"})
        yield sqs, created["QueueUrl"]


async def daemon_suppresses(cfg: Config, store: FeedbackStore, *addresses: str) -> None:
    """Run the daemon until every one of `addresses` is suppressed (its feedback recorded)."""
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(cfg, stop))
    try:

        async def suppressed() -> bool:
            if worker.done():
                worker.result()
            return len(await store.lookup(list(addresses))) == len(addresses)

        await eventually(suppressed, limit=20)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)


def with_sqs(cfg: Config, moto: MotoServer, url: str | None = None, **changes: Any) -> Config:
    """`cfg` reading feedback from moto's SQS (unsigned events), `url` the shared queue."""
    feedback = replace(
        cfg.feedback,
        allowed_topics=TOPIC,
        sqs_queue_url=url,
        sqs_endpoint_url=moto.endpoint_url,
        sqs_wait_seconds=1,
        sqs_verify=False,
    )
    return replace(cfg, feedback=feedback, **changes)


@asynccontextmanager
async def poller(
    settings: FeedbackSettings, store: FeedbackStore, verifier: SnsVerifier
) -> AsyncIterator[None]:
    assert settings.sqs_queue_url is not None
    session = aioboto3.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    task = asyncio.create_task(
        run_sqs_poller(settings, store, verifier, url=settings.sqs_queue_url, session=session)
    )
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        failure = task.exception() if task.done() and not task.cancelled() else None
        if failure is not None:
            raise failure


async def left_on_queue(sqs: Any, url: str) -> list[str]:
    """Bodies still on the queue (after their visibility timeout)."""
    got = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=3)
    return [m["Body"] for m in got.get("Messages", [])]


async def test_envelopes_are_recorded_then_deleted_and_an_unknown_topic_stays(
    queue: Queue, moto_server: MotoServer
) -> None:
    store = FeedbackStore(queue.pool)
    async with sqs_queue(moto_server, "feedback-plain") as (sqs, url):
        bodies = [
            envelope(f"gone@{SIM}"),
            envelope(f"object@{SIM}", message_as_object=True),  # moto writes Message this way
            envelope(f"evil@{SIM}", topic="arn:aws:sns:us-east-1:999999999999:other"),
        ]
        for body in bodies:
            await sqs.send_message(QueueUrl=url, MessageBody=body)
        settings = FeedbackSettings(
            allowed_topics=TOPIC,
            sqs_queue_url=url,
            sqs_endpoint_url=moto_server.endpoint_url,
            sqs_wait_seconds=1,
            sqs_verify=False,
        )
        async with aiohttp.ClientSession() as http:
            verifier = SnsVerifier(allowed_topics=(TOPIC,), fetch=certificate_fetcher(http))
            async with poller(settings, store, verifier):

                async def both_suppressed() -> bool:
                    return len(await store.lookup([f"gone@{SIM}", f"object@{SIM}"])) == 2

                await eventually(both_suppressed, limit=20)
                await asyncio.sleep(1.5)  # a delete in progress completes
        remaining = await left_on_queue(sqs, url)
    assert remaining == [bodies[2]]  # recorded ones deleted; the unknown topic's left
    assert await store.lookup([f"evil@{SIM}"]) == {}


async def test_the_simulators_signed_events_are_verified_and_a_forgery_is_refused(
    queue: Queue, moto_server: MotoServer, sim_process: SimFactory
) -> None:
    store = FeedbackStore(queue.pool)
    async with (
        sim_process(max_send_rate=100) as sim,
        sns_receiver() as rx,
        sqs_queue(moto_server, "feedback-signed") as (sqs, url),
    ):
        await sim.admin("POST", "/_sim/subscriptions", {"endpoint": rx.url})
        (confirmation,) = await rx.wait_for("SubscriptionConfirmation")
        async with aiohttp.ClientSession() as http, http.get(confirmation["SubscribeURL"]) as r:
            assert r.status == 200
        session = aioboto3.Session(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        async with session.client("sesv2", endpoint_url=sim.endpoint_url) as ses:
            for address in (f"bounce@{SIM}", f"complaint@{SIM}"):
                await ses.send_email(
                    FromEmailAddress="sender@example.com",
                    Destination={"ToAddresses": [address]},
                    Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}},
                )
        # bounce@ gives a Bounce; complaint@ gives a Delivery and then a Complaint: three in all
        notifications = await rx.wait_for("Notification", count=3)
        (bounce,) = [
            n for n in notifications if json.loads(n["Message"])["notificationType"] == "Bounce"
        ]
        topic = bounce["TopicArn"]
        forged = copy.deepcopy(bounce)
        forged["MessageId"] = "forged-1"
        forged["Message"] = forged["Message"].replace("bounce@", "victim@")
        for body in [*notifications, forged]:
            await sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
        cert_url = sim.endpoint_url + "/_sim/sns/certificate.pem"
        settings = FeedbackSettings(
            allowed_topics=topic,
            sqs_queue_url=url,
            sqs_endpoint_url=moto_server.endpoint_url,
            sqs_wait_seconds=1,
        )
        async with aiohttp.ClientSession() as http:
            verifier = SnsVerifier(
                allowed_topics=(topic,),
                fetch=certificate_fetcher(http),
                trusted_certificates={cert_url: await sim.certificate_pem()},
            )
            async with poller(settings, store, verifier):

                async def both_suppressed() -> bool:
                    found = await store.lookup([f"bounce@{SIM}", f"complaint@{SIM}"])
                    return len(found) == 2

                await eventually(both_suppressed, limit=20)
                await asyncio.sleep(1.5)
        remaining = await left_on_queue(sqs, url)
    assert [json.loads(b)["MessageId"] for b in remaining] == ["forged-1"]
    assert await store.lookup([f"victim@{SIM}"]) == {}
    async with queue.pool.acquire() as conn:
        recorded = await conn.fetchval("SELECT count(*) FROM dispatcher.events")
    assert recorded == len(notifications)  # every authentic one; the forgery recorded nothing


async def test_the_daemon_polls_the_configured_queue(
    queue: Queue, pg_dsn: str, moto_server: MotoServer, sim_process: SimFactory
) -> None:
    store = FeedbackStore(queue.pool)
    async with sim_process() as sim, sqs_queue(moto_server, "feedback-daemon") as (sqs, url):
        await sqs.send_message(QueueUrl=url, MessageBody=envelope(f"daemon@{SIM}"))
        cfg = with_sqs(make_config(pg_dsn, sim.endpoint_url), moto_server, url)
        await daemon_suppresses(cfg, store, f"daemon@{SIM}")


async def test_each_account_polls_its_own_queue(
    queue: Queue, pg_dsn: str, moto_server: MotoServer, sim_process: SimFactory
) -> None:
    # Two SES accounts, each with its SNS -> SQS feedback queue (in its own AWS account, read
    # with its own credentials); no shared feedback.sqs_queue_url.
    store = FeedbackStore(queue.pool)
    async with (
        sim_process() as sim,
        sqs_queue(moto_server, "feedback-a") as (sqs, url_a),
        sqs_queue(moto_server, "feedback-b") as (_, url_b),
    ):
        await sqs.send_message(QueueUrl=url_a, MessageBody=envelope(f"bounced-a@{SIM}"))
        await sqs.send_message(QueueUrl=url_b, MessageBody=envelope(f"bounced-b@{SIM}"))
        accounts = (
            AccountSettings("brand-a", sqs_queue_url=url_a),
            AccountSettings(
                "brand-b",
                endpoint_url=sim.endpoint_url,
                access_key_id="key-b",
                secret_access_key="secret-b",
                sqs_queue_url=url_b,
            ),
        )
        cfg = with_sqs(make_config(pg_dsn, sim.endpoint_url), moto_server, accounts=accounts)
        await daemon_suppresses(cfg, store, f"bounced-a@{SIM}", f"bounced-b@{SIM}")


async def test_a_message_whose_record_fails_is_not_deleted_and_is_recorded_later(
    queue: Queue, moto_server: MotoServer
) -> None:
    with socket.socket() as s:  # a port nothing listens on: the database is unreachable
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = await asyncpg.create_pool(
        f"postgresql://nobody@127.0.0.1:{port}/none", min_size=0, max_size=1
    )
    async with sqs_queue(moto_server, "feedback-outage") as (sqs, url):
        body = envelope(f"later@{SIM}")
        await sqs.send_message(QueueUrl=url, MessageBody=body)
        settings = FeedbackSettings(
            allowed_topics=TOPIC,
            sqs_queue_url=url,
            sqs_endpoint_url=moto_server.endpoint_url,
            sqs_wait_seconds=1,
            sqs_verify=False,
        )
        store = FeedbackStore(queue.pool)
        async with aiohttp.ClientSession() as http:
            verifier = SnsVerifier(allowed_topics=(TOPIC,), fetch=certificate_fetcher(http))
            async with poller(settings, FeedbackStore(down), verifier):
                await asyncio.sleep(3)  # received (at least once), record refused
            assert await left_on_queue(sqs, url) == [body]  # not deleted
            await asyncio.sleep(1.5)  # visible again after its visibility timeout
            async with poller(settings, store, verifier):

                async def suppressed() -> bool:
                    return len(await store.lookup([f"later@{SIM}"])) == 1

                await eventually(suppressed, limit=20)
                await asyncio.sleep(1.5)
        assert await left_on_queue(sqs, url) == []
    await down.close()

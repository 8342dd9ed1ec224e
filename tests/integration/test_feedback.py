"""The feedback loop with the real simulator and Postgres: signed SNS POSTs reach the endpoint,
events are recorded once, bounced and complained addresses are suppressed, and every refused
request is answered with its status and records nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aioboto3
import aiohttp
import pytest
from aiohttp import web

from dispatcher.domain.jobs import NewMessage
from dispatcher.feedback.endpoint import create_app, idle, subscription_confirmer
from dispatcher.feedback.sns import SnsVerifier
from dispatcher.feedback.store import FeedbackStore
from dispatcher.queue.repository import Queue
from dispatcher.sim.sns import CERT_PATH
from tests.support.dispatch import eventually
from tests.support.sim import SimFactory, SimHandle, sns_receiver

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
SIM = "@simulator.amazonses.com"
SIMPLE: Any = {"Simple": {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}}


class Endpoint:
    def __init__(self, url: str, app: web.Application, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.app = app
        self.http = http

    async def post(
        self, body: bytes | dict[str, Any], kind: str | None = "Notification"
    ) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        headers = {"x-amz-sns-message-type": kind} if kind else {}
        async with self.http.post(self.url, data=data, headers=headers) as resp:
            return resp.status, await resp.json()


@asynccontextmanager
async def endpoint(store: FeedbackStore, sim: SimHandle) -> AsyncIterator[Endpoint]:
    """The endpoint on a free loopback port, trusting the simulator's certificate by pinning."""
    pinned = {sim.endpoint_url + CERT_PATH: await sim.certificate_pem()}
    verifier = SnsVerifier(
        allowed_topics=[TOPIC],
        trusted_certificates=pinned,
        trusted_subscribe_origins=[sim.endpoint_url],
    )
    async with aiohttp.ClientSession() as http:
        app = create_app(verifier, store, confirm=subscription_confirmer(http))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            yield Endpoint(f"http://127.0.0.1:{port}/sns", app, http)
        finally:
            await runner.cleanup()


async def subscribe(sim: SimHandle, ep: Endpoint) -> None:
    """Subscribe without auto-confirm: the endpoint must confirm through the SubscribeURL."""
    await sim.admin("POST", "/_sim/subscriptions", {"endpoint": ep.url, "topic_arn": TOPIC})

    async def confirmed() -> bool:
        subs = await sim.admin("GET", "/_sim/subscriptions")
        return bool(subs) and all(s["confirmed"] for s in subs)

    await eventually(confirmed, limit=5)


async def send(sim: SimHandle, *to: str, dispatcher_id: int, **extra: Any) -> str:
    async with aioboto3.Session().client("sesv2", **sim.client_kwargs()) as v2:
        result = await v2.send_email(
            FromEmailAddress="sender@example.com",
            Destination={"ToAddresses": list(to)},
            Content=SIMPLE,
            EmailTags=[{"Name": "dispatcher_id", "Value": str(dispatcher_id)}],
            **extra,
        )
    return str(result["MessageId"])


async def sent_by_us(queue: Queue, sim: SimHandle, *to: str) -> tuple[int, str]:
    """A message the dispatcher sent: queued, sent through SES and settled with SES's MessageId,
    as `run` records it; (our id, SES's MessageId). Identity notifications carry no tags (as on
    AWS): that MessageId is what ties their events to the message, so the simulator must hold
    its events back (`event_delay_ms`) until the settle is written."""
    [queued] = await queue.enqueue_many(
        [NewMessage(from_addr="sender@example.com", to=to, subject="Hi", text="Hello")]
    )
    ses_id = await send(sim, *to, dispatcher_id=queued.id)
    async with queue.pool.acquire() as conn:
        await conn.execute(
            "UPDATE dispatcher.jobs SET state = 'sent', ses_message_id = $2 WHERE id = $1",
            queued.id,
            ses_id,
        )
    return queued.id, ses_id


async def count(queue: Queue, table: str) -> int:
    async with queue.pool.acquire() as conn:
        n: int = await conn.fetchval(f"SELECT count(*) FROM dispatcher.{table}")
    return n


async def processed_events(queue: Queue, n: int) -> bool:
    async with queue.pool.acquire() as conn:
        done: int = await conn.fetchval(
            "SELECT count(*) FROM dispatcher.events WHERE processed_at IS NOT NULL"
        )
    return done >= n


@pytest.mark.parametrize("version", [1, 2])
async def test_a_bounce_is_recorded_and_the_address_suppressed(
    sim_inprocess: SimFactory, queue: Queue, version: int
) -> None:
    store = FeedbackStore(queue.pool)
    async with (
        sim_inprocess(sns_signature_version=version, event_delay_ms=300) as sim,
        endpoint(store, sim) as ep,
    ):
        await subscribe(sim, ep)
        ours, ses_id = await sent_by_us(queue, sim, f"bounce{SIM}", f"success{SIM}")
        await eventually(lambda: processed_events(queue, 2), limit=5)  # Delivery and Bounce
    async with queue.pool.acquire() as conn:
        events = await conn.fetch(
            "SELECT kind, ses_message_id, message_id FROM dispatcher.events ORDER BY kind"
        )
        recipients = await conn.fetch(
            "SELECT address, kind, bounce_type, bounce_subtype, status "
            "FROM dispatcher.recipient_events ORDER BY kind"
        )
        feedback = await conn.fetchrow(
            "SELECT delivered, bounced, complained FROM dispatcher.message_feedback "
            "WHERE message_id = $1",
            ours,
        )
    assert [(e["kind"], e["ses_message_id"], e["message_id"]) for e in events] == [
        ("bounce", ses_id, ours),
        ("delivery", ses_id, ours),
    ]
    assert [tuple(r) for r in recipients] == [
        (f"bounce{SIM}", "bounce", "Permanent", "General", "5.1.1"),
        (f"success{SIM}", "delivery", None, None, None),
    ]
    assert tuple(feedback) == (1, 1, 0)
    suppressed = await store.lookup([f"BOUNCE{SIM}", f"success{SIM}"])
    assert list(suppressed) == [f"bounce{SIM}"]  # the bounced one only, not the destination
    assert suppressed[f"bounce{SIM}"].reason == "bounce Permanent/General"


async def test_a_complaint_in_configuration_set_format_suppresses(
    sim_inprocess: SimFactory, queue: Queue
) -> None:
    store = FeedbackStore(queue.pool)
    async with sim_inprocess(configuration_sets=("cs",)) as sim, endpoint(store, sim) as ep:
        await sim.admin(
            "POST",
            "/_sim/subscriptions",
            {
                "endpoint": ep.url,
                "topic_arn": TOPIC,
                "kind": "configuration_set",
                "auto_confirm": True,
                "types": ["Complaint"],
            },
        )
        await send(sim, f"complaint{SIM}", dispatcher_id=7, ConfigurationSetName="cs")
        await eventually(lambda: processed_events(queue, 1), limit=5)
    assert (await store.lookup([f"complaint{SIM}"]))[f"complaint{SIM}"].reason == (
        "complaint (abuse)"
    )


async def test_a_replayed_message_id_is_recorded_once(
    sim_inprocess: SimFactory, queue: Queue
) -> None:
    store = FeedbackStore(queue.pool)
    async with (
        sim_inprocess(event_duplicate_rate=1.0, event_delay_ms=300) as sim,
        endpoint(store, sim) as ep,
    ):
        await sim.admin(
            "POST",
            "/_sim/subscriptions",
            {"endpoint": ep.url, "topic_arn": TOPIC, "auto_confirm": True, "types": ["Bounce"]},
        )
        ours, _ = await sent_by_us(queue, sim, f"bounce{SIM}")

        async def both_delivered() -> bool:
            deliveries = await sim.admin("GET", "/_sim/deliveries")
            return bool(sum(d["status"] == 200 for d in deliveries) >= 2)

        await eventually(both_delivered, limit=5)
        await idle(ep.app)
        async with queue.pool.acquire() as conn:
            raw = json.loads(await conn.fetchval("SELECT raw FROM dispatcher.events"))
        status, answer = await ep.post(raw)  # a third time, by hand
        await idle(ep.app)
    assert (status, answer["result"]) == (200, "duplicate")
    assert await count(queue, "events") == 1
    assert await count(queue, "recipient_events") == 1
    async with queue.pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT bounced FROM dispatcher.message_feedback WHERE message_id = $1", ours
            )
            == 1
        )


async def test_refused_requests_get_their_status_and_record_nothing(
    sim_inprocess: SimFactory, queue: Queue
) -> None:
    store = FeedbackStore(queue.pool)
    async with sim_inprocess() as sim, endpoint(store, sim) as ep:
        # A genuine signed notification to tamper with, captured by a plain receiver first.
        async with sns_receiver() as rx:
            await sim.admin(
                "POST",
                "/_sim/subscriptions",
                {"endpoint": rx.url, "topic_arn": TOPIC, "auto_confirm": True},
            )
            await send(sim, f"bounce{SIM}", dispatcher_id=1)
            (genuine,) = await rx.wait_for("Notification")
        forged = {**genuine, "Message": genuine["Message"].replace("Permanent", "Permanenu")}
        other_topic = {**genuine, "TopicArn": TOPIC + "-other"}
        off_host = {**genuine, "SigningCertURL": "https://evil.example/cert.pem"}
        version = {**genuine, "SignatureVersion": "3"}
        cases = [
            (await ep.post(b"x" * (300 * 1024)), 413),
            (await ep.post(b"{not json"), 400),
            (await ep.post(genuine, kind=None), 400),
            (await ep.post(genuine, kind="SubscriptionConfirmation"), 400),
            (await ep.post(forged), 403),
            (await ep.post(other_topic), 403),
            (await ep.post(off_host), 403),
            (await ep.post(version), 400),
        ]
        await idle(ep.app)
        assert [status for (status, _), _ in cases] == [want for _, want in cases]
        assert await count(queue, "events") == 0
        assert await count(queue, "suppressions") == 0
        status, answer = await ep.post(genuine)  # the untouched one is accepted
        await idle(ep.app)
    assert (status, answer["result"]) == (200, "recorded")
    assert await count(queue, "events") == 1
    assert list(await store.lookup([f"bounce{SIM}"])) == [f"bounce{SIM}"]

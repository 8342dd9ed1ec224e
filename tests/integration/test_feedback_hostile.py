"""Authentic feedback that used to be refused forever or stop the intake: a NUL in a signed
bounce (Postgres cannot store it), a subscription with raw message delivery, one SQS message
that crashed the poller, one recorded event that stopped the sweep."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from dispatcher.config.settings import FeedbackSettings
from dispatcher.feedback.endpoint import create_app, idle, subscription_confirmer
from dispatcher.feedback.events import parse_event
from dispatcher.feedback.sns import SnsVerifier
from dispatcher.feedback.sqs import SqsRejected, decode
from dispatcher.feedback.store import FeedbackStore
from dispatcher.queue.repository import Queue
from dispatcher.sim.sns import CERT_PATH, Signer, notification
from tests.integration.test_feedback_sqs import left_on_queue, poller, sqs_queue
from tests.support.dispatch import eventually
from tests.support.moto import MotoServer

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
SIM = "simulator.amazonses.com"
BASE = "http://127.0.0.1:9"  # where the signing certificate "lives": pinned, never fetched


def bounce(address: str, **bounce_fields: Any) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": address, "diagnosticCode": "smtp; 550"}],
            **bounce_fields,
        },
        "mail": {"messageId": f"ses-{address}", "destination": [address]},
    }


@asynccontextmanager
async def endpoint(store: FeedbackStore, signer: Signer) -> AsyncIterator[str]:
    """The real endpoint on a loopback port, trusting ``signer``'s certificate by pinning."""
    verifier = SnsVerifier(
        allowed_topics=[TOPIC], trusted_certificates={BASE + CERT_PATH: signer.certificate_pem}
    )
    async with aiohttp.ClientSession() as http:
        app = create_app(verifier, store, confirm=subscription_confirmer(http))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            yield f"http://127.0.0.1:{runner.addresses[0][1]}/sns"
            await idle(app)
        finally:
            await runner.cleanup()


async def post(url: str, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status, await r.json()


def signed(signer: Signer, message: str) -> bytes:
    body = notification(
        signer,
        topic_arn=TOPIC,
        message=message,
        timestamp="2026-12-06T07:00:00.000Z",
        base_url=BASE,
        subscription_arn=TOPIC + ":sub",
        version=2,
    )
    return json.dumps(body).encode()


async def test_a_signed_bounce_with_a_nul_is_recorded_and_suppresses(queue: Queue) -> None:
    store = FeedbackStore(queue.pool)
    signer = Signer()
    # A NUL escaped inside the SES JSON, and a literal NUL in the Message string itself (the
    # body then carries \u0000 inside the Message): both once answered 503 forever.
    escaped = json.dumps(bounce(f"one@{SIM}", feedbackId="f\x00id"))
    literal = json.dumps(bounce(f"two@{SIM}")).replace("smtp; 550", "smtp; 550 \x00 gone")
    # Same story for a lone surrogate escaped in the SES JSON (jsonb refuses it too).
    surrogate = json.dumps(bounce(f"three@{SIM}")).replace("smtp; 550", "smtp; 550 \\ud800")
    assert "\\u0000" in escaped and "\x00" in literal
    async with endpoint(store, signer) as url:
        answers = [
            await post(url, signed(signer, m), **{"x-amz-sns-message-type": "Notification"})
            for m in (escaped, literal, surrogate)
        ]
    assert [(status, body.get("result")) for status, body in answers] == [(200, "recorded")] * 3
    addresses = [f"one@{SIM}", f"three@{SIM}", f"two@{SIM}"]
    assert sorted(await store.lookup(addresses)) == addresses
    async with queue.pool.acquire() as conn:
        diagnostics = await conn.fetch(
            "SELECT address, diagnostic FROM dispatcher.recipient_events ORDER BY address"
        )
    assert [tuple(r) for r in diagnostics] == [
        (f"one@{SIM}", "smtp; 550"),
        (f"three@{SIM}", "smtp; 550 \ufffd"),
        (f"two@{SIM}", "smtp; 550 \ufffd gone"),  # the NUL, visibly replaced
    ]


async def test_a_bare_ses_event_is_refused_saying_raw_delivery_must_be_off(
    queue: Queue,
) -> None:
    store = FeedbackStore(queue.pool)
    signer = Signer()
    raw = json.dumps(bounce(f"raw@{SIM}")).encode()
    async with endpoint(store, signer) as url:
        typed = await post(url, raw, **{"x-amz-sns-message-type": "Notification"})
        flagged = await post(url, raw, **{"x-amz-sns-rawdelivery": "true"})
    for status, answer in (typed, flagged):
        assert status == 400
        assert "raw message delivery is on for this subscription; turn it off" in answer["detail"]
    assert await store.lookup([f"raw@{SIM}"]) == {}


async def test_sqs_messages_that_cannot_be_recorded_do_not_hold_back_the_rest(
    queue: Queue, moto_server: MotoServer
) -> None:
    store = FeedbackStore(queue.pool)
    async with queue.pool.acquire() as conn:
        # A real refusal by Postgres of one message (not an outage).
        await conn.execute(
            """
            CREATE FUNCTION dispatcher.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.sns_message_id = 'sns-refused' THEN RAISE EXCEPTION 'refused'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_poison BEFORE INSERT ON dispatcher.events
            FOR EACH ROW EXECUTE FUNCTION dispatcher.refuse_poison();
            """
        )
    bodies = {
        "refused": bounce(f"refused@{SIM}"),
        # Year 1 at +05:00 is before year 1 in UTC: no datetime (nor Postgres) can hold it.
        "year-one": bounce(f"year-one@{SIM}", timestamp="0001-01-01T00:00:00+05:00"),
        "good": bounce(f"good@{SIM}"),
    }
    async with sqs_queue(moto_server, "feedback-hostile") as (sqs, url):
        await sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {
                    "Id": name,
                    "MessageBody": json.dumps(
                        {
                            "Type": "Notification",
                            "MessageId": f"sns-{name}",
                            "TopicArn": TOPIC,
                            "Message": json.dumps(event),
                        }
                    ),
                }
                for name, event in bodies.items()
            ],
        )
        settings = FeedbackSettings(
            allowed_topics=TOPIC,
            sqs_queue_url=url,
            sqs_endpoint_url=moto_server.endpoint_url,
            sqs_wait_seconds=1,
            sqs_verify=False,
        )
        async with poller(settings, store, SnsVerifier(allowed_topics=(TOPIC,))):
            await eventually(lambda: _kind(queue, "sns-good", "bounce"), limit=20)
            await eventually(lambda: _kind(queue, "sns-year-one", "malformed"), limit=5)
            await asyncio.sleep(1.5)  # a delete in progress completes
        remaining = await left_on_queue(sqs, url)
    # The refused one stays on the queue for its redrive policy; the unreadable one is kept
    # for a person (recorded, deleted); the good one suppresses.
    assert [json.loads(b)["MessageId"] for b in remaining] == ["sns-refused"]
    assert list(await store.lookup([f"year-one@{SIM}", f"good@{SIM}"])) == [f"good@{SIM}"]


async def test_sqs_refuses_a_bare_ses_event_it_was_told_to_verify() -> None:
    verifier = SnsVerifier(allowed_topics=(TOPIC,))
    body = json.dumps(bounce(f"raw@{SIM}"))
    with pytest.raises(SqsRejected) as info:
        await decode(body, "sqs-1", verifier=verifier, verify=True, topics=(TOPIC,))
    assert "raw message delivery is on for this subscription; turn it off" in str(info.value)
    assert "or set feedback.sqs_verify = false" in str(info.value)
    unverified = await decode(body, "sqs-1", verifier=verifier, verify=False, topics=(TOPIC,))
    assert unverified.dedupe_id == "sqs:sqs-1"  # as before, when verification is off


async def test_one_event_that_cannot_be_applied_does_not_stop_the_sweep(queue: Queue) -> None:
    store = FeedbackStore(queue.pool)
    async with queue.pool.acquire() as conn:
        # A real refusal by Postgres for one recipient: its event cannot be applied.
        await conn.execute(
            f"""
            CREATE FUNCTION dispatcher.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.address = 'poison@{SIM}' THEN RAISE EXCEPTION 'refused'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_poison BEFORE INSERT ON dispatcher.recipient_events
            FOR EACH ROW EXECUTE FUNCTION dispatcher.refuse_poison();
            """
        )
    for address in ("poison", "after"):
        envelope = {"Type": "Notification", "MessageId": f"sns-{address}", "TopicArn": TOPIC}
        envelope["Message"] = json.dumps(bounce(f"{address}@{SIM}"))
        await store.record(
            sns_message_id=f"sns-{address}",
            topic_arn=TOPIC,
            raw=envelope,
            event=parse_event(envelope["Message"]),
        )
    assert await store.process_pending() == 1
    assert list(await store.lookup([f"poison@{SIM}", f"after@{SIM}"])) == [f"after@{SIM}"]


async def _kind(queue: Queue, sns_message_id: str, kind: str) -> bool:
    async with queue.pool.acquire() as conn:
        found = await conn.fetchval(
            "SELECT kind FROM dispatcher.events WHERE sns_message_id = $1", sns_message_id
        )
    return bool(found == kind)

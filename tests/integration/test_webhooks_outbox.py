"""The webhook outbox on real Postgres: the triggers of migration 0014 write one event per change
and endpoint from every door (Python, the SQL function, suppressions, SES events, late links),
nothing while no endpoint subscribes, and the claim keeps each message's events in order."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from dispatcher.domain.jobs import NewMessage, Settlement
from dispatcher.feedback.events import parse_event
from dispatcher.feedback.store import FeedbackStore
from dispatcher.queue.repository import Queue
from dispatcher.webhooks.settings import EVENTS, WebhookSettings
from dispatcher.webhooks.store import Result, WebhookStore
from tests.support.ses_events import DELIVERY_DELAY, aws_event

SECRET = "s" * 32
OWNER = uuid.uuid4()


def hook(url: str = "http://127.0.0.1:9/hook", events: tuple[str, ...] = EVENTS) -> WebhookSettings:
    return WebhookSettings(url=url, secret=SECRET, events=events)


def message(i: int, to: str = "x@example.com") -> NewMessage:
    return NewMessage(
        "app@example.com", to=(to,), subject=f"s{i}", text="t", tags={"order": f"o{i}"}
    )


async def outbox(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT endpoint_id, type, message_id, data, seq FROM dispatcher.webhook_deliveries "
            "ORDER BY id"
        )
    return [{**dict(r), "data": json.loads(r["data"])} for r in rows]


async def send(queue: Queue, state: str, **fields: Any) -> list[int]:
    """Claim every due job, launch it, and settle each to `state`; their ids."""
    jobs = await queue.claim(OWNER, 100)
    await queue.launch(OWNER, jobs)
    await queue.settle([Settlement(j.id, j.token, state, **fields) for j in jobs])  # type: ignore[arg-type]
    return [j.id for j in jobs]


def ses_bounce(ses_message_id: str, address: str, dispatcher_id: int | None) -> dict[str, Any]:
    tags = {"dispatcher_id": [str(dispatcher_id)]} if dispatcher_id is not None else {}
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": address, "status": "5.1.1"}],
            "timestamp": "2026-12-06T10:00:00.000Z",
        },
        "mail": {
            "messageId": ses_message_id,
            "timestamp": "2026-12-06T10:00:00.000Z",
            "tags": tags,
        },
    }


async def record_and_process(store: FeedbackStore, ses_event: dict[str, Any]) -> int:
    body = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "Message": json.dumps(ses_event),
    }
    event_id = await store.record(
        sns_message_id=body["MessageId"],
        topic_arn="arn:t",
        raw=body,
        event=parse_event(body["Message"]),
    )
    assert event_id is not None
    await store.process(event_id)
    return event_id


async def test_nothing_is_written_while_no_endpoint_subscribes(queue: Queue) -> None:
    store = WebhookStore(queue.pool)
    await store.sync([hook(events=("bounced",))])  # subscribed, but not to these
    await queue.enqueue_many([message(i) for i in range(50)])
    async with queue.pool.acquire() as conn:
        await conn.fetchval(
            "SELECT dispatcher.enqueue('app@example.com', ARRAY['y@example.com'], 'sql', 'body')"
        )
    await send(queue, "sent", ses_message_id="ses-1")
    await FeedbackStore(queue.pool).suppress(["gone@example.com"], "unsubscribed")
    await store.sync([])  # the endpoint removed from the config: nothing at all from now on
    await record_and_process(FeedbackStore(queue.pool), ses_bounce("ses-x", "x@example.com", 1))
    assert await outbox(queue.pool) == []


async def test_every_door_and_state_change_writes_its_event(queue: Queue) -> None:
    store = WebhookStore(queue.pool)
    ids, _ = await store.sync([hook("http://a.test/h"), hook("http://b.test/h", ("failed",))])
    a, b = ids["http://a.test/h"], ids["http://b.test/h"]
    sent_id = (await queue.enqueue(message(1))).id
    async with queue.pool.acquire() as conn:
        sql_id = await conn.fetchval(
            "SELECT dispatcher.enqueue('app@example.com', ARRAY['Y@Example.com'], 'from sql', "
            "'body', tags => '{\"order\": \"o2\"}')"
        )
    assert [(e["type"], e["message_id"]) for e in await outbox(queue.pool)] == [
        ("queued", sent_id),
        ("queued", sql_id),
    ]
    queued = (await outbox(queue.pool))[1]["data"]
    assert queued["to"] == ["Y@example.com"] and queued["tags"] == {"order": "o2"}
    assert queued["from"] == "app@example.com" and queued["subject"] == "from sql"

    # Both claimed in one statement, settled in one: one event each.
    jobs = await queue.claim(OWNER, 10)
    await queue.launch(OWNER, jobs)
    token = {j.id: j.token for j in jobs}
    await queue.settle(
        [
            Settlement(sent_id, token[sent_id], "sent", ses_message_id="ses-1", outcome="sent"),
            Settlement(sql_id, token[sql_id], "failed", outcome="rejected", error="Bad content"),
        ]
    )
    in_doubt_id = (await queue.enqueue(message(3))).id
    cancelled_id = (await queue.enqueue(message(4))).id
    await queue.cancel([cancelled_id])
    jobs = await queue.claim(OWNER, 10)
    await queue.launch(OWNER, jobs)
    await queue.settle([Settlement(in_doubt_id, jobs[0].token, "unknown", error="timed out")])

    feedback = FeedbackStore(queue.pool)
    await record_and_process(feedback, ses_bounce("ses-1", "x@example.com", sent_id))
    # A tagless event (identity notification) for a send recorded after it: tied later.
    await record_and_process(feedback, ses_bounce("ses-late", "x@example.com", None))
    await feedback.suppress(["gone@example.com"], "unsubscribed via the preference centre")
    await feedback.suppress(["other@example.com"], "added by operator")

    rows = await outbox(queue.pool)
    got = [(r["endpoint_id"], r["type"], r["message_id"]) for r in rows[2:]]
    assert got == [
        (a, "sent", sent_id),
        (a, "failed", sql_id),
        (b, "failed", sql_id),
        (a, "queued", in_doubt_id),
        (a, "queued", cancelled_id),
        (a, "cancelled", cancelled_id),
        (a, "in_doubt", in_doubt_id),
        (a, "bounced", sent_id),
        (a, "unsubscribed", None),
    ]
    by_type = {r["type"]: r["data"] for r in rows if r["endpoint_id"] == a}
    assert by_type["sent"]["ses_message_id"] == "ses-1" and by_type["sent"]["sent_at"]
    assert by_type["failed"]["error"] == "Bad content"
    assert by_type["in_doubt"]["error"] == "timed out"
    bounced = by_type["bounced"]
    assert bounced["bounce_type"] == "Permanent" and bounced["bounce_subtype"] == "General"
    assert bounced["recipients"][0]["address"] == "x@example.com"
    assert bounced["tags"] == {"order": "o1"} and bounced["ses_message_id"] == "ses-1"
    assert by_type["unsubscribed"]["address"] == "gone@example.com"

    # The late link: the send with SES MessageId ses-late is recorded, then the guard's step
    # ties the waiting event to it and the webhook follows.
    late_id = (await queue.enqueue(message(5))).id
    await send(queue, "sent", ses_message_id="ses-late")
    await feedback.link_late()
    tail = [(r["type"], r["message_id"]) for r in (await outbox(queue.pool))[-3:]]
    assert tail == [("queued", late_id), ("sent", late_id), ("bounced", late_id)]


async def test_a_message_s_events_are_claimed_one_at_a_time_in_order(queue: Queue) -> None:
    store = WebhookStore(queue.pool)
    ids, _ = await store.sync([hook()])
    endpoint = ids[hook().url]
    first, second = (r.id for r in await queue.enqueue_many([message(1), message(2)]))
    jobs = await queue.claim(OWNER, 10)
    await queue.launch(OWNER, jobs)
    # The SES event overtakes the record of the send (the simulator, or SES, can be that
    # quick): it waits for its place behind `sent`.
    await record_and_process(FeedbackStore(queue.pool), ses_bounce("ses-a", "x@example.com", first))
    await queue.settle(
        [Settlement(j.id, j.token, "sent", ses_message_id=f"ses-{j.id}") for j in jobs]
    )

    async def claim_round(fail: int | None = None) -> list[tuple[str, int | None]]:
        """One claim; every POST succeeds but those of message `fail`."""
        await store.order_late(0.0)
        claimed = await store.claim(endpoint, 100, 30.0)
        await store.settle(
            [
                Result(
                    c.event.id, c.attempts, "pending" if c.event.message_id == fail else "delivered"
                )
                for c in claimed
            ]
        )
        return [(c.event.type, c.event.message_id) for c in claimed]

    assert await claim_round() == [("queued", first), ("queued", second)]
    # A failed `sent` of the first message holds its `bounced` back, not the other message.
    assert await claim_round(fail=first) == [("sent", first), ("sent", second)]
    assert await claim_round() == [("sent", first)]
    assert await claim_round() == [("bounced", first)]
    assert await claim_round() == []


def identity_notification(kind: str, ses_message_id: str, address: str) -> dict[str, Any]:
    """A tagless SES event (identity notifications carry no tags): tied by SES's MessageId."""
    at = "2026-12-06T10:00:00.000Z"
    body: dict[str, Any] = {"timestamp": at if kind == "Delivery" else "2026-12-06T10:00:05.000Z"}
    if kind == "Delivery":
        body["recipients"] = [address]
    else:
        body["complainedRecipients"] = [{"emailAddress": address}]
    return {
        "notificationType": kind,
        kind.lower(): body,
        "mail": {"messageId": ses_message_id, "timestamp": at},
    }


async def test_an_ses_event_waits_behind_an_earlier_one_not_tied_yet(queue: Queue) -> None:
    store = WebhookStore(queue.pool)
    endpoint = (await store.sync([hook()]))[0][hook().url]
    feedback = FeedbackStore(queue.pool)
    msg = (await queue.enqueue(message(1, to="c@example.com"))).id
    jobs = await queue.claim(OWNER, 10)
    await queue.launch(OWNER, jobs)
    # The Delivery comes before the send's SES MessageId is recorded: it cannot be tied yet.
    await record_and_process(feedback, identity_notification("Delivery", "ses-c", "c@example.com"))
    await queue.settle([Settlement(msg, jobs[0].token, "sent", ses_message_id="ses-c")])
    # The Complaint comes after: tied at once, but it waits for the Delivery's place.
    await record_and_process(feedback, identity_notification("Complaint", "ses-c", "c@example.com"))
    await store.order_late(0.0)
    assert [r["type"] for r in await outbox(queue.pool) if r["seq"] is not None] == [
        "queued",
        "sent",
    ]
    await feedback.link_late()  # the guard's step, every check_interval in the daemon
    types = []
    for _ in range(5):
        await store.order_late(0.0)
        claimed = await store.claim(endpoint, 100, 30.0)
        await store.settle([Result(c.event.id, c.attempts, "delivered") for c in claimed])
        types += [c.event.type for c in claimed]
    assert types == ["queued", "sent", "delivered", "complained"]


async def test_ses_events_go_in_the_order_they_happened_not_arrived(queue: Queue) -> None:
    store = WebhookStore(queue.pool)
    endpoint = (await store.sync([hook(events=("delivered", "complained"))]))[0][hook().url]
    feedback = FeedbackStore(queue.pool)
    await queue.enqueue(message(1, to="c@example.com"))
    await send(queue, "sent", ses_message_id="ses-c")
    # SNS brings the Complaint first; SES made the Delivery five seconds before it.
    for kind in ("Complaint", "Delivery"):
        await record_and_process(feedback, identity_notification(kind, "ses-c", "c@example.com"))
    assert await store.order_late() == 0  # written just now: SNS may still bring earlier ones

    async def age(kind: str, seconds: int) -> None:
        async with queue.pool.acquire() as conn:
            await conn.execute(
                "UPDATE dispatcher.webhook_deliveries SET created_at = now() - make_interval("
                "secs => $2) WHERE type = $1",
                kind,
                seconds,
            )

    await age("complained", 3)  # the Complaint waited long enough, but not its Delivery:
    assert await store.order_late() == 0  # a message's events are placed together
    await age("delivered", 3)
    assert await store.order_late() == 2
    types = []
    for _ in range(3):
        claimed = await store.claim(endpoint, 100, 30.0)
        await store.settle([Result(c.event.id, c.attempts, "delivered") for c in claimed])
        types += [c.event.type for c in claimed]
    assert types == ["delivered", "complained"]


async def test_a_delivery_delay_is_a_delayed_event_with_ses_s_words(queue: Queue) -> None:
    store = WebhookStore(queue.pool)
    await store.sync([hook(events=("delayed",))])
    msg = (await queue.enqueue(message(1))).id
    await send(queue, "sent", ses_message_id="ses-d")
    event = aws_event(DELIVERY_DELAY, ses_message_id="ses-d", dispatcher_id=msg)
    await record_and_process(FeedbackStore(queue.pool), event)
    assert await store.order_late(0.0) == 1
    (row,) = await outbox(queue.pool)
    assert (row["type"], row["message_id"]) == ("delayed", msg)
    assert row["data"]["event_type"] == "DeliveryDelay" and row["data"]["detail"]
    assert row["data"]["recipients"] and row["data"]["ses_message_id"] == "ses-d"

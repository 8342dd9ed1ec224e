"""The feedback store on real Postgres: processing happens once, transient bounces add up,
a crash between recording and processing is finished later, and the suppression list."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from dispatcher.domain.jobs import NewMessage, Settlement
from dispatcher.errors import InputError
from dispatcher.feedback.events import parse_event
from dispatcher.feedback.store import TRANSIENT_LIMIT, FeedbackStore, query
from dispatcher.queue.repository import Queue


def sns_body(ses_event: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "Message": json.dumps(ses_event),
    }


def bounce(address: str, bounce_type: str = "Permanent", message_id: int | None = None) -> Any:
    tags = {"dispatcher_id": [str(message_id)]} if message_id is not None else {}
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": address}],
        },
        "mail": {"messageId": f"ses-{uuid.uuid4()}", "tags": tags},
    }


async def record(store: FeedbackStore, ses_event: Any) -> int:
    body = sns_body(ses_event)
    event_id = await store.record(
        sns_message_id=body["MessageId"],
        topic_arn="arn:t",
        raw=body,
        event=parse_event(body["Message"]),
    )
    assert event_id is not None
    return event_id


async def test_processing_is_once_even_when_called_concurrently(queue: Queue) -> None:
    msg = await queue.enqueue(
        NewMessage("a@example.com", to=("x@example.com",), subject="s", text="t")
    )
    store = FeedbackStore(queue.pool)
    event_id = await record(store, bounce("x@example.com", message_id=msg.id))
    results = await asyncio.gather(*(store.process(event_id) for _ in range(5)))
    done = [r for r in results if r is not None]
    assert len(done) == 1 and done[0].suppressed == ("x@example.com",)
    assert await store.process(event_id) is None
    async with queue.pool.acquire() as conn:
        assert await conn.fetchval("SELECT bounced FROM dispatcher.message_feedback") == 1


async def test_transient_bounces_suppress_after_the_limit(queue: Queue) -> None:
    store = FeedbackStore(queue.pool)
    for i in range(TRANSIENT_LIMIT):
        event_id = await record(store, bounce("Full@Example.com", "Transient"))
        processed = await store.process(event_id)
        assert processed is not None
        assert processed.suppressed == (("full@example.com",) if i == TRANSIENT_LIMIT - 1 else ())
    reason = (await store.lookup(["full@example.com"]))["full@example.com"].reason
    assert reason == f"{TRANSIENT_LIMIT} transient bounces within 7 days"
    undetermined = await record(store, bounce("maybe@example.com", "Undetermined"))
    await store.process(undetermined)
    assert await store.lookup(["maybe@example.com"]) == {}


async def test_recorded_but_unprocessed_events_are_finished_by_the_sweep(queue: Queue) -> None:
    store = FeedbackStore(queue.pool)
    for address in ("a@example.com", "b@example.com"):
        await record(store, bounce(address))  # "crash" before processing
    body = sns_body({"eventType": "Bounce"})  # authentic but unreadable: kept, no effects
    await store.record(sns_message_id=body["MessageId"], topic_arn="t", raw=body, event=None)
    assert await store.process_pending() == 3
    assert await store.process_pending() == 0
    assert sorted(await store.lookup(["a@example.com", "b@example.com"])) == [
        "a@example.com",
        "b@example.com",
    ]


async def test_suppression_list_operations(queue: Queue) -> None:
    store = FeedbackStore(queue.pool)
    assert await store.suppress(["A@x.com", "b@x.com", "a@x.com"], "by hand") == [
        "a@x.com",
        "b@x.com",
    ]
    assert await store.suppress(["b@x.com"], "again") == []  # the first reason stays
    rows = [(f"user{i}@x.com", "imported") for i in range(2500)]
    assert len(await store.import_suppressions(rows)) == 2500
    with pytest.raises(InputError, match="not an email address"):
        await store.import_suppressions([("ok@x.com", "r"), ("no at sign", "r")])
    assert await store.lookup(["ok@x.com"]) == {}  # all or nothing
    assert await store.count() == 2502
    listed = [s.address async for s in store.iter_suppressions(page=1000)]
    assert len(listed) == 2502 and listed == sorted(listed)
    assert await store.unsuppress(["B@X.com", "nobody@x.com"]) == ["b@x.com"]
    assert (await store.lookup(["a@x.com"]))["a@x.com"].reason == "by hand"


async def test_an_event_without_our_tag_is_tied_to_the_message_by_ses_message_id(
    queue: Queue,
) -> None:
    [sent] = await queue.enqueue_many(
        [NewMessage(from_addr="a@example.com", to=("x@example.com",), subject="s", text="t")]
    )
    owner = uuid.uuid4()
    [job] = await queue.claim(owner, 1)
    assert await queue.launch(owner, [job]) == {job.id}
    await queue.settle(
        [Settlement(id=job.id, token=job.token, state="sent", ses_message_id="ses-42")]
    )
    event = bounce("x@example.com")  # no dispatcher_id tag (e.g. a configuration-set event)
    event["mail"]["messageId"] = "ses-42"
    store = FeedbackStore(queue.pool)
    await store.process(await record(store, event))
    async with queue.pool.acquire() as conn:
        row = await conn.fetchrow(query("message_feedback_get"), sent.id)
    assert row is not None and row["bounced"] == 1

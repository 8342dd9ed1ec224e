"""SES events tied to our messages by SES's MessageId when they carry no dispatcher_id tag (every
identity notification on AWS), and the events that settle or annotate one message: a bounce
suppresses the right address, a Rendering Failure or Reject fails a message recorded sent, a
DeliveryDelay is shown; `dispatcher status ID` shows them all (issue 15 item 4)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from dispatcher.domain.jobs import NewMessage, Settlement
from dispatcher.feedback.events import parse_event
from dispatcher.feedback.store import FeedbackStore
from dispatcher.queue.repository import Queue
from tests.support.cli import cli_env, run_cli
from tests.support.ses_events import (
    DELIVERY_DELAY,
    IDENTITY_BOUNCE,
    REJECT,
    RENDERING_FAILURE,
    aws_event,
)


async def sent(queue: Queue, to: tuple[str, ...], ses_message_id: str) -> int:
    """A message SES accepted (state `sent`, with SES's MessageId); its id."""
    [msg] = await queue.enqueue_many(
        [NewMessage(from_addr="john@example.com", to=to, subject="s", text="t")]
    )
    owner = uuid.uuid4()
    [job] = await queue.claim(owner, 1)
    assert await queue.launch(owner, [job]) == {job.id}
    await queue.settle([Settlement(job.id, job.token, "sent", ses_message_id=ses_message_id)])
    return msg.id


async def deliver(store: FeedbackStore, ses_event: dict[str, Any]) -> None:
    """Record and process one event as the SNS endpoint and the SQS poller do."""
    body = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "Message": json.dumps(ses_event),
    }
    event_id = await store.record(
        sns_message_id=body["MessageId"],
        topic_arn="arn:aws:sns:us-east-1:123456789012:ses",
        raw=body,
        event=parse_event(body["Message"]),
    )
    assert event_id is not None
    assert await store.process(event_id) is not None


async def test_events_without_our_tag_reach_the_message_by_ses_message_id(
    queue: Queue, pg_dsn: str, tmp_path: Path
) -> None:
    store = FeedbackStore(queue.pool)
    bounced = await sent(
        queue, ("jane@example.com", "mary@example.com", "richard@example.com"), "ses-bounce"
    )
    unrendered = await sent(queue, ("recipient@example.com",), "ses-render")
    rejected = await sent(queue, ("recipient@example.com",), "ses-reject")

    # An identity notification as AWS sends it: no tags at all.
    await deliver(store, aws_event(IDENTITY_BOUNCE, ses_message_id="ses-bounce"))
    await deliver(store, aws_event(DELIVERY_DELAY, ses_message_id="ses-bounce"))
    # Configuration-set events: one with our tag, one whose tag is missing.
    await deliver(store, aws_event(RENDERING_FAILURE, ses_message_id="x", dispatcher_id=unrendered))
    await deliver(store, aws_event(REJECT, ses_message_id="ses-reject"))

    # The bounced recipient is suppressed, not the other two of the same message.
    assert sorted(await store.lookup(["jane@example.com", "mary@example.com"])) == [
        "jane@example.com"
    ]
    job = await queue.get(bounced)
    assert job is not None and job.state == "sent"  # a bounce does not undo the send
    failed = await queue.get(unrendered)
    assert failed is not None and failed.state == "failed"
    assert failed.last_error == (
        "Rendering Failure: Attribute 'attributeName' is not present in the rendering data. "
        "(template MyTemplate)"
    )
    refused = await queue.get(rejected)
    assert refused is not None and refused.state == "failed"
    assert refused.last_error == "Reject: Bad content"

    env = cli_env(tmp_path, dsn=pg_dsn)
    view = await run_cli(env, "status", str(bounced), "--json")
    assert view.code == 0, view
    events = json.loads(view.out)["events"]
    assert [e["event_type"] for e in events] == ["Bounce", "DeliveryDelay"]
    assert [r["address"] for r in events[0]["recipients"]] == ["jane@example.com"]
    assert events[1]["detail"].startswith("TransientCommunicationFailure")
    text = await run_cli(env, "status", str(bounced))
    assert text.code == 0, text
    lines = text.out.splitlines()
    assert any("Bounce Permanent/General" in ln and "jane@example.com 5.1.1" in ln for ln in lines)
    assert any("DeliveryDelay" in ln and "4.4.1" in ln for ln in lines), text.out
    reject = await run_cli(env, "status", str(rejected))
    assert "Reject" in reject.out and "Bad content" in reject.out, reject
    missing = await run_cli(env, "status", "999999")
    assert missing.code == 2 and "no message with id 999999" in missing.err, missing


async def test_an_event_settles_a_send_in_doubt_and_an_early_event_is_still_shown(
    queue: Queue, pg_dsn: str, tmp_path: Path
) -> None:
    store = FeedbackStore(queue.pool)
    [doubt] = await queue.enqueue_many(
        [NewMessage(from_addr="john@example.com", to=("r@example.com",), subject="s", text="t")]
    )
    owner = uuid.uuid4()
    [job] = await queue.claim(owner, 1)
    await queue.launch(owner, [job])
    await queue.settle([Settlement(job.id, job.token, "unknown", error="timed out")])
    # SES did take it (the event says so) and could not render it: no longer in doubt.
    await deliver(store, aws_event(RENDERING_FAILURE, ses_message_id="y", dispatcher_id=doubt.id))
    settled = await queue.get(doubt.id)
    assert settled is not None and settled.state == "failed"
    assert settled.last_outcome == "rendering_failure"

    # A tagless event processed before the send's MessageId was recorded (the ledger writes in
    # batches): it cannot be tied then, yet the message's view shows it.
    await deliver(store, aws_event(DELIVERY_DELAY, ses_message_id="ses-early"))
    early = await sent(queue, ("recipient@example.com",), "ses-early")
    view = await run_cli(cli_env(tmp_path, dsn=pg_dsn), "status", str(early), "--json")
    assert view.code == 0, view
    assert [e["event_type"] for e in json.loads(view.out)["events"]] == ["DeliveryDelay"]


async def test_a_tagless_bounce_before_the_settle_counts_for_its_message_once_linked(
    queue: Queue,
) -> None:
    # SES (or the simulator) can publish before the send's settle records the MessageId: the
    # bounce suppresses at once; the guard's per-message counts follow at its next round.
    store = FeedbackStore(queue.pool)
    await deliver(store, aws_event(IDENTITY_BOUNCE, ses_message_id="ses-early"))
    assert "jane@example.com" in await store.lookup(["jane@example.com"])
    ours = await sent(queue, ("jane@example.com", "mary@example.com"), "ses-early")
    async with queue.pool.acquire() as conn:
        before = await conn.fetchval(
            "SELECT bounced FROM dispatcher.message_feedback WHERE message_id = $1", ours
        )
    assert await store.link_late() == 1
    assert await store.link_late() == 0  # once
    async with queue.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT bounced, campaign_id FROM dispatcher.message_feedback WHERE message_id = $1",
            ours,
        )
        tied = await conn.fetchval(
            "SELECT message_id FROM dispatcher.events WHERE ses_message_id = 'ses-early'"
        )
    assert before is None and row["bounced"] == 1 and tied == ours

"""SES feedback from an SQS queue (SNS -> SQS setups): receive, verify, record, then delete.

A message is deleted only after its event is durably recorded (or was recorded before: SNS
MessageIds deduplicate), so a crash or a database outage between receiving and recording loses
nothing: SQS makes the message visible again after its visibility timeout. A message that fails
verification or cannot be read is not deleted either: it returns until the queue's redrive
policy moves it to a dead-letter queue, where a person can look at it (deleting it would
destroy the evidence; recording it would let a forgery in).

Bodies accepted: the SNS envelope SNS writes to SQS (``Type``, ``MessageId``, ``TopicArn``,
``Message``; ``Message`` a JSON string, or an object as moto writes it), verified like the HTTP
endpoint's when ``feedback.sqs_verify`` is on; and, with ``sqs_verify`` off, raw-message-delivery
bodies (the SES event itself, deduplicated by the SQS MessageId; nothing in them is signed, so
with ``sqs_verify`` on they are refused with a reason that says so). SQS access is itself
authenticated by IAM, which is why ``sqs_verify`` may be turned off for a queue only SNS can
write to (moto's canned events are not validly signed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aioboto3
import asyncpg  # type: ignore[import-untyped]
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from dispatcher.accounts.session import checked_config
from dispatcher.config.settings import FeedbackSettings
from dispatcher.db.outage import connection_lost
from dispatcher.errors import DispatcherError
from dispatcher.feedback.events import MalformedEvent, ParsedEvent, parse_event
from dispatcher.feedback.sns import NOTIFICATION, RAW_DELIVERY, SnsRejected, SnsVerifier
from dispatcher.feedback.store import FeedbackStore

__all__ = ["Intake", "SqsRejected", "decode", "run_sqs_poller"]

log = structlog.get_logger()

BATCH = 10  # SQS's maximum per ReceiveMessage
MAX_BACKOFF = 30.0


class SqsRejected(DispatcherError):
    """An SQS body that is not an acceptable SES event (left on the queue)."""


@dataclass(frozen=True, slots=True)
class Intake:
    """What to record for one SQS body."""

    dedupe_id: str  # the SNS MessageId, or "sqs:" + the SQS MessageId for raw delivery
    topic_arn: str
    raw: Mapping[str, Any]  # stored; its "Message" is the SES event (the store reparses it)
    event: ParsedEvent | None  # None: authentic but unreadable (kept for a person)


async def decode(
    body: str, sqs_message_id: str, *, verifier: SnsVerifier, verify: bool, topics: tuple[str, ...]
) -> Intake:
    """The record for an SQS body; SqsRejected (or SnsRejected) if it must not be recorded."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise SqsRejected("the body is not JSON") from None
    if not isinstance(data, dict):
        raise SqsRejected("the body is not a JSON object")
    if "Type" not in data:  # raw message delivery: the SES event itself
        if "notificationType" not in data and "eventType" not in data:
            raise SqsRejected("neither an SNS envelope nor an SES event")
        if verify:  # no envelope, no signature: it cannot be verified
            raise SqsRejected(
                f"{RAW_DELIVERY}, or set feedback.sqs_verify = false for a queue only SNS can "
                "write to"
            )
        return Intake(f"sqs:{sqs_message_id}", "", {"Message": data}, _parse(data))
    if data.get("Type") != NOTIFICATION:
        raise SqsRejected(f"an SNS {str(data.get('Type'))[:40]!r}, not a Notification")
    message = data.get("Message")
    if verify:
        if not isinstance(message, str):
            raise SqsRejected("Message is not a string, so it cannot carry a valid signature")
        verified = await verifier.verify(data)
        return Intake(verified.message_id, verified.topic_arn, data, _parse(verified.message))
    topic = data.get("TopicArn")
    if not isinstance(topic, str) or topic not in topics:
        raise SqsRejected(f"TopicArn {str(topic)[:200]!r} is not on the allow-list")
    message_id = data.get("MessageId")
    if not isinstance(message_id, str) or not message_id:
        raise SqsRejected("MessageId is missing")
    if not isinstance(message, str | dict):
        raise SqsRejected("Message is missing")
    return Intake(message_id, topic, data, _parse(message))


def _parse(message: str | dict[str, Any]) -> ParsedEvent | None:
    try:
        return parse_event(message)
    except MalformedEvent as exc:
        log.warning("feedback.malformed_event", source="sqs", error=str(exc))
        return None


async def run_sqs_poller(
    settings: FeedbackSettings,
    store: FeedbackStore,
    verifier: SnsVerifier,
    *,
    url: str,
    session: aioboto3.Session,
) -> None:
    """Long-poll the queue at `url` with `session`'s credentials and region forever (cancel the
    task to stop: nothing received is lost)."""
    backoff = 1.0
    async with session.client(
        "sqs", endpoint_url=settings.sqs_endpoint_url, config=checked_config()
    ) as sqs:
        log.info("feedback.sqs_polling", queue_url=url)
        while True:
            try:
                answer = await sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=BATCH,
                    WaitTimeSeconds=settings.sqs_wait_seconds,
                )
                recorded = await _handle(answer.get("Messages", []), store, verifier, settings)
                if recorded.deletes:
                    await sqs.delete_message_batch(QueueUrl=url, Entries=recorded.deletes)
            except (ClientError, BotoCoreError, OSError, asyncpg.PostgresError) as exc:
                log.warning("feedback.sqs_failed", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            backoff = 1.0
            for event_id in recorded.event_ids:
                try:
                    await store.process(event_id)
                except Exception as exc:  # stays recorded; the daemon's sweep finishes it
                    log.warning("feedback.process_failed", event_id=event_id, error=repr(exc))


@dataclass(slots=True)
class _Recorded:
    deletes: list[dict[str, str]]
    event_ids: list[int]


async def _handle(
    messages: list[Any], store: FeedbackStore, verifier: SnsVerifier, settings: FeedbackSettings
) -> _Recorded:
    out = _Recorded([], [])
    for i, m in enumerate(messages):
        try:
            intake = await decode(
                m["Body"],
                m["MessageId"],
                verifier=verifier,
                verify=settings.sqs_verify,
                topics=settings.topics,
            )
        except (SqsRejected, SnsRejected) as exc:
            log.warning("feedback.sqs_rejected", sqs_message_id=m.get("MessageId"), error=str(exc))
            continue  # left on the queue: its redrive policy decides
        except Exception:
            # A defect with one message must not stop the poller (and with it all feedback).
            log.exception("feedback.sqs_message_crashed", sqs_message_id=m.get("MessageId"))
            continue
        try:
            event_id = await store.record(
                sns_message_id=intake.dedupe_id,
                topic_arn=intake.topic_arn,
                raw=intake.raw,
                event=intake.event,
            )
        except Exception as exc:
            if connection_lost(exc):
                # Not recorded: neither this one nor the rest are deleted; they come back.
                log.warning("feedback.sqs_record_failed", error=str(exc), left=len(messages) - i)
                break
            # Refused for what this message holds: it stays on the queue (its redrive policy
            # decides) and must not hold back the ones after it.
            log.warning(
                "feedback.sqs_record_refused", sqs_message_id=m.get("MessageId"), error=repr(exc)
            )
            continue
        out.deletes.append({"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]})
        if event_id is not None:
            out.event_ids.append(event_id)
    return out

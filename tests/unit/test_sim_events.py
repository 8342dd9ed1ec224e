"""The simulator's SES events against the SES Developer Guide's contents and examples pages
(notification-contents.html, event-publishing-retrieving-sns-contents.html / -examples.html),
and the dispatcher's own parser reading every one of them."""

from __future__ import annotations

import itertools
from email.message import EmailMessage
from typing import Any

import pytest

from dispatcher.feedback.events import EventKind, parse_event
from dispatcher.sim.account import Suppressed, Template
from dispatcher.sim.events import EICAR, SesEvent, build_events
from dispatcher.sim.state import SentMessage

SIM = "@simulator.amazonses.com"
NOW = 1.7e9 + 2

# Fields of `mail` in AWS's examples, per format.
NOTIFICATION_MAIL = {
    "timestamp",
    "messageId",
    "source",
    "sourceArn",
    "sourceIp",
    "sendingAccountId",
    "callerIdentity",
    "destination",
    "headersTruncated",
    "headers",
    "commonHeaders",
}
EVENT_MAIL = {
    "timestamp",
    "source",
    "sourceArn",
    "sendingAccountId",
    "messageId",
    "destination",
    "headersTruncated",
    "headers",
    "commonHeaders",
    "tags",
}
# The object of each event type: the fields AWS's contents page lists (and its examples show).
BODY_FIELDS: dict[str, tuple[str, set[str]]] = {
    "Send": ("send", set()),
    "Delivery": (
        "delivery",
        {"timestamp", "processingTimeMillis", "recipients", "smtpResponse", "reportingMTA"},
    ),
    "Bounce": (
        "bounce",
        {"bounceType", "bounceSubType", "bouncedRecipients", "timestamp", "feedbackId"},
    ),
    "Complaint": ("complaint", {"complainedRecipients", "timestamp", "feedbackId"}),
    "Reject": ("reject", {"reason"}),
    "DeliveryDelay": (
        "deliveryDelay",
        {"timestamp", "delayType", "expirationTime", "delayedRecipients", "reportingMTA"},
    ),
    "Open": ("open", {"ipAddress", "timestamp", "userAgent"}),
    "Click": ("click", {"ipAddress", "timestamp", "userAgent", "link", "linkTags"}),
    "Rendering Failure": ("failure", {"templateName", "errorMessage"}),
    "Subscription": (
        "subscription",
        {"contactList", "timestamp", "source", "newTopicPreferences", "oldTopicPreferences"},
    ),
}


def record(
    *to: str,
    configuration_set: str | None = "cs",
    operation: str = "SendEmail",
    **extra: Any,
) -> SentMessage:
    return SentMessage(
        message_id="m1",
        api="v2",
        from_addr="Me <me@example.com>",
        to=to,
        cc=(),
        bcc=(),
        subject="Hello",
        tags={"dispatcher_id": "9"},
        accepted_at=1.7e9,
        configuration_set=configuration_set,
        operation=operation,
        **extra,
    )


def events_of(msg: SentMessage, suppressed: dict[str, object] | None = None) -> list[SesEvent]:
    ids = itertools.count(1)
    return build_events(
        msg,
        region="us-east-1",
        suppressed=suppressed or {},
        now=NOW,
        feedback_id=lambda: f"fb{next(ids)}",
    )


def summary(events: list[SesEvent]) -> list[tuple[str, str | None, str | None]]:
    """(type, bounceType/delayType/..., bounceSubType/complaintSubType) per event."""
    out = []
    for e in events:
        payload = e.event or e.notification
        assert payload is not None
        body = payload[BODY_FIELDS[e.type][0]]
        first = body.get("bounceType") or body.get("delayType") or body.get("reason")
        second = body.get("bounceSubType") or body.get("complaintSubType")
        out.append((e.type, first, second))
    return out


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("success", [("Delivery", None, None)]),
        ("bounce+x", [("Bounce", "Permanent", "General")]),
        ("ooto", [("Delivery", None, None)]),
        ("complaint", [("Delivery", None, None), ("Complaint", None, None)]),
        ("suppressionlist", [("Bounce", "Permanent", "Suppressed")]),
        ("noemail", [("Bounce", "Permanent", "NoEmail")]),
        ("transient", [("Bounce", "Transient", "General")]),
        ("mailboxfull", [("Bounce", "Transient", "MailboxFull")]),
        ("toolarge", [("Bounce", "Transient", "MessageTooLarge")]),
        ("contentrejected", [("Bounce", "Transient", "ContentRejected")]),
        ("attachmentrejected", [("Bounce", "Transient", "AttachmentRejected")]),
        ("undetermined", [("Bounce", "Undetermined", "Undetermined")]),
        ("delay", [("DeliveryDelay", "TransientCommunicationFailure", None)]),
        ("open", [("Delivery", None, None), ("Open", None, None)]),
        ("click", [("Delivery", None, None), ("Click", None, None)]),
        ("unsubscribe", [("Delivery", None, None), ("Subscription", None, None)]),
        ("reject", [("Reject", "Bad content", None)]),
    ],
)
def test_each_simulator_address_produces_its_events(
    local: str, expected: list[tuple[str, str | None, str | None]]
) -> None:
    events = events_of(record(local + SIM))
    assert summary(events) == [("Send", None, None), *expected]


def test_every_event_has_the_fields_aws_documents_and_the_parser_reads_it() -> None:
    locals_ = ["success", "bounce", "complaint", "delay", "open", "click", "unsubscribe"]
    everything = events_of(record(*(f"{x}{SIM}" for x in locals_)))
    everything += events_of(record(f"reject{SIM}"))
    everything += events_of(record(f"a{SIM}", template="T", rendering_failure="Attribute 'x'"))
    assert {e.type for e in everything} == set(BODY_FIELDS)
    for e in everything:
        key, fields = BODY_FIELDS[e.type]
        for payload, form, mail_fields in (
            (e.event, "eventType", EVENT_MAIL),
            (e.notification, "notificationType", NOTIFICATION_MAIL),
        ):
            if payload is None:
                continue
            assert payload[form] == e.type
            assert fields <= set(payload[key]), (e.type, set(payload[key]))
            if e.type == "Rendering Failure":  # AWS's example: nothing was rendered
                mail_fields = mail_fields - {"headers", "commonHeaders"}
            assert set(payload["mail"]) == mail_fields, e.type
            parsed = parse_event(payload)  # the dispatcher reads every one of them
            assert parsed.ses_message_id == "m1" and parsed.event_type == e.type
            if e.type in ("Bounce", "Complaint", "Delivery"):
                assert parsed.kind is EventKind(e.type.lower())
                assert parsed.recipients


def test_identity_notifications_have_no_tags_and_only_three_types() -> None:
    msg = record(
        f"success{SIM}", f"bounce{SIM}", f"complaint{SIM}", f"open{SIM}", configuration_set=None
    )
    events = events_of(msg)
    assert [e.type for e in events] == ["Delivery", "Bounce", "Complaint"]  # no Send, no Open
    for e in events:
        assert e.event is None and e.notification is not None
        mail = e.notification["mail"]
        assert "tags" not in mail
        assert mail["sourceIp"] == "127.0.0.1"
        assert mail["callerIdentity"] == "dispatcher-sim"
        assert mail["sourceArn"] == "arn:aws:ses:us-east-1:123456789012:identity/example.com"
        assert parse_event(e.notification).message_id is None  # tied by SES MessageId only


@pytest.mark.parametrize(
    "operation",
    ["SendEmail", "SendRawEmail", "SendTemplatedEmail", "SendBulkTemplatedEmail", "SendBulkEmail"],
)
def test_configuration_set_events_carry_the_auto_tags(operation: str) -> None:
    send, delivery = events_of(record(f"success{SIM}", operation=operation))
    assert send.event is not None and delivery.event is not None
    tags = delivery.event["mail"]["tags"]
    assert tags == {
        "ses:operation": [operation],
        "ses:configuration-set": ["cs"],
        "ses:source-ip": ["127.0.0.1"],
        "ses:from-domain": ["example.com"],
        "ses:caller-identity": ["dispatcher-sim"],
        "ses:outgoing-ip": ["127.0.0.1"],
        "dispatcher_id": ["9"],
    }
    # Send happens before SES hands the mail on: no outgoing IP yet.
    assert "ses:outgoing-ip" not in send.event["mail"]["tags"]
    assert parse_event(delivery.event).message_id == 9


def test_a_suppressed_address_never_leaves_ses() -> None:
    suppressed: dict[str, object] = {
        "gone@example.com": Suppressed("gone@example.com", "BOUNCE", 0.0),
        "angry@example.com": Suppressed("angry@example.com", "COMPLAINT", 0.0),
    }
    events = events_of(record("gone@example.com", "angry@example.com"), suppressed)
    assert summary(events) == [
        ("Send", None, None),
        ("Bounce", "Permanent", "OnAccountSuppressionList"),
        ("Complaint", None, "OnAccountSuppressionList"),
    ]
    bounce = events[1].event
    assert bounce is not None
    assert "remoteMtaIp" not in bounce["bounce"]
    assert "ses:outgoing-ip" not in bounce["mail"]["tags"]
    complaint = events[2].event
    assert complaint is not None
    assert "complaintFeedbackType" not in complaint["complaint"]  # no feedback report


def test_a_virus_is_rejected_whole() -> None:
    events = events_of(record("a@example.com", f"success{SIM}", text=f"see {EICAR}"))
    assert summary(events) == [("Send", None, None), ("Reject", "Bad content", None)]
    raw = b"From: me@example.com\r\nTo: a@example.com\r\nX-Custom: 1\r\n\r\n" + EICAR.encode()
    raw_events = events_of(record("a@example.com", raw=raw, operation="SendRawEmail"))
    assert [e.type for e in raw_events] == ["Send", "Reject"]
    headers = raw_events[0].event["mail"]["headers"]  # type: ignore[index]
    assert {"name": "X-Custom", "value": "1"} in headers  # the raw message's own headers
    # As the SES guide tests it: EICAR in an attached file (base64 in the MIME message).
    mime = EmailMessage()
    mime["From"], mime["To"], mime["Subject"] = "me@example.com", "a@example.com", "s"
    mime.set_content("see attachment")
    mime.add_attachment(EICAR.encode(), maintype="text", subtype="plain", filename="sample.txt")
    attached = mime.as_bytes()
    assert EICAR.encode() not in attached  # encoded: a plain byte search would miss it
    found = events_of(record("a@example.com", raw=attached, operation="SendRawEmail"))
    assert [e.type for e in found] == ["Send", "Reject"]


def test_a_rendering_failure_is_published_only_with_a_configuration_set() -> None:
    failure = "Attribute 'name' is not present in the rendering data."
    msg = record(f"success{SIM}", template="Welcome", rendering_failure=failure)
    send, failed = events_of(msg)
    assert send.type == "Send"  # before rendering, as AWS's Send example notes
    assert failed.type == "Rendering Failure" and failed.notification is None
    assert failed.event is not None
    assert failed.event["failure"] == {"errorMessage": failure, "templateName": "Welcome"}
    assert (
        events_of(record(f"success{SIM}", configuration_set=None, rendering_failure=failure)) == []
    )


def test_delivery_delay_fields() -> None:
    _, delay = events_of(record(f"delay+1{SIM}"))
    assert delay.event is not None
    body = delay.event["deliveryDelay"]
    assert body["delayedRecipients"] == [
        {
            "emailAddress": f"delay+1{SIM}",
            "status": "4.4.1",
            "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
        }
    ]
    assert body["expirationTime"] > body["timestamp"]


def test_template_names_the_first_missing_variable() -> None:
    template = Template("T", subject="Hi {{name}}", text="{{ a.b }} and {{c}}")
    assert template.missing('{"name": "x", "a": {"b": null}, "c": 1}') is None
    assert template.missing('{"name": "x", "a": {}}') == (
        "Attribute 'a.b' is not present in the rendering data."
    )
    assert template.render('{"name": "x"}')[0] == "Hi x"  # render itself is unchanged
    with pytest.raises(ValueError, match="JSON object"):
        template.missing("[1]")

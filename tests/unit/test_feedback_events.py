"""SES event parsing: both formats, several recipients, our id from the tags, bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from dispatcher.feedback.events import (
    EventKind,
    MalformedEvent,
    parse_event,
    suppression_reason,
)


def mail(**tags: list[str]) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-28T16:00:00.000Z",
        "messageId": "0100-ses-1",
        "destination": ["first@example.com", "Second@Example.com", "third@example.com"],
        "tags": tags,
        "someNewField": {"x": 1},
    }


BOUNCE = {
    "bounceType": "Permanent",
    "bounceSubType": "General",
    "bouncedRecipients": [
        {"emailAddress": "Second@Example.com", "status": "5.1.1", "diagnosticCode": "550 x"},
        {"emailAddress": "third@example.com", "action": "failed"},
    ],
    "timestamp": "2026-11-28T16:00:05.000Z",
    "feedbackId": "fb-1",
}


def test_identity_bounce_takes_the_bounced_recipients_not_the_destination() -> None:
    event = parse_event(
        json.dumps(
            {"notificationType": "Bounce", "bounce": BOUNCE, "mail": mail(dispatcher_id=["42"])}
        )
    )
    assert event.kind is EventKind.BOUNCE
    assert [r.address for r in event.recipients] == ["second@example.com", "third@example.com"]
    assert event.recipients[0].status == "5.1.1"
    assert event.recipients[0].diagnostic == "550 x"
    assert (event.bounce_type, event.bounce_subtype) == ("Permanent", "General")
    assert event.ses_message_id == "0100-ses-1"
    assert event.message_id == 42
    assert event.timestamp == datetime(2026, 11, 28, 16, 0, 5, tzinfo=UTC)
    assert suppression_reason(event) == "bounce Permanent/General"
    assert event.to_json()["recipients"][1]["address"] == "third@example.com"


def test_configuration_set_complaint_and_tags() -> None:
    event = parse_event(
        {
            "eventType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": "a@x.com"}, {"emailAddress": "b@x.com"}],
                "complaintFeedbackType": "abuse",
                "timestamp": "2026-11-28T16:01:00Z",
            },
            "mail": mail(
                dispatcher_id=["7"], **{"ses:configuration-set": ["cs"], "campaign_id": ["3"]}
            ),
        }
    )
    assert event.kind is EventKind.COMPLAINT and event.event_type == "Complaint"
    assert [r.address for r in event.recipients] == ["a@x.com", "b@x.com"]
    assert event.message_id == 7
    assert event.tags is not None and event.tags["ses:configuration-set"] == ["cs"]
    assert suppression_reason(event) == "complaint (abuse)"


def test_delivery_transient_and_other_events() -> None:
    delivery = parse_event(
        {"eventType": "Delivery", "delivery": {"recipients": ["A@x.com"]}, "mail": mail()}
    )
    assert delivery.kind is EventKind.DELIVERY
    assert [r.address for r in delivery.recipients] == ["a@x.com"]
    assert delivery.message_id is None  # no tag: not ours, or resolve by SES id
    assert delivery.timestamp == datetime(2026, 11, 28, 16, 0, tzinfo=UTC)  # the mail's time
    assert suppression_reason(delivery) is None
    transient = parse_event(
        {
            "notificationType": "Bounce",
            "bounce": {**BOUNCE, "bounceType": "Transient", "bounceSubType": "MailboxFull"},
            "mail": mail(),
        }
    )
    assert suppression_reason(transient) is None
    send = parse_event({"eventType": "Send", "send": {}, "mail": mail(dispatcher_id=["x1"])})
    assert send.kind is EventKind.OTHER and send.recipients == () and send.message_id is None
    opened = parse_event({"eventType": "Rendering Failure", "mail": mail()})
    assert opened.kind is EventKind.OTHER


def test_a_tag_given_as_a_plain_string_is_tolerated() -> None:
    event = parse_event({"eventType": "Send", "mail": {**mail(), "tags": {"dispatcher_id": "9"}}})
    assert event.message_id == 9


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        ({"mail": mail()}, "eventType nor notificationType"),
        ({"eventType": "Bounce"}, "mail"),
        ({"eventType": "Bounce", "mail": {"tags": {}}}, "mail.messageId"),
        ({"eventType": "Bounce", "mail": mail()}, "event.bounce"),
        ({"eventType": "Bounce", "bounce": {}, "mail": mail()}, "bouncedRecipients"),
        (
            {"eventType": "Bounce", "bounce": {"bouncedRecipients": [{}]}, "mail": mail()},
            "no email address",
        ),
        (
            {"eventType": "Complaint", "complaint": {"complainedRecipients": [5]}, "mail": mail()},
            "neither an address",
        ),
        ({"eventType": "Send", "mail": {**mail(), "tags": {"a": [1]}}}, "mail.tags.a"),
        ({"eventType": "Send", "mail": {**mail(), "timestamp": "yesterday"}}, "ISO 8601"),
    ],
)
def test_malformed_events_say_what_is_wrong(data: Any, says: str) -> None:
    with pytest.raises(MalformedEvent, match=says):
        parse_event(data)


def test_a_nul_or_lone_surrogate_becomes_a_visible_replacement_character() -> None:
    event = {"notificationType": "Bounce", "mail": mail(), "bounce": BOUNCE}
    escaped = json.dumps(event).replace("550 x", "550 \\u0000 x")  # an escape in the JSON
    literal = json.dumps(event).replace("550 x", "550 \x00 x")  # a raw NUL: not valid JSON
    surrogate = json.dumps(event).replace("550 x", "550 \\ud800 x")  # no low half follows
    for text in (escaped, literal, literal.encode(), surrogate):
        (second, _) = parse_event(text).recipients
        assert second.diagnostic == "550 \ufffd x"


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_timestamp_no_clock_can_hold_is_malformed(stamp: str) -> None:
    event = {"notificationType": "Bounce", "mail": mail(), "bounce": {**BOUNCE, "timestamp": stamp}}
    with pytest.raises(MalformedEvent, match="is out of range"):
        parse_event(event)

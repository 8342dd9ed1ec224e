"""SES event parsing: both formats, several recipients, our id from the tags, bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from dispatcher.feedback.events import (
    EventKind,
    MalformedEvent,
    failure_reason,
    parse_event,
    suppression_reason,
)
from tests.support.ses_events import (
    DELIVERY_DELAY,
    IDENTITY_BOUNCE,
    REJECT,
    RENDERING_FAILURE,
    aws_event,
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
    opened = parse_event({"eventType": "Open", "open": {}, "mail": mail()})
    assert opened.kind is EventKind.OTHER and opened.detail is None


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
        ({"eventType": "DeliveryDelay", "mail": mail()}, "event.deliveryDelay"),
        (
            {"eventType": "DeliveryDelay", "deliveryDelay": {"delayType": 4}, "mail": mail()},
            "deliveryDelay.delayType",
        ),
        ({"eventType": "Reject", "reject": {"reason": []}, "mail": mail()}, "reject.reason"),
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


# -- AWS's documented examples (tests/support/ses_events.py) -----------------------------------


def test_aws_identity_notification_bounce_has_no_tags_and_no_id_of_ours() -> None:
    event = parse_event(json.dumps(IDENTITY_BOUNCE))
    assert event.kind is EventKind.BOUNCE and event.event_type == "Bounce"
    assert event.message_id is None  # no tags: tied to our message by SES's MessageId
    assert event.ses_message_id == "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000"
    assert [r.address for r in event.recipients] == ["jane@example.com"]  # not the destination
    assert event.recipients[0].diagnostic == "smtp; 550 5.1.1 <jane@example.com>... User"
    assert suppression_reason(event) == "bounce Permanent/General"
    assert failure_reason(event) is None


def test_aws_delivery_delay_is_recorded_with_its_recipients_and_kind() -> None:
    event = parse_event(json.dumps(aws_event(DELIVERY_DELAY, dispatcher_id=5)))
    assert event.kind is EventKind.DELIVERY_DELAY and event.message_id == 5
    assert event.timestamp == datetime(2020, 6, 16, 0, 25, 40, 95000, tzinfo=UTC)
    [r] = event.recipients
    assert (r.address, r.status) == ("recipient@example.com", "4.4.1")
    assert r.diagnostic == "smtp; 421 4.4.1 Unable to connect to remote host"
    assert event.detail == (
        "TransientCommunicationFailure; SES gives up at 2020-06-16T00:25:40.914Z"
    )
    assert suppression_reason(event) is None and failure_reason(event) is None
    assert event.to_json()["detail"] == event.detail


def test_aws_reject_and_rendering_failure_say_why_nothing_was_delivered() -> None:
    reject = parse_event(json.dumps(REJECT))
    assert reject.kind is EventKind.REJECT and reject.detail == "Bad content"
    assert failure_reason(reject) == "Reject: Bad content"
    failed = parse_event(json.dumps(RENDERING_FAILURE))
    assert failed.kind is EventKind.RENDERING_FAILURE
    assert failed.event_type == "Rendering Failure"
    assert failure_reason(failed) == (
        "Rendering Failure: Attribute 'attributeName' is not present in the rendering data. "
        "(template MyTemplate)"
    )
    assert failed.recipients == () and suppression_reason(failed) is None


def test_a_rendering_failure_without_its_failure_object_still_fails_the_message() -> None:
    event = parse_event({"eventType": "Rendering Failure", "mail": mail()})
    assert failure_reason(event) == (
        "Rendering Failure: SES could not render the template (no detail given)"
    )
    bare = parse_event({"eventType": "DeliveryDelay", "deliveryDelay": {}, "mail": mail()})
    assert bare.recipients == () and bare.detail == "delayed"

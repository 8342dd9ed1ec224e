"""POST /_sim/events/emit: any SES event about an accepted message, on demand.

Body: {"message_id": "..."} or {"recipient": "a@b"} (the newest message to that address),
"type" (one of `events.EVENT_TYPES`), optional "recipients" (default: every recipient of the
message, or the one named by "recipient") and the options of that type: "bounce_type" and
"bounce_sub_type" (Bounce; e.g. Transient/MailboxFull), "feedback_type" and
"complaint_sub_type" (Complaint), "delay_type" (DeliveryDelay), "link" (Click),
"contact_list" and "topic" (Subscription), "error_message" (Rendering Failure). The event goes
where the message's events go (subscriptions, the JSONL file) and is kept in /_sim/events; the
answer is its /_sim/events entry. Types other than Bounce, Complaint and Delivery exist only
for mail sent with a configuration set, as on AWS: asking for one otherwise answers 400.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from dispatcher.sim.events import (
    BOUNCES,
    EVENT_TYPES,
    NOTIFICATION_TYPES,
    SesEvent,
    bounce_body,
    click_body,
    complaint_body,
    delay_body,
    delivery_body,
    failure_body,
    make_event,
    open_body,
    subscription_body,
)
from dispatcher.sim.keys import PUBLISHER_KEY, STATE_KEY
from dispatcher.sim.publisher import event_json, feedback_id
from dispatcher.sim.state import SentMessage, SimState, bare_address

# https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html
DELAY_TYPES = (
    "InternalFailure",
    "General",
    "MailboxFull",
    "SpamDetected",
    "RecipientServerError",
    "IPFailure",
    "TransientCommunicationFailure",
    "BYOIPHostNameLookupUnavailable",
    "Undetermined",
    "SendingDeferral",
)
# The IANA MARF feedback types the same page lists for complaintFeedbackType.
FEEDBACK_TYPES = ("abuse", "auth-failure", "fraud", "not-spam", "other", "virus")
_FIELDS = (
    "message_id",
    "recipient",
    "type",
    "recipients",
    "bounce_type",
    "bounce_sub_type",
    "feedback_type",
    "complaint_sub_type",
    "delay_type",
    "link",
    "contact_list",
    "topic",
    "error_message",
)


def _text(args: Mapping[str, Any], name: str, default: str) -> str:
    value = args.get(name, default)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def find_message(state: SimState, args: Mapping[str, Any]) -> SentMessage:
    """The message named by message_id, or the newest one sent to `recipient`."""
    message_id = args.get("message_id")
    recipient = args.get("recipient")
    if (message_id is None) == (recipient is None):
        raise ValueError("give exactly one of message_id or recipient")
    if message_id is not None:
        for record in reversed(state.messages):
            if record.message_id == message_id:
                return record
        raise LookupError(f"no accepted message {message_id!r}")
    wanted = bare_address(str(recipient)).lower()
    for record in reversed(state.messages):
        for group in (record.to, record.cc, record.bcc):
            if any(bare_address(a).lower() == wanted for a in group):
                return record
    raise LookupError(f"no accepted message to {recipient!r}")


def build_event(
    record: SentMessage, args: Mapping[str, Any], *, region: str, now: float, feedback: str
) -> SesEvent:
    """The event `args` asks for; ValueError names what is wrong."""
    unknown = sorted(set(args) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
    type_ = args.get("type")
    if type_ not in EVENT_TYPES:
        raise ValueError(f"type must be one of {', '.join(EVENT_TYPES)}, got {type_!r}")
    if type_ not in NOTIFICATION_TYPES and record.configuration_set is None:
        raise ValueError(
            f"{type_} events are published only through a configuration set, and message "
            f"{record.message_id} was sent without one"
        )
    everyone = [bare_address(a) for g in (record.to, record.cc, record.bcc) for a in g]
    chosen = args.get("recipients")
    if chosen is None:
        chosen = [bare_address(args["recipient"])] if "recipient" in args else everyone
    elif not isinstance(chosen, list) or not chosen or not all(isinstance(a, str) for a in chosen):
        raise ValueError("recipients must be a non-empty list of addresses")
    else:
        chosen = [bare_address(a) for a in chosen]
    body: dict[str, Any]
    if type_ == "Send":
        body = {}
    elif type_ == "Delivery":
        body = delivery_body(record, chosen, now)
    elif type_ == "Bounce":
        pair = (_text(args, "bounce_type", "Permanent"), _text(args, "bounce_sub_type", "General"))
        kind = next((k for k in BOUNCES.values() if (k.type, k.sub_type) == pair), None)
        if kind is None:
            known = ", ".join(f"{k.type}/{k.sub_type}" for k in BOUNCES.values())
            raise ValueError(f"bounce_type/bounce_sub_type must be one of {known}, got {pair}")
        body = bounce_body(kind, chosen, now, feedback)
    elif type_ == "Complaint":
        feedback_type = args.get("feedback_type", "abuse")
        if feedback_type is not None and feedback_type not in FEEDBACK_TYPES:
            raise ValueError(f"feedback_type must be null or one of {', '.join(FEEDBACK_TYPES)}")
        sub_type = args.get("complaint_sub_type")
        if sub_type not in (None, "OnAccountSuppressionList"):
            raise ValueError("complaint_sub_type must be null or OnAccountSuppressionList")
        body = complaint_body(chosen, now, feedback, feedback_type=feedback_type, sub_type=sub_type)
    elif type_ == "Reject":
        body = {"reason": "Bad content"}
    elif type_ == "DeliveryDelay":
        delay_type = _text(args, "delay_type", "TransientCommunicationFailure")
        if delay_type not in DELAY_TYPES:
            raise ValueError(f"delay_type must be one of {', '.join(DELAY_TYPES)}")
        body = delay_body(record, chosen, now, delay_type=delay_type)
    elif type_ == "Open":
        body = open_body(now)
    elif type_ == "Click":
        body = click_body(now, _text(args, "link", "https://example.com/"))
    elif type_ == "Subscription":
        body = subscription_body(
            now,
            contact_list=_text(args, "contact_list", "SimContactList"),
            topic=_text(args, "topic", "SimTopic"),
        )
    else:  # Rendering Failure
        error = _text(
            args, "error_message", "Attribute 'name' is not present in the rendering data."
        )
        body = failure_body(record.template or "", error)
    event = make_event(record, region, type_, body, chosen)
    assert event is not None  # checked above: a type this message can have
    return event


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "message": message}, status=status)


async def emit(request: web.Request) -> web.Response:
    """POST /_sim/events/emit: see the module docstring."""
    state = request.app[STATE_KEY]
    try:
        args: Any = json.loads(await request.read() or b"{}")
        if not isinstance(args, dict):
            raise ValueError("body must be a JSON object")
        record = find_message(state, args)
        event = build_event(
            record, args, region=state.settings.region, now=time.time(), feedback=feedback_id()
        )
    except LookupError as exc:
        return _error(404, str(exc.args[0]))
    except ValueError as exc:
        return _error(400, str(exc))
    request.app[PUBLISHER_KEY].publish(record, [event], remember=True)
    return web.json_response(event_json(event))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/_sim/events/emit", emit)

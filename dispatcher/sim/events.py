"""SES event JSON for an accepted message, in both of SES's formats. Pure: no I/O.

Sources (SES Developer Guide): identity notifications,
https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html and
notification-examples.html; configuration-set events (event publishing),
https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html and
event-publishing-retrieving-sns-examples.html; the mailbox simulator and Reject (EICAR),
https://docs.aws.amazon.com/ses/latest/DeveloperGuide/mailbox-simulator.html.

Two formats. Identity notifications (`notificationType`: Bounce, Complaint, Delivery only) carry
`mail.sourceIp` and `mail.callerIdentity` and NO `mail.tags` ("If using feedback notifications
directly on the identity, SES does not publish tags"); the simulator always includes the
original headers. Configuration-set events (`eventType`: Send, Delivery, Bounce, Complaint,
Reject, DeliveryDelay, Open, Click, "Rendering Failure", Subscription) exist only for mail sent
with a configuration set; `mail.tags` holds the caller's tags plus SES's auto-tags
`ses:operation` (the API call: SendEmail, SendRawEmail, SendTemplatedEmail,
SendBulkTemplatedEmail for v1; SendEmail, SendBulkEmail for v2 -- the v2 names are not
confirmed by an AWS text), `ses:configuration-set`, `ses:source-ip`, `ses:from-domain`,
`ses:caller-identity`, and `ses:outgoing-ip` on events that follow a delivery attempt
(documented on Delivery; added to Bounce, Complaint, DeliveryDelay, Open, Click by inference).

What happens to a recipient at `@simulator.amazonses.com` (labels allowed: `bounce+x@...`):
  success        Delivery                               (AWS mailbox simulator)
  bounce         Bounce Permanent/General 5.1.1         (AWS mailbox simulator)
  ooto           Delivery; the auto-reply goes to the sender, no event (AWS mailbox simulator)
  complaint      Delivery, then Complaint (abuse)       (AWS mailbox simulator)
  suppressionlist  Bounce Permanent/Suppressed          (AWS mailbox simulator)
  noemail        Bounce Permanent/NoEmail               (this simulator only, as are the rest)
  transient      Bounce Transient/General
  mailboxfull    Bounce Transient/MailboxFull
  toolarge       Bounce Transient/MessageTooLarge
  contentrejected / attachmentrejected   Bounce Transient/ContentRejected, /AttachmentRejected
  undetermined   Bounce Undetermined/Undetermined (no DSN: emailAddress only)
  delay          DeliveryDelay (TransientCommunicationFailure, 4.4.1); nothing after it
  open           Delivery, Open          (Open, Click, Subscription: configuration sets only)
  click          Delivery, Click
  unsubscribe    Delivery, Subscription (OptOut)
  reject         the whole message: Send, Reject ("Bad content")
Any other local part is delivered. An address on the account's suppression list bounces as
Permanent/OnAccountSuppressionList (reason BOUNCE) or gets a Complaint with complaintSubType
OnAccountSuppressionList (reason COMPLAINT). A message whose content holds the EICAR test string
is rejected as SES documents it (Send, then Reject). A templated message whose data lacks a
variable gets Send, then "Rendering Failure" and nothing else; /_sim/messages leaves it out
(`?all=1` lists it, with its `rendering_failure`). Any event can also be made for an accepted
message later: POST /_sim/events/emit (dispatcher/sim/admin_events.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dispatcher.sim.mime import contains, parse_raw_headers
from dispatcher.sim.state import SIMULATOR_DOMAIN, SentMessage, bare_address

ACCOUNT_ID = "123456789012"  # the simulated AWS account
REPORTING_MTA = "a0-0.smtp-out.amazonses.com"
SIM_AGENT = "Amazon SES Mailbox Simulator"
SOURCE_IP = "127.0.0.1"  # the caller: always on loopback
OUTGOING_IP = "127.0.0.1"  # the simulated SES MTA that sent the mail
REMOTE_MTA_IP = "127.0.0.1"  # the simulated receiving server
CALLER_IDENTITY = "dispatcher-sim"
EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
RETRY_WINDOW = 14 * 3600.0  # DeliveryDelay expirationTime: simulator's choice, not documented

# Every type, as SES spells it; the first three are also identity notifications.
NOTIFICATION_TYPES = ("Bounce", "Complaint", "Delivery")
EVENT_TYPES = (
    "Send",
    "Delivery",
    "Bounce",
    "Complaint",
    "Reject",
    "DeliveryDelay",
    "Open",
    "Click",
    "Rendering Failure",
    "Subscription",
)
_KEYS = {  # eventType -> the key of its own object
    "Send": "send",
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Reject": "reject",
    "DeliveryDelay": "deliveryDelay",
    "Open": "open",
    "Click": "click",
    "Rendering Failure": "failure",
    "Subscription": "subscription",
}
# Types that follow an attempt to hand the mail to the receiving server: ses:outgoing-ip.
_AFTER_DELIVERY = frozenset({"Delivery", "Bounce", "Complaint", "DeliveryDelay", "Open", "Click"})

# Outcomes of one recipient.
DELIVERED = "delivered"
BOUNCED = "bounced"  # Permanent/General 5.1.1
SUPPRESSED = "suppressed"  # on SES's global suppression list: Permanent/Suppressed
ACCOUNT_SUPPRESSED = "account_suppressed"  # on the account's list: OnAccountSuppressionList
ACCOUNT_COMPLAINED = "account_complained"  # on the account's list for a complaint
COMPLAINED = "complained"  # delivered, then a complaint
OUT_OF_OFFICE = "ooto"  # delivered; the out-of-office reply goes to the sender, no SES event
DELAYED = "delayed"
OPENED = "opened"
CLICKED = "clicked"
UNSUBSCRIBED = "unsubscribed"
REJECTED = "rejected"  # the whole message


@dataclass(frozen=True, slots=True)
class BounceKind:
    """One bounce type/subtype and the DSN fields SES reports with it."""

    type: str
    sub_type: str
    status: str | None = None  # None: no DSN, the recipient carries emailAddress only
    diagnostic: str | None = None
    remote: bool = True  # a receiving server answered (remoteMtaIp, ses:outgoing-ip)


_SUPPRESSED_TEXT = (
    "Amazon SES has suppressed sending to this address because it has a recent history "
    "of bouncing as an invalid address."
)
_ACCOUNT_TEXT = (
    "Amazon SES did not send the message to this address because it is on the "
    "suppression list for your account."
)
BOUNCES: dict[str, BounceKind] = {
    BOUNCED: BounceKind("Permanent", "General", "5.1.1", "smtp; 550 5.1.1 user unknown"),
    "noemail": BounceKind(
        "Permanent", "NoEmail", "5.1.1", "smtp; 550 5.1.1 The email account does not exist"
    ),
    SUPPRESSED: BounceKind("Permanent", "Suppressed", "5.1.1", _SUPPRESSED_TEXT, remote=False),
    ACCOUNT_SUPPRESSED: BounceKind(
        "Permanent", "OnAccountSuppressionList", "5.1.1", _ACCOUNT_TEXT, remote=False
    ),
    "transient": BounceKind(
        "Transient", "General", "4.4.7", "smtp; 421 4.4.7 Message expired, retries exhausted"
    ),
    "mailboxfull": BounceKind("Transient", "MailboxFull", "5.2.2", "smtp; 552 5.2.2 Mailbox full"),
    "toolarge": BounceKind(
        "Transient", "MessageTooLarge", "5.3.4", "smtp; 552 5.3.4 Message size exceeds limit"
    ),
    "contentrejected": BounceKind(
        "Transient", "ContentRejected", "5.7.1", "smtp; 554 5.7.1 Message content rejected"
    ),
    "attachmentrejected": BounceKind(
        "Transient", "AttachmentRejected", "5.7.1", "smtp; 554 5.7.1 Attachment rejected"
    ),
    "undetermined": BounceKind("Undetermined", "Undetermined"),
}

_SIMULATOR = {
    "success": DELIVERED,
    "bounce": BOUNCED,
    "complaint": COMPLAINED,
    "ooto": OUT_OF_OFFICE,
    "suppressionlist": SUPPRESSED,
    "delay": DELAYED,
    "open": OPENED,
    "click": CLICKED,
    "unsubscribe": UNSUBSCRIBED,
    "reject": REJECTED,
    **{k: k for k in BOUNCES if k not in (BOUNCED, SUPPRESSED, ACCOUNT_SUPPRESSED)},
}


def outcome_of(address: str, suppressed: Mapping[str, object]) -> str:
    """What SES would report for one recipient (see the module docstring)."""
    bare = bare_address(address).lower()
    if bare.endswith(SIMULATOR_DOMAIN):
        local = bare[: -len(SIMULATOR_DOMAIN)].split("+", 1)[0]
        return _SIMULATOR.get(local, DELIVERED)  # an unknown local part: SES accepts it
    entry = suppressed.get(bare)
    if entry is not None:
        if getattr(entry, "reason", "BOUNCE") == "COMPLAINT":
            return ACCOUNT_COMPLAINED
        return ACCOUNT_SUPPRESSED
    return DELIVERED


def iso(ts: float) -> str:
    """SES's timestamp form: 2026-11-28T15:04:05.123Z."""
    whole = int(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((ts % 1) * 1000):03d}Z"


def is_rejected(record: SentMessage, suppressed: Mapping[str, object]) -> bool:
    """SES's virus scan: the EICAR test string in the content, or a `reject@` recipient."""
    for part in (record.text, record.html, record.subject):
        if part and EICAR in part:
            return True
    if record.raw is not None and contains(record.raw, EICAR.encode()):
        return True
    return any(outcome_of(a, suppressed) == REJECTED for a in _recipients(record))


@dataclass(frozen=True, slots=True)
class SesEvent:
    """One event about one message: its type and the JSON of each format that applies."""

    type: str  # one of EVENT_TYPES
    message_id: str
    recipients: tuple[str, ...]
    notification: dict[str, Any] | None  # identity notification (Bounce, Complaint, Delivery)
    event: dict[str, Any] | None  # configuration-set event (None without a configuration set)


def _recipients(record: SentMessage) -> list[str]:
    return [bare_address(a) for g in (record.to, record.cc, record.bcc) for a in g]


def _headers(record: SentMessage) -> list[dict[str, str]]:
    """The original message's headers: the raw ones as sent, else those SES builds."""
    if record.raw is not None:
        parsed = parse_raw_headers(record.raw)
        return [{"name": k, "value": str(v)} for k, v in parsed.items()]
    headers = [{"name": "From", "value": record.from_addr}]
    if record.to:
        headers.append({"name": "To", "value": ", ".join(record.to)})
    if record.cc:
        headers.append({"name": "Cc", "value": ", ".join(record.cc)})
    headers.append({"name": "Subject", "value": record.subject})
    headers.extend({"name": k, "value": v} for k, v in record.headers)
    headers.append({"name": "MIME-Version", "value": "1.0"})
    return headers


def _mail(
    record: SentMessage, region: str, *, event_format: bool, outgoing: bool, headers: bool
) -> dict[str, Any]:
    source = bare_address(record.from_addr)
    domain = source.rpartition("@")[2]
    mail: dict[str, Any] = {
        "timestamp": iso(record.accepted_at),
        "source": record.from_addr,
        "sourceArn": f"arn:aws:ses:{region}:{ACCOUNT_ID}:identity/{domain}",
    }
    if not event_format:
        mail["sourceIp"] = SOURCE_IP  # identity notifications: here, not in tags
    mail["sendingAccountId"] = ACCOUNT_ID
    if not event_format:
        mail["callerIdentity"] = CALLER_IDENTITY
    mail["messageId"] = record.message_id
    mail["destination"] = _recipients(record)
    mail["headersTruncated"] = False
    if headers:  # absent from a Rendering Failure: nothing was rendered
        mail["headers"] = _headers(record)
        common: dict[str, Any] = {"from": [record.from_addr], "to": list(record.to)}
        if record.cc:
            common["cc"] = list(record.cc)
        common["messageId"] = record.message_id
        common["subject"] = record.subject
        mail["commonHeaders"] = common
    if event_format:
        # Auto-tags first, as in AWS's examples; the caller's tags cannot replace them.
        tags: dict[str, list[str]] = {
            "ses:operation": [record.operation],
            "ses:configuration-set": [record.configuration_set or ""],
            "ses:source-ip": [SOURCE_IP],
            "ses:from-domain": [domain],
            "ses:caller-identity": [CALLER_IDENTITY],
        }
        if outgoing:
            tags["ses:outgoing-ip"] = [OUTGOING_IP]
        for name, value in record.tags.items():
            tags.setdefault(name, [value])
        mail["tags"] = tags
    return mail


class _Maker:
    """Builds SesEvents for one message, sharing the mail objects between them."""

    def __init__(self, record: SentMessage, region: str) -> None:
        self.record = record
        self.region = region
        self._mails: dict[tuple[bool, bool, bool], dict[str, Any]] = {}

    def mail(self, *, event_format: bool, outgoing: bool, headers: bool) -> dict[str, Any]:
        key = (event_format, outgoing, headers)
        found = self._mails.get(key)
        if found is None:
            found = _mail(
                self.record,
                self.region,
                event_format=event_format,
                outgoing=outgoing,
                headers=headers,
            )
            self._mails[key] = found
        return found

    def make(self, type_: str, body: dict[str, Any], recipients: list[str]) -> SesEvent | None:
        key = _KEYS[type_]
        headers = type_ != "Rendering Failure"
        notification = None
        if type_ in NOTIFICATION_TYPES:
            mail = self.mail(event_format=False, outgoing=False, headers=True)
            notification = {"notificationType": type_, key: body, "mail": mail}
        event = None
        if self.record.configuration_set is not None:
            outgoing = type_ in _AFTER_DELIVERY
            if type_ == "Bounce" and not body.get("remoteMtaIp"):
                outgoing = False  # a suppressed address: the mail never left SES
            mail = self.mail(event_format=True, outgoing=outgoing, headers=headers)
            event = {"eventType": type_, "mail": mail, key: body}
        if notification is None and event is None:
            return None
        return SesEvent(type_, self.record.message_id, tuple(recipients), notification, event)


def make_event(
    record: SentMessage, region: str, type_: str, body: dict[str, Any], recipients: list[str]
) -> SesEvent | None:
    """One event of `type_` with its object `body`, in each format that applies (None: none)."""
    return _Maker(record, region).make(type_, body, recipients)


# -- the objects of each type --------------------------------------------------------------


def delivery_body(record: SentMessage, recipients: list[str], now: float) -> dict[str, Any]:
    return {
        "timestamp": iso(now),
        "processingTimeMillis": max(0, int((now - record.accepted_at) * 1000)),
        "recipients": recipients,
        "smtpResponse": "250 2.6.0 Message received",
        "remoteMtaIp": REMOTE_MTA_IP,
        "reportingMTA": REPORTING_MTA,
    }


def bounce_body(
    kind: BounceKind, recipients: list[str], now: float, feedback_id: str
) -> dict[str, Any]:
    bounced: list[dict[str, str]] = []
    for address in recipients:
        item = {"emailAddress": address}
        if kind.status is not None:
            item["action"] = "failed"
            item["status"] = kind.status
            if kind.diagnostic is not None:
                item["diagnosticCode"] = kind.diagnostic
        bounced.append(item)
    body: dict[str, Any] = {
        "feedbackId": feedback_id,
        "bounceType": kind.type,
        "bounceSubType": kind.sub_type,
        "bouncedRecipients": bounced,
        "timestamp": iso(now),
    }
    if kind.status is not None:
        body["reportingMTA"] = f"dsn; {REPORTING_MTA}"
    if kind.remote:
        body["remoteMtaIp"] = REMOTE_MTA_IP
    return body


def complaint_body(
    recipients: list[str],
    now: float,
    feedback_id: str,
    *,
    feedback_type: str | None = "abuse",
    sub_type: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "feedbackId": feedback_id,
        "complaintSubType": sub_type,  # null, or OnAccountSuppressionList
        "complainedRecipients": [{"emailAddress": a} for a in recipients],
        "timestamp": iso(now),
    }
    if feedback_type is not None:  # the feedback report's fields: absent without one
        body["userAgent"] = SIM_AGENT
        body["complaintFeedbackType"] = feedback_type
        body["arrivalDate"] = iso(now)
    return body


def delay_body(
    record: SentMessage,
    recipients: list[str],
    now: float,
    *,
    delay_type: str = "TransientCommunicationFailure",
) -> dict[str, Any]:
    return {
        "timestamp": iso(now),
        "delayType": delay_type,
        "expirationTime": iso(record.accepted_at + RETRY_WINDOW),
        "delayedRecipients": [
            {
                "emailAddress": a,
                "status": "4.4.1",
                "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
            }
            for a in recipients
        ],
        "reportingMTA": REMOTE_MTA_IP,
    }


def open_body(now: float) -> dict[str, Any]:
    return {"ipAddress": REMOTE_MTA_IP, "timestamp": iso(now), "userAgent": SIM_AGENT}


def click_body(now: float, link: str = "https://example.com/") -> dict[str, Any]:
    return {
        "ipAddress": REMOTE_MTA_IP,
        "link": link,
        "linkTags": {},
        "timestamp": iso(now),
        "userAgent": SIM_AGENT,
    }


def subscription_body(
    now: float, *, contact_list: str = "SimContactList", topic: str = "SimTopic"
) -> dict[str, Any]:
    def prefs(unsubscribed: bool) -> dict[str, Any]:
        status = "OptOut" if unsubscribed else "OptIn"
        return {
            "unsubscribeAll": unsubscribed,
            "topicSubscriptionStatus": [{"topicName": topic, "subscriptionStatus": status}],
        }

    return {
        "contactList": contact_list,
        "timestamp": iso(now),
        "source": "UnsubscribeHeader",
        "newTopicPreferences": prefs(True),
        "oldTopicPreferences": prefs(False),
    }


def failure_body(template: str, error: str) -> dict[str, Any]:
    return {"errorMessage": error, "templateName": template}


# -- all the events of one accepted message --------------------------------------------------


def build_events(
    record: SentMessage,
    *,
    region: str,
    suppressed: Mapping[str, object],
    now: float,
    feedback_id: Callable[[], str],
) -> list[SesEvent]:
    """Every event SES would publish about `record`: Send first, then per outcome."""
    maker = _Maker(record, region)
    everyone = _recipients(record)
    made = [maker.make("Send", {}, everyone)]
    if record.rendering_failure is not None:
        body = failure_body(record.template or "", record.rendering_failure)
        made.append(maker.make("Rendering Failure", body, everyone))
        return [e for e in made if e is not None]
    if is_rejected(record, suppressed):
        made.append(maker.make("Reject", {"reason": "Bad content"}, everyone))
        return [e for e in made if e is not None]
    groups: dict[str, list[str]] = {}
    for address in everyone:
        groups.setdefault(outcome_of(address, suppressed), []).append(address)
    delivered = [
        a
        for outcome in (DELIVERED, COMPLAINED, OUT_OF_OFFICE, OPENED, CLICKED, UNSUBSCRIBED)
        for a in groups.get(outcome, [])
    ]
    if delivered:
        made.append(maker.make("Delivery", delivery_body(record, delivered, now), delivered))
    for outcome, kind in BOUNCES.items():
        bounced = groups.get(outcome)
        if bounced:
            body = bounce_body(kind, bounced, now, feedback_id())
            made.append(maker.make("Bounce", body, bounced))
    complained = groups.get(COMPLAINED)
    if complained:
        body = complaint_body(complained, now, feedback_id())
        made.append(maker.make("Complaint", body, complained))
    held = groups.get(ACCOUNT_COMPLAINED)
    if held:
        body = complaint_body(
            held, now, feedback_id(), feedback_type=None, sub_type="OnAccountSuppressionList"
        )
        made.append(maker.make("Complaint", body, held))
    delayed = groups.get(DELAYED)
    if delayed:
        made.append(maker.make("DeliveryDelay", delay_body(record, delayed, now), delayed))
    for address in groups.get(OPENED, []):
        made.append(maker.make("Open", open_body(now), [address]))
    for address in groups.get(CLICKED, []):
        made.append(maker.make("Click", click_body(now), [address]))
    for address in groups.get(UNSUBSCRIBED, []):
        made.append(maker.make("Subscription", subscription_body(now), [address]))
    return [e for e in made if e is not None]

"""SES event JSON for an accepted message, in both of SES's formats. Pure: no I/O.

Identity notifications carry `notificationType` (Bounce, Complaint, Delivery); configuration-set
events carry `eventType` (Send, Delivery, Bounce, Complaint, ...). Both carry `mail` with
`messageId`, `destination` and `tags` ({name: [value]}, as SES writes them). Which event a
recipient gets: the mailbox simulator's local part decides (`bounce+label@simulator...`), an
address on the account's suppression list bounces as OnAccountSuppressionList, and every other
address is delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dispatcher.sim.state import SIMULATOR_DOMAIN, SentMessage, bare_address

ACCOUNT_ID = "123456789012"  # the simulated AWS account
REPORTING_MTA = "a0-0.smtp-out.amazonses.com"
SIM_AGENT = "Amazon SES Mailbox Simulator"

# Local part of a mailbox-simulator address -> what happens to it.
DELIVERED = "delivered"
BOUNCED = "bounced"  # hard bounce, Permanent/General 5.1.1
SUPPRESSED = "suppressed"  # on SES's global suppression list: Permanent/Suppressed
ACCOUNT_SUPPRESSED = "account_suppressed"  # on the account's list: OnAccountSuppressionList
COMPLAINED = "complained"  # delivered, then a complaint
OUT_OF_OFFICE = "ooto"  # delivered; the out-of-office reply goes to the sender, no SES event

_SIMULATOR = {
    "success": DELIVERED,
    "bounce": BOUNCED,
    "complaint": COMPLAINED,
    "ooto": OUT_OF_OFFICE,
    "suppressionlist": SUPPRESSED,
}

_BOUNCES: dict[str, tuple[str, str, str]] = {
    # outcome -> (bounceSubType, status, diagnosticCode)
    BOUNCED: ("General", "5.1.1", "smtp; 550 5.1.1 user unknown"),
    SUPPRESSED: (
        "Suppressed",
        "5.1.1",
        "Amazon SES has suppressed sending to this address because it has a recent history "
        "of bouncing as an invalid address.",
    ),
    ACCOUNT_SUPPRESSED: (
        "OnAccountSuppressionList",
        "5.1.1",
        "Amazon SES did not send the message to this address because it is on the "
        "suppression list for your account.",
    ),
}


def outcome_of(address: str, suppressed: Mapping[str, object]) -> str:
    """What SES would report for one recipient."""
    bare = bare_address(address).lower()
    if bare.endswith(SIMULATOR_DOMAIN):
        local = bare[: -len(SIMULATOR_DOMAIN)].split("+", 1)[0]
        return _SIMULATOR.get(local, DELIVERED)  # an unknown local part: SES accepts it
    if bare in suppressed:
        return ACCOUNT_SUPPRESSED
    return DELIVERED


def iso(ts: float) -> str:
    """SES's timestamp form: 2026-11-28T15:04:05.123Z."""
    whole = int(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((ts % 1) * 1000):03d}Z"


@dataclass(frozen=True, slots=True)
class SesEvent:
    """One event about one message: its type and the JSON of each format that applies."""

    type: str  # Send, Delivery, Bounce, Complaint
    message_id: str
    recipients: tuple[str, ...]
    notification: dict[str, Any] | None  # identity notification (None for Send)
    event: dict[str, Any] | None  # configuration-set event (None without a configuration set)


def _mail(record: SentMessage, region: str, *, event_format: bool) -> dict[str, Any]:
    source = bare_address(record.from_addr)
    domain = source.rpartition("@")[2]
    destination = [bare_address(a) for g in (record.to, record.cc, record.bcc) for a in g]
    tags: dict[str, list[str]] = {k: [v] for k, v in record.tags.items()}
    if event_format:
        tags.setdefault("ses:operation", ["SendEmail"])
        tags.setdefault("ses:configuration-set", [record.configuration_set or ""])
        tags.setdefault("ses:source-ip", ["127.0.0.1"])
        tags.setdefault("ses:from-domain", [domain])
        tags.setdefault("ses:caller-identity", ["dispatcher-sim"])
    headers = [{"name": "From", "value": record.from_addr}]
    if record.to:
        headers.append({"name": "To", "value": ", ".join(record.to)})
    headers.append({"name": "Subject", "value": record.subject})
    return {
        "timestamp": iso(record.accepted_at),
        "source": record.from_addr,
        "sourceArn": f"arn:aws:ses:{region}:{ACCOUNT_ID}:identity/{domain}",
        "sendingAccountId": ACCOUNT_ID,
        "messageId": record.message_id,
        "destination": destination,
        "headersTruncated": False,
        "headers": headers,
        "commonHeaders": {
            "from": [record.from_addr],
            "to": list(record.to),
            "messageId": record.message_id,
            "subject": record.subject,
        },
        "tags": tags,
    }


def build_events(
    record: SentMessage,
    *,
    region: str,
    suppressed: Mapping[str, object],
    now: float,
    feedback_id: Callable[[], str],
) -> list[SesEvent]:
    """Every event SES would publish about `record`, Send first, then per outcome."""
    groups: dict[str, list[str]] = {}
    for group in (record.to, record.cc, record.bcc):
        for address in group:
            groups.setdefault(outcome_of(address, suppressed), []).append(bare_address(address))
    with_events = record.configuration_set is not None
    mail_n = _mail(record, region, event_format=False)
    mail_e = _mail(record, region, event_format=True) if with_events else None
    stamp = iso(now)
    out: list[SesEvent] = []

    def add(type_: str, key: str, body: dict[str, Any], recipients: list[str]) -> None:
        notification = None
        if type_ != "Send":
            notification = {"notificationType": type_, key: body, "mail": mail_n}
        event = {"eventType": type_, key: body, "mail": mail_e} if mail_e is not None else None
        if notification is not None or event is not None:
            out.append(SesEvent(type_, record.message_id, tuple(recipients), notification, event))

    add("Send", "send", {}, [a for g in groups.values() for a in g])
    delivered = (
        groups.get(DELIVERED, []) + groups.get(COMPLAINED, []) + groups.get(OUT_OF_OFFICE, [])
    )
    if delivered:
        add(
            "Delivery",
            "delivery",
            {
                "timestamp": stamp,
                "processingTimeMillis": max(0, int((now - record.accepted_at) * 1000)),
                "recipients": delivered,
                "smtpResponse": "250 2.6.0 Message received",
                "remoteMtaIp": "127.0.0.1",
                "reportingMTA": REPORTING_MTA,
            },
            delivered,
        )
    for outcome, (sub_type, status, diagnostic) in _BOUNCES.items():
        bounced = groups.get(outcome)
        if not bounced:
            continue
        add(
            "Bounce",
            "bounce",
            {
                "feedbackId": feedback_id(),
                "bounceType": "Permanent",
                "bounceSubType": sub_type,
                "bouncedRecipients": [
                    {
                        "emailAddress": a,
                        "action": "failed",
                        "status": status,
                        "diagnosticCode": diagnostic,
                    }
                    for a in bounced
                ],
                "timestamp": stamp,
                "remoteMtaIp": "127.0.0.1",
                "reportingMTA": f"dsn; {REPORTING_MTA}",
            },
            bounced,
        )
    complained = groups.get(COMPLAINED)
    if complained:
        add(
            "Complaint",
            "complaint",
            {
                "feedbackId": feedback_id(),
                "complainedRecipients": [{"emailAddress": a} for a in complained],
                "timestamp": stamp,
                "userAgent": SIM_AGENT,
                "complaintFeedbackType": "abuse",
                "arrivalDate": stamp,
            },
            complained,
        )
    return out

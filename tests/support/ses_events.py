"""SES events as AWS documents them, for the parser and store tests (deep-copy before changing).

Sources: the SES Developer Guide, "Amazon SNS notification examples for Amazon SES" (the bounce
with a DSN, an identity notification: `notificationType`, no tags, `sourceIp` and
`callerIdentity`) and "Examples of event data that Amazon SES publishes to Amazon SNS" (Reject,
Rendering Failure, DeliveryDelay: configuration-set events, `eventType`, tags).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["DELIVERY_DELAY", "IDENTITY_BOUNCE", "REJECT", "RENDERING_FAILURE", "aws_event"]

IDENTITY_BOUNCE: dict[str, Any] = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "reportingMTA": "dns; email.example.com",
        "bouncedRecipients": [
            {
                "emailAddress": "jane@example.com",
                "status": "5.1.1",
                "action": "failed",
                "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User",
            }
        ],
        "bounceSubType": "General",
        "timestamp": "2016-01-27T14:59:38.237Z",
        "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
        "remoteMtaIp": "127.0.2.0",
    },
    "mail": {
        "timestamp": "2016-01-27T14:59:38.237Z",
        "source": "john@example.com",
        "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
        "sourceIp": "127.0.3.0",
        "sendingAccountId": "123456789012",
        "callerIdentity": "IAM_user_or_role_name",
        "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        "destination": ["jane@example.com", "mary@example.com", "richard@example.com"],
    },
}

_CONFIG_SET_MAIL: dict[str, Any] = {
    "timestamp": "2020-06-16T00:15:40.641Z",
    "source": "sender@example.com",
    "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
    "sendingAccountId": "123456789012",
    "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
    "destination": ["recipient@example.com"],
    "headersTruncated": False,
    "tags": {"ses:configuration-set": ["ConfigSet"]},
}

DELIVERY_DELAY: dict[str, Any] = {
    "eventType": "DeliveryDelay",
    "mail": _CONFIG_SET_MAIL,
    "deliveryDelay": {
        "timestamp": "2020-06-16T00:25:40.095Z",
        "delayType": "TransientCommunicationFailure",
        "expirationTime": "2020-06-16T00:25:40.914Z",
        "delayedRecipients": [
            {
                "emailAddress": "recipient@example.com",
                "status": "4.4.1",
                "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
            }
        ],
    },
}

REJECT: dict[str, Any] = {
    "eventType": "Reject",
    "mail": {**_CONFIG_SET_MAIL, "timestamp": "2016-10-14T17:38:15.211Z"},
    "reject": {"reason": "Bad content"},
}

RENDERING_FAILURE: dict[str, Any] = {
    "eventType": "Rendering Failure",
    "mail": {**_CONFIG_SET_MAIL, "timestamp": "2018-01-22T18:43:06.197Z"},
    "failure": {
        "errorMessage": "Attribute 'attributeName' is not present in the rendering data.",
        "templateName": "MyTemplate",
    },
}


def aws_event(
    example: dict[str, Any], *, ses_message_id: str | None = None, dispatcher_id: int | None = None
) -> dict[str, Any]:
    """A copy of an example, with SES's MessageId and (configuration-set form) our tag set."""
    event = copy.deepcopy(example)
    if ses_message_id is not None:
        event["mail"]["messageId"] = ses_message_id
    if dispatcher_id is not None:
        event["mail"].setdefault("tags", {})["dispatcher_id"] = [str(dispatcher_id)]
    return event

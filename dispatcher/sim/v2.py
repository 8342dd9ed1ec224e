"""SES API v2 (REST-JSON, `sesv2` client): SendEmail and GetAccount on top of SimState.

Errors are written the way botocore's RestJSONParser reads them: the code in the
`x-amzn-ErrorType` header, the text in the body's `message`, the HTTP status from the sesv2
service model (TooManyRequestsException 429, NotFoundException 404, the others 400).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from dispatcher.sim.ids import request_id
from dispatcher.sim.keys import STATE_KEY
from dispatcher.sim.mime import header_addresses, header_text, parse_raw_headers
from dispatcher.sim.state import Refusal, SendError, SentMessage, SimState

RAW_MAX_BYTES = 40 * 1024 * 1024  # v2 and SMTP limit on a message

# (status, x-amzn-ErrorType, message) per refusal. Sources: the wording of the rate and quota
# texts is SES's (SES-FACTS.md); status codes from botocore's sesv2 service model.
_THROTTLED = (429, "TooManyRequestsException", "Maximum sending rate exceeded.")
# v2 code for the daily quota is not confirmed; sesv2 lists LimitExceededException on SendEmail.
_DAILY_QUOTA = (400, "LimitExceededException", "Daily message quota exceeded.")
# v1 answers InvalidParameterValue "Recipient count exceeds 50." (seen in the wild); v2 has no
# such code, so the v1 text under v2's validation error, BadRequestException (not confirmed).
_TOO_MANY = (400, "BadRequestException", "Recipient count exceeds 50.")
# Seen from real SES v2 (aws-ses-v2-local issue #44): an empty ToAddresses entry gives
# BadRequestException "Invalid email address ." -> "Invalid email address <address>.".
_INVALID_ADDRESS_FMT = "Invalid email address {}."
# Not confirmed: SES v2 answer for a message without any recipient.
_NO_RECIPIENTS = (400, "BadRequestException", "No recipient addresses were specified.")


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode(),
        content_type="application/json",
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id()},
    )


def refusal_response(refusal: Refusal) -> web.Response:
    kind = refusal.kind
    if kind is SendError.THROTTLED:
        return error_response(*_THROTTLED)
    if kind is SendError.DAILY_QUOTA:
        return error_response(*_DAILY_QUOTA)
    if kind is SendError.TOO_MANY_RECIPIENTS:
        return error_response(*_TOO_MANY)
    if kind is SendError.INVALID_ADDRESS:
        return error_response(
            400, "BadRequestException", _INVALID_ADDRESS_FMT.format(refusal.detail)
        )
    if kind is SendError.NO_RECIPIENTS:
        return error_response(*_NO_RECIPIENTS)
    if kind is SendError.NOT_FOUND:
        return error_response(404, "NotFoundException", refusal.detail)
    if kind is SendError.MISSING_PARAMETER:
        return error_response(
            400, "BadRequestException", f"Missing required parameter {refusal.detail}."
        )
    return error_response(400, "BadRequestException", refusal.detail or "Invalid request.")


class _BadRequest(Exception):
    """The body is not a SendEmail request; its text is the answer."""


async def send_email(request: web.Request) -> web.Response:
    """POST /v2/email/outbound-emails."""
    state = request.app[STATE_KEY]
    latency = state.settings.latency_ms
    if latency:
        await asyncio.sleep(latency / 1000.0)
    try:
        body = json.loads(await request.read())
        if not isinstance(body, dict):
            raise _BadRequest("The request body must be a JSON object.")
        result = _send(state, body)
    except (_BadRequest, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        state.refuse(SendError.INVALID_PARAMETER, str(exc))
        return error_response(400, "BadRequestException", str(exc) or "Malformed request.")
    except (KeyError, TypeError, AttributeError):
        state.refuse(SendError.INVALID_PARAMETER)
        return error_response(400, "BadRequestException", "Malformed SendEmail request.")
    if isinstance(result, SentMessage):
        return web.Response(
            body=b'{"MessageId":"' + result.message_id.encode() + b'"}',
            content_type="application/json",
            headers={"x-amzn-RequestId": request_id()},
        )
    return refusal_response(result)


def _send(state: SimState, body: dict[str, Any]) -> SentMessage | Refusal:
    content = body.get("Content")
    if not isinstance(content, dict):
        return state.refuse(SendError.MISSING_PARAMETER, "Content")
    dest = body.get("Destination")
    to: Sequence[str]
    cc: Sequence[str]
    bcc: Sequence[str]
    if dest:
        to = dest.get("ToAddresses") or ()
        cc = dest.get("CcAddresses") or ()
        bcc = dest.get("BccAddresses") or ()
    else:
        to = cc = bcc = ()
    tag_list = body.get("EmailTags")
    tags = {t["Name"]: t["Value"] for t in tag_list} if tag_list else {}
    from_addr: str = body.get("FromEmailAddress") or ""
    simple = content.get("Simple")
    if simple is not None:
        if not from_addr:
            # Not confirmed: SES's wording when a Simple message has no sender.
            return state.refuse(SendError.MISSING_PARAMETER, "FromEmailAddress")
        subject = simple["Subject"]["Data"]
        mbody = simple.get("Body") or {}
        text = mbody.get("Text")
        html = mbody.get("Html")
        return state.send(
            api="v2",
            from_addr=from_addr,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            tags=tags,
            configuration_set=body.get("ConfigurationSetName"),
            reply_to=body.get("ReplyToAddresses") or (),
            text=text["Data"] if text else None,
            html=html["Data"] if html else None,
        )
    raw = content.get("Raw")
    if raw is not None:
        try:
            data = base64.b64decode(raw["Data"], validate=True)
        except (binascii.Error, ValueError):
            return state.refuse(SendError.INVALID_PARAMETER, "Raw.Data is not valid base64.")
        if len(data) > RAW_MAX_BYTES:
            # Not confirmed: SES's wording for an oversized v2 message.
            return state.refuse(
                SendError.INVALID_PARAMETER, f"Message length is more than {RAW_MAX_BYTES} bytes."
            )
        headers = parse_raw_headers(data)
        if not dest:
            to = header_addresses(headers, "To")
            cc = header_addresses(headers, "Cc")
            bcc = header_addresses(headers, "Bcc")
        if not from_addr:
            from_addr = headers.get("From") or ""
        return state.send(
            api="v2",
            from_addr=from_addr,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=header_text(headers, "Subject"),
            tags=tags,
            configuration_set=body.get("ConfigurationSetName"),
            reply_to=body.get("ReplyToAddresses") or header_addresses(headers, "Reply-To"),
            raw=data,
        )
    template = content.get("Template")
    if template is not None:
        # The simulator holds no templates yet, so every template is unknown (as in SES).
        name = template.get("TemplateName") or template.get("TemplateArn") or ""
        return state.refuse(SendError.NOT_FOUND, f"Template {name} does not exist.")
    return state.refuse(
        SendError.MISSING_PARAMETER, "Content.Simple, Content.Raw or Content.Template"
    )


async def get_account(request: web.Request) -> web.Response:
    """GET /v2/email/account: the send quota plus account status (always healthy for now)."""
    state = request.app[STATE_KEY]
    max24, rate, sent = state.send_quota()
    body: Mapping[str, Any] = {
        "SendQuota": {"Max24HourSend": max24, "MaxSendRate": rate, "SentLast24Hours": sent},
        "SendingEnabled": True,
        "ProductionAccessEnabled": True,
        "EnforcementStatus": "HEALTHY",
        "DedicatedIpAutoWarmupEnabled": False,
    }
    return web.json_response(body, headers={"x-amzn-RequestId": request_id()})


async def unknown_operation(request: web.Request) -> web.Response:
    """Any other /v2/ route: a clean REST-JSON error (AWS's code for an unrouted request)."""
    return error_response(
        404, "UnknownOperationException", f"No operation at {request.method} {request.path}."
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v2/email/outbound-emails", send_email)
    app.router.add_get("/v2/email/account", get_account)
    app.router.add_route("*", "/v2/{tail:.*}", unknown_operation)

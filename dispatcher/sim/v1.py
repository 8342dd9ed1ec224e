"""SES API v1 (Query/XML, `ses` client): SendEmail, SendRawEmail, GetSendQuota on SimState.

Requests are `POST /` form-encoded with `Action=...` (GET with a query string also works, as on
AWS). Errors use SES's XML form, HTTP 400:
`<ErrorResponse><Error><Type>Sender</Type><Code>..</Code><Message>..</Message></Error>..`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from typing import cast
from xml.sax.saxutils import escape

from aiohttp import web

from dispatcher.sim.ids import request_id
from dispatcher.sim.keys import STATE_KEY
from dispatcher.sim.mime import header_addresses, header_text, parse_raw_headers
from dispatcher.sim.state import Refusal, SendError, SentMessage, SimState

API_VERSION = "2010-12-01"
XMLNS = "http://ses.amazonaws.com/doc/2010-12-01/"
_FAULT_XMLNS = "http://webservices.amazon.com/AWSFault/2005-15-09"  # SES's unknown-action answer
RAW_MAX_BYTES = 10 * 1024 * 1024  # v1 limit on a raw message

Params = Mapping[str, str]

# (code, message) per refusal. "Throttling" with the two texts: SES-FACTS.md. The
# InvalidParameterValue texts are SES's as seen in the wild: "Recipient count exceeds 50."
# (doubleunion/arooo#243), "Missing final '@domain'" and friends (boto/boto#351,
# anymail#281), "Missing required header 'To'." (tastyigniter#895).
_THROTTLED = ("Throttling", "Maximum sending rate exceeded.")
_DAILY_QUOTA = ("Throttling", "Daily message quota exceeded.")
_TOO_MANY = ("InvalidParameterValue", "Recipient count exceeds 50.")
_NO_RECIPIENTS = ("InvalidParameterValue", "Missing required header 'To'.")


def error_response(
    code: str, message: str, *, status: int = 400, xmlns: str = XMLNS
) -> web.Response:
    body = (
        f'<ErrorResponse xmlns="{xmlns}"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id()}</RequestId></ErrorResponse>"
    )
    return web.Response(status=status, text=body, content_type="text/xml")


def _result(action: str, inner: str) -> web.Response:
    body = (
        f'<{action}Response xmlns="{XMLNS}"><{action}Result>{inner}</{action}Result>'
        f"<ResponseMetadata><RequestId>{request_id()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )
    return web.Response(text=body, content_type="text/xml")


def refusal_response(refusal: Refusal) -> web.Response:
    kind = refusal.kind
    if kind is SendError.THROTTLED:
        return error_response(*_THROTTLED)
    if kind is SendError.DAILY_QUOTA:
        return error_response(*_DAILY_QUOTA)
    if kind is SendError.TOO_MANY_RECIPIENTS:
        return error_response(*_TOO_MANY)
    if kind is SendError.INVALID_ADDRESS:
        return error_response("InvalidParameterValue", refusal.reason)
    if kind is SendError.NO_RECIPIENTS:
        return error_response(*_NO_RECIPIENTS)
    if kind is SendError.MISSING_PARAMETER:
        # AWS common error for the Query APIs.
        return error_response(
            "MissingParameter", f"The request must contain the parameter {refusal.detail}."
        )
    if kind is SendError.NOT_FOUND:
        return error_response("TemplateDoesNotExist", refusal.detail)
    return error_response("InvalidParameterValue", refusal.detail or "Invalid request.")


def _members(params: Params, prefix: str) -> list[str]:
    """Query lists: `Prefix.member.1`, `Prefix.member.2`, ... until one is missing."""
    out: list[str] = []
    i = 1
    while True:
        value = params.get(f"{prefix}.member.{i}")
        if value is None:
            return out
        out.append(value)
        i += 1


def _tags(params: Params) -> dict[str, str]:
    tags: dict[str, str] = {}
    i = 1
    while True:
        name = params.get(f"Tags.member.{i}.Name")
        if name is None:
            return tags
        tags[name] = params.get(f"Tags.member.{i}.Value", "")
        i += 1


def _sent(action: str, result: SentMessage | Refusal) -> web.Response:
    if isinstance(result, SentMessage):
        return _result(action, f"<MessageId>{result.message_id}</MessageId>")
    return refusal_response(result)


async def _send_email(state: SimState, params: Params) -> web.Response:
    source = params.get("Source")
    if not source:
        return refusal_response(state.refuse(SendError.MISSING_PARAMETER, "Source"))
    subject = params.get("Message.Subject.Data")
    if subject is None:
        return refusal_response(state.refuse(SendError.MISSING_PARAMETER, "Message.Subject"))
    result = state.send(
        api="v1",
        from_addr=source,
        to=_members(params, "Destination.ToAddresses"),
        cc=_members(params, "Destination.CcAddresses"),
        bcc=_members(params, "Destination.BccAddresses"),
        subject=subject,
        tags=_tags(params),
        configuration_set=params.get("ConfigurationSetName"),
        reply_to=_members(params, "ReplyToAddresses"),
        text=params.get("Message.Body.Text.Data"),
        html=params.get("Message.Body.Html.Data"),
    )
    return _sent("SendEmail", result)


async def _send_raw_email(state: SimState, params: Params) -> web.Response:
    encoded = params.get("RawMessage.Data")
    if encoded is None:
        return refusal_response(state.refuse(SendError.MISSING_PARAMETER, "RawMessage.Data"))
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return refusal_response(
            state.refuse(SendError.INVALID_PARAMETER, "RawMessage.Data is not valid base64.")
        )
    if len(data) > RAW_MAX_BYTES:
        # Not confirmed: SES's wording for an oversized v1 message.
        return refusal_response(
            state.refuse(
                SendError.INVALID_PARAMETER, f"Message length is more than {RAW_MAX_BYTES} bytes."
            )
        )
    headers = parse_raw_headers(data)
    destinations = _members(params, "Destinations")
    if destinations:
        to, cc, bcc = destinations, [], []
    else:
        to = header_addresses(headers, "To")
        cc = header_addresses(headers, "Cc")
        bcc = header_addresses(headers, "Bcc")
    result = state.send(
        api="v1",
        from_addr=params.get("Source") or headers.get("From") or "",
        to=to,
        cc=cc,
        bcc=bcc,
        subject=header_text(headers, "Subject"),
        tags=_tags(params),
        configuration_set=params.get("ConfigurationSetName"),
        reply_to=header_addresses(headers, "Reply-To"),
        raw=data,
    )
    return _sent("SendRawEmail", result)


async def _get_send_quota(state: SimState, params: Params) -> web.Response:
    max24, rate, sent = state.send_quota()
    return _result(
        "GetSendQuota",
        f"<Max24HourSend>{max24!r}</Max24HourSend><MaxSendRate>{rate!r}</MaxSendRate>"
        f"<SentLast24Hours>{sent!r}</SentLast24Hours>",
    )


async def _get_account_sending_enabled(state: SimState, params: Params) -> web.Response:
    return _result("GetAccountSendingEnabled", "<Enabled>true</Enabled>")


_Handler = Callable[[SimState, Params], Awaitable[web.Response]]
_SENDS: frozenset[str] = frozenset({"SendEmail", "SendRawEmail"})
ACTIONS: dict[str, _Handler] = {
    "SendEmail": _send_email,
    "SendRawEmail": _send_raw_email,
    "GetSendQuota": _get_send_quota,
    "GetAccountSendingEnabled": _get_account_sending_enabled,
}


async def query(request: web.Request) -> web.Response:
    """`/` with Action=...: dispatch to the action; unknown actions answer as SES does."""
    state = request.app[STATE_KEY]
    # A form body holds only strings (FileFields come from multipart, which botocore never sends;
    # one would fail below as a TypeError and be answered as an invalid parameter).
    params = cast(Params, request.query if request.method == "GET" else await request.post())
    action = params.get("Action")
    if not action:
        return error_response(
            "MissingAction", "The request must contain the parameter Action.", xmlns=_FAULT_XMLNS
        )
    handler = ACTIONS.get(action)
    if handler is None:
        # SES's own answer, e.g. django-ses#158 and aws-cli#37.
        return error_response(
            "InvalidAction",
            f"Could not find operation {action} for version {params.get('Version') or API_VERSION}",
            xmlns=_FAULT_XMLNS,
        )
    if action in _SENDS:
        latency = state.settings.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000.0)
    try:
        return await handler(state, params)
    except (KeyError, TypeError, ValueError) as exc:
        return refusal_response(state.refuse(SendError.INVALID_PARAMETER, str(exc)))


def add_routes(app: web.Application) -> None:
    app.router.add_route("POST", "/", query)
    app.router.add_route("GET", "/", query)

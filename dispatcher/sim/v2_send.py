"""SES API v2 sending: SendEmail (Simple, Raw, Template content) and SendBulkEmail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from dispatcher.sim import v2_lists
from dispatcher.sim.account import Template
from dispatcher.sim.errors import ACTION_THROTTLED_V2, bulk_status
from dispatcher.sim.ids import request_id
from dispatcher.sim.keys import STATE_KEY
from dispatcher.sim.sends import (
    Content,
    decode_raw,
    raw_headers,
    rendered,
    rendered_or_refusal,
    stored_template,
)
from dispatcher.sim.state import MAX_RECIPIENTS, Refusal, SendError, SentMessage, SimState
from dispatcher.sim.v2_wire import (
    MALFORMED,
    error_response,
    malformed_answer,
    ok,
    parse_body,
    refusal_response,
)

RAW_MAX_BYTES = 40 * 1024 * 1024  # v2 and SMTP limit on a message
SEND_EMAIL_PATH = "/v2/email/outbound-emails"
SEND_BULK_EMAIL_PATH = "/v2/email/outbound-bulk-emails"
_SEND_EMAIL_MALFORMED = "Malformed SendEmail request."

# A send route on the request body's bytes: the message accepted (the caller writes its small
# answer, see `accepted_body`), or the whole answer. The aiohttp routes below and the front
# (front.py) both call these, so a send is decided the same way whichever way it came in.
SendRoute = Callable[[SimState, bytes], SentMessage | web.Response]


def accepted_body(message: SentMessage) -> bytes:
    """SendEmail's answer body for an accepted message."""
    return b'{"MessageId":"' + message.message_id.encode() + b'"}'


def send_email(state: SimState, raw: bytes) -> SentMessage | web.Response:
    """POST /v2/email/outbound-emails: the accepted message, or the answer that refuses it."""
    try:
        body = parse_body(raw)
        listed: Mapping[str, str] | None = None
        if "ListManagementOptions" in body:
            options = v2_lists.list_options(state, body)
            if isinstance(options, web.Response):
                return options
            listed = options
        result = _send(state, body, listed)
    except MALFORMED as exc:
        return malformed_answer(state, exc, _SEND_EMAIL_MALFORMED)
    if isinstance(result, SentMessage):
        return result
    return refusal_response(result, state.settings.region)


def _tags(tag_list: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Name"]: t["Value"] for t in tag_list} if tag_list else {}


def _headers(header_list: Sequence[Mapping[str, str]] | None) -> tuple[tuple[str, str], ...]:
    """Message headers as given (Simple or Template Headers, bulk ReplacementHeaders), in order."""
    return tuple((h["Name"], h["Value"]) for h in header_list) if header_list else ()


def _feedback_forwarding(body: Mapping[str, Any]) -> tuple[str, ...]:
    """FeedbackForwardingEmailAddress: SES checks it like the sender."""
    value = body.get("FeedbackForwardingEmailAddress")
    return (value,) if isinstance(value, str) and value else ()


def _template(state: SimState, spec: Mapping[str, Any]) -> Template | Refusal:
    """The stored template a `Template` content names, or the inline TemplateContent."""
    inline = spec.get("TemplateContent")
    if inline:
        return Template(
            "(inline)",
            subject=inline.get("Subject") or "",
            text=inline.get("Text"),
            html=inline.get("Html"),
        )
    name = spec.get("TemplateName") or (spec.get("TemplateArn") or "").rpartition("/")[2]
    return stored_template(state, name, "TemplateName")


def _send(
    state: SimState, body: dict[str, Any], listed: Mapping[str, str] | None = None
) -> SentMessage | Refusal:
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
    tags = _tags(body.get("EmailTags"))
    from_addr: str = body.get("FromEmailAddress") or ""
    configuration_set = body.get("ConfigurationSetName")
    reply_to: Sequence[str] = body.get("ReplyToAddresses") or ()
    senders = _feedback_forwarding(body)
    message: Content
    headers: tuple[tuple[str, str], ...] = ()
    simple = content.get("Simple")
    raw = content.get("Raw")
    spec = content.get("Template")
    if simple is not None:
        if not from_addr:
            # Not confirmed: SES's wording when a Simple message has no sender.
            return state.refuse(SendError.MISSING_PARAMETER, "FromEmailAddress")
        subject = simple["Subject"]["Data"]
        mbody = simple.get("Body") or {}
        text = mbody.get("Text")
        html = mbody.get("Html")
        text_data = text["Data"] if text else None
        html_data = html["Data"] if html else None
        if len(subject) + len(text_data or "") + len(html_data or "") > RAW_MAX_BYTES // 4:
            size = sum(len(p.encode()) for p in (subject, text_data, html_data) if p)
            if size > RAW_MAX_BYTES:
                return state.refuse(SendError.TOO_LARGE, str(RAW_MAX_BYTES))
        message = Content(subject=subject, text=text_data, html=html_data)
        headers = _headers(simple.get("Headers"))
    elif raw is not None:
        data = decode_raw(state, raw["Data"], RAW_MAX_BYTES, "Raw.Data")
        if isinstance(data, Refusal):
            return data
        # The request's fields win; the message's headers fill in what it leaves out.
        found = raw_headers(data)
        if not dest:
            to, cc, bcc = found.to, found.cc, found.bcc
        from_addr = from_addr or found.from_addr
        tags = tags or found.tags
        configuration_set = configuration_set or found.configuration_set
        reply_to = reply_to or found.reply_to
        senders = (*senders, *found.senders)
        message = Content(subject=found.subject, raw=data)
    elif spec is not None:
        if not from_addr:
            return state.refuse(SendError.MISSING_PARAMETER, "FromEmailAddress")
        stop = state.check_account(configuration_set)
        if stop is not None:
            return stop
        template = _template(state, spec)
        if isinstance(template, Refusal):
            return template
        # Bad TemplateData raises ValueError here: the handler answers it as a malformed request.
        message = rendered(template, spec.get("TemplateData") or "")
        headers = _headers(spec.get("Headers"))  # sesv2 Template.Headers, as Simple's
    else:
        return state.refuse(
            SendError.MISSING_PARAMETER, "Content.Simple, Content.Raw or Content.Template"
        )
    return state.send(
        api="v2",
        from_addr=from_addr,
        to=to,
        cc=cc,
        bcc=bcc,
        tags=tags,
        configuration_set=configuration_set,
        reply_to=reply_to,
        senders=senders,
        headers=headers,
        list_management=listed,
        **message,
    )


def send_bulk_email(state: SimState, raw: bytes) -> web.Response:
    """POST /v2/email/outbound-bulk-emails, under SES's 1 request/s on API actions."""
    if not state.allow_action("_send_bulk_email"):
        return error_response(*ACTION_THROTTLED_V2)
    try:
        return _send_bulk_email(state, parse_body(raw))
    except MALFORMED as exc:
        return malformed_answer(state, exc, "Malformed request.")


def _send_bulk_email(state: SimState, body: dict[str, Any]) -> web.Response:
    """SendBulkEmail: shared problems fail the call, the rest per entry."""
    entries = body.get("BulkEmailEntries")
    if not entries:
        return refusal_response(state.refuse(SendError.MISSING_PARAMETER, "BulkEmailEntries"))
    if len(entries) > MAX_RECIPIENTS:
        return refusal_response(
            state.refuse(
                SendError.INVALID_PARAMETER,
                f"BulkEmailEntries count exceeds {MAX_RECIPIENTS}.",  # not confirmed: the text
            )
        )
    from_addr = body.get("FromEmailAddress") or ""
    if not from_addr:
        return refusal_response(state.refuse(SendError.MISSING_PARAMETER, "FromEmailAddress"))
    spec = (body.get("DefaultContent") or {}).get("Template")
    if not spec:
        return refusal_response(
            state.refuse(SendError.MISSING_PARAMETER, "DefaultContent.Template")
        )
    region = state.settings.region
    configuration_set = body.get("ConfigurationSetName")
    stop = state.check_account(configuration_set)
    if stop is not None:
        return refusal_response(stop, region)
    template = _template(state, spec)
    if isinstance(template, Refusal):
        return refusal_response(template, region)
    default_tags = _tags(body.get("DefaultEmailTags"))
    senders = _feedback_forwarding(body)
    default_data = spec.get("TemplateData") or ""
    reply_to = body.get("ReplyToAddresses") or ()
    results: list[dict[str, str]] = []
    for entry in entries:
        dest = entry.get("Destination") or {}
        replacement = (entry.get("ReplacementEmailContent") or {}).get("ReplacementTemplate")
        data = (replacement or {}).get("ReplacementTemplateData") or default_data
        parts = rendered_or_refusal(state, template, data)
        result = (
            parts
            if isinstance(parts, Refusal)
            else state.send(
                api="v2",
                from_addr=from_addr,
                to=dest.get("ToAddresses") or (),
                cc=dest.get("CcAddresses") or (),
                bcc=dest.get("BccAddresses") or (),
                tags={**default_tags, **_tags(entry.get("ReplacementTags"))},
                configuration_set=configuration_set,
                reply_to=reply_to,
                headers=_headers(entry.get("ReplacementHeaders")),
                operation="SendBulkEmail",
                senders=senders,
                **parts,
            )
        )
        if isinstance(result, SentMessage):
            results.append({"Status": "SUCCESS", "MessageId": result.message_id})
        else:
            status, error = bulk_status(result, region, v2=True)
            results.append({"Status": status, "Error": error})
    return ok({"BulkEmailEntryResults": results})


# SendEmail is v2's SendEmail, SendRawEmail and SendTemplatedEmail: the only actions AWS exempts
# from 1 request/s (see v1.UNLIMITED_ACTIONS). SendBulkEmail is not exempt: its v1 twin
# SendBulkTemplatedEmail never joined that list.
SEND_ROUTES: dict[str, SendRoute] = {
    SEND_EMAIL_PATH: send_email,
    SEND_BULK_EMAIL_PATH: send_bulk_email,
}
SEND_PATHS = frozenset(SEND_ROUTES)


def _route(send: SendRoute) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        result = send(request.app[STATE_KEY], await request.read())
        if isinstance(result, SentMessage):
            return web.Response(
                body=accepted_body(result),
                content_type="application/json",
                headers={"x-amzn-RequestId": request_id()},
            )
        return result

    handler.__doc__ = send.__doc__
    return handler


def add_routes(r: web.UrlDispatcher) -> None:
    for path, send in SEND_ROUTES.items():
        r.add_post(path, _route(send))

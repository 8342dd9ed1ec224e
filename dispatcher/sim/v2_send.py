"""SES API v2 sending: SendEmail (Simple, Raw, Template content) and SendBulkEmail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from dispatcher.sim import v2_lists
from dispatcher.sim.account import Template
from dispatcher.sim.errors import bulk_status
from dispatcher.sim.ids import request_id
from dispatcher.sim.sends import (
    Content,
    decode_raw,
    raw_headers,
    rendered,
    rendered_or_refusal,
    stored_template,
)
from dispatcher.sim.state import MAX_RECIPIENTS, Refusal, SendError, SentMessage, SimState
from dispatcher.sim.v2_wire import json_handler, ok, read_body, refusal_response

RAW_MAX_BYTES = 40 * 1024 * 1024  # v2 and SMTP limit on a message
SEND_PATHS = frozenset({"/v2/email/outbound-emails", "/v2/email/outbound-bulk-emails"})


def _answer(state: SimState, result: SentMessage | Refusal) -> web.Response:
    if isinstance(result, SentMessage):
        return web.Response(
            body=b'{"MessageId":"' + result.message_id.encode() + b'"}',
            content_type="application/json",
            headers={"x-amzn-RequestId": request_id()},
        )
    return refusal_response(result, state.settings.region)


async def _send_email(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/outbound-emails."""
    body = await read_body(request)
    listed: Mapping[str, str] | None = None
    if "ListManagementOptions" in body:
        options = v2_lists.list_options(state, body)
        if isinstance(options, web.Response):
            return options
        listed = options
    return _answer(state, _send(state, body, listed))


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


async def _send_bulk_email(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/outbound-bulk-emails: shared problems fail the call, the rest per entry."""
    body = await read_body(request)
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


def add_routes(r: web.UrlDispatcher) -> None:
    # SendEmail is v2's SendEmail, SendRawEmail and SendTemplatedEmail: the only actions AWS
    # exempts from 1 request/s (see v1.UNLIMITED_ACTIONS). SendBulkEmail is not exempt: its v1
    # twin SendBulkTemplatedEmail never joined that list.
    r.add_post(
        "/v2/email/outbound-emails",
        json_handler(_send_email, "Malformed SendEmail request.", limited=False),
    )
    r.add_post("/v2/email/outbound-bulk-emails", json_handler(_send_bulk_email))

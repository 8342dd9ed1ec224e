"""SES API v2 (REST-JSON, `sesv2` client) on top of SimState.

Errors are written the way botocore's RestJSONParser reads them: the code in the
`x-amzn-ErrorType` header, the text in the body's `message`, the HTTP status from the sesv2
service model (TooManyRequestsException 429, NotFoundException 404, the others 400).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from dispatcher.sim.account import (
    SUPPRESSION_REASONS,
    ConfigurationSet,
    Identity,
    Suppressed,
    Template,
)
from dispatcher.sim.errors import ACTION_THROTTLED_V2, bulk_status, v2_error
from dispatcher.sim.ids import request_id
from dispatcher.sim.keys import STATE_KEY
from dispatcher.sim.mime import (
    event_publishing,
    header_addresses,
    header_text,
    parse_raw_headers,
    sender_headers,
)
from dispatcher.sim.state import (
    MAX_RECIPIENTS,
    Refusal,
    SendError,
    SentMessage,
    SimState,
    address_problem,
)

RAW_MAX_BYTES = 40 * 1024 * 1024  # v2 and SMTP limit on a message
SEND_PATHS = frozenset({"/v2/email/outbound-emails", "/v2/email/outbound-bulk-emails"})


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode(),
        content_type="application/json",
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id()},
    )


def refusal_response(refusal: Refusal, region: str = "us-east-1") -> web.Response:
    return error_response(*v2_error(refusal, region))


def _ok(body: Mapping[str, Any] | None = None) -> web.Response:
    return web.json_response(body or {}, headers={"x-amzn-RequestId": request_id()})


class _BadRequest(Exception):
    """The body is not a valid request; its text is the answer."""


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise _BadRequest(str(exc) or "Malformed request.") from None
    if not isinstance(body, dict):
        raise _BadRequest("The request body must be a JSON object.")
    return body


class _BadNextToken(Exception):
    """A NextToken this simulator never handed out."""


def _json_handler(
    func: Callable[[SimState, web.Request], Awaitable[web.Response]],
    malformed: str = "Malformed request.",
    *,
    limited: bool = True,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Malformed input of any kind answers BadRequestException, never a traceback.

    `limited`: the action is under SES's 1 request/s on API actions (all but SendEmail).
    """
    action = func.__name__

    async def handler(request: web.Request) -> web.Response:
        state = request.app[STATE_KEY]
        if limited and not state.allow_action(action):
            return error_response(*ACTION_THROTTLED_V2)
        try:
            return await func(state, request)
        except _BadRequest as exc:
            state.refuse(SendError.INVALID_PARAMETER, str(exc))
            return error_response(400, "BadRequestException", str(exc))
        except _BadNextToken as exc:
            # The error the sesv2 model lists for ListSuppressedDestinations (text not confirmed).
            return error_response(400, "InvalidNextTokenException", str(exc))
        except (KeyError, TypeError, AttributeError, ValueError):
            state.refuse(SendError.INVALID_PARAMETER)
            return error_response(400, "BadRequestException", malformed)

    handler.__doc__ = func.__doc__
    return handler


def _answer(state: SimState, result: SentMessage | Refusal) -> web.Response:
    if isinstance(result, SentMessage):
        return web.Response(
            body=b'{"MessageId":"' + result.message_id.encode() + b'"}',
            content_type="application/json",
            headers={"x-amzn-RequestId": request_id()},
        )
    return refusal_response(result, state.settings.region)


# -- sending -------------------------------------------------------------------------------


async def _send_email(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/outbound-emails."""
    body = await _body(request)
    listed: Mapping[str, str] | None = None
    if "ListManagementOptions" in body:
        from dispatcher.sim import v2_lists  # it builds on this module's helpers

        options = v2_lists.list_options(state, body)
        if isinstance(options, web.Response):
            return options
        listed = options
    return _answer(state, _send(state, body, listed))


def _tags(tag_list: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Name"]: t["Value"] for t in tag_list} if tag_list else {}


def _headers(header_list: Sequence[Mapping[str, str]] | None) -> tuple[tuple[str, str], ...]:
    """Message headers as given (Simple Headers, bulk ReplacementHeaders), in order."""
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
    if not name:
        return state.refuse(SendError.MISSING_PARAMETER, "TemplateName")
    found = state.account.templates.get(name)
    if found is None:
        return state.refuse_account(SendError.TEMPLATE_MISSING, name)
    return found


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
    senders = _feedback_forwarding(body)
    simple = content.get("Simple")
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
        return state.send(
            api="v2",
            from_addr=from_addr,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            tags=tags,
            configuration_set=configuration_set,
            reply_to=body.get("ReplyToAddresses") or (),
            text=text_data,
            html=html_data,
            headers=_headers(simple.get("Headers")),
            senders=senders,
            list_management=listed,
        )
    raw = content.get("Raw")
    if raw is not None:
        encoded = raw["Data"]
        if len(encoded) > RAW_MAX_BYTES * 4 // 3 + 4:
            return state.refuse(SendError.TOO_LARGE, str(RAW_MAX_BYTES))
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return state.refuse(SendError.INVALID_PARAMETER, "Raw.Data is not valid base64.")
        if len(data) > RAW_MAX_BYTES:
            return state.refuse(SendError.TOO_LARGE, str(RAW_MAX_BYTES))
        headers = parse_raw_headers(data)
        if not dest:
            to = header_addresses(headers, "To")
            cc = header_addresses(headers, "Cc")
            bcc = header_addresses(headers, "Bcc")
        if not from_addr:
            from_addr = headers.get("From") or ""
        header_set, header_tags = event_publishing(headers)
        return state.send(
            api="v2",
            from_addr=from_addr,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=header_text(headers, "Subject"),
            tags=tags or header_tags,
            configuration_set=configuration_set or header_set,
            reply_to=body.get("ReplyToAddresses") or header_addresses(headers, "Reply-To"),
            raw=data,
            senders=(*senders, *sender_headers(headers)),
            list_management=listed,
        )
    spec = content.get("Template")
    if spec is not None:
        if not from_addr:
            return state.refuse(SendError.MISSING_PARAMETER, "FromEmailAddress")
        stop = state.check_account(configuration_set)
        if stop is not None:
            return stop
        template = _template(state, spec)
        if isinstance(template, Refusal):
            return template
        subject, text_part, html_part = template.render(spec.get("TemplateData") or "")
        failure = template.missing(spec.get("TemplateData") or "")
        return state.send(
            api="v2",
            from_addr=from_addr,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            tags=tags,
            configuration_set=configuration_set,
            reply_to=body.get("ReplyToAddresses") or (),
            text=text_part,
            html=html_part,
            template=template.name,
            account_checked=True,
            rendering_failure=failure,
            senders=senders,
            list_management=listed,
        )
    return state.refuse(
        SendError.MISSING_PARAMETER, "Content.Simple, Content.Raw or Content.Template"
    )


async def _send_bulk_email(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/outbound-bulk-emails: shared problems fail the call, the rest per entry."""
    body = await _body(request)
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
        try:
            subject, text, html = template.render(data)
            failure = template.missing(data)
        except ValueError as exc:
            result: SentMessage | Refusal = state.refuse(SendError.INVALID_PARAMETER, str(exc))
        else:
            result = state.send(
                api="v2",
                from_addr=from_addr,
                to=dest.get("ToAddresses") or (),
                cc=dest.get("CcAddresses") or (),
                bcc=dest.get("BccAddresses") or (),
                subject=subject,
                tags={**default_tags, **_tags(entry.get("ReplacementTags"))},
                configuration_set=configuration_set,
                reply_to=reply_to,
                text=text,
                html=html,
                template=template.name,
                account_checked=True,
                headers=_headers(entry.get("ReplacementHeaders")),
                operation="SendBulkEmail",
                rendering_failure=failure,
                senders=senders,
            )
        if isinstance(result, SentMessage):
            results.append({"Status": "SUCCESS", "MessageId": result.message_id})
        else:
            status, error = bulk_status(result, region, v2=True)
            results.append({"Status": status, "Error": error})
    return _ok({"BulkEmailEntryResults": results})


# -- account -------------------------------------------------------------------------------


async def _get_account(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/account: the send quota plus the account's status."""
    state.counters.quota_reads += 1
    max24, rate, sent = state.send_quota()
    account = state.account
    return _ok(
        {
            "SendQuota": {"Max24HourSend": max24, "MaxSendRate": rate, "SentLast24Hours": sent},
            "SendingEnabled": account.sending_enabled and account.enforcement_status != "SHUTDOWN",
            "ProductionAccessEnabled": not state.settings.sandbox,
            "EnforcementStatus": account.enforcement_status,
            "DedicatedIpAutoWarmupEnabled": False,
            "SuppressionAttributes": {"SuppressedReasons": list(SUPPRESSION_REASONS)},
        }
    )


async def _put_account_sending(state: SimState, request: web.Request) -> web.Response:
    """PUT /v2/email/account/sending (PutAccountSendingAttributes)."""
    body = await _body(request)
    state.account.sending_enabled = bool(body.get("SendingEnabled", False))
    return _ok()


# -- identities ----------------------------------------------------------------------------


async def _create_email_identity(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/identities: PENDING until the link is clicked or the DKIM records are
    found (POST /_sim/identities/NAME/verify), or verified at once with auto_verify."""
    body = await _body(request)
    name = body.get("EmailIdentity")
    if not name or not isinstance(name, str):
        raise _BadRequest("Missing required parameter EmailIdentity.")
    if "@" in name and address_problem(name):
        raise _BadRequest(f"Invalid email address {name}.")
    if "@" not in name and ("." not in name or name.endswith(".")):
        raise _BadRequest(f"Invalid domain name {name}.")  # not confirmed: the text
    if name.lower() in state.account.identities:
        return error_response(
            400, "AlreadyExistsException", f"Email identity {name} already exist."
        )
    identity = state.account.create(name, verified=state.settings.auto_verify)
    if body.get("ConfigurationSetName"):
        identity.configuration_set = body["ConfigurationSetName"]
    return _ok(
        {
            "IdentityType": identity.kind,
            "VerifiedForSendingStatus": identity.verified,
            "DkimAttributes": _dkim(identity),
        }
    )


def _dkim(identity: Identity) -> dict[str, Any]:
    if identity.kind == "DOMAIN":
        return {
            "SigningEnabled": True,
            "Status": identity.dkim_status,
            "Tokens": identity.dkim_tokens,
            "SigningAttributesOrigin": "AWS_SES",
        }
    return {"SigningEnabled": False, "Status": identity.dkim_status}


async def _get_email_identity(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/identities/{EmailIdentity}: each state as SES reports it."""
    name = request.match_info["identity"]
    identity = state.account.identities.get(name.lower())
    if identity is None:
        return error_response(404, "NotFoundException", f"Email identity {name} does not exist.")
    out: dict[str, Any] = {
        "IdentityType": identity.kind,
        "FeedbackForwardingStatus": True,
        "VerifiedForSendingStatus": identity.verified,
        "VerificationStatus": identity.verification_status,
        "DkimAttributes": _dkim(identity),
        "Policies": {},
        "Tags": [],
    }
    if identity.mail_from_domain:
        out["MailFromAttributes"] = {
            "MailFromDomain": identity.mail_from_domain,
            "MailFromDomainStatus": identity.mail_from_status,
            "BehaviorOnMxFailure": identity.mail_from_behavior,
        }
    if identity.configuration_set:
        out["ConfigurationSetName"] = identity.configuration_set
    return _ok(out)


async def _delete_email_identity(state: SimState, request: web.Request) -> web.Response:
    name = request.match_info["identity"]
    if state.account.identities.pop(name.lower(), None) is None:
        return error_response(404, "NotFoundException", f"Email identity {name} does not exist.")
    return _ok()


async def _put_mail_from(state: SimState, request: web.Request) -> web.Response:
    """PUT /v2/email/identities/{EmailIdentity}/mail-from (PutEmailIdentityMailFromAttributes).

    A new MAIL FROM domain is PENDING until the identity's admin verify step finds its MX
    record (at once with auto_verify); a name starting `fail.` / `unverified.` then FAILS (a
    way to rehearse MailFromDomainNotVerifiedException). The admin API sets any status.
    """
    name = request.match_info["identity"]
    identity = state.account.identities.get(name.lower())
    if identity is None:
        return error_response(404, "NotFoundException", f"Email identity {name} does not exist.")
    body = await _body(request)
    domain = body.get("MailFromDomain")
    if domain is not None and not isinstance(domain, str):
        raise _BadRequest("MailFromDomain must be a string.")
    identity.set_mail_from(
        domain,
        body.get("BehaviorOnMxFailure") or "USE_DEFAULT_VALUE",
        verified=state.settings.auto_verify,
    )
    return _ok()


# -- templates, configuration sets, suppression --------------------------------------------


async def _create_email_template(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/templates."""
    body = await _body(request)
    name = body.get("TemplateName")
    content = body.get("TemplateContent")
    if not name or not isinstance(content, dict):
        raise _BadRequest("Missing required parameter TemplateName or TemplateContent.")
    if name in state.account.templates:
        return error_response(400, "AlreadyExistsException", f"Template {name} already exists.")
    state.account.templates[name] = Template(
        name,
        subject=content.get("Subject") or "",
        text=content.get("Text"),
        html=content.get("Html"),
    )
    return _ok()


async def _update_email_template(state: SimState, request: web.Request) -> web.Response:
    """PUT /v2/email/templates/{TemplateName}: replace an existing template's content."""
    name = request.match_info["name"]
    body = await _body(request)
    content = body.get("TemplateContent")
    if not isinstance(content, dict):
        raise _BadRequest("Missing required parameter TemplateContent.")
    if name not in state.account.templates:
        return error_response(404, "NotFoundException", f"Template {name} does not exist.")
    state.account.templates[name] = Template(
        name,
        subject=content.get("Subject") or "",
        text=content.get("Text"),
        html=content.get("Html"),
    )
    return _ok()


async def _get_email_template(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/templates/{TemplateName}."""
    name = request.match_info["name"]
    template = state.account.templates.get(name)
    if template is None:
        return error_response(404, "NotFoundException", f"Template {name} does not exist.")
    content: dict[str, str] = {"Subject": template.subject}
    if template.text is not None:
        content["Text"] = template.text
    if template.html is not None:
        content["Html"] = template.html
    return _ok({"TemplateName": name, "TemplateContent": content})


async def _create_configuration_set(state: SimState, request: web.Request) -> web.Response:
    """POST /v2/email/configuration-sets."""
    body = await _body(request)
    name = body.get("ConfigurationSetName")
    if not name or not isinstance(name, str):
        raise _BadRequest("Missing required parameter ConfigurationSetName.")
    if name in state.account.configuration_sets:
        return error_response(
            400, "AlreadyExistsException", f"Configuration set <{name}> already exists."
        )
    enabled = (body.get("SendingOptions") or {}).get("SendingEnabled", True)
    state.account.configuration_sets[name] = ConfigurationSet(name, bool(enabled))
    return _ok()


async def _put_configuration_set_sending(state: SimState, request: web.Request) -> web.Response:
    """PUT /v2/email/configuration-sets/{name}/sending (PutConfigurationSetSendingOptions)."""
    name = request.match_info["name"]
    found = state.account.configuration_sets.get(name)
    if found is None:
        return error_response(
            404, "NotFoundException", f"Configuration set <{name}> does not exist."
        )
    body = await _body(request)
    found.sending_enabled = bool(body.get("SendingEnabled", False))
    return _ok()


async def _put_suppressed(state: SimState, request: web.Request) -> web.Response:
    """PUT /v2/email/suppression/addresses (PutSuppressedDestination)."""
    body = await _body(request)
    address = body.get("EmailAddress")
    reason = body.get("Reason")
    if not address or not isinstance(address, str) or address_problem(address):
        raise _BadRequest(f"Invalid email address {address}.")
    if reason not in SUPPRESSION_REASONS:
        raise _BadRequest(f"Reason must be one of {', '.join(SUPPRESSION_REASONS)}.")
    key = address.lower()
    state.account.suppressed[key] = Suppressed(key, reason, state.wall_time())
    return _ok()


async def _get_suppressed(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/suppression/addresses/{EmailAddress}."""
    address = request.match_info["address"]
    found = state.account.suppressed.get(address.lower())
    if found is None:
        return error_response(
            404,
            "NotFoundException",
            f"Email address {address} does not exist on your suppression list.",
        )
    return _ok(
        {
            "SuppressedDestination": {
                "EmailAddress": found.address,
                "Reason": found.reason,
                "LastUpdateTime": found.updated_at,
            }
        }
    )


async def _list_suppressed(state: SimState, request: web.Request) -> web.Response:
    """GET /v2/email/suppression/addresses (ListSuppressedDestinations): by address order,
    filtered by Reason and LastUpdateTime, PageSize (at most 1000) per page with NextToken."""
    query = request.rel_url.query
    reasons = set(query.getall("Reason", [])) or set(SUPPRESSION_REASONS)
    if not reasons <= set(SUPPRESSION_REASONS):
        raise _BadRequest(f"Reason must be one of {', '.join(SUPPRESSION_REASONS)}.")
    token = query.get("NextToken", "0")
    if not token.isdigit():
        raise _BadNextToken(f"Invalid NextToken {token}.")
    start = int(token)
    try:
        size = int(query.get("PageSize", "1000"))
        since = _timestamp(query.get("StartDate"))
        until = _timestamp(query.get("EndDate"))
    except ValueError as exc:
        raise _BadRequest(str(exc)) from None
    if not 1 <= size <= 1000:
        raise _BadRequest("PageSize must be between 1 and 1000.")
    matching = [
        found
        for _, found in sorted(state.account.suppressed.items())
        if found.reason in reasons
        and (since is None or found.updated_at >= since)
        and (until is None or found.updated_at <= until)
    ]
    page = matching[start : start + size]
    body: dict[str, Any] = {
        "SuppressedDestinationSummaries": [
            {"EmailAddress": f.address, "Reason": f.reason, "LastUpdateTime": f.updated_at}
            for f in page
        ]
    }
    if start + size < len(matching):
        body["NextToken"] = str(start + size)
    return _ok(body)


def _timestamp(text: str | None) -> float | None:
    """A query-string timestamp as botocore sends it (ISO 8601), or epoch seconds."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"Invalid timestamp {text!r}.") from None


async def _delete_suppressed(state: SimState, request: web.Request) -> web.Response:
    address = request.match_info["address"]
    if state.account.suppressed.pop(address.lower(), None) is None:
        return error_response(
            404,
            "NotFoundException",
            f"Email address {address} does not exist on your suppression list.",
        )
    return _ok()


async def unknown_operation(request: web.Request) -> web.Response:
    """Any other /v2/ route: a clean REST-JSON error (AWS's code for an unrouted request)."""
    return error_response(
        404, "UnknownOperationException", f"No operation at {request.method} {request.path}."
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    # SendEmail is v2's SendEmail, SendRawEmail and SendTemplatedEmail: the only actions AWS
    # exempts from 1 request/s (see v1.UNLIMITED_ACTIONS). SendBulkEmail is not exempt: its v1
    # twin SendBulkTemplatedEmail never joined that list.
    r.add_post(
        "/v2/email/outbound-emails",
        _json_handler(_send_email, "Malformed SendEmail request.", limited=False),
    )
    r.add_post("/v2/email/outbound-bulk-emails", _json_handler(_send_bulk_email))
    r.add_get("/v2/email/account", _json_handler(_get_account))
    r.add_put("/v2/email/account/sending", _json_handler(_put_account_sending))
    r.add_post("/v2/email/identities", _json_handler(_create_email_identity))
    r.add_get("/v2/email/identities/{identity}", _json_handler(_get_email_identity))
    r.add_delete("/v2/email/identities/{identity}", _json_handler(_delete_email_identity))
    r.add_put("/v2/email/identities/{identity}/mail-from", _json_handler(_put_mail_from))
    r.add_post("/v2/email/templates", _json_handler(_create_email_template))
    r.add_get("/v2/email/templates/{name}", _json_handler(_get_email_template))
    r.add_put("/v2/email/templates/{name}", _json_handler(_update_email_template))
    r.add_post("/v2/email/configuration-sets", _json_handler(_create_configuration_set))
    r.add_put(
        "/v2/email/configuration-sets/{name}/sending", _json_handler(_put_configuration_set_sending)
    )
    r.add_put("/v2/email/suppression/addresses", _json_handler(_put_suppressed))
    r.add_get("/v2/email/suppression/addresses", _json_handler(_list_suppressed))
    r.add_get("/v2/email/suppression/addresses/{address}", _json_handler(_get_suppressed))
    r.add_delete("/v2/email/suppression/addresses/{address}", _json_handler(_delete_suppressed))
    # Reads of the set-up (dispatcher doctor's questions) live in v2_setup.py.
    from dispatcher.sim import v2_lists, v2_setup  # they build on this module's helpers

    v2_setup.add_routes(r, _json_handler)
    v2_lists.add_routes(r, _json_handler)
    r.add_route("*", "/v2/{tail:.*}", unknown_operation)

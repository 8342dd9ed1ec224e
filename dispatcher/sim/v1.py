"""SES API v1 (Query/XML, `ses` client) on top of SimState.

Requests are `POST /` form-encoded with `Action=...` (GET with a query string also works, as on
AWS). Errors use SES's XML form, HTTP 400:
`<ErrorResponse><Error><Type>Sender</Type><Code>..</Code><Message>..</Message></Error>..`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import cast
from xml.sax.saxutils import escape

from aiohttp import web

from dispatcher.sim.account import ConfigurationSet, Template
from dispatcher.sim.errors import ACTION_THROTTLED_V1, bulk_status, v1_error
from dispatcher.sim.ids import request_id
from dispatcher.sim.keys import STATE_KEY
from dispatcher.sim.sends import (
    Content,
    decode_raw,
    raw_headers,
    rendered_or_refusal,
    stored_template,
)
from dispatcher.sim.state import (
    MAX_RECIPIENTS,
    Refusal,
    SendError,
    SentMessage,
    SimState,
    address_problem,
)

API_VERSION = "2010-12-01"
XMLNS = "http://ses.amazonaws.com/doc/2010-12-01/"
_FAULT_XMLNS = "http://webservices.amazon.com/AWSFault/2005-15-09"  # SES's unknown-action answer
RAW_MAX_BYTES = 10 * 1024 * 1024  # v1 limit on a message (SES-FACTS: 10 MB, after base64)

SEND_ACTIONS = frozenset(
    {"SendEmail", "SendRawEmail", "SendTemplatedEmail", "SendBulkTemplatedEmail"}
)
# The only actions AWS exempts from its 1 request/s limit on API actions (SES-FACTS, and
# docs.aws.amazon.com/ses/latest/dg/quotas.html#quotas-api). SendBulkTemplatedEmail is not
# among them: when the templated sends came, the list gained SendTemplatedEmail only.
UNLIMITED_ACTIONS = frozenset({"SendEmail", "SendRawEmail", "SendTemplatedEmail"})

Params = Mapping[str, str]


def error_response(
    code: str, message: str, *, status: int = 400, xmlns: str = XMLNS, type_: str = "Sender"
) -> web.Response:
    body = (
        f'<ErrorResponse xmlns="{xmlns}"><Error><Type>{type_}</Type>'
        f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id()}</RequestId></ErrorResponse>"
    )
    return web.Response(status=status, text=body, content_type="text/xml")


# Actions whose model has no output: SES answers ResponseMetadata alone, no <{Action}Result>.
_NO_RESULT = frozenset(
    {"VerifyEmailAddress", "UpdateAccountSendingEnabled", "UpdateConfigurationSetSendingEnabled"}
)


def _result(action: str, inner: str = "") -> web.Response:
    result = "" if action in _NO_RESULT else f"<{action}Result>{inner}</{action}Result>"
    body = (
        f'<{action}Response xmlns="{XMLNS}">{result}'
        f"<ResponseMetadata><RequestId>{request_id()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )
    return web.Response(text=body, content_type="text/xml")


def refusal_response(refusal: Refusal, region: str = "us-east-1") -> web.Response:
    return error_response(*v1_error(refusal, region))


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


def _tags(params: Params, prefix: str = "Tags") -> dict[str, str]:
    tags: dict[str, str] = {}
    i = 1
    while True:
        name = params.get(f"{prefix}.member.{i}.Name")
        if name is None:
            return tags
        tags[name] = params.get(f"{prefix}.member.{i}.Value", "")
        i += 1


def _destination(params: Params, prefix: str) -> tuple[list[str], list[str], list[str]]:
    return (
        _members(params, f"{prefix}.ToAddresses"),
        _members(params, f"{prefix}.CcAddresses"),
        _members(params, f"{prefix}.BccAddresses"),
    )


def _return_path(params: Params) -> tuple[str, ...]:
    """ReturnPath: SES checks it like the sender."""
    value = params.get("ReturnPath")
    return (value,) if value else ()


def _size(*parts: str | None) -> int:
    return sum(len(p.encode()) for p in parts if p)


def _sent(action: str, state: SimState, result: SentMessage | Refusal) -> web.Response:
    if isinstance(result, SentMessage):
        return _result(action, f"<MessageId>{result.message_id}</MessageId>")
    return refusal_response(result, state.settings.region)


def _refuse(state: SimState, refusal: Refusal) -> web.Response:
    return refusal_response(refusal, state.settings.region)


def _send(
    state: SimState,
    params: Params,
    source: str,
    content: Content,
    *,
    operation: str = "SendEmail",
    destination: str = "Destination",
    tags: dict[str, str] | None = None,
) -> SentMessage | Refusal:
    """`content` sent with the request's envelope (destination, tags, set, Reply-To, ...)."""
    to, cc, bcc = _destination(params, destination)
    return state.send(
        api="v1",
        from_addr=source,
        to=to,
        cc=cc,
        bcc=bcc,
        tags=_tags(params) if tags is None else tags,
        configuration_set=params.get("ConfigurationSetName"),
        reply_to=_members(params, "ReplyToAddresses"),
        operation=operation,
        senders=_return_path(params),
        **content,
    )


async def _send_email(state: SimState, params: Params) -> web.Response:
    source = params.get("Source")
    if not source:
        return _refuse(state, state.refuse(SendError.MISSING_PARAMETER, "Source"))
    subject = params.get("Message.Subject.Data")
    if subject is None:
        return _refuse(state, state.refuse(SendError.MISSING_PARAMETER, "Message.Subject"))
    text = params.get("Message.Body.Text.Data")
    html = params.get("Message.Body.Html.Data")
    if _size(subject, text, html) > RAW_MAX_BYTES:
        return _refuse(state, state.refuse(SendError.TOO_LARGE, str(RAW_MAX_BYTES)))
    content = Content(subject=subject, text=text, html=html)
    return _sent("SendEmail", state, _send(state, params, source, content))


async def _send_raw_email(state: SimState, params: Params) -> web.Response:
    encoded = params.get("RawMessage.Data")
    if encoded is None:
        return _refuse(state, state.refuse(SendError.MISSING_PARAMETER, "RawMessage.Data"))
    data = decode_raw(state, encoded, RAW_MAX_BYTES, "RawMessage.Data")
    if isinstance(data, Refusal):
        return _refuse(state, data)
    found = raw_headers(data)
    destinations = _members(params, "Destinations")
    result = state.send(
        api="v1",
        from_addr=params.get("Source") or found.from_addr,
        to=destinations or found.to,
        cc=[] if destinations else found.cc,
        bcc=[] if destinations else found.bcc,
        subject=found.subject,
        tags=_tags(params) or found.tags,
        configuration_set=params.get("ConfigurationSetName") or found.configuration_set,
        reply_to=found.reply_to,
        raw=data,
        operation="SendRawEmail",
        senders=found.senders,
    )
    return _sent("SendRawEmail", state, result)


async def _send_templated_email(state: SimState, params: Params) -> web.Response:
    source = params.get("Source")
    if not source:
        return _refuse(state, state.refuse(SendError.MISSING_PARAMETER, "Source"))
    configuration_set = params.get("ConfigurationSetName")
    stop = state.check_account(configuration_set)
    if stop is not None:
        return _refuse(state, stop)
    template = stored_template(state, params.get("Template"), "Template")
    if isinstance(template, Refusal):
        return _refuse(state, template)
    parts = rendered_or_refusal(state, template, params.get("TemplateData", ""))
    if isinstance(parts, Refusal):
        return _refuse(state, parts)
    result = _send(state, params, source, parts, operation="SendTemplatedEmail")
    return _sent("SendTemplatedEmail", state, result)


async def _send_bulk_templated_email(state: SimState, params: Params) -> web.Response:
    """Shared problems (account, set, template) fail the call; the rest is per destination."""
    source = params.get("Source")
    if not source:
        return _refuse(state, state.refuse(SendError.MISSING_PARAMETER, "Source"))
    count = 0
    for key in params:
        if key.startswith("Destinations.member."):
            index = key[20:].split(".", 1)[0]
            if index.isdigit():
                count = max(count, int(index))
    if count == 0:
        return _refuse(state, state.refuse(SendError.MISSING_PARAMETER, "Destinations"))
    if count > MAX_RECIPIENTS:
        return _refuse(
            state,
            state.refuse(
                SendError.INVALID_PARAMETER,
                f"Destinations count exceeds {MAX_RECIPIENTS}.",  # not confirmed: the text
            ),
        )
    configuration_set = params.get("ConfigurationSetName")
    stop = state.check_account(configuration_set)
    if stop is not None:
        return _refuse(state, stop)
    template = stored_template(state, params.get("Template"), "Template")
    if isinstance(template, Refusal):
        return _refuse(state, template)
    default_data = params.get("DefaultTemplateData", "")
    default_tags = _tags(params, "DefaultTags")
    region = state.settings.region
    items: list[str] = []
    for i in range(1, count + 1):
        prefix = f"Destinations.member.{i}"
        tags = {**default_tags, **_tags(params, f"{prefix}.ReplacementTags")}
        data = params.get(f"{prefix}.ReplacementTemplateData") or default_data
        parts = rendered_or_refusal(state, template, data)
        refused = (
            parts
            if isinstance(parts, Refusal)
            else _send(
                state,
                params,
                source,
                parts,
                operation="SendBulkTemplatedEmail",
                destination=f"{prefix}.Destination",
                tags=tags,
            )
        )
        if isinstance(refused, SentMessage):
            items.append(
                f"<member><Status>Success</Status><MessageId>{refused.message_id}</MessageId>"
                "</member>"
            )
        else:
            status, error = bulk_status(refused, region, v2=False)
            items.append(
                f"<member><Status>{status}</Status><Error>{escape(error)}</Error></member>"
            )
    return _result("SendBulkTemplatedEmail", f"<Status>{''.join(items)}</Status>")


async def _get_send_quota(state: SimState, params: Params) -> web.Response:
    state.counters.quota_reads += 1
    max24, rate, sent = state.send_quota()
    return _result(
        "GetSendQuota",
        f"<Max24HourSend>{max24!r}</Max24HourSend><MaxSendRate>{rate!r}</MaxSendRate>"
        f"<SentLast24Hours>{sent!r}</SentLast24Hours>",
    )


async def _get_account_sending_enabled(state: SimState, params: Params) -> web.Response:
    enabled = "true" if state.account.sending_enabled else "false"
    return _result("GetAccountSendingEnabled", f"<Enabled>{enabled}</Enabled>")


async def _update_account_sending_enabled(state: SimState, params: Params) -> web.Response:
    state.account.sending_enabled = params.get("Enabled", "false").lower() == "true"
    return _result("UpdateAccountSendingEnabled")


async def _verify_email_identity(state: SimState, params: Params) -> web.Response:
    return _verify_address(state, params, "VerifyEmailIdentity")


async def _verify_email_address(state: SimState, params: Params) -> web.Response:
    return _verify_address(state, params, "VerifyEmailAddress")


def _verify_address(state: SimState, params: Params, action: str) -> web.Response:
    """SES mails a link and keeps the identity pending until it is clicked (here: the admin
    route POST /_sim/identities/NAME/verify, or at once with auto_verify)."""
    address = params.get("EmailAddress")
    if not address:
        return error_response(
            "MissingParameter", "The request must contain the parameter EmailAddress."
        )
    problem = address_problem(address)
    if problem:
        return error_response("InvalidParameterValue", problem)
    state.account.create(address, domain=False, verified=state.settings.auto_verify)
    return _result(action)


async def _verify_domain_identity(state: SimState, params: Params) -> web.Response:
    """Pending until SES finds the TXT record (the admin verify route), unless auto_verify."""
    domain = params.get("Domain")
    if not domain:
        return error_response("MissingParameter", "The request must contain the parameter Domain.")
    if "@" in domain or "." not in domain or domain.endswith("."):
        return error_response("InvalidParameterValue", f"Invalid domain name {domain}.")
    state.account.create(domain, domain=True, verified=state.settings.auto_verify)
    token = base64.b64encode(os.urandom(32)).decode()
    return _result("VerifyDomainIdentity", f"<VerificationToken>{token}</VerificationToken>")


# GetIdentityVerificationAttributes spells the states in CamelCase (the ses model's enum).
_V1_STATUS = {"SUCCESS": "Success", "PENDING": "Pending"}


async def _get_identity_verification_attributes(state: SimState, params: Params) -> web.Response:
    """Each known identity asked for and its VerificationStatus; unknown ones are left out."""
    names = _members(params, "Identities")
    if not names and "Identities" not in params:  # required by the model (an empty list is not)
        return error_response(
            "MissingParameter", "The request must contain the parameter Identities."
        )
    entries = []
    for name in names:
        identity = state.account.identities.get(name.lower())
        if identity is None:
            continue
        status = _V1_STATUS[identity.verification_status]
        entries.append(
            f"<entry><key>{escape(name)}</key><value>"
            f"<VerificationStatus>{status}</VerificationStatus></value></entry>"
        )
    return _result(
        "GetIdentityVerificationAttributes",
        f"<VerificationAttributes>{''.join(entries)}</VerificationAttributes>",
    )


async def _list_identities(state: SimState, params: Params) -> web.Response:
    wanted = params.get("IdentityType")  # EmailAddress | Domain | absent
    kinds = {"EmailAddress": "EMAIL_ADDRESS", "Domain": "DOMAIN"}
    names = [
        i.name
        for i in state.account.identities.values()
        if wanted is None or i.kind == kinds.get(wanted)
    ]
    members = "".join(f"<member>{escape(n)}</member>" for n in names)
    return _result("ListIdentities", f"<Identities>{members}</Identities>")


async def _delete_identity(state: SimState, params: Params) -> web.Response:
    identity = params.get("Identity")
    if not identity:
        return error_response(
            "MissingParameter", "The request must contain the parameter Identity."
        )
    state.account.identities.pop(identity.lower(), None)  # unknown: no error (none is modeled)
    return _result("DeleteIdentity")


async def _create_template(state: SimState, params: Params) -> web.Response:
    name = params.get("Template.TemplateName")
    if not name:
        return error_response(
            "MissingParameter", "The request must contain the parameter Template.TemplateName."
        )
    if name in state.account.templates:
        return error_response("AlreadyExists", f"Template {name} already exists.")
    state.account.templates[name] = Template(
        name,
        subject=params.get("Template.SubjectPart", ""),
        text=params.get("Template.TextPart"),
        html=params.get("Template.HtmlPart"),
    )
    return _result("CreateTemplate")


async def _get_template(state: SimState, params: Params) -> web.Response:
    name = params.get("TemplateName", "")
    template = state.account.templates.get(name)
    if template is None:
        return error_response("TemplateDoesNotExist", f"Template {name} does not exist.")
    inner = f"<TemplateName>{escape(name)}</TemplateName>"
    inner += f"<SubjectPart>{escape(template.subject)}</SubjectPart>"
    if template.text is not None:
        inner += f"<TextPart>{escape(template.text)}</TextPart>"
    if template.html is not None:
        inner += f"<HtmlPart>{escape(template.html)}</HtmlPart>"
    return _result("GetTemplate", f"<Template>{inner}</Template>")


async def _create_configuration_set(state: SimState, params: Params) -> web.Response:
    name = params.get("ConfigurationSet.Name")
    if not name:
        return error_response(
            "MissingParameter", "The request must contain the parameter ConfigurationSet.Name."
        )
    if name in state.account.configuration_sets:
        return error_response(
            "ConfigurationSetAlreadyExists", f"Configuration set <{name}> already exists."
        )
    state.account.configuration_sets[name] = ConfigurationSet(name)
    return _result("CreateConfigurationSet")


async def _update_configuration_set_sending_enabled(
    state: SimState, params: Params
) -> web.Response:
    name = params.get("ConfigurationSetName", "")
    found = state.account.configuration_sets.get(name)
    if found is None:
        return error_response(
            "ConfigurationSetDoesNotExist", f"Configuration set <{name}> does not exist."
        )
    found.sending_enabled = params.get("Enabled", "false").lower() == "true"
    return _result("UpdateConfigurationSetSendingEnabled")


_Handler = Callable[[SimState, Params], Awaitable[web.Response]]
ACTIONS: dict[str, _Handler] = {
    "SendEmail": _send_email,
    "SendRawEmail": _send_raw_email,
    "SendTemplatedEmail": _send_templated_email,
    "SendBulkTemplatedEmail": _send_bulk_templated_email,
    "GetSendQuota": _get_send_quota,
    "GetAccountSendingEnabled": _get_account_sending_enabled,
    "UpdateAccountSendingEnabled": _update_account_sending_enabled,
    "VerifyEmailIdentity": _verify_email_identity,
    "VerifyEmailAddress": _verify_email_address,
    "VerifyDomainIdentity": _verify_domain_identity,
    "GetIdentityVerificationAttributes": _get_identity_verification_attributes,
    "ListIdentities": _list_identities,
    "DeleteIdentity": _delete_identity,
    "CreateTemplate": _create_template,
    "GetTemplate": _get_template,
    "CreateConfigurationSet": _create_configuration_set,
    "UpdateConfigurationSetSendingEnabled": _update_configuration_set_sending_enabled,
}


async def params_of(request: web.Request) -> Params:
    # A form body holds only strings (FileFields come from multipart, which botocore never sends;
    # one would fail in a handler as a TypeError and be answered as an invalid parameter).
    return cast(Params, request.query if request.method == "GET" else await request.post())


async def query(request: web.Request) -> web.Response:
    """`/` with Action=...: dispatch to the action; unknown actions answer as SES does."""
    state = request.app[STATE_KEY]
    params = await params_of(request)
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
    if action not in UNLIMITED_ACTIONS and not state.allow_action(action):
        return error_response(*ACTION_THROTTLED_V1)
    try:
        return await handler(state, params)
    except (KeyError, TypeError, ValueError) as exc:
        return refusal_response(state.refuse(SendError.INVALID_PARAMETER, str(exc)))


def add_routes(app: web.Application) -> None:
    app.router.add_route("POST", "/", query)
    app.router.add_route("GET", "/", query)

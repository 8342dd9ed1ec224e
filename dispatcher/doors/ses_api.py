"""The SES-compatible endpoint on the `[api]` listener: an application that sends through SES with
an AWS SDK changes only its endpoint URL and its keys (a dispatcher key's id as access key id,
its secret as secret access key).

Served: SES v2 `SendEmail` (Simple, Raw and Template content) and `GetAccount`; v1 `SendEmail`,
`SendRawEmail` and `GetSendQuota` (Query protocol, `POST /`). Requests are authenticated by AWS
Signature V4, recomputed with botocore's signer. Every accepted message goes through
`doors.intake.accept`, so the answer's MessageId (`dispatcher-<id>`, see `doors.ses_ids`) names a
committed message. Answers and errors are in SES's wire forms, rendered by the simulator's
protocol modules.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import structlog
from aiohttp import web

from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.validate import MAX_MESSAGE_BYTES
from dispatcher.domain.wire import unstorable
from dispatcher.doors import sigv4
from dispatcher.doors.intake import Forbidden, Unavailable, accept, is_unavailable
from dispatcher.doors.keys import ApiKey, MasterKey, master_key_path
from dispatcher.doors.ses_ids import ses_message_id
from dispatcher.doors.sigv4 import AuthFailure, Failure
from dispatcher.errors import ConfigError, InputError
from dispatcher.sim import v1 as sim_v1
from dispatcher.sim import v2 as sim_v2
from dispatcher.sim.ids import request_id
from dispatcher.sim.mime import event_publishing, header_addresses, header_text, parse_raw_headers

if TYPE_CHECKING:
    from dispatcher.doors.web import DoorContext

__all__ = ["SES_API", "SesApi", "install"]

log = structlog.get_logger()

V2_SEND = "/v2/email/outbound-emails"
V2_ACCOUNT = "/v2/email/account"
V1_MAX_BYTES = 10 * 1024 * 1024  # v1 SendRawEmail takes 10 MB (SES-FACTS)

# AWS's own wording (seen in SES answers quoted by SDK users' reports).
MISMATCH_TEXT = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
UNKNOWN_KEY_TEXT = "The security token included in the request is invalid."

# Parameters that ask SES for something the dispatcher cannot carry through its queue: refused
# with a clear error instead of silently dropped.
V2_UNSUPPORTED = (
    "FromEmailAddressIdentityArn",
    "FeedbackForwardingEmailAddress",
    "FeedbackForwardingEmailAddressIdentityArn",
    "ListManagementOptions",
    "EndpointId",
    "TenantName",
)
V1_UNSUPPORTED = ("ReturnPath", "ReturnPathArn", "SourceArn", "FromArn")


class Wire(Enum):
    V1 = "query"
    V2 = "rest-json"


class SesError(Exception):
    """A refusal in both wire forms: v1's code, v2's code, the HTTP status, the text."""

    def __init__(self, v1_code: str, v2_code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.v1_code = v1_code
        self.v2_code = v2_code
        self.status = status
        self.message = message

    def response(self, wire: Wire) -> web.Response:
        if wire is Wire.V1:
            type_ = "Receiver" if self.status >= 500 else "Sender"
            return sim_v1.error_response(
                self.v1_code, self.message, status=self.status, type_=type_
            )
        return sim_v2.error_response(self.status, self.v2_code, self.message)


def bad_request(message: str) -> SesError:
    return SesError("InvalidParameterValue", "BadRequestException", 400, message)


def missing(name: str) -> SesError:
    # v1: AWS's common error for the Query APIs; v2: the model's validation error.
    return SesError(
        "MissingParameter",
        "BadRequestException",
        400,
        f"The request must contain the parameter {name}.",
    )


def rejected(message: str) -> SesError:
    return SesError("MessageRejected", "MessageRejected", 400, message)


def unavailable(message: str) -> SesError:
    # 503: every SDK retries it with backoff, as it should (nothing was queued).
    return SesError("ServiceUnavailable", "ServiceUnavailable", 503, message)


_AUTH: dict[Failure, tuple[str, str, int]] = {
    Failure.MISSING: ("MissingAuthenticationToken", "MissingAuthenticationTokenException", 403),
    Failure.INCOMPLETE: ("IncompleteSignature", "IncompleteSignatureException", 400),
    Failure.EXPIRED: ("SignatureDoesNotMatch", "InvalidSignatureException", 403),
    Failure.NOT_YET: ("SignatureDoesNotMatch", "InvalidSignatureException", 403),
    Failure.UNKNOWN_KEY: ("InvalidClientTokenId", "UnrecognizedClientException", 403),
    Failure.MISMATCH: ("SignatureDoesNotMatch", "SignatureDoesNotMatch", 403),
}


def auth_error(failure: AuthFailure) -> SesError:
    """An authentication failure as SES answers it (v1 Query / v2 REST-JSON codes)."""
    v1_code, v2_code, status = _AUTH[failure.kind]
    return SesError(v1_code, v2_code, status, str(failure))


class SesApi:
    """The endpoint's state: the door context and the master key secrets are derived from."""

    def __init__(self, ctx: DoorContext) -> None:
        self.ctx = ctx
        self._path = master_key_path(ctx.cfg.keys.master_file, ctx.cfg.database.data_dir)
        self._master: MasterKey | None = None
        self._load_master()

    def _load_master(self) -> MasterKey | None:
        """The master key, read once; until it exists (no key created yet) every key is unknown."""
        if self._master is None:
            try:
                self._master = MasterKey.load(self._path, create=False)
            except ConfigError as exc:
                log.warning("ses_api.no_master_key", error=str(exc))
        return self._master

    async def authenticate(self, request: web.Request, body: bytes) -> ApiKey:
        """The active key that signed this request (SigV4), or SesError in SES's terms."""
        try:
            signed = sigv4.parse_authorization(request.headers.get("Authorization"))
            amz_date = request.headers.get("X-Amz-Date")
            sigv4.check_date(amz_date, datetime.now(UTC))
            assert amz_date is not None  # check_date refuses a missing one
            key = await self._key(signed.key_id)
            master = self._load_master()
            if key is None or master is None:
                raise AuthFailure(Failure.UNKNOWN_KEY, UNKNOWN_KEY_TEXT)
            if not sigv4.signature_matches(
                signed,
                master.secret_for(key.id),
                method=request.method,
                raw_path=request.rel_url.raw_path,
                raw_query=request.rel_url.raw_query_string,
                headers=lambda name: request.headers.getall(name, []),
                body=body,
                amz_date=amz_date,
            ):
                raise AuthFailure(Failure.MISMATCH, MISMATCH_TEXT)
        except AuthFailure as exc:
            log.info("ses_api.unauthenticated", reason=exc.kind.value, path=request.path)
            raise auth_error(exc) from None
        return key

    async def _key(self, key_id: str) -> ApiKey | None:
        if not key_id or len(key_id) > 64 or not key_id.isascii():
            return None
        try:
            return await self.ctx.keys.get(key_id)
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(
                    f"The queue's database is unreachable; try again: {exc}"
                ) from None
            raise

    async def queue(self, key: ApiKey, msg: NewMessage) -> str:
        """Queue `msg` as `key`, committed; the MessageId to answer."""
        try:
            [done] = await accept(self.ctx.pool, key, [msg])
        except Forbidden as exc:
            raise rejected(str(exc)) from None
        except InputError as exc:
            raise bad_request(str(exc)) from None
        except Unavailable as exc:
            raise unavailable(f"{exc}; nothing was queued, try again") from None
        log.info("ses_api.queued", message_id=done.id, key_id=key.id)
        return ses_message_id(done.id)

    async def send_quota(self) -> tuple[float, float, float]:
        """(Max24HourSend, MaxSendRate, SentLast24Hours): the reading the daemon shares in
        Postgres, plus what every worker sent since it was taken."""
        try:
            # The nil owner records nothing: it only reads (as `dispatcher status` does).
            shared = await self.ctx.quota.sync(uuid.UUID(int=0), {})
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable(
                    f"The queue's database is unreachable; try again: {exc}"
                ) from None
            raise
        quota = shared.quota
        if quota is None:
            raise unavailable("The dispatcher has not read the account's quota yet; try again.")
        sent = quota.sent_last_24_hours + shared.others_sent
        return float(quota.max_24_hour_send), float(quota.max_send_rate), float(sent)


SES_API = web.AppKey("ses_api", SesApi)
Handler = Callable[[SesApi, web.Request, bytes], Awaitable[web.Response]]


def _handler(wire: Wire, func: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Read the body, authenticate, run `func`; every refusal in `wire`'s form."""

    async def handle(request: web.Request) -> web.Response:
        api = request.app[SES_API]
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                limit = api.ctx.cfg.api.max_body_bytes
                raise bad_request(
                    f"Request body is over {limit} bytes (api.max_body_bytes)."
                ) from None
            return await func(api, request, body)
        except SesError as exc:
            return exc.response(wire)
        except Exception as exc:  # a bug: SES's 500 (retried by SDKs), not aiohttp's text page
            log.exception("ses_api.failed", path=request.path, error=repr(exc))
            failure = SesError("InternalFailure", "InternalFailure", 500, "Internal failure.")
            return failure.response(wire)

    handle.__doc__ = func.__doc__
    return handle


def install(app: web.Application, ctx: DoorContext) -> None:
    """Serve the SES-compatible operations on `app` (the `[api]` listener)."""
    app[SES_API] = SesApi(ctx)
    app.router.add_post(V2_SEND, _handler(Wire.V2, v2_send_email))
    app.router.add_get(V2_ACCOUNT, _handler(Wire.V2, v2_get_account))
    app.router.add_post("/", _handler(Wire.V1, v1_query))


# -- v2 (REST-JSON) ----------------------------------------------------------------------------


def _v2_ok(body: Mapping[str, Any]) -> web.Response:
    return web.json_response(body, headers={"x-amzn-RequestId": request_id()})


async def v2_send_email(api: SesApi, request: web.Request, body: bytes) -> web.Response:
    """POST /v2/email/outbound-emails."""
    key = await api.authenticate(request, body)
    try:
        obj = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(obj, dict):
        raise bad_request("The request body must be a JSON object.")
    if (problem := unstorable(obj)) is not None:
        raise bad_request(f"The request {problem}.")
    message_id = await api.queue(key, v2_message(obj))
    return _v2_ok({"MessageId": message_id})


async def v2_get_account(api: SesApi, request: web.Request, body: bytes) -> web.Response:
    """GET /v2/email/account: the account's send quota, as the daemon last read it."""
    await api.authenticate(request, body)
    max24, rate, sent = await api.send_quota()
    return _v2_ok(
        {"SendQuota": {"Max24HourSend": max24, "MaxSendRate": rate, "SentLast24Hours": sent}}
    )


def _get(obj: Mapping[str, Any], name: str, kind: type, path: str) -> Any:
    value = obj.get(name)
    if value is not None and not isinstance(value, kind):
        raise bad_request(f"{path}{name} must be a {'string' if kind is str else 'structure'}.")
    return value


def _strings(obj: Mapping[str, Any], name: str, path: str = "") -> tuple[str, ...]:
    value = obj.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{path}{name} must be a list of strings.")
    return tuple(value)


def _data(obj: Mapping[str, Any], name: str, path: str) -> str | None:
    """`obj[name]["Data"]` of a Content structure, or None when absent."""
    part = _get(obj, name, dict, path)
    if part is None:
        return None
    data = _get(part, "Data", str, f"{path}{name}.")
    if data is None:
        raise missing(f"{path}{name}.Data")
    return str(data)


def _v2_tags(obj: Mapping[str, Any]) -> dict[str, str]:
    value = obj.get("EmailTags")
    if value is None:
        return {}
    if not isinstance(value, list):
        raise bad_request("EmailTags must be a list of {Name, Value}.")
    tags: dict[str, str] = {}
    for tag in value:
        if not isinstance(tag, dict) or not isinstance(tag.get("Name"), str):
            raise bad_request("EmailTags must be a list of {Name, Value}.")
        tags[tag["Name"]] = str(tag.get("Value", ""))
    return tags


def _unsupported(what: str, why: str = "") -> SesError:
    return bad_request(f"{what} is not supported by the dispatcher's SES-compatible endpoint{why}.")


def v2_message(obj: Mapping[str, Any]) -> NewMessage:
    """The message a v2 SendEmail request asks for (SesError when it is not one we can queue)."""
    for name in V2_UNSUPPORTED:
        if obj.get(name) is not None:
            raise _unsupported(name)
    content = _get(obj, "Content", dict, "")
    if content is None:
        raise missing("Content")
    dest = _get(obj, "Destination", dict, "") or {}
    to = _strings(dest, "ToAddresses", "Destination.")
    cc = _strings(dest, "CcAddresses", "Destination.")
    bcc = _strings(dest, "BccAddresses", "Destination.")
    from_addr = _get(obj, "FromEmailAddress", str, "")
    common: dict[str, Any] = {
        "reply_to": _strings(obj, "ReplyToAddresses"),
        "configuration_set": _get(obj, "ConfigurationSetName", str, ""),
        "tags": _v2_tags(obj),
    }
    template = _get(content, "Template", dict, "Content.")
    if template is not None:
        return template_message(template, from_addr, to, cc, bcc, **common)
    simple = _get(content, "Simple", dict, "Content.")
    if simple is not None:
        for name in ("Headers", "Attachments"):
            if simple.get(name):
                raise _unsupported(f"Content.Simple.{name}")
        if not from_addr:
            raise missing("FromEmailAddress")
        subject = _data(simple, "Subject", "Content.Simple.")
        if subject is None:
            raise missing("Content.Simple.Subject")
        body = _get(simple, "Body", dict, "Content.Simple.") or {}
        return NewMessage(
            from_addr=from_addr,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            text=_data(body, "Text", "Content.Simple.Body."),
            html=_data(body, "Html", "Content.Simple.Body."),
            **common,
        )
    raw = _get(content, "Raw", dict, "Content.")
    if raw is None:
        raise missing("Content.Simple, Content.Raw or Content.Template")
    data = _get(raw, "Data", str, "Content.Raw.")
    if data is None:
        raise missing("Content.Raw.Data")
    return raw_message(_base64(data, "Content.Raw.Data"), from_addr, to, cc, bcc, **common)


def template_message(
    spec: Mapping[str, Any],
    from_addr: str | None,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    **common: Any,
) -> NewMessage:
    """Template content: the name of a template in the SES account and its data, kept on the
    message and sent to SES as a templated SendEmail, which renders it (as it would have)."""
    for name in ("TemplateArn", "TemplateContent", "Headers", "Attachments"):
        if spec.get(name):
            raise _unsupported(f"Content.Template.{name}", " (name a template in the account)")
    if not from_addr:
        raise missing("FromEmailAddress")
    name = _get(spec, "TemplateName", str, "Content.Template.")
    if not name:
        raise missing("Content.Template.TemplateName")
    data = _get(spec, "TemplateData", str, "Content.Template.")
    return NewMessage(
        from_addr=from_addr,
        to=to,
        cc=cc,
        bcc=bcc,
        template_name=name,
        template_data=data if data is not None else "{}",
        **common,
    )


def _base64(text: str, name: str, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    if len(text) > limit * 4 // 3 + 4:  # cheap early answer on the encoded length
        raise bad_request(f"Message length is more than {limit} bytes.")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{name} is not valid base64.") from None


def raw_message(
    data: bytes,
    from_addr: str | None,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    *,
    reply_to: tuple[str, ...] = (),
    configuration_set: str | None = None,
    tags: dict[str, str] | None = None,
) -> NewMessage:
    """A raw MIME message, sent byte for byte; as SES does, the recipients come from its
    To/Cc/Bcc headers unless given, and its X-SES-* headers name a configuration set and tags
    unless the request does (the dispatcher always sends tags of its own, which would
    otherwise hide them)."""
    headers = parse_raw_headers(data)
    if not (to or cc or bcc):
        to = tuple(header_addresses(headers, "To"))
        cc = tuple(header_addresses(headers, "Cc"))
        bcc = tuple(header_addresses(headers, "Bcc"))
    header_set, header_tags = event_publishing(headers)
    sender = from_addr or str(headers.get("From") or "")
    if not sender:
        raise missing("FromEmailAddress (or a From header in the raw message)")
    return NewMessage(
        from_addr=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=header_text(headers, "Subject"),
        raw=data,
        reply_to=reply_to,
        configuration_set=configuration_set or header_set,
        tags=tags or header_tags,
    )


# -- v1 (Query/XML) ----------------------------------------------------------------------------

Params = Mapping[str, str]


def _v1_ok(action: str, inner: str) -> web.Response:
    body = (
        f'<{action}Response xmlns="{sim_v1.XMLNS}"><{action}Result>{inner}</{action}Result>'
        f"<ResponseMetadata><RequestId>{request_id()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )
    return web.Response(text=body, content_type="text/xml")


def _members(params: Params, prefix: str) -> tuple[str, ...]:
    out: list[str] = []
    while (value := params.get(f"{prefix}.member.{len(out) + 1}")) is not None:
        out.append(value)
    return tuple(out)


def _v1_tags(params: Params) -> dict[str, str]:
    tags: dict[str, str] = {}
    i = 1
    while (name := params.get(f"Tags.member.{i}.Name")) is not None:
        tags[name] = params.get(f"Tags.member.{i}.Value", "")
        i += 1
    return tags


def v1_params(body: bytes) -> dict[str, str]:
    """A form-encoded Query request (the last of a repeated name wins)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SesError(
            "MalformedQueryString", "BadRequestException", 400, "The request is not UTF-8."
        ) from None
    params = dict(parse_qsl(text, keep_blank_values=True))
    if (problem := unstorable(params)) is not None:
        raise bad_request(f"The request {problem}.")
    return params


def _v1_common(params: Params) -> dict[str, Any]:
    for name in V1_UNSUPPORTED:
        if params.get(name):
            raise _unsupported(name, " (bounces come back to the dispatcher)")
    return {
        "configuration_set": params.get("ConfigurationSetName") or None,
        "tags": _v1_tags(params),
    }


def v1_send_email(params: Params) -> NewMessage:
    """The message of a v1 SendEmail request."""
    common = _v1_common(params)
    source = params.get("Source")
    if not source:
        raise missing("Source")
    subject = params.get("Message.Subject.Data")
    if subject is None:
        raise missing("Message.Subject")
    return NewMessage(
        from_addr=source,
        to=_members(params, "Destination.ToAddresses"),
        cc=_members(params, "Destination.CcAddresses"),
        bcc=_members(params, "Destination.BccAddresses"),
        subject=subject,
        text=params.get("Message.Body.Text.Data"),
        html=params.get("Message.Body.Html.Data"),
        reply_to=_members(params, "ReplyToAddresses"),
        **common,
    )


def v1_send_raw_email(params: Params) -> NewMessage:
    """The message of a v1 SendRawEmail request."""
    common = _v1_common(params)
    encoded = params.get("RawMessage.Data")
    if encoded is None:
        raise missing("RawMessage.Data")
    data = _base64(encoded, "RawMessage.Data", V1_MAX_BYTES)
    if len(data) > V1_MAX_BYTES:
        raise bad_request(f"Message length is more than {V1_MAX_BYTES} bytes.")
    destinations = _members(params, "Destinations")
    return raw_message(data, params.get("Source") or None, destinations, (), (), **common)


V1_SENDS: dict[str, Callable[[Params], NewMessage]] = {
    "SendEmail": v1_send_email,
    "SendRawEmail": v1_send_raw_email,
}


async def v1_query(api: SesApi, request: web.Request, body: bytes) -> web.Response:
    """POST / with Action=SendEmail|SendRawEmail|GetSendQuota (form-encoded)."""
    key = await api.authenticate(request, body)
    params = v1_params(body)
    action = params.get("Action")
    if not action:
        raise SesError(
            "MissingAction",
            "BadRequestException",
            400,
            "The request must contain the parameter Action.",
        )
    if action == "GetSendQuota":
        max24, rate, sent = await api.send_quota()
        return _v1_ok(
            action,
            f"<Max24HourSend>{max24!r}</Max24HourSend><MaxSendRate>{rate!r}</MaxSendRate>"
            f"<SentLast24Hours>{sent!r}</SentLast24Hours>",
        )
    build = V1_SENDS.get(action)
    if build is None:
        raise SesError(
            "InvalidAction",
            "BadRequestException",
            400,
            f"Could not find operation {action[:100]} for version "
            f"{sim_v1.API_VERSION}; the dispatcher serves SendEmail, SendRawEmail and "
            "GetSendQuota",
        )
    message_id = await api.queue(key, build(params))
    return _v1_ok(action, f"<MessageId>{message_id}</MessageId>")

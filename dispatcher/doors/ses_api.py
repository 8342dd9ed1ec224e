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

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.wire import unstorable
from dispatcher.doors import sigv4
from dispatcher.doors.intake import Forbidden, Unavailable, accept, is_unavailable
from dispatcher.doors.keys import ApiKey, MasterKey, master_key_path
from dispatcher.doors.ses_ids import ses_message_id
from dispatcher.doors.ses_requests import (
    V1_SENDS,
    SesError,
    bad_request,
    foreign_sender,
    rejected,
    unavailable,
    v1_params,
    v2_message,
)
from dispatcher.doors.sigv4 import AuthFailure, Failure
from dispatcher.errors import ConfigError, InputError
from dispatcher.sim import v1 as sim_v1
from dispatcher.sim import v2 as sim_v2
from dispatcher.sim.ids import request_id

if TYPE_CHECKING:
    from dispatcher.doors.web import DoorContext

__all__ = ["SES_API", "SesApi", "install"]

log = structlog.get_logger()

V2_SEND = "/v2/email/outbound-emails"
V2_ACCOUNT = "/v2/email/account"

# AWS's own wording (seen in SES answers quoted by SDK users' reports).
MISMATCH_TEXT = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
UNKNOWN_KEY_TEXT = "The security token included in the request is invalid."


class Wire(Enum):
    V1 = "query"
    V2 = "rest-json"


def render(error: SesError, wire: Wire) -> web.Response:
    """A refusal in the wire form of the protocol the request came in (the simulator's)."""
    if wire is Wire.V1:
        type_ = "Receiver" if error.status >= 500 else "Sender"
        return sim_v1.error_response(error.v1_code, error.message, status=error.status, type_=type_)
    return sim_v2.error_response(error.status, error.v2_code, error.message)


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
        if (foreign := foreign_sender(key, msg)) is not None:
            raise rejected(
                f"key {key.id} may not send as {foreign} (a From or Sender header of the raw "
                f"message); it may use {', '.join(key.senders)}"
            )
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
            return render(exc, wire)
        except Exception as exc:  # a bug: SES's 500 (retried by SDKs), not aiohttp's text page
            log.exception("ses_api.failed", path=request.path, error=repr(exc))
            failure = SesError("InternalFailure", "InternalFailure", 500, "Internal failure.")
            return render(failure, wire)

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


# -- v1 (Query/XML) ----------------------------------------------------------------------------


def _v1_ok(action: str, inner: str) -> web.Response:
    body = (
        f'<{action}Response xmlns="{sim_v1.XMLNS}"><{action}Result>{inner}</{action}Result>'
        f"<ResponseMetadata><RequestId>{request_id()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )
    return web.Response(text=body, content_type="text/xml")


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

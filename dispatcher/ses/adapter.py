"""The SES adapter: one long-lived aioboto3 client per API (the sends through lean.py unless
ses.client = "botocore"), sends that never raise for SES or the network, and GetSendQuota.

The dispatcher decides every retry itself, so each send is exactly one attempt (botocore's
`total_max_attempts=1`; the lean client never retries): retries of the SDK would spend the rate
budget blindly (SES-FACTS.md).
"""

from __future__ import annotations

import json
import platform
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import aiobotocore
import botocore
import structlog
from aiobotocore.config import AioConfig
from aiolimiter import AsyncLimiter
from botocore.exceptions import (
    ClientError,
)

import dispatcher
from dispatcher.accounts.session import checked_config, ses_session
from dispatcher.domain.message import DISPATCHER_ID_TAG, OutgoingMessage
from dispatcher.domain.outcome import Outcome, SendResult
from dispatcher.domain.quota import API_CALL_INTERVAL, Quota
from dispatcher.ses.classify import (
    Identities,
    classify_bulk_status,
    covers,
    listed_identities,
)
from dispatcher.ses.errors import SesError
from dispatcher.ses.exceptions import classify_exception, identities_of
from dispatcher.ses.lean import LeanSes, proxy_for
from dispatcher.ses.settings import SesSettings
from dispatcher.ses.signing import SendSigner

log = structlog.get_logger()

if TYPE_CHECKING:
    from types_aiobotocore_ses.client import SESClient
    from types_aiobotocore_sesv2.client import SESV2Client

__all__ = ["SesAdapter", "adapter_config", "classify_exception", "identities_of"]

_USER_AGENT = (
    f"dispatcher/{dispatcher.__version__} aiobotocore/{aiobotocore.__version__} "
    f"botocore/{botocore.__version__} Python/{platform.python_version()}"
)
_UTF8 = "UTF-8"


def adapter_config(settings: SesSettings) -> AioConfig:
    """The clients' configuration: one attempt per call, and the cheap per-call CPU savings
    (measured by bench/client.py against botocore's defaults)."""
    return checked_config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=settings.max_pool_connections,
        # build_request makes every request from typed fields and SES validates again; the
        # client-side walk over the request shape cost ~50 us of ~650 us CPU per send.
        parameter_validation=False,
        # A fixed User-Agent: botocore otherwise rebuilds its structured one (OS, feature
        # ids, config metadata) twice per request, ~100 us of ~600 us CPU per send.
        user_agent=_USER_AGENT,
    )


class SesAdapter:
    """Sends through SES v2 SendEmail and reads the quota through v1 GetSendQuota.

    Build it with `async with SesAdapter.open(settings) as ses:`; the two clients (and their
    connection pools) live as long as that block.
    """

    __slots__ = ("_bulk", "_control", "_default_config_set", "_sends", "_v1", "_v2")

    def __init__(
        self,
        v2: SESV2Client,
        v1: SESClient,
        default_config_set: str | None,
        sends: LeanSes | None = None,
    ) -> None:
        self._v2 = v2  # templates, the suppression list; the sends unless `sends` is given
        self._v1 = v1  # GetSendQuota (v2 has only GetAccount, which moto lacks)
        self._default_config_set = default_config_set
        # SendEmail / SendBulkEmail: the lean client (ses.client = "lean") or the aioboto3 one;
        # both take the same keyword arguments and raise the same exceptions.
        self._sends: LeanSes | SESV2Client = sends if sends is not None else v2
        # SES allows 1 request/s on every action but the sends (SES-FACTS "Quotas and rate"):
        # GetSendQuota, templates, the suppression list's pages wait their turn here.
        self._control = AsyncLimiter(1, API_CALL_INTERVAL)
        # SendBulkEmail is not among the sends AWS exempts from that limit (see
        # dispatcher/sim/v2.py): its own turn, so a quota read does not delay a bulk call.
        self._bulk = AsyncLimiter(1, API_CALL_INTERVAL)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: SesSettings) -> AsyncIterator[SesAdapter]:
        """Open both clients for the life of the block, SDK retries off."""
        config = adapter_config(settings)
        session = await ses_session(settings)  # keys, a profile or an assumed role
        async with AsyncExitStack() as stack:
            v2 = await stack.enter_async_context(
                session.client("sesv2", endpoint_url=settings.endpoint_url, config=config)
            )
            # aiobotocore's get_credentials is a coroutine; the stubs say otherwise.
            credentials = await cast("Awaitable[Any]", session.get_credentials())
            sends = None
            lean = settings.client == "lean"
            if lean and proxy_for(v2.meta.endpoint_url) is not None:
                # The lean client speaks to SES directly; botocore knows the way through a proxy.
                log.info("ses.lean_client_off", reason="HTTP(S)_PROXY applies to the endpoint")
                lean = False
            if lean:
                sends = await stack.enter_async_context(
                    LeanSes.open(
                        v2.meta.endpoint_url,  # as botocore resolved it (FIPS, dual-stack...)
                        credentials,  # none: NoCredentialsError on the first send, as botocore
                        v2.meta.region_name,
                        user_agent=_USER_AGENT,
                        model=v2.meta.service_model,
                        error_class=v2.exceptions.from_code,
                        connect_timeout=settings.connect_timeout,
                        read_timeout=settings.read_timeout,
                        max_connections=settings.max_pool_connections,
                        # botocore has no public getter for the session's CA bundle
                        ca_bundle=session._session.get_config_variable("ca_bundle"),
                    )
                )
            elif credentials is not None:  # none: botocore's signer says so on the first send
                SendSigner(credentials, v2.meta.region_name).register(v2.meta.events)
            v1 = await stack.enter_async_context(
                session.client("ses", endpoint_url=settings.endpoint_url, config=config)
            )
            yield cls(v2, v1, settings.configuration_set, sends)

    def build_request(
        self, msg: OutgoingMessage, template: tuple[str, dict[str, str]] | None = None
    ) -> dict[str, Any]:
        """Keyword arguments of sesv2 SendEmail for one message; with `template` (name,
        variables), SES renders the stored template instead of the message's content."""
        tags = [{"Name": DISPATCHER_ID_TAG, "Value": str(msg.id)}]
        if msg.tags:
            # Our id wins: SES refuses a message that names one tag twice.
            tags += [{"Name": k, "Value": v} for k, v in msg.tags.items() if k != DISPATCHER_ID_TAG]
        destination: dict[str, list[str]] = {}
        if msg.to:
            destination["ToAddresses"] = list(msg.to)
        if msg.cc:
            destination["CcAddresses"] = list(msg.cc)
        if msg.bcc:
            destination["BccAddresses"] = list(msg.bcc)
        if template is not None:
            name, variables = template
            spec: dict[str, Any] = {"TemplateName": name, "TemplateData": json.dumps(variables)}
            if msg.headers:  # List-Unsubscribe: per recipient, as in a bulk entry
                spec["Headers"] = [{"Name": k, "Value": v} for k, v in msg.headers]
            content: dict[str, Any] = {"Template": spec}
        elif msg.template_name is not None:  # queued with an SES template (SendEmail Template)
            content = {
                "Template": {
                    "TemplateName": msg.template_name,
                    "TemplateData": msg.template_data or "{}",
                }
            }
        elif msg.raw is not None:
            content = {"Raw": {"Data": msg.raw}}
        else:
            body: dict[str, Any] = {}
            if msg.text is not None:
                body["Text"] = {"Data": msg.text, "Charset": _UTF8}
            if msg.html is not None:
                body["Html"] = {"Data": msg.html, "Charset": _UTF8}
            simple: dict[str, Any] = {
                "Subject": {"Data": msg.subject, "Charset": _UTF8},
                "Body": body,
            }
            if msg.headers:  # e.g. List-Unsubscribe for bulk mail
                simple["Headers"] = [{"Name": k, "Value": v} for k, v in msg.headers]
            content = {"Simple": simple}
        kwargs: dict[str, Any] = {
            "FromEmailAddress": msg.from_addr,
            "Content": content,
            "EmailTags": tags,
        }
        if destination or msg.raw is None:
            kwargs["Destination"] = destination
        if msg.reply_to:
            kwargs["ReplyToAddresses"] = list(msg.reply_to)
        config_set = msg.configuration_set or self._default_config_set
        if config_set:
            kwargs["ConfigurationSetName"] = config_set
        if msg.list_management is not None:
            contact_list, topic = msg.list_management
            options = {"ContactListName": contact_list}
            if topic is not None:
                options["TopicName"] = topic
            kwargs["ListManagementOptions"] = options
        return kwargs

    async def send(
        self, msg: OutgoingMessage, template: tuple[str, dict[str, str]] | None = None
    ) -> SendResult:
        """Send one message; every SES or network failure comes back classified, never raised."""
        try:
            response = await self._sends.send_email(**self.build_request(msg, template))
        except Exception as exc:  # CancelledError is a BaseException and passes through
            result = classify_exception(exc, identities_of([msg]))
            if result is None:
                raise
            return result
        return SendResult(Outcome.SENT, ses_message_id=response["MessageId"])

    async def get_send_quota(self) -> Quota:
        """v1 GetSendQuota; call it at most once a second (AWS throttles it otherwise)."""
        try:
            async with self._control:
                r = await self._v1.get_send_quota()
        except Exception as exc:
            if (error := _ses_error("GetSendQuota", exc)) is None:
                raise
            raise error from exc
        return Quota(
            max_24_hour_send=float(r.get("Max24HourSend", 0.0)),
            max_send_rate=float(r.get("MaxSendRate", 0.0)),
            sent_last_24_hours=float(r.get("SentLast24Hours", 0.0)),
        )

    async def ensure_template(
        self, name: str, subject: str, html: str | None, text: str | None
    ) -> None:
        """Create (or update) the SES template a bulk campaign sends with; SesError if refused."""
        content: dict[str, str] = {"Subject": subject}
        if html is not None:
            content["Html"] = html
        if text is not None:
            content["Text"] = text
        try:
            try:
                async with self._control:
                    await self._v2.create_email_template(
                        TemplateName=name,
                        TemplateContent=content,  # type: ignore[arg-type]
                    )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "AlreadyExistsException":
                    raise
                async with self._control:
                    await self._v2.update_email_template(
                        TemplateName=name,
                        TemplateContent=content,  # type: ignore[arg-type]
                    )
        except Exception as exc:
            if (error := _ses_error("CreateEmailTemplate", exc)) is None:
                raise
            raise error from exc

    async def list_suppressed(self, page_size: int = 1000) -> AsyncIterator[tuple[str, str]]:
        """(address, reason: BOUNCE or COMPLAINT) of the account-level suppression list
        (v2 ListSuppressedDestinations, page by page); SesError if SES refuses."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"PageSize": page_size}
            if token is not None:
                kwargs["NextToken"] = token
            try:
                async with self._control:
                    page = await self._v2.list_suppressed_destinations(**kwargs)
            except Exception as exc:
                if (error := _ses_error("ListSuppressedDestinations", exc)) is None:
                    raise
                raise error from exc
            for item in page.get("SuppressedDestinationSummaries", []):
                yield item["EmailAddress"], item["Reason"]
            token = page.get("NextToken")
            if not token:
                return

    def build_bulk_request(
        self, template_name: str, messages: list[tuple[OutgoingMessage, dict[str, str]]]
    ) -> dict[str, Any]:
        """Keyword arguments of sesv2 SendBulkEmail: one entry per message (<= 50)."""
        first = messages[0][0]
        entries = []
        for msg, variables in messages:
            destination: dict[str, list[str]] = {}
            if msg.to:
                destination["ToAddresses"] = list(msg.to)
            if msg.cc:
                destination["CcAddresses"] = list(msg.cc)
            if msg.bcc:
                destination["BccAddresses"] = list(msg.bcc)
            tags = [{"Name": DISPATCHER_ID_TAG, "Value": str(msg.id)}]
            tags += [{"Name": k, "Value": v} for k, v in msg.tags.items() if k != DISPATCHER_ID_TAG]
            entry: dict[str, Any] = {
                "Destination": destination,
                "ReplacementTags": tags,
                "ReplacementEmailContent": {
                    "ReplacementTemplate": {"ReplacementTemplateData": json.dumps(variables or {})}
                },
            }
            if msg.headers:  # List-Unsubscribe: per recipient, SES renders only the body
                entry["ReplacementHeaders"] = [{"Name": k, "Value": v} for k, v in msg.headers]
            entries.append(entry)
        kwargs: dict[str, Any] = {
            "FromEmailAddress": first.from_addr,
            "DefaultContent": {"Template": {"TemplateName": template_name, "TemplateData": "{}"}},
            "BulkEmailEntries": entries,
        }
        if first.reply_to:
            kwargs["ReplyToAddresses"] = list(first.reply_to)
        config_set = first.configuration_set or self._default_config_set
        if config_set:
            kwargs["ConfigurationSetName"] = config_set
        return kwargs

    async def send_templated(
        self, template_name: str, msg: OutgoingMessage, variables: dict[str, str]
    ) -> SendResult:
        """SendEmail of one campaign message with the campaign's SES template: what a bulk
        entry would be, without SendBulkEmail's one request a second."""
        return await self.send(msg, (template_name, variables))

    async def send_bulk(
        self, template_name: str, messages: list[tuple[OutgoingMessage, dict[str, str]]]
    ) -> list[SendResult]:
        """SendBulkEmail: one result per message, in order; never raises for SES or network.

        A failure of the whole call (throttled, paused, timed out...) is every entry's result.
        """
        try:
            async with self._bulk:
                response = await self._sends.send_bulk_email(
                    **self.build_bulk_request(template_name, messages)
                )
        except Exception as exc:
            result = classify_exception(exc, identities_of(m for m, _ in messages))
            if result is None:
                raise
            return _per_entry(result, [m for m, _ in messages])
        out: list[SendResult] = []
        entries = response.get("BulkEmailEntryResults", [])
        for i in range(len(messages)):
            if i >= len(entries):
                out.append(SendResult(Outcome.IN_DOUBT, reason="no result for this entry"))
                continue
            entry = entries[i]
            status = str(entry.get("Status", ""))
            if status == "SUCCESS":
                out.append(SendResult(Outcome.SENT, ses_message_id=entry.get("MessageId")))
            else:
                error = entry.get("Error")
                # The call's sender (one for all entries) and this entry's recipients.
                sender = identities_of([messages[0][0]]).senders
                mine = Identities(sender, identities_of([messages[i][0]]).recipients)
                outcome = classify_bulk_status(status, error, mine)
                out.append(SendResult(outcome, code=status, reason=error))
        return out


def _per_entry(result: SendResult, msgs: list[OutgoingMessage]) -> list[SendResult]:
    """A failure of a whole SendBulkEmail call as each entry's result. A "not verified" refusal
    of recipients only fails the entries it names; the others were not sent through no fault of
    their own: TRANSIENT (tried again, without the refused ones)."""
    listed = listed_identities(result.reason or "")
    if result.outcome is not Outcome.REJECTED or not listed:
        return [result] * len(msgs)
    out: list[SendResult] = []
    for msg in msgs:
        named = identities_of([msg]).recipients
        if any(covers(i, r) for i in listed for r in named):
            out.append(result)
        else:
            reason = f"SES refused the whole call for another entry's recipient: {result.reason}"
            out.append(SendResult(Outcome.TRANSIENT, code=result.code, reason=reason))
    return out


def _ses_error(operation: str, exc: Exception) -> SesError | None:
    """A failed SES call as SesError (how to react, SES's code); None for an error that is not
    SES's (a bug here: raise it as it is)."""
    result = classify_exception(exc)
    if result is None:
        return None
    return SesError(operation, result.outcome, result.code, result.reason)

"""sesv2 SendEmail and SendBulkEmail as one signed aiohttp POST each, without botocore's per-call
machinery; everything else (quota, templates, the suppression list) stays on aioboto3.

A botocore call walks the request through about twenty event hooks, a model-driven serialiser, an
endpoint-ruleset resolution, a request object prepared twice, a retry handler (one attempt, but
it still runs) and a model-driven parser: about 0.45 ms of CPU a send here, two thirds of it the
same for every call. A send is always one of two fixed shapes: POST a JSON body to
/v2/email/outbound-emails or /v2/email/outbound-bulk-emails, answered with a small JSON object.
So this client serialises the very dict the adapter would hand botocore (`json.dumps`, blobs in
base64: byte for byte what botocore's RestJSON serialiser writes, tests/unit/test_ses_lean.py),
signs it with SendSigner, posts it on one keep-alive aiohttp session, and reads the answer with
`json.loads`. A refusal (status >= 300) is rare and goes through botocore's own RestJSON parser
into the same ClientError subclass botocore raises, and network failures become the same
botocore exceptions aiobotocore raises, so `classify_exception` reads both clients alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from base64 import b64encode
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import aiohttp
from aiobotocore.parsers import create_parser
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import (
    ProxyConfiguration,
    create_urllib3_context,
    get_cert_path,
    mask_proxy_url,
)
from botocore.model import ServiceModel
from botocore.parsers import ResponseParserError
from botocore.utils import get_environ_proxies
from yarl import URL

from dispatcher.ses.signing import Credentials, SendSigner

__all__ = ["PATHS", "LeanSes", "body_of", "proxy_for"]

PATHS = {
    "SendEmail": "/v2/email/outbound-emails",
    "SendBulkEmail": "/v2/email/outbound-bulk-emails",
}
_KEEPALIVE_SECONDS = 12.0  # aiobotocore's default: idle connections closed before SES does
_AFTER_CLOSE = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
    aiohttp.http_exceptions.BadStatusLine,
)


def _blob(value: object) -> str:
    """json.dumps' hook for bytes: base64, as botocore serialises a blob member (Raw.Data)."""
    if isinstance(value, bytes | bytearray):
        return b64encode(value).strip().decode("utf-8")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def body_of(params: dict[str, Any]) -> bytes:
    """The request body botocore's RestJSON serialiser writes for these parameters."""
    return json.dumps(params, default=_blob).encode("utf-8")


def proxy_for(url: str) -> tuple[str | None, dict[str, str]]:
    """The proxy botocore would use for `url` (HTTP(S)_PROXY, NO_PROXY) and its headers."""
    config = ProxyConfiguration(proxies=get_environ_proxies(url))
    proxy: str | None = config.proxy_url_for(url)
    return proxy, (config.proxy_headers_for(proxy) if proxy else {})


def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """TLS as aiobotocore sets it up: urllib3's context, botocore's CA bundle (certifi's unless
    ca_bundle / AWS_CA_BUNDLE or REQUESTS_CA_BUNDLE name another)."""
    context: ssl.SSLContext = create_urllib3_context()
    verify: Any = ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or True
    context.load_verify_locations(get_cert_path(verify))
    return context


class LeanSes:
    """`send_email` and `send_bulk_email` with the keyword arguments, answers and exceptions of
    an aioboto3 sesv2 client's methods; build it with `LeanSes.open`."""

    __slots__ = (
        "_credentials",
        "_error_class",
        "_headers",
        "_model",
        "_proxy",
        "_proxy_headers",
        "_session",
        "_signer",
        "_urls",
    )

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint_url: str,
        credentials: Credentials | None,
        region: str,
        user_agent: str,
        model: ServiceModel,
        error_class: Callable[[str], Any],
    ) -> None:
        self._session = session
        base = endpoint_url.rstrip("/")
        self._urls = {op: (f"{base}{path}", URL(f"{base}{path}")) for op, path in PATHS.items()}
        self._credentials = credentials
        self._signer = SendSigner(credentials, region) if credentials is not None else None
        self._model = model
        self._error_class = error_class  # the client's `exceptions.from_code`
        # Accept-Encoding identity as aiobotocore sends it: SES's answers are small.
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": user_agent,
            "Accept-Encoding": "identity",
        }
        self._proxy, self._proxy_headers = proxy_for(self._urls["SendEmail"][0])

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        endpoint_url: str,
        credentials: Credentials | None,
        region: str,
        *,
        user_agent: str,
        model: ServiceModel,
        error_class: Callable[[str], Any],
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        ca_bundle: str | None = None,
    ) -> AsyncIterator[LeanSes]:
        """One keep-alive connection pool of `max_connections` for the life of the block."""
        tls = _ssl_context(ca_bundle) if endpoint_url.startswith("https:") else False
        connector = aiohttp.TCPConnector(
            limit=max_connections, keepalive_timeout=_KEEPALIVE_SECONDS, ssl=tls
        )
        # As aiobotocore: connect and read timeouts, no total (a bulk call may be large).
        timeout = aiohttp.ClientTimeout(sock_connect=connect_timeout, sock_read=read_timeout)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            yield cls(session, endpoint_url, credentials, region, user_agent, model, error_class)

    async def send_email(self, **params: Any) -> dict[str, Any]:
        """sesv2 SendEmail: {"MessageId": ...}; raises what the aioboto3 client raises."""
        return await self._call("SendEmail", params)

    async def send_bulk_email(self, **params: Any) -> dict[str, Any]:
        """sesv2 SendBulkEmail: {"BulkEmailEntryResults": [...]}; raises as the aioboto3 client."""
        return await self._call("SendBulkEmail", params)

    async def signed_headers(self, url: str, body: bytes) -> dict[str, str]:
        """The request's headers, signed (NoCredentialsError without credentials, as botocore)."""
        if self._signer is None or self._credentials is None:
            raise NoCredentialsError()
        frozen = await self._credentials.get_frozen_credentials()
        if frozen is None or frozen.access_key is None:
            raise NoCredentialsError()
        return {
            **self._headers,
            **self._signer.headers(frozen, "POST", url, body, time.time()),
        }

    async def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        url, target = self._urls[operation]
        body = body_of(params)
        headers = await self.signed_headers(url, body)
        answer: dict[str, str] = {}
        try:
            async with self._session.post(
                target,
                data=body,
                headers=headers,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers or None,
            ) as response:
                raw = await response.read()
                status = response.status
                if status >= 300:
                    # The same lower-cased header dict aiobotocore hands its parser.
                    answer = {
                        k.decode("utf-8").lower(): v.decode("utf-8")
                        for k, v in response.raw_headers
                    }
        except Exception as exc:  # CancelledError is a BaseException and passes through
            raise _as_botocore(exc, url, self._proxy) from exc
        if status >= 300:
            raise await self._refusal(operation, status, answer, raw)
        try:
            parsed = json.loads(raw)
        except ValueError as exc:  # an answer came but cannot be read: it may say "sent"
            raise ResponseParserError(f"SES answered {status} with unreadable JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ResponseParserError(f"SES answered {status} with JSON that is not an object")
        return parsed

    async def _refusal(
        self, operation: str, status: int, headers: dict[str, str], raw: bytes
    ) -> ClientError:
        """The ClientError botocore raises for this answer (its parser, its error class)."""
        parser: Any = create_parser("rest-json")  # aiobotocore's: parse is a coroutine
        response = {"status_code": status, "headers": headers, "body": raw}
        output = self._model.operation_model(operation).output_shape
        parsed: dict[str, Any] = await parser.parse(response, output)
        code = parsed.get("Error", {}).get("Code")
        if code is not None and (shape := self._model.shape_for_error_code(code)) is not None:
            parsed.update(await parser.parse(response, shape))
        # What botocore's retry handler adds with total_max_attempts=1: no retry, none allowed.
        parsed.setdefault("ResponseMetadata", {}).update(MaxAttemptsReached=True, RetryAttempts=0)
        error = self._error_class(code)(parsed, operation)
        return cast("ClientError", error)


def _as_botocore(exc: Exception, url: str, proxy: str | None) -> Exception:
    """The exception aiobotocore's AIOHTTPSession.send raises for this aiohttp failure: the
    request never left (connect, TLS handshake, DNS) or may have reached SES (all others)."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return SSLError(endpoint_url=url, error=exc)
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return ProxyConnectionError(proxy_url=mask_proxy_url(proxy or ""), error=exc)
    if isinstance(exc, _AFTER_CLOSE):
        return ConnectionClosedError(error=exc, request=None, endpoint_url=url)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        if isinstance(exc, aiohttp.ConnectionTimeoutError) or str(exc).lower().startswith(
            "connect"
        ):
            return ConnectTimeoutError(endpoint_url=url, error=exc)
        return ReadTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, aiohttp.ClientConnectionError | socket.gaierror):
        return EndpointConnectionError(endpoint_url=url, error=exc)
    if isinstance(exc, asyncio.TimeoutError):
        return ReadTimeoutError(endpoint_url=url, error=exc)
    return HTTPClientError(error=exc)

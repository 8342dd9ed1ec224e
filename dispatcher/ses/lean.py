"""sesv2 SendEmail and SendBulkEmail as one signed HTTP/1.1 POST each, without botocore's per-call
machinery; everything else (quota, templates, the suppression list) stays on aioboto3.

A botocore call walks the request through about twenty event hooks, a model-driven serialiser, an
endpoint-ruleset resolution, a request object prepared twice, a retry handler (one attempt, but
it still runs) and a model-driven parser: about 0.45 ms of CPU a send here, two thirds of it the
same for every call. A send is always one of two fixed shapes: POST a JSON body to
/v2/email/outbound-emails or /v2/email/outbound-bulk-emails, answered with a small JSON object.
So this client serialises the very dict the adapter would hand botocore (`json.dumps`, blobs in
base64: byte for byte what botocore's RestJSON serialiser writes, tests/unit/test_ses_lean.py),
signs it with SendSigner, posts it on a keep-alive connection of `http1.Http1Pool`, and reads
the answer with `json.loads`. A refusal (status >= 300) is rare and goes through botocore's own
RestJSON parser into the same ClientError subclass botocore raises, and network failures become
the botocore exceptions that `classify_exception` reads: not connected (never sent) or cut off
after the request was written (in doubt). An HTTP(S)_PROXY for the endpoint is not supported
here: `SesAdapter.open` then sends through botocore.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from base64 import b64encode
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import urlsplit

from aiobotocore.parsers import create_parser
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import ProxyConfiguration, create_urllib3_context, get_cert_path
from botocore.model import ServiceModel
from botocore.parsers import ResponseParserError
from botocore.utils import get_environ_proxies

from dispatcher.ses.http1 import (
    ConnectFailed,
    ConnectTimedOut,
    Disconnected,
    Http1Pool,
    ProtocolError,
)
from dispatcher.ses.signing import Credentials, SendSigner

__all__ = ["PATHS", "LeanSes", "body_of", "proxy_for", "ssl_context"]

PATHS = {
    "SendEmail": "/v2/email/outbound-emails",
    "SendBulkEmail": "/v2/email/outbound-bulk-emails",
}


def _blob(value: object) -> str:
    """json.dumps' hook for bytes: base64, as botocore serialises a blob member (Raw.Data)."""
    if isinstance(value, bytes | bytearray):
        return b64encode(value).strip().decode("utf-8")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def body_of(params: dict[str, Any]) -> bytes:
    """The request body botocore's RestJSON serialiser writes for these parameters."""
    return json.dumps(params, default=_blob).encode("utf-8")


def proxy_for(url: str) -> str | None:
    """The proxy botocore would use for `url` (HTTP(S)_PROXY, NO_PROXY), None for none."""
    proxy: str | None = ProxyConfiguration(proxies=get_environ_proxies(url)).proxy_url_for(url)
    return proxy


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """TLS as botocore sets it up (urllib3's context; its CA bundle: certifi's unless ca_bundle,
    AWS_CA_BUNDLE or REQUESTS_CA_BUNDLE names another), and the host name checked against the
    certificate: urllib3 checks it itself and so turns the context's check off."""
    context: ssl.SSLContext = create_urllib3_context()
    verify: Any = ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or True
    context.load_verify_locations(get_cert_path(verify))
    context.check_hostname = True
    return context


class LeanSes:
    """`send_email` and `send_bulk_email` with the keyword arguments, answers and exceptions of
    an aioboto3 sesv2 client's methods; build it with `LeanSes.open`."""

    __slots__ = ("_credentials", "_error_class", "_headers", "_model", "_pool", "_signer", "_urls")

    def __init__(
        self,
        pool: Http1Pool,
        endpoint_url: str,
        credentials: Credentials | None,
        region: str,
        user_agent: str,
        model: ServiceModel,
        error_class: Callable[[str], Any],
    ) -> None:
        self._pool = pool
        base = endpoint_url.rstrip("/")
        prefix = urlsplit(base).path
        # (URL as signed, path as requested) of each operation
        self._urls = {op: (f"{base}{path}", f"{prefix}{path}") for op, path in PATHS.items()}
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
        """Up to `max_connections` keep-alive connections for the life of the block."""
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"ses endpoint must be an http(s) URL, got {endpoint_url!r}")
        https = parts.scheme == "https"
        pool = Http1Pool(
            parts.hostname,
            parts.port or (443 if https else 80),
            tls=ssl_context(ca_bundle) if https else None,
            limit=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        try:
            yield cls(pool, endpoint_url, credentials, region, user_agent, model, error_class)
        finally:
            await pool.close()

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
        url, path = self._urls[operation]
        body = body_of(params)
        headers = await self.signed_headers(url, body)
        try:
            status, answer, raw = await self._pool.post(path, headers, body)
        except Exception as exc:  # CancelledError is a BaseException and passes through
            raise _as_botocore(exc, url) from exc
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


def _as_botocore(exc: Exception, url: str) -> Exception:
    """The botocore exception for a failure of the POST, as `classify_exception` reads it:
    not connected (refused, DNS, TLS handshake, connect timeout: never sent) or cut off after
    the request was written (closed, reset, silent past the read timeout: in doubt)."""
    if isinstance(exc, ConnectTimedOut):
        return ConnectTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, ConnectFailed):
        if isinstance(exc.__cause__, ssl.SSLError):
            return SSLError(endpoint_url=url, error=exc)
        return EndpointConnectionError(endpoint_url=url, error=exc)
    if isinstance(exc, Disconnected | ProtocolError | ConnectionError):
        return ConnectionClosedError(error=exc, request=None, endpoint_url=url)
    if isinstance(exc, TimeoutError):
        return ReadTimeoutError(endpoint_url=url, error=exc)
    return HTTPClientError(error=exc)

"""SigV4 for the sends, in a few hashes a call instead of botocore's general signer.

botocore signs each request from scratch: a new signer object, every header sorted and
filtered, the URL parsed again, and the signing key derived through four HMACs, about a fifth of
the CPU of a SendEmail call. A send is always the same shape (POST, a fixed path, no query, a
JSON body), so this signs what SES needs (host, x-amz-date and, with temporary credentials, the
session token) and keeps the signing key for its day. It plugs into botocore's event system:
`choose-signer` turns botocore's signing off for the signed operations only, `before-send`
(the request fully built, about to go on the wire) signs it. Checked against botocore's own
verifier in tests/unit/test_ses_signing.py.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import botocore

__all__ = ["SIGNED_OPERATIONS", "SendSigner"]

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "ses"  # the signing name of both SES APIs (v1 and sesv2)
SIGNED_OPERATIONS = ("SendEmail", "SendBulkEmail")  # the hot path; the rest: botocore's signer
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Frozen(Protocol):
    """botocore's ReadOnlyCredentials."""

    @property
    def access_key(self) -> str | None: ...

    @property
    def secret_key(self) -> str | None: ...

    @property
    def token(self) -> str | None: ...


class Credentials(Protocol):
    """botocore's (aiobotocore's) credentials: static, or refreshed before they expire."""

    async def get_frozen_credentials(self) -> Any: ...


class Events(Protocol):
    def register(self, event_name: str, handler: Any, unique_id: str | None = None) -> None: ...


class SendSigner:
    """Signs sesv2 send requests for one region with one set of credentials."""

    __slots__ = ("_credentials", "_key", "_key_for", "_region", "_stamp", "_stamp_at")

    def __init__(self, credentials: Credentials, region: str) -> None:
        self._credentials = credentials
        self._region = region
        self._key = b""
        self._key_for: tuple[str, str] = ("", "")  # (date, secret) the key was derived for
        self._stamp = ""
        self._stamp_at = -1

    def register(self, events: Events, service_id: str = "sesv2") -> None:
        """Take over signing of SIGNED_OPERATIONS on a client's event system."""
        for operation in SIGNED_OPERATIONS:
            events.register(
                f"choose-signer.{service_id}.{operation}",
                _unsigned,
                unique_id=f"dispatcher-unsigned-{operation}",
            )
            events.register(
                f"before-send.{service_id}.{operation}",
                self.before_send,
                unique_id=f"dispatcher-sign-{operation}",
            )

    async def before_send(self, request: Any, **_: Any) -> None:
        """botocore's `before-send`: sign the prepared request (returning None sends it)."""
        frozen = await self._credentials.get_frozen_credentials()
        body = request.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        for name, value in self.headers(
            frozen, request.method, request.url, body, time.time()
        ).items():
            request.headers[name] = value

    def headers(
        self, credentials: _Frozen, method: str, url: str, body: bytes, now: float
    ) -> dict[str, str]:
        """The headers that sign this request (X-Amz-Date, Authorization, the token)."""
        amz_date = self._amz_date(now)
        date = amz_date[:8]
        host, path, query = _url_parts(url)
        token = credentials.token
        if token:
            canonical_headers = (
                f"host:{host}\nx-amz-date:{amz_date}\nx-amz-security-token:{token}\n"
            )
            signed_headers = "host;x-amz-date;x-amz-security-token"
        else:
            canonical_headers = f"host:{host}\nx-amz-date:{amz_date}\n"
            signed_headers = "host;x-amz-date"
        canonical = (
            f"{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n"
            f"{hashlib.sha256(body).hexdigest()}"
        )
        scope = f"{date}/{self._region}/{SERVICE}/aws4_request"
        to_sign = (
            f"{ALGORITHM}\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
        )
        key = self._signing_key(date, credentials.secret_key or "")
        # hmac.digest: OpenSSL's one-shot HMAC, half the CPU of an hmac.new object.
        signature = hmac.digest(key, to_sign.encode("utf-8"), "sha256").hex()
        out = {
            "X-Amz-Date": amz_date,
            "Authorization": (
                f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
                f"SignedHeaders={signed_headers}, Signature={signature}"
            ),
        }
        if token:
            out["X-Amz-Security-Token"] = token
        return out

    def _amz_date(self, now: float) -> str:
        second = int(now)
        if second != self._stamp_at:  # formatted once a second, not once a call
            self._stamp_at = second
            self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        return self._stamp

    def _signing_key(self, date: str, secret: str) -> bytes:
        if self._key_for != (date, secret):  # a new day, or rotated credentials
            key = _hmac(f"AWS4{secret}".encode(), date)
            for part in (self._region, SERVICE, "aws4_request"):
                key = _hmac(key, part)
            self._key, self._key_for = key, (date, secret)
        return self._key


@functools.lru_cache(maxsize=64)
def _url_parts(url: str) -> tuple[str, str, str]:
    """(host as signed, canonical path, canonical query) of a URL: the sends use one URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6: signed in brackets, as botocore signs it
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host, quote(parts.path or "/", safe="/~"), _canonical_query(parts.query)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    """SigV4's query string as botocore builds it: the (already encoded) pairs sorted."""
    if not query:
        return ""
    return "&".join(f"{k}={v}" for k, v in sorted(p.partition("=")[::2] for p in query.split("&")))


def _unsigned(**_: Any) -> object:
    """botocore's `choose-signer`: do not sign (before_send does)."""
    return botocore.UNSIGNED

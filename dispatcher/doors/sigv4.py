"""AWS Signature Version 4 as a server checks it: read the Authorization header, refuse a stale
or future date, and recompute the signature with botocore's own signer (what every SDK signs
with, so both ends canonicalise the request the same way). No I/O: the caller finds the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

__all__ = [
    "ALGORITHM",
    "MAX_SKEW",
    "AuthFailure",
    "Signed",
    "check_date",
    "parse_authorization",
    "signature_matches",
]

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=5)  # AWS refuses a request signed more than 5 minutes off its clock
AMZ_DATE = "%Y%m%dT%H%M%SZ"
_UNSIGNED = frozenset({"UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
_PART = re.compile(r"\s*(Credential|SignedHeaders|Signature)\s*=\s*([^,\s]*)\s*")
_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")


class Failure(Enum):
    """Why a request is not authenticated; the doors render each in SES's wire form."""

    MISSING = "missing"  # no Authorization header
    INCOMPLETE = "incomplete"  # a header that is not a complete SigV4 one
    EXPIRED = "expired"  # X-Amz-Date more than MAX_SKEW before now
    NOT_YET = "not_yet"  # X-Amz-Date more than MAX_SKEW after now
    UNKNOWN_KEY = "unknown_key"  # no active key with that access key id
    MISMATCH = "mismatch"  # wrong secret, or a request changed after signing


class AuthFailure(Exception):
    """The request is refused; `kind` says why, the text is AWS's wording where it has one."""

    def __init__(self, kind: Failure, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Signed:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header."""

    key_id: str
    date: str  # yyyymmdd of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]  # lower case, as listed
    signature: str


class _Verifier(SigV4Auth):
    """botocore's signer, signing exactly the headers the client listed: some SDKs sign one
    that botocore leaves out when it signs (User-Agent, for one)."""

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        out = HTTPHeaders()
        for name, value in request.headers.items():
            out[name.lower()] = value  # HTTPHeaders keeps repeated names, joined when signed
        return out


def parse_authorization(header: str | None) -> Signed:
    """The header's parts, or AuthFailure (MISSING / INCOMPLETE)."""
    if not header:
        raise AuthFailure(Failure.MISSING, "Request is missing Authentication Token")
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthFailure(
            Failure.INCOMPLETE,
            f"Unsupported authorization algorithm {algorithm[:40]!r}: sign with {ALGORITHM} "
            "(AWS Signature Version 4)",
        )
    parts: dict[str, str] = {}
    for piece in rest.split(","):
        found = _PART.fullmatch(piece)
        if found is not None:
            parts[found.group(1)] = found.group(2)
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not parts.get(name)]
    if missing:
        raise AuthFailure(
            Failure.INCOMPLETE,
            f"Authorization header requires '{missing[0]}' parameter. Authorization={header[:200]}",
        )
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise AuthFailure(
            Failure.INCOMPLETE,
            "Credential should be scoped to a valid region, not a malformed scope: "
            f"{parts['Credential'][:200]}",
        )
    signed = tuple(parts["SignedHeaders"].split(";"))
    if not all(_HEADER_NAME.match(name) for name in signed) or "host" not in signed:
        raise AuthFailure(
            Failure.INCOMPLETE, "SignedHeaders must list lower-case header names, host among them"
        )
    return Signed(
        key_id=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=signed,
        signature=parts["Signature"].lower(),
    )


def check_date(amz_date: str | None, now: datetime) -> None:
    """AuthFailure unless `amz_date` (X-Amz-Date) is within MAX_SKEW of `now` (tz-aware)."""
    if not amz_date:
        raise AuthFailure(
            Failure.INCOMPLETE,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    try:
        signed_at = datetime.strptime(amz_date, AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise AuthFailure(
            Failure.INCOMPLETE, f"X-Amz-Date {amz_date[:40]!r} is not yyyyMMddTHHmmssZ"
        ) from None
    shown = now.astimezone(UTC).strftime(AMZ_DATE)
    if signed_at < now - MAX_SKEW:
        earliest = (now - MAX_SKEW).strftime(AMZ_DATE)
        raise AuthFailure(
            Failure.EXPIRED,
            f"Signature expired: {amz_date} is now earlier than {earliest} ({shown} - 5 min.)",
        )
    if signed_at > now + MAX_SKEW:
        latest = (now + MAX_SKEW).strftime(AMZ_DATE)
        raise AuthFailure(
            Failure.NOT_YET,
            f"Signature not yet current: {amz_date} is still later than {latest} "
            f"({shown} + 5 min.)",
        )


def signature_matches(
    signed: Signed,
    secret: str,
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Callable[[str], Iterable[str]],
    body: bytes,
    amz_date: str,
) -> bool:
    """Whether `signed.signature` is what botocore signs for this request with `secret`.

    `headers(name)` gives every value of a header as received. Only the signed headers go into
    the rebuilt request, as the client had them when it signed.
    """
    declared = [v.strip() for v in headers("x-amz-content-sha256")]
    # botocore trusts this header as the body's hash: check it, or a body swapped after
    # signing would pass. Unsigned payloads are for S3, not SES.
    if declared and (
        declared[0] in _UNSIGNED or declared[0].lower() != hashlib.sha256(body).hexdigest()
    ):
        return False
    # http: botocore then hashes the body itself (payload signing is never skipped).
    url = f"http://signed{raw_path}" + (f"?{raw_query}" if raw_query else "")
    request = AWSRequest(method=method.upper(), url=url, data=body or None)
    for name in signed.signed_headers:
        values = list(headers(name))
        if not values:
            return False  # a signed header the request no longer carries
        for value in values:
            request.headers[name] = value
    # The scope's date comes from X-Amz-Date, as when botocore signed.
    request.context["timestamp"] = amz_date
    signer = _Verifier(Credentials(signed.key_id, secret), signed.service, signed.region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    scope_ok = signed.date == amz_date[:8]
    return hmac.compare_digest(expected, signed.signature) and scope_ok

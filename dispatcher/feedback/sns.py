"""Verify SNS HTTP messages (SES-FACTS.md, "Verifying SNS"). Pure but for an injected fetcher.

Order of checks, cheapest and safest first: the JSON shape, the Type, the SignatureVersion,
the TopicArn allow-list, the SigningCertURL (https, ``sns.<region>.amazonaws.com[.cn]``, path
``.pem``) and, for confirmations, the SubscribeURL; only then is a certificate fetched (or
taken from the cache) and the signature checked. A certificate URL that is not AWS's is
trusted only when it is pinned, byte for byte, in ``trusted_certificates``: pinning one URL
never relaxes the host check for any other.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from dispatcher.errors import DispatcherError

__all__ = [
    "RAW_DELIVERY",
    "CertFetcher",
    "Problem",
    "SnsMessage",
    "SnsRejected",
    "SnsVerifier",
    "is_sns_url",
    "parse_message",
    "string_to_sign",
]

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
TYPES = (NOTIFICATION, SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION)

# Keys of the string to sign, in SNS's order, per Type.
_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_COMMON = ("Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion")
_SIGNED = ("Signature", "SigningCertURL")
_CONFIRMATION_EXTRA = ("Token", "SubscribeURL")

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,  # SNS SignatureVersion 1 is RSA-SHA1
    "2": hashes.SHA256,
}
CACHE_SIZE = 64  # certificates kept; SNS rotates them rarely
# A bare SES event where the SNS envelope should be: SNS strips the envelope (and with it the
# signature) when the subscription has raw message delivery on.
RAW_DELIVERY = (
    "the body is a bare SES event, not an SNS message: raw message delivery is on for this "
    "subscription; turn it off (subscription attribute RawMessageDelivery=false) so SNS sends "
    "its signed envelope"
)

CertFetcher = Callable[[str], Awaitable[bytes]]
"""Fetches the PEM at a URL that already passed the host check."""


class Problem(enum.Enum):
    """Why a message was refused, and the HTTP status the endpoint answers."""

    MALFORMED = (400, "malformed")
    UNSUPPORTED_VERSION = (400, "unsupported_signature_version")
    TOPIC_NOT_ALLOWED = (403, "topic_not_allowed")
    UNTRUSTED_CERT_URL = (403, "untrusted_cert_url")
    UNTRUSTED_SUBSCRIBE_URL = (403, "untrusted_subscribe_url")
    BAD_CERTIFICATE = (403, "bad_certificate")
    BAD_SIGNATURE = (403, "bad_signature")
    # The certificate could not be fetched: transient, so SNS should retry (it does on 5xx).
    CERT_UNAVAILABLE = (503, "cert_unavailable")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def code(self) -> str:
        return self.value[1]


class SnsRejected(DispatcherError):
    """An SNS message that must not be acted on; ``problem.status`` is the HTTP answer."""

    def __init__(self, problem: Problem, detail: str) -> None:
        super().__init__(f"{problem.code}: {detail}")
        self.problem = problem
        self.detail = detail

    @property
    def status(self) -> int:
        return self.problem.status


@dataclass(frozen=True, slots=True)
class SnsMessage:
    """A well-formed SNS HTTP message (verified once it comes out of ``SnsVerifier.verify``)."""

    type: str
    message_id: str
    topic_arn: str
    message: str  # for SES: a string holding the event JSON
    timestamp: str
    signature_version: str
    signature: str
    signing_cert_url: str
    subject: str | None = None
    token: str | None = None
    subscribe_url: str | None = None
    raw: Mapping[str, Any] | None = None  # the whole body as received

    def signed_fields(self) -> dict[str, str]:
        fields = {
            "Type": self.type,
            "MessageId": self.message_id,
            "TopicArn": self.topic_arn,
            "Message": self.message,
            "Timestamp": self.timestamp,
        }
        for key, value in (
            ("Subject", self.subject),
            ("Token", self.token),
            ("SubscribeURL", self.subscribe_url),
        ):
            if value is not None:
                fields[key] = value
        return fields


def string_to_sign(message: SnsMessage) -> bytes:
    """ "Key\\nValue\\n" for each present key, in SNS's order for the message's Type."""
    keys = _NOTIFICATION_KEYS if message.type == NOTIFICATION else _CONFIRMATION_KEYS
    fields = message.signed_fields()
    return "".join(f"{k}\n{fields[k]}\n" for k in keys if k in fields).encode()


def parse_message(body: bytes | str | Mapping[str, Any]) -> SnsMessage:
    """The SNS message in an HTTP body; SnsRejected(MALFORMED) names what is wrong."""
    data: Any = body
    if isinstance(body, bytes | str):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise SnsRejected(Problem.MALFORMED, "the body is not JSON") from None
    if not isinstance(data, Mapping):
        raise SnsRejected(Problem.MALFORMED, "the body is not a JSON object")
    kind = data.get("Type")
    if kind is None and ("notificationType" in data or "eventType" in data):
        raise SnsRejected(Problem.MALFORMED, RAW_DELIVERY)
    if kind not in TYPES:
        raise SnsRejected(Problem.MALFORMED, f"unknown Type {str(kind)[:40]!r}")
    required = _COMMON + _SIGNED + (() if kind == NOTIFICATION else _CONFIRMATION_EXTRA)
    for key in required:
        if not isinstance(data.get(key), str) or not data[key]:
            raise SnsRejected(Problem.MALFORMED, f"{key} is missing or not a string")
    for key in ("Subject", "Token", "SubscribeURL"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise SnsRejected(Problem.MALFORMED, f"{key} is not a string")
    return SnsMessage(
        type=kind,
        message_id=data["MessageId"],
        topic_arn=data["TopicArn"],
        message=data["Message"],
        timestamp=data["Timestamp"],
        signature_version=data["SignatureVersion"],
        signature=data["Signature"],
        signing_cert_url=data["SigningCertURL"],
        subject=data.get("Subject") if kind == NOTIFICATION else None,
        token=data.get("Token") if kind != NOTIFICATION else None,
        subscribe_url=data.get("SubscribeURL") if kind != NOTIFICATION else None,
        raw=data,
    )


def is_sns_url(url: str, *, pem: bool) -> bool:
    """https on ``sns.<region>.amazonaws.com`` (or ``.com.cn``), default port, no credentials;
    with ``pem`` also a path ending in ``.pem`` and no query."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or parts.username is not None or parts.password is not None:
        return False
    if port not in (None, 443) or _SNS_HOST.match(parts.hostname or "") is None:
        return False
    if "\\" in url or any(ord(c) < 33 for c in url):
        return False  # parsers disagree about these; SNS never sends them
    if pem:
        return parts.path.endswith(".pem") and not parts.query and not parts.fragment
    return True


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{parts.hostname}:{port or default}"


class SnsVerifier:
    """Checks SNS messages against an allow-list of topics and SNS's (or pinned) certificates."""

    __slots__ = ("_cache", "_fetch", "_pinned", "_subscribe_origins", "_topics")

    def __init__(
        self,
        *,
        allowed_topics: Collection[str],
        fetch: CertFetcher | None = None,
        trusted_certificates: Mapping[str, bytes | str] | None = None,
        trusted_subscribe_origins: Collection[str] = (),
    ) -> None:
        self._topics = frozenset(allowed_topics)
        self._fetch = fetch
        # Pinned: URL -> public key, parsed now so a bad pin fails at start, not per message.
        self._pinned: dict[str, rsa.RSAPublicKey] = {}
        for url, pem in (trusted_certificates or {}).items():
            self._pinned[url] = _public_key(pem.encode() if isinstance(pem, str) else pem, url)
        origins = {_origin(o) for o in trusted_subscribe_origins}
        if None in origins:
            raise ValueError("trusted_subscribe_origins must be http(s) URLs")
        self._subscribe_origins = frozenset(o for o in origins if o is not None)
        self._cache: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()

    def subscribe_url_trusted(self, url: str) -> bool:
        """A SubscribeURL we may GET: SNS's host over https, or an explicitly trusted origin."""
        return is_sns_url(url, pem=False) or _origin(url) in self._subscribe_origins

    async def verify(self, body: bytes | str | Mapping[str, Any]) -> SnsMessage:
        """The verified message, or SnsRejected saying why (and which HTTP status to answer)."""
        message = parse_message(body)
        algorithm = _HASHES.get(message.signature_version)
        if algorithm is None:
            raise SnsRejected(
                Problem.UNSUPPORTED_VERSION,
                f"SignatureVersion {message.signature_version[:10]!r} (accepted: 1, 2)",
            )
        if message.topic_arn not in self._topics:
            raise SnsRejected(
                Problem.TOPIC_NOT_ALLOWED, f"{message.topic_arn[:200]} is not on the allow-list"
            )
        url = message.signing_cert_url
        if url not in self._pinned and not is_sns_url(url, pem=True):
            raise SnsRejected(
                Problem.UNTRUSTED_CERT_URL,
                f"{url[:200]} is neither pinned nor an https sns.<region>.amazonaws.com .pem URL",
            )
        if message.subscribe_url is not None and not self.subscribe_url_trusted(
            message.subscribe_url
        ):
            raise SnsRejected(
                Problem.UNTRUSTED_SUBSCRIBE_URL, f"{message.subscribe_url[:200]} is not SNS's"
            )
        try:
            signature = base64.b64decode(message.signature, validate=True)
        except (binascii.Error, ValueError):
            raise SnsRejected(Problem.BAD_SIGNATURE, "Signature is not base64") from None
        key = await self._key(url)
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise SnsRejected(Problem.BAD_SIGNATURE, "the signature does not verify") from None
        return message

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        pinned = self._pinned.get(url)
        if pinned is not None:
            return pinned
        cached = self._cache.get(url)
        if cached is not None:
            self._cache.move_to_end(url)
            return cached
        if self._fetch is None:
            raise SnsRejected(Problem.CERT_UNAVAILABLE, "no certificate fetcher configured")
        try:
            pem = await self._fetch(url)
        except Exception as exc:  # any fetch failure is transient from SNS's point of view
            raise SnsRejected(
                Problem.CERT_UNAVAILABLE, f"cannot fetch {url}: {type(exc).__name__}"
            ) from None
        try:
            key = _public_key(pem, url)
        except ValueError as exc:
            raise SnsRejected(Problem.BAD_CERTIFICATE, str(exc)) from None
        self._cache[url] = key
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return key


def _public_key(pem: bytes, url: str) -> rsa.RSAPublicKey:
    try:
        key = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError:
        raise ValueError(f"the certificate at {url} is not a PEM X.509 certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"the certificate at {url} does not hold an RSA key")
    return key

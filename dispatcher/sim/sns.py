"""SNS HTTP message bodies, signed as SNS signs them (SignatureVersion 1 = RSA-SHA1, 2 =
RSA-SHA256) with a key the simulator makes at first use and a self-signed certificate it serves.

The certificate is NOT Amazon's and its URL is not on `sns.<region>.amazonaws.com`: a receiver
that checks SigningCertURL as it must for real SNS rejects it. To accept the simulator's
messages a receiver pins this certificate explicitly (GET /_sim/sns/certificate.pem, or
`--sns-cert-file`), which leaves its real host check untouched.
"""

from __future__ import annotations

import base64
import datetime
import os
import uuid
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

# Keys in the string to sign, in order (SES-FACTS.md, "Verifying SNS").
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
CERT_PATH = "/_sim/sns/certificate.pem"


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """ "Key\\nValue\\n" for each present key, in SNS's order for the message's Type."""
    keys = NOTIFICATION_KEYS if message.get("Type") == "Notification" else CONFIRMATION_KEYS
    parts: list[str] = []
    for key in keys:
        value = message.get(key)
        if value is not None:
            parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode()


def _hash(version: int) -> hashes.HashAlgorithm:
    if version == 1:
        return hashes.SHA1()  # SNS SignatureVersion 1 is RSA-SHA1
    if version == 2:
        return hashes.SHA256()
    raise ValueError(f"SignatureVersion must be 1 or 2, got {version!r}")


class Signer:
    """An RSA key and its self-signed certificate, made once (about 0.1 s) when first needed."""

    __slots__ = ("_cert_pem", "_key")

    def __init__(self) -> None:
        self._key: rsa.RSAPrivateKey | None = None
        self._cert_pem: bytes | None = None

    def _ensure(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            name = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dispatcher SES simulator"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "sns.simulator.invalid"),
                ]
            )
            now = datetime.datetime.now(datetime.UTC)
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=365))
                .sign(key, hashes.SHA256())
            )
            self._cert_pem = cert.public_bytes(serialization.Encoding.PEM)
            self._key = key
        return self._key

    @property
    def certificate_pem(self) -> bytes:
        self._ensure()
        assert self._cert_pem is not None
        return self._cert_pem

    def sign(self, message: dict[str, Any], version: int) -> None:
        """Set SignatureVersion and Signature on `message` (its other fields must be final)."""
        algorithm = _hash(version)
        message["SignatureVersion"] = str(version)
        signature = self._ensure().sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        message["Signature"] = base64.b64encode(signature).decode()


def notification(
    signer: Signer,
    *,
    topic_arn: str,
    message: str,
    timestamp: str,
    base_url: str,
    subscription_arn: str,
    version: int,
    subject: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """A signed SNS Notification body."""
    body: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic_arn,
    }
    if subject is not None:
        body["Subject"] = subject
    body["Message"] = message
    body["Timestamp"] = timestamp
    body["SigningCertURL"] = base_url + CERT_PATH
    body["UnsubscribeURL"] = (
        f"{base_url}/_sim/sns/unsubscribe?Action=Unsubscribe&SubscriptionArn={subscription_arn}"
    )
    signer.sign(body, version)
    return body


def subscription_confirmation(
    signer: Signer,
    *,
    topic_arn: str,
    token: str,
    timestamp: str,
    base_url: str,
    version: int,
) -> dict[str, Any]:
    """A signed SNS SubscriptionConfirmation body; GET its SubscribeURL to confirm."""
    body: dict[str, Any] = {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": token,
        "TopicArn": topic_arn,
        "Message": (
            f"You have chosen to subscribe to the topic {topic_arn}.\n"
            "To confirm the subscription, visit the SubscribeURL included in this message."
        ),
        "SubscribeURL": (
            f"{base_url}/_sim/sns/confirm?Action=ConfirmSubscription"
            f"&TopicArn={topic_arn}&Token={token}"
        ),
        "Timestamp": timestamp,
        "SigningCertURL": base_url + CERT_PATH,
    }
    signer.sign(body, version)
    return body

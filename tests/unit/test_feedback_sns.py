"""SNS message verification: both signature versions, and every way a message is refused."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from dispatcher.feedback.sns import (
    Problem,
    SnsRejected,
    SnsVerifier,
    is_sns_url,
    parse_message,
    string_to_sign,
)
from tests.support.sns import string_to_sign as expected_string_to_sign

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"


def make_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


KEY, PEM = make_key()
OTHER_KEY, OTHER_PEM = make_key()


def sign(body: dict[str, Any], key: rsa.RSAPrivateKey = KEY, version: str = "2") -> dict[str, Any]:
    body = dict(body)
    body["SignatureVersion"] = version
    body.setdefault("SigningCertURL", CERT_URL)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    to_sign = expected_string_to_sign(body)
    body["Signature"] = base64.b64encode(key.sign(to_sign, padding.PKCS1v15(), algorithm)).decode()
    return body


def notification(**extra: Any) -> dict[str, Any]:
    body = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps({"notificationType": "Bounce"}),
        "Timestamp": "2026-11-28T17:00:00.000Z",
    }
    body.update(extra)
    return body


def confirmation(**extra: Any) -> dict[str, Any]:
    body = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "c-1",
        "Token": "tok",
        "TopicArn": TOPIC,
        "Message": "confirm me",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=t",
        "Timestamp": "2026-11-28T17:00:00.000Z",
    }
    body.update(extra)
    return body


class Fetcher:
    def __init__(self, pem: bytes = PEM) -> None:
        self.pem = pem
        self.urls: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return self.pem


def verifier(fetch: Fetcher | None = None, **kwargs: Any) -> SnsVerifier:
    return SnsVerifier(allowed_topics=[TOPIC], fetch=fetch or Fetcher(), **kwargs)


async def rejected(v: SnsVerifier, body: Any) -> Problem:
    with pytest.raises(SnsRejected) as info:
        await v.verify(json.dumps(body).encode() if isinstance(body, dict) else body)
    return info.value.problem


@pytest.mark.parametrize("version", ["1", "2"])
async def test_valid_signatures_verify_and_the_certificate_is_fetched_once(version: str) -> None:
    fetch = Fetcher()
    v = verifier(fetch)
    msg = await v.verify(json.dumps(sign(notification(), version=version)).encode())
    assert (msg.type, msg.message_id, msg.topic_arn) == ("Notification", "m-1", TOPIC)
    conf = await v.verify(sign(confirmation(), version=version))
    assert conf.token == "tok" and conf.subscribe_url is not None
    assert fetch.urls == [CERT_URL]  # cached after the first


async def test_a_notification_without_subject_verifies() -> None:
    body = notification()
    del body["Subject"]
    assert (await verifier().verify(sign(body))).subject is None


def test_the_string_to_sign_is_snss_keys_in_snss_order() -> None:
    without_subject = notification()
    del without_subject["Subject"]
    for body in (notification(), without_subject, confirmation()):
        message = parse_message(sign(body))
        assert string_to_sign(message) == expected_string_to_sign(body), body["Type"]
    assert expected_string_to_sign(notification()).startswith(b"Message\n")
    assert b"TopicArn\narn:" in expected_string_to_sign(confirmation())


async def test_a_changed_byte_or_another_key_does_not_verify() -> None:
    v = verifier()
    forged = sign(notification())
    forged["Message"] = forged["Message"].replace("Bounce", "Bouncf")
    assert await rejected(v, forged) is Problem.BAD_SIGNATURE
    assert await rejected(v, sign(notification(), key=OTHER_KEY)) is Problem.BAD_SIGNATURE
    sha1_claimed_as_2 = sign(notification(), version="1")
    sha1_claimed_as_2["SignatureVersion"] = "2"
    assert await rejected(v, sha1_claimed_as_2) is Problem.BAD_SIGNATURE
    garbage = sign(notification())
    garbage["Signature"] = "not base64!"
    assert await rejected(v, garbage) is Problem.BAD_SIGNATURE


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.txt",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://user@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.pem?x=1",
        "https://s3.amazonaws.com/cert.pem",
        "https://127.0.0.1/cert.pem",
        "not a url",
    ],
)
async def test_a_certificate_url_off_sns_is_refused_before_any_fetch(url: str) -> None:
    fetch = Fetcher()
    v = verifier(fetch)
    assert await rejected(v, sign(notification(SigningCertURL=url))) is Problem.UNTRUSTED_CERT_URL
    assert fetch.urls == []


def test_the_real_sns_hosts_pass_the_host_check() -> None:
    assert is_sns_url(CERT_URL, pem=True)
    assert is_sns_url(
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem", pem=True
    )
    assert not is_sns_url(CERT_URL.replace(".pem", ""), pem=True)


async def test_a_pinned_certificate_is_trusted_for_its_url_only() -> None:
    pinned_url = "http://127.0.0.1:4579/_sim/sns/certificate.pem"
    fetch = Fetcher()
    v = verifier(fetch, trusted_certificates={pinned_url: PEM})
    await v.verify(sign(notification(SigningCertURL=pinned_url)))
    other = "http://127.0.0.1:4580/_sim/sns/certificate.pem"
    body = sign(notification(SigningCertURL=other))
    assert await rejected(v, body) is Problem.UNTRUSTED_CERT_URL
    # The pin is the key: a message signed by another key under the pinned URL fails.
    assert (
        await rejected(v, sign(notification(SigningCertURL=pinned_url), key=OTHER_KEY))
        is Problem.BAD_SIGNATURE
    )
    assert fetch.urls == []


@pytest.mark.parametrize("version", ["0", "3", "", "SHA256", "1 "])
async def test_an_unknown_signature_version_is_refused(version: str) -> None:
    body = sign(notification())
    body["SignatureVersion"] = version
    assert await rejected(verifier(), body) in (Problem.UNSUPPORTED_VERSION, Problem.MALFORMED)


async def test_a_topic_off_the_allow_list_is_refused_before_any_fetch() -> None:
    fetch = Fetcher()
    body = sign(notification(TopicArn="arn:aws:sns:us-east-1:999999999999:other"))
    assert await rejected(verifier(fetch), body) is Problem.TOPIC_NOT_ALLOWED
    assert fetch.urls == []


async def test_a_confirmation_with_a_foreign_subscribe_url_is_refused() -> None:
    v = verifier(trusted_subscribe_origins=["http://127.0.0.1:4579"])
    evil = sign(confirmation(SubscribeURL="https://evil.example/?Action=ConfirmSubscription"))
    assert await rejected(v, evil) is Problem.UNTRUSTED_SUBSCRIBE_URL
    sim = sign(confirmation(SubscribeURL="http://127.0.0.1:4579/_sim/sns/confirm?Token=t"))
    assert (await v.verify(sim)).subscribe_url is not None
    assert v.subscribe_url_trusted("https://sns.eu-west-1.amazonaws.com/?Action=x")
    assert not v.subscribe_url_trusted("http://sns.eu-west-1.amazonaws.com/?Action=x")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"x"',
        json.dumps({**notification(), "Type": "Other"}).encode(),
        json.dumps({k: v for k, v in notification().items() if k != "MessageId"}).encode(),
        json.dumps({**notification(), "Message": 5}).encode(),
        json.dumps(confirmation()).encode(),  # unsigned: no Signature, no SigningCertURL
    ],
)
async def test_malformed_bodies_are_400(body: bytes) -> None:
    problem = await rejected(verifier(), body)
    assert problem is Problem.MALFORMED and problem.status == 400


async def test_a_certificate_that_cannot_be_fetched_is_a_retryable_503() -> None:
    async def failing(url: str) -> bytes:
        raise OSError("down")

    v = SnsVerifier(allowed_topics=[TOPIC], fetch=failing)
    assert (await rejected(v, sign(notification()))).status == 503
    v = verifier(Fetcher(b"not a certificate"))
    assert await rejected(v, sign(notification())) is Problem.BAD_CERTIFICATE


def test_statuses() -> None:
    assert Problem.BAD_SIGNATURE.status == 403
    assert Problem.TOPIC_NOT_ALLOWED.status == 403
    assert Problem.UNTRUSTED_CERT_URL.status == 403
    assert Problem.UNSUPPORTED_VERSION.status == 400

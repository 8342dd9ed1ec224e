"""AWS Signature V4 as the SES-compatible endpoint checks it, against requests botocore signed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from dispatcher.doors import sigv4
from dispatcher.doors.ses_ids import message_id_of, ses_message_id
from dispatcher.doors.sigv4 import AuthFailure, Failure

KEY_ID = "DKABCDEFGHIJKLMNOPQR"
SECRET = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-abcd"
BODY = b'{"FromEmailAddress":"a@shop.example"}'


def signed_request(
    secret: str = SECRET, body: bytes = BODY, path: str = "/v2/email/outbound-emails"
) -> AWSRequest:
    """A request as an SDK sends it: botocore signs it for SES with `secret`."""
    request = AWSRequest(
        method="POST",
        url=f"http://127.0.0.1:8026{path}",
        data=body,
        headers={"Content-Type": "application/json", "User-Agent": "Boto3/1.0"},
    )
    SigV4Auth(Credentials(KEY_ID, secret), "ses", "eu-west-1").add_auth(request)
    return request


def verify(request: AWSRequest, *, body: bytes | None = None, secret: str = SECRET) -> bool:
    """What the endpoint decides for `request` as received (the Host header as sent)."""
    signed = sigv4.parse_authorization(request.headers["Authorization"])
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = "127.0.0.1:8026"
    return sigv4.signature_matches(
        signed,
        secret,
        method="POST",
        raw_path="/v2/email/outbound-emails",
        raw_query="",
        headers=lambda name: [headers[name]] if name in headers else [],
        body=BODY if body is None else body,
        amz_date=request.headers["X-Amz-Date"],
    )


def test_a_botocore_signature_is_recomputed_and_a_wrong_secret_or_changed_body_is_not() -> None:
    request = signed_request()
    signed = sigv4.parse_authorization(request.headers["Authorization"])
    assert (signed.key_id, signed.region, signed.service) == (KEY_ID, "eu-west-1", "ses")
    assert verify(request)
    assert not verify(request, secret=SECRET[:-1] + "x")
    assert not verify(request, body=BODY + b" ")
    assert not verify(signed_request(secret="another"))


def test_a_declared_body_hash_must_be_the_body_s() -> None:
    # botocore trusts X-Amz-Content-SHA256 as the body's hash: a signed hash of another body
    # would let a captured request carry any message.
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8026/v2/email/outbound-emails",
        data=BODY,
        headers={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()},
    )
    SigV4Auth(Credentials(KEY_ID, SECRET), "ses", "us-east-1").add_auth(request)
    assert verify(request)
    assert not verify(request, body=b'{"FromEmailAddress":"evil@elsewhere.example"}')


def test_dates_more_than_five_minutes_off_are_refused_in_aws_words() -> None:
    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    sigv4.check_date("20261206T115600Z", now)
    sigv4.check_date("20261206T120400Z", now)
    with pytest.raises(AuthFailure) as stale:
        sigv4.check_date((now - timedelta(minutes=6)).strftime("%Y%m%dT%H%M%SZ"), now)
    assert stale.value.kind is Failure.EXPIRED
    assert str(stale.value) == (
        "Signature expired: 20261206T115400Z is now earlier than 20261206T115500Z "
        "(20261206T120000Z - 5 min.)"
    )
    with pytest.raises(AuthFailure) as future:
        sigv4.check_date("20261206T120600Z", now)
    assert future.value.kind is Failure.NOT_YET
    for bad in (None, "", "yesterday"):
        with pytest.raises(AuthFailure) as malformed:
            sigv4.check_date(bad, now)
        assert malformed.value.kind is Failure.INCOMPLETE


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (None, Failure.MISSING),
        ("", Failure.MISSING),
        ("Basic dXNlcjpwYXNz", Failure.INCOMPLETE),
        ("AWS4-HMAC-SHA256 Credential=DK/20261206/us-east-1/ses/aws4_request", Failure.INCOMPLETE),
        (
            "AWS4-HMAC-SHA256 Credential=DK/20261206/ses/aws4_request, SignedHeaders=host, "
            "Signature=ab",
            Failure.INCOMPLETE,
        ),
        (
            "AWS4-HMAC-SHA256 Credential=DK/20261206/us-east-1/ses/aws4_request, "
            "SignedHeaders=x-amz-date, Signature=ab",
            Failure.INCOMPLETE,
        ),
    ],
)
def test_malformed_authorization_headers_are_refused(header: str | None, kind: Failure) -> None:
    with pytest.raises(AuthFailure) as refused:
        sigv4.parse_authorization(header)
    assert refused.value.kind is kind


def test_the_message_id_answered_leads_back_to_the_message() -> None:
    assert ses_message_id(42) == "dispatcher-42"
    assert message_id_of("dispatcher-42") == 42
    assert message_id_of(" 42 ") == 42
    for other in ("", "dispatcher-", "dispatcher-0", "0100018c-uuid-000000", "-1", "9" * 20):
        assert message_id_of(other) is None

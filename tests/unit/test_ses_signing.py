"""SendSigner: the sends' SigV4, checked by botocore's own signer (through the SES endpoint's
verifier), with static and with temporary credentials, across a day boundary."""

from __future__ import annotations

import calendar

import pytest
from botocore.credentials import Credentials, ReadOnlyCredentials

from dispatcher.doors.sigv4 import parse_authorization, signature_matches
from dispatcher.ses.signing import SendSigner

URL = "https://email.eu-west-1.amazonaws.com/v2/email/outbound-emails"
BODY = b'{"FromEmailAddress":"shop@example.com","Destination":{"ToAddresses":["a@b.example"]}}'
NOON = float(calendar.timegm((2026, 12, 6, 12, 0, 0)))


def verified(headers: dict[str, str], secret: str, url: str = URL, body: bytes = BODY) -> bool:
    """What botocore computes for the request as it would arrive, against its Authorization."""
    host = url.split("/")[2]
    path = "/" + url.split("/", 3)[3].split("?")[0]
    query = url.partition("?")[2]
    sent = {"host": host, **{k.lower(): v for k, v in headers.items()}}
    signed = parse_authorization(headers["Authorization"])
    return signature_matches(
        signed,
        secret,
        method="POST",
        raw_path=path,
        raw_query=query,
        headers=lambda name: [sent[name]] if name in sent else [],
        body=body,
        amz_date=headers["X-Amz-Date"],
    )


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////wEaDOPq+token="])
def test_botocore_accepts_the_signature(token: str | None) -> None:
    signer = SendSigner(None, "eu-west-1")  # type: ignore[arg-type]  # credentials given below
    creds = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token, None)
    headers = signer.headers(creds, "POST", URL, BODY, NOON)
    assert headers["X-Amz-Date"] == "20261206T120000Z"
    assert headers.get("X-Amz-Security-Token") == token
    signed = parse_authorization(headers["Authorization"])
    assert (signed.key_id, signed.region, signed.service) == ("AKIDEXAMPLE", "eu-west-1", "ses")
    assert verified(headers, "wJalrXUtnFEMI/K7MDENG")
    assert not verified(headers, "another secret")
    assert not verified(headers, "wJalrXUtnFEMI/K7MDENG", body=BODY + b" ")  # body changed


def test_ports_and_ipv6_hosts_are_signed_as_botocore_signs_them() -> None:
    signer = SendSigner(None, "us-east-1")  # type: ignore[arg-type]
    creds = Credentials("AKID", "secret").get_frozen_credentials()
    for url in (
        "https://email.us-east-1.amazonaws.com:443/v2/email/outbound-emails",
        "http://[::1]:4579/v2/email/outbound-emails",
    ):
        headers = signer.headers(creds, "POST", url, BODY, NOON)
        host = url.split("/")[2].removesuffix(":443")
        assert verified(headers, "secret", url=url.replace(url.split("/")[2], host)), url


def test_a_new_day_and_rotated_credentials_get_a_new_key() -> None:
    signer = SendSigner(None, "us-east-1")  # type: ignore[arg-type]
    url = "http://127.0.0.1:4579/v2/email/outbound-emails?b=2&a=1"
    old = Credentials("AKID1", "first-secret").get_frozen_credentials()
    new = Credentials("AKID2", "second-secret").get_frozen_credentials()
    for creds, now in ((old, NOON), (old, NOON + 86400.0), (new, NOON + 86401.0)):
        headers = signer.headers(creds, "POST", url, BODY, now)
        assert verified(headers, creds.secret_key or "", url=url), (creds.access_key, now)

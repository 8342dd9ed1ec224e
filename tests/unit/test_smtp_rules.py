"""The SMTP door's decisions without a socket: replies, sender checks, recipients, the queued
message and its idempotency key; and the door's certificate (made once, reused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.doors.keys import ApiKey
from dispatcher.doors.smtp_rules import (
    display_subject,
    header_sender_refusal,
    idempotency_key,
    mail_from_refusal,
    rcpt_refusal,
    reply,
    submission,
)
from dispatcher.doors.tls import server_cert
from dispatcher.errors import ConfigError

SHOP = ApiKey(id="DKSHOP", name="shop", senders=("*@shop.example",))
ANY = ApiKey(id="DKANY", name="any")


def raw(*headers: str, body: str = "hi") -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()


def test_reply_is_one_printable_line_of_bounded_length() -> None:
    assert reply(550, "5.7.1", "no\r\nRCPT TO:<x>") == "550 5.7.1 no RCPT TO:<x>"
    assert reply(554, "5.6.0", "é") == "554 5.6.0"
    long = reply(554, "5.6.0", "x" * 1000)
    assert len(long) < 512 and long.endswith("...")


@pytest.mark.parametrize(
    ("key", "address", "start"),
    [
        (SHOP, "news@shop.example", None),
        (SHOP, "NEWS@Shop.Example", None),
        (SHOP, "boss@other.example", "553 5.7.1 key DKSHOP may not send as boss@other.example"),
        (ANY, "boss@other.example", None),
        (ANY, "", "553 5.1.7 a null sender"),
        (ANY, "not an address", "553 5.1.7"),
    ],
)
def test_mail_from(key: ApiKey, address: str, start: str | None) -> None:
    got = mail_from_refusal(key, address)
    assert got == start if start is None else got is not None and got.startswith(start)


def test_rcpt_refused_beyond_fifty_and_for_a_bad_address() -> None:
    assert rcpt_refusal(49, "a@example.com") is None
    assert (rcpt_refusal(50, "a@example.com") or "").startswith("452 4.5.3 too many recipients")
    assert (rcpt_refusal(0, "a@") or "").startswith("553 5.1.3")


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        (("From: Shop <news@shop.example>",), None),
        (("Subject: no From at all",), None),
        (("From: boss@other.example",), "boss@other.example (the From: header)"),
        (("From: news@shop.example", "Sender: x@other.example"), "x@other.example (the Sender:"),
        (("From: a@shop.example, b@other.example",), "b@other.example"),
        (("From: undisclosed-recipients:;",), "the From: header names no address"),
        # a part the parser cannot read (hypothesis found it): SES might read it otherwise
        (("From: news@shop.example>",), "the From: header names no address"),
    ],
)
def test_header_senders_of_a_limited_key(headers: tuple[str, ...], refused: str | None) -> None:
    got = header_sender_refusal(SHOP, raw(*headers))
    if refused is None:
        assert got is None
    else:
        assert got is not None and got.startswith("550 5.7.1") and refused in got
    assert header_sender_refusal(ANY, raw(*headers)) is None  # an unlimited key: any sender


def test_subject_for_display_is_decoded_and_the_bytes_untouched() -> None:
    message = raw("From: a@shop.example", "Subject: =?utf-8?q?Caf=C3=A9?=\r\n folded")
    assert display_subject(message) == "Café folded"
    assert display_subject(raw("From: a@shop.example")) == ""
    queued = submission(SHOP, "a@shop.example", ["to@x.example", "bcc@x.example"], message)
    assert queued.raw is message and queued.to == ("to@x.example", "bcc@x.example")
    assert queued.from_addr == "a@shop.example" and queued.subject == "Café folded"


def test_idempotency_key_only_with_a_message_id_and_scoped_to_the_key() -> None:
    plain = raw("From: a@shop.example", "Subject: alert")
    assert idempotency_key(SHOP, "a@shop.example", ["t@x.example"], plain) is None
    unique = raw("From: a@shop.example", "Message-ID: <1@shop.example>")
    first = idempotency_key(SHOP, "a@shop.example", ["t@x.example"], unique)
    assert first is not None and first.startswith("smtp:DKSHOP:") and len(first) <= 200
    assert first == idempotency_key(SHOP, "a@shop.example", ["t@x.example"], unique)
    assert first != idempotency_key(ANY, "a@shop.example", ["t@x.example"], unique)
    assert first != idempotency_key(SHOP, "a@shop.example", ["u@x.example"], unique)
    assert first != idempotency_key(SHOP, "a@shop.example", ["t@x.example"], unique + b"x")


def test_priority_is_zero_or_the_lower_limit_of_the_key() -> None:
    low = ApiKey(id="DKLOW", name="low", max_priority=-5)
    message = raw("From: a@shop.example")
    assert submission(low, "a@shop.example", ["t@x.example"], message).priority == -5
    assert submission(ANY, "a@shop.example", ["t@x.example"], message).priority == 0


def test_self_signed_certificate_is_made_once_and_reused(tmp_path: Path) -> None:
    first, made = server_cert("smtp", None, None, tmp_path)
    again, made_again = server_cert("smtp", None, None, tmp_path)
    assert made and not made_again and first.self_signed
    assert first.fingerprint == again.fingerprint and len(first.fingerprint) == 95
    assert (first.cert_file.stat().st_mode & 0o777) == 0o600
    given, _ = server_cert("smtp", first.cert_file, first.cert_file, tmp_path / "other")
    assert not given.self_signed and given.fingerprint == first.fingerprint
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"smtp: cannot load the certificate .*smtp.tls_cert"):
        server_cert("smtp", tmp_path / "bad.pem", tmp_path / "bad.pem", tmp_path)

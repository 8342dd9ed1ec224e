"""The SMTP door against real Postgres with Python's smtplib: what a client sees for each refusal,
and that what it queues is the envelope and the bytes it sent."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import fetch
from tests.support.smtp import client, mail, smtp_door


async def test_smtplib_session_refusals_and_what_is_queued(pg_dsn: str, tmp_path: Path) -> None:
    async with smtp_door(pg_dsn, tmp_path) as door:
        shop, secret = await door.key("shop", "*@shop.example")
        other, other_secret = await door.key("other", "*@other.example")
        assert door.cafile.exists()

        def session() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            # AUTH before STARTTLS: not offered, refused (the password never goes in the clear)
            plain = smtplib.SMTP(door.host, door.port, timeout=30)
            plain.ehlo()
            seen["auth_in_clear"] = plain.has_extn("auth")
            seen["auth_in_clear_reply"] = plain.docmd("AUTH", "PLAIN AGlkAHB3")[0]
            seen["mail_before_auth"] = plain.docmd("MAIL", "FROM:<a@shop.example>")[0]
            plain.quit()
            # a wrong secret
            try:
                client(door.host, door.port, door.cafile, shop.id, secret + "x")
            except smtplib.SMTPAuthenticationError as exc:
                seen["wrong_secret"] = (exc.smtp_code, exc.smtp_error)
            smtp = client(door.host, door.port, door.cafile, shop.id, secret)
            seen["size"] = smtp.esmtp_features.get("size")
            # the envelope decides: To header shows one, the Bcc-only one is in RCPT TO only
            body = mail("Shop <news@shop.example>", "a@example.com", "Hello é", "line\n.dot\n")
            seen["sent"] = smtp.sendmail(
                "news@shop.example", ["a@example.com", "hidden@example.com"], body
            )
            smtp.sendmail(
                "news@shop.example", ["a@example.com", "hidden@example.com"], body
            )  # a resend of the same bytes (a lost 250): the same message
            seen["body"] = body
            try:
                smtp.sendmail("news@other.example", ["a@example.com"], body)
            except smtplib.SMTPSenderRefused as exc:
                seen["mail_from_outside"] = (exc.smtp_code, exc.smtp_error)
            spoof = mail("boss@other.example", "a@example.com", "Hi", "x")
            try:
                smtp.sendmail("news@shop.example", ["a@example.com"], spoof)
            except smtplib.SMTPDataError as exc:
                seen["from_header_outside"] = (exc.smtp_code, exc.smtp_error)
            smtp.mail("news@shop.example")
            codes = [smtp.rcpt(f"r{i}@example.com")[0] for i in range(51)]
            seen["rcpt_codes"] = codes
            smtp.rset()
            long_line = mail("news@shop.example", "a@example.com", "long", "x") + b"y" * 999
            try:
                smtp.sendmail("news@shop.example", ["a@example.com"], long_line + b"\r\n")
            except smtplib.SMTPDataError as exc:
                seen["long_line"] = (exc.smtp_code, exc.smtp_error)
            try:
                smtp.sendmail("news@shop.example", ["not an address"], body)
            except smtplib.SMTPRecipientsRefused as exc:
                seen["bad_rcpt"] = next(iter(exc.recipients.values()))
            seen["revoked"] = revoke_then_send(smtp)
            smtp.quit()
            return seen

        def revoke_then_send(smtp: smtplib.SMTP) -> tuple[int, str]:
            """Revoked while its session is open: the next message is refused."""
            asyncio.run_coroutine_threadsafe(door.keys.revoke(shop.id), loop).result(10)
            try:
                smtp.sendmail(
                    "news@shop.example",
                    ["a@example.com"],
                    mail("news@shop.example", "a@example.com", "late", "x"),
                )
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code, str(exc.smtp_error)
            return 250, ""

        loop = asyncio.get_running_loop()
        seen = await asyncio.to_thread(session)
        code, text = seen["revoked"]
        assert code == 554 and "revoked" in text
        assert seen["auth_in_clear"] is False and seen["auth_in_clear_reply"] == 538
        assert seen["mail_before_auth"] == 530
        code, text = seen["wrong_secret"]
        assert code == 535 and b"5.7.8" in text
        assert seen["size"] == str(40 * 1024 * 1024)
        assert seen["sent"] == {}
        code, text = seen["mail_from_outside"]
        assert code == 553 and b"5.7.1" in text and b"*@shop.example" in text
        code, text = seen["from_header_outside"]
        assert code == 550 and b"boss@other.example" in text and b"From:" in text
        assert seen["rcpt_codes"] == [250] * 50 + [452]
        code, text = seen["long_line"]
        assert code == 554 and b"line" in text and b"998" in text
        assert seen["bad_rcpt"][0] == 553

        rows = await fetch(
            pg_dsn,
            "SELECT m.from_addr, m.to_addrs, m.raw, m.subject, m.key_id, m.idempotency_key "
            "FROM dispatcher.messages m",
        )
        assert len(rows) == 1, rows  # the resend was the same message; refusals queued nothing
        row = rows[0]
        assert row["raw"] == seen["body"]  # byte for byte (dot-stuffing undone)
        assert row["from_addr"] == "news@shop.example" and row["key_id"] == shop.id
        assert "hidden@example.com" in row["to_addrs"]
        assert row["subject"] == "Hello é"
        assert row["idempotency_key"].startswith(f"smtp:{shop.id}:")
        assert other.id and other_secret  # the second key exists only to be kept apart


async def test_auth_in_the_clear_from_loopback_when_configured_and_the_size_limit(
    pg_dsn: str, tmp_path: Path
) -> None:
    big = mail("a@example.com", "b@example.com", "big", ("x" * 70 + "\n") * 30)
    async with smtp_door(
        pg_dsn, tmp_path, auth_on_loopback_without_tls=True, max_message_bytes=1024
    ) as door:
        key, secret = await door.key("ops")

        def session() -> tuple[dict[str, tuple[int, bytes]], tuple[int, str], tuple[int, str]]:
            smtp = smtplib.SMTP(door.host, door.port, timeout=30)
            smtp.ehlo()
            empty = smtp.docmd("AUTH", "PLAIN =")  # RFC 4954's empty initial response
            assert empty[0] == 501 and b"authzid NUL user NUL password" in empty[1], empty
            smtp.login(key.id, secret)  # no STARTTLS: allowed from loopback by the setting
            small = mail("a@example.com", "b@example.com", "s", "t")
            refused = smtp.sendmail("a@example.com", ["b@example.com"], small)
            try:  # SIZE announced by smtplib: refused at MAIL
                smtp.sendmail("a@example.com", ["b@example.com"], big)
                at_mail = 250, ""
            except smtplib.SMTPSenderRefused as exc:
                at_mail = exc.smtp_code, exc.smtp_error.decode()[:5]
            # a client that ignores SIZE: refused after DATA, nothing queued
            smtp.mail("a@example.com")
            smtp.rcpt("b@example.com")
            code, text = smtp.data(big)
            at_data = code, text.decode()[:5]
            smtp.quit()
            return refused, at_mail, at_data

        refused, at_mail, at_data = await asyncio.to_thread(session)
    assert refused == {} and at_mail == (552, "5.3.4") and at_data == (552, "5.3.4")
    count = await fetch(pg_dsn, "SELECT count(*) AS n FROM dispatcher.messages")
    assert count[0]["n"] == 1


pytestmark = pytest.mark.timeout(60)


async def test_implicit_tls_port_takes_auth_and_mail_on_the_same_certificate(
    pg_dsn: str, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtps = int(probe.getsockname()[1])
    async with smtp_door(pg_dsn, tmp_path, implicit_tls_port=smtps) as door:
        key, secret = await door.key("ops", "example.com")

        def session() -> tuple[bool, bool, dict[str, tuple[int, bytes]]]:
            context = ssl.create_default_context(cafile=str(door.cafile))
            with smtplib.SMTP_SSL(door.host, smtps, context=context, timeout=30) as smtp:
                smtp.ehlo()
                offers = smtp.has_extn("auth"), smtp.has_extn("starttls")
                smtp.login(key.id, secret)
                body = mail("a@example.com", "b@example.com", "over SMTPS", "x")
                return (*offers, smtp.sendmail("a@example.com", ["b@example.com"], body))

        auth, starttls, refused = await asyncio.to_thread(session)
    assert auth and not starttls and refused == {}
    rows = await fetch(pg_dsn, "SELECT subject FROM dispatcher.messages")
    assert [r["subject"] for r in rows] == ["over SMTPS"]


async def test_sessions_beyond_max_sessions_wait_for_a_free_one(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with smtp_door(pg_dsn, tmp_path, max_sessions=1) as door:

        def sessions() -> tuple[bytes, bytes, bytes]:
            first = socket.create_connection((door.host, door.port), timeout=10)
            greeting = first.recv(512)
            second = socket.create_connection((door.host, door.port), timeout=0.5)
            try:
                waiting = second.recv(512)  # nothing: it waits in the listen backlog
            except TimeoutError:
                waiting = b""
            first.sendall(b"QUIT\r\n")
            first.recv(512)
            first.close()
            second.settimeout(10)
            served = second.recv(512)  # the slot is free: now it is served
            second.close()
            return greeting, waiting, served

        greeting, waiting, served = await asyncio.to_thread(sessions)
    assert greeting.startswith(b"220 ") and waiting == b"" and served.startswith(b"220 ")

"""The Django e-mail backend on a real Django and Postgres: mail is queued iff Django's
transaction commits, the MIME message Django builds is kept byte for byte with the envelope
beside it (Bcc only there), and bad mail is refused before anything is written."""

from __future__ import annotations

import asyncio
import email
import json
import sys
from email.message import Message
from email.policy import default as default_policy

import asyncpg  # type: ignore[import-untyped]
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection, send_mail
from django.db import ProgrammingError, connection, transaction

from dispatcher.errors import InputError
from tests.support.cli import REPO_ROOT, fetch
from tests.support.django_app import in_django, use_database
from tests.support.hostile import HOSTILE, Hostile

SENDER = "app@example.com"
# What enqueue_raw takes beside the raw bytes (subject, body and Reply-To are inside them).
ENVELOPE_FIELDS = {"from", "to", "cc", "bcc", "priority", "tags", "configuration_set"}
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


async def messages(dsn: str) -> list[asyncpg.Record]:
    return await fetch(
        dsn,
        "SELECT m.id, m.from_addr, m.to_addrs, m.cc_addrs, m.bcc_addrs, m.subject, m.raw, "
        "m.tags, m.idempotency_key, m.configuration_set, j.priority, j.state::text AS state "
        "FROM dispatcher.messages m JOIN dispatcher.jobs j USING (id) ORDER BY m.id",
    )


def subject_of(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=default_policy)["Subject"])


async def test_mail_is_queued_only_if_the_django_transaction_commits(pg_dsn: str) -> None:
    use_database(pg_dsn)

    def rolled_back() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            assert send_mail("rolled back", "body", SENDER, ["jo@example.net"]) == 1
            raise RuntimeError("the view failed after sending")

    def committed() -> int:
        with transaction.atomic():
            return send_mail("committed", "body", SENDER, ["jo@example.net"])

    def autocommit() -> int:
        return send_mail("autocommit", "body", SENDER, ["jo@example.net"])

    await in_django(rolled_back)
    assert await messages(pg_dsn) == []
    assert await in_django(committed) == 1
    assert await in_django(autocommit) == 1

    rows = await messages(pg_dsn)
    assert [subject_of(r["raw"]) for r in rows] == ["committed", "autocommit"]
    assert all(r["state"] == "queued" and r["to_addrs"] == ["jo@example.net"] for r in rows)


async def test_alternatives_attachment_and_bcc_keep_the_mime_and_the_envelope(
    pg_dsn: str,
) -> None:
    use_database(pg_dsn)
    headers = {
        "X-Dispatcher-Priority": "7",
        "x-dispatcher-tags": "flow=signup, step=1",
        "X-Dispatcher-Idempotency-Key": "signup-42",
        "X-Dispatcher-Send-After": "2026-01-01T00:00:00Z",
        "X-Mailer": "shop",
    }

    def build() -> EmailMultiAlternatives:
        msg = EmailMultiAlternatives(
            subject="Welcome, Jöe",
            body="Plain text body\n",
            from_email=SENDER,
            to=["Jöe Doe <joe@Example.NET>"],
            cc=["cc@example.net"],
            bcc=["hidden@example.org"],
            headers=headers,
        )
        msg.attach_alternative("<p>HTML body</p>", "text/html")
        msg.attach("report.pdf", PDF, "application/pdf")
        return msg

    def send_twice() -> tuple[int, int, int, int]:
        first, second = build(), build()
        return first.send(), second.send(), first.dispatcher_id, second.dispatcher_id  # type: ignore[attr-defined]

    sent_first, sent_again, first_id, second_id = await in_django(send_twice)

    assert (sent_first, sent_again) == (1, 1)
    assert first_id == second_id  # the idempotency key: the same message, queued once
    [row] = await messages(pg_dsn)
    assert row["id"] == first_id
    # The envelope: every recipient, normalised as every door stores them; Bcc only here.
    assert row["from_addr"] == SENDER
    assert row["to_addrs"] == ["=?utf-8?b?SsO2ZSBEb2U=?= <joe@example.net>"]
    assert row["cc_addrs"] == ["cc@example.net"]
    assert row["bcc_addrs"] == ["hidden@example.org"]
    assert row["priority"] == 7
    assert row["idempotency_key"] == "signup-42"
    assert row["tags"] == '{"app": "shop", "flow": "signup", "step": "1"}'
    [run_at] = await fetch(pg_dsn, "SELECT run_at FROM dispatcher.jobs")
    assert run_at["run_at"].isoformat() == "2026-01-01T00:00:00+00:00"

    raw: bytes = row["raw"]
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # SMTP's line ends
    parsed = email.message_from_bytes(raw, policy=default_policy)
    assert "Bcc" not in parsed and b"hidden@example.org" not in raw
    assert not [k for k in parsed if k.lower().startswith("x-dispatcher-")]
    assert parsed["X-Mailer"] == "shop"  # other headers of the application are kept
    assert str(parsed["Subject"]) == "Welcome, Jöe"
    assert str(parsed["Cc"]) == "cc@example.net"
    parts: list[Message] = list(parsed.walk())
    types = [p.get_content_type() for p in parts]
    assert types == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/pdf",
    ]
    [pdf] = [p for p in parts if p.get_content_type() == "application/pdf"]
    assert pdf.get_filename() == "report.pdf"
    assert pdf.get_payload(decode=True) == PDF


async def test_bad_mail_is_refused_and_fail_silently_keeps_the_transaction(pg_dsn: str) -> None:
    use_database(pg_dsn)

    def loud() -> str:
        with pytest.raises(InputError) as refused:
            send_mail("hi", "body", SENDER, ["ok@example.net", "not-an-address"])
        return str(refused.value)

    def control(headers: dict[str, str]) -> str:
        msg = EmailMultiAlternatives("hi", "body", SENDER, ["ok@example.net"], headers=headers)
        with pytest.raises(InputError) as refused:
            msg.send()
        return str(refused.value)

    def quiet() -> tuple[int, int]:
        with transaction.atomic():
            with connection.cursor() as cursor:  # the application's own write
                cursor.execute("CREATE TABLE orders (id int)")
                cursor.execute("INSERT INTO orders VALUES (1)")
            bad = send_mail("bad", "body", SENDER, ["a@b@c"], fail_silently=True)
            good = send_mail("good", "body", SENDER, ["ok@example.net"], fail_silently=True)
            return bad, good

    def bad_settings() -> str:
        with pytest.raises(ImproperlyConfigured) as refused:
            get_connection(priority=40000)
        return str(refused.value)

    assert "to[1] 'not-an-address' is not an email address" in await in_django(loud)
    assert "X-Dispatcher-Priority 'high' is not an integer" in await in_django(
        lambda: control({"X-Dispatcher-Priority": "high"})
    )
    assert "unknown header 'x-dispatcher-priorty'" in await in_django(
        lambda: control({"X-Dispatcher-Priorty": "1"})
    )
    assert "tag 'a' has an empty value" in await in_django(
        lambda: control({"X-Dispatcher-Tags": "a="})
    )
    assert await messages(pg_dsn) == []

    # The refused message is skipped; the application's transaction is not aborted by it.
    assert await in_django(quiet) == (0, 1)
    assert [subject_of(r["raw"]) for r in await messages(pg_dsn)] == ["good"]
    assert [r["id"] for r in await fetch(pg_dsn, "SELECT id FROM orders")] == [1]
    assert "priority 40000 is out of range" in await in_django(bad_settings)


def hostile_email(row: Hostile) -> EmailMessage:
    """A row of the hostile table as a Django application would write it."""
    f = row.fields

    def many(key: str) -> list[str]:
        value = f.get(key) or []
        return [value] if isinstance(value, str) else list(value)

    headers = {}
    if "configuration_set" in f:
        headers["X-Dispatcher-Configuration-Set"] = f["configuration_set"]
    if f.get("tags"):
        headers["X-Dispatcher-Tags"] = ", ".join(f"{k}={v}" for k, v in f["tags"].items())
    if "priority" in f:
        headers["X-Dispatcher-Priority"] = str(f["priority"])
    return EmailMessage(
        subject=f["subject"],
        body=f["text"],
        from_email=f["from"],
        to=many("to"),
        cc=many("cc"),
        bcc=many("bcc"),
        reply_to=many("reply_to"),
        headers=headers,
    )


async def test_every_hostile_row_is_refused_and_nothing_is_queued(pg_dsn: str) -> None:
    use_database(pg_dsn)

    def loud() -> list[str]:
        accepted = []
        for row in HOSTILE:
            try:
                hostile_email(row).send()
                accepted.append(row.what)
            except (InputError, ValueError):  # ValueError: Django's own BadHeaderError
                pass
        return accepted

    def quiet() -> int:
        backend = get_connection(fail_silently=True)
        return backend.send_messages([hostile_email(row) for row in HOSTILE])

    assert await in_django(loud) == []
    assert await in_django(quiet) == 0
    assert await messages(pg_dsn) == []


async def test_a_database_error_under_fail_silently_does_not_abort_the_application_transaction(
    pg_dsn: str,
) -> None:
    use_database(pg_dsn)
    # The application deployed before `dispatcher migrate` gave its database enqueue_raw.
    await fetch(pg_dsn, "ALTER FUNCTION dispatcher.enqueue_raw RENAME TO enqueue_raw_later")

    def checkout() -> int:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("CREATE TABLE orders (id int)")
            sent = send_mail("receipt", "body", SENDER, ["jo@example.net"], fail_silently=True)
            cursor.execute("INSERT INTO orders VALUES (1)")  # the transaction still works
        return sent

    def loud() -> str:
        with pytest.raises(ProgrammingError) as failed:
            send_mail("receipt", "body", SENDER, ["jo@example.net"])
        return str(failed.value)

    assert await in_django(checkout) == 0
    assert [r["id"] for r in await fetch(pg_dsn, "SELECT id FROM orders")] == [1]
    assert "dispatcher.enqueue_raw" in await in_django(loud)
    assert await messages(pg_dsn) == []


# Django takes psycopg (3) when it can import it, else psycopg2: hiding psycopg makes it psycopg2.
PSYCOPG2_APP = """
import sys
sys.modules["psycopg"] = None
from django.core.mail import EmailMessage
from django.db import connection, transaction
from tests.support.django_app import use_database
use_database(sys.argv[1])
msg = EmailMessage("via psycopg2", "body", "app@example.com", ["jo@example.net"],
                   bcc=["b@example.org"], headers={"X-Dispatcher-Priority": "-3",
                   "X-Dispatcher-Tags": "driver=psycopg2",
                   "X-Dispatcher-Send-After": "2026-01-01T00:00:00Z"})
with transaction.atomic():
    assert msg.send() == 1
print(connection.Database.__name__, msg.dispatcher_id)
"""


async def test_the_backend_works_the_same_on_psycopg2(pg_dsn: str) -> None:
    app = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PSYCOPG2_APP,
        pg_dsn,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(app.communicate(), 60)
    assert app.returncode == 0, err.decode()
    driver, queued = out.decode().split()

    assert driver == "psycopg2"
    [row] = await messages(pg_dsn)
    assert row["id"] == int(queued)
    assert (row["to_addrs"], row["cc_addrs"], row["bcc_addrs"]) == (
        ["jo@example.net"],
        [],
        ["b@example.org"],
    )
    assert subject_of(row["raw"]) == "via psycopg2"
    assert row["priority"] == -3
    assert row["tags"] == '{"app": "shop", "driver": "psycopg2"}'


async def test_the_sql_function_takes_a_raw_message_and_refuses_what_ses_cannot(
    pg_dsn: str,
) -> None:
    raw = b"From: app@example.com\r\nTo: jo@example.net\r\nSubject: s\r\n\r\nbody\r\n"
    call = (
        "SELECT dispatcher.enqueue_raw(from_addr => $1, to_addrs => $2, raw => $3, "
        "bcc_addrs => $4, idempotency_key => $5)"
    )
    conn = await asyncpg.connect(pg_dsn)
    try:
        new_id = await conn.fetchval(
            call, "App <app@Example.com>", ["jo@example.net"], raw, ["b@example.org"], "k"
        )
        assert await conn.fetchval(call, "app@example.com", ["x@example.net"], raw, [], "k") == (
            new_id
        )
        many = [f"r{i}@example.net" for i in range(51)]
        long_line = b"\xff\\" + b"x" * 997  # 999 bytes: 8-bit and backslash count as one
        refusals = {
            "no recipient": ("app@example.com", [], raw, []),
            "51 recipients": ("app@example.com", many, raw, []),
            "bad address": ("app@example.com", ["jo@example.net"], raw, ["a@b@c"]),
            "empty raw": ("app@example.com", ["jo@example.net"], b"", []),
            "long line": ("app@example.com", ["jo@example.net"], long_line, []),
            "too large": ("app@example.com", ["jo@example.net"], b"x\r\n" * (14 * 2**20), []),
        }
        errors = {}
        for name, args in refusals.items():
            with pytest.raises(asyncpg.InvalidParameterValueError) as refused:
                await conn.fetchval(call, *args, None)
            errors[name] = str(refused.value).splitlines()[0]
        # The hostile table, where the envelope and options carry it (the rest is in raw).
        full_call = (
            "SELECT dispatcher.enqueue_raw(from_addr => $1, to_addrs => $2, raw => $3, "
            "cc_addrs => $4, bcc_addrs => $5, priority => $6::integer::smallint, "
            "tags => $7::jsonb, configuration_set => $8)"
        )
        carried = [row for row in HOSTILE if set(row.changes) <= ENVELOPE_FIELDS]
        problems = []
        for row in carried:
            f = row.fields
            try:
                await conn.fetchval(
                    full_call,
                    f["from"],
                    f.get("to") or [],
                    raw,
                    f.get("cc") or [],
                    f.get("bcc") or [],
                    f.get("priority", 0),
                    json.dumps(f.get("tags") or {}),
                    f.get("configuration_set"),
                )
                problems.append(f"accepted {row.what}")
            except asyncpg.PostgresError as exc:
                if exc.sqlstate not in ("22023", "22003"):
                    problems.append(f"{row.what}: {exc.sqlstate} {exc}")
        # One byte less is a line of 998 characters: SES takes it.
        await conn.fetchval(call, "app@example.com", ["jo@example.net"], long_line[:-1], [], None)
        rows = await conn.fetch(
            "SELECT from_addr, to_addrs, bcc_addrs, raw FROM dispatcher.messages ORDER BY id"
        )
    finally:
        await conn.close()
    assert problems == [] and len(carried) > 15
    assert errors["no recipient"].endswith("the message has no recipient")
    assert "51 recipients" in errors["51 recipients"]
    assert "'a@b@c' is not a valid email address" in errors["bad address"]
    assert errors["empty raw"].endswith("raw is empty")
    assert "longer than 998" in errors["long line"]
    assert "SES takes at most 41943040" in errors["too large"]
    assert tuple(rows[0]) == (
        '"App" <app@example.com>',
        ["jo@example.net"],
        ["b@example.org"],
        raw,
    )
    assert len(rows) == 2

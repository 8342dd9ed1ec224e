"""Attachments through the Python doors (outbox.enqueue in the application's transaction, and
Queue.enqueue): stored as one raw MIME message, or refused with nothing written."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import asyncpg  # type: ignore[import-untyped]
import pytest

from dispatcher import outbox
from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.mime import Attachment
from dispatcher.errors import InputError
from dispatcher.queue.repository import Queue

PAYLOAD = bytes(range(256)) * 10
MESSAGE = NewMessage(
    from_addr="app@example.com",
    to=("jo@example.com",),
    bcc=("audit@example.com",),
    subject="Ihre Rechnung",
    text="Anbei.",
    attachments=(Attachment("Rechnung März.pdf", "application/pdf", PAYLOAD),),
)


async def test_outbox_and_queue_store_a_message_with_attachments_as_raw(
    queue: Queue, pg_dsn: str
) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        async with conn.transaction():
            first = await outbox.enqueue(conn, MESSAGE)
        second = (await queue.enqueue(MESSAGE)).id
        with pytest.raises(InputError) as refused:
            async with conn.transaction():
                await outbox.enqueue(
                    conn,
                    NewMessage(
                        from_addr="app@example.com",
                        to=("jo@example.com",),
                        subject="s",
                        text="t",
                        attachments=(Attachment("run.bat", "text/plain", b""),),
                    ),
                )
        rows = await conn.fetch(
            "SELECT subject, text_body, html_body, raw, bcc_addrs FROM dispatcher.messages "
            "ORDER BY id"
        )
    finally:
        await conn.close()

    assert "message 0: attachment 0 'run.bat': SES refuses messages with .bat" in str(refused.value)
    assert [r["subject"] for r in rows] == ["Ihre Rechnung", "Ihre Rechnung"]  # nothing more
    assert first != second
    for row in rows:
        assert row["text_body"] is None and row["html_body"] is None
        assert list(row["bcc_addrs"]) == ["audit@example.com"]
        assert b"audit@example.com" not in row["raw"]
        mail = message_from_bytes(row["raw"], policy=policy.default)
        assert isinstance(mail, EmailMessage)
        (part,) = mail.iter_attachments()
        assert part.get_filename() == "Rechnung März.pdf"
        assert part.get_payload(decode=True) == PAYLOAD

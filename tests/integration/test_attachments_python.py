"""Attachments through the Python doors (outbox.enqueue in the application's transaction, and
Queue.enqueue): stored as one raw MIME message, or refused with nothing written; and
`dispatcher enqueue` committing lines with large attachments in smaller chunks."""

from __future__ import annotations

import argparse
import base64
import json
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from dispatcher import outbox
from dispatcher.cli import enqueue
from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.mime import Attachment
from dispatcher.errors import InputError
from dispatcher.queue.repository import Queue
from tests.support.dispatch import make_config

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

    assert "message 0: attachments[0] 'run.bat': SES refuses messages with .bat" in str(
        refused.value
    )
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


async def test_enqueue_commits_a_chunk_once_its_attachments_reach_the_byte_cap(
    queue: Queue, pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 lines of 1 KiB attachments with a 2.5 KiB cap: two statements (3 lines, then 2), not
    # one chunk of all lines held in memory; each statement is its own transaction (xmin).
    monkeypatch.setattr(enqueue, "CHUNK_BYTES", 2560)
    item = {"filename": "a.bin", "content_type": "application/octet-stream"}
    lines = [
        {
            "from": "app@example.com",
            "to": ["jo@example.com"],
            "subject": f"m{i}",
            "attachments": [
                {**item, "content_base64": base64.b64encode(bytes([i]) * 1024).decode()}
            ],
        }
        for i in range(5)
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    args = argparse.Namespace(file=str(path), idempotency_prefix="jsonl")

    code = await enqueue.cmd_enqueue(args, make_config(pg_dsn, "http://127.0.0.1:9"))

    assert code == 0
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT subject, xmin::text AS tx FROM dispatcher.messages ORDER BY id"
        )
    finally:
        await conn.close()
    assert [r["subject"] for r in rows] == [f"m{i}" for i in range(5)]
    assert [r["tx"] for r in rows].count(rows[0]["tx"]) == 3
    assert len({r["tx"] for r in rows}) == 2

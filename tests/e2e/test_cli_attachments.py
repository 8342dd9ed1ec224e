"""Attachments from `dispatcher enqueue` (JSONL) and `dispatcher send --attach`, sent by a real
daemon to the simulator: the files arrive byte for byte, and a Bcc recipient is a destination
but never a header."""

from __future__ import annotations

import base64
import json
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tests.support.cli import cli_env, run_cli, state_counts
from tests.support.sim import SimFactory

SENDER = "Jörg Müller <app@example.com>"
TO = "success@simulator.amazonses.com"
HIDDEN = "success+hidden@simulator.amazonses.com"  # in Bcc only


def received(record: dict[str, Any]) -> EmailMessage:
    mail = message_from_bytes(base64.b64decode(record["raw"]), policy=policy.default)
    assert isinstance(mail, EmailMessage)
    return mail


def files_of(mail: EmailMessage) -> list[tuple[str | None, str, object]]:
    """(filename, content type, decoded bytes) of each attachment, in order."""
    return [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        for part in mail.iter_attachments()
    ]


async def test_attachments_from_enqueue_and_send_arrive_byte_identical_and_bcc_stays_hidden(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    binary = bytes(range(256)) * 300 + b"\r\n.\r\n\x00"  # every byte, SMTP's end-of-data too
    named = "Grüße – März 2026.txt"
    text_file = "Hallo Jörg\r\n".encode() * 50
    line = {
        "from": SENDER,
        "to": [TO],
        "bcc": [HIDDEN],
        "subject": "Rechnung März",
        "text": "Anbei die Rechnung.",
        "html": "<p>Anbei die <b>Rechnung</b>.</p>",
        "attachments": [
            {
                "filename": "rechnung.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(binary).decode(),
            },
            {
                "filename": named,
                "content_type": "text/plain",
                "content_base64": base64.b64encode(text_file).decode(),
            },
        ],
    }
    jsonl = tmp_path / "mail.jsonl"
    jsonl.write_text(json.dumps(line) + "\n", encoding="utf-8")
    report = tmp_path / "Bericht Q3.pdf"
    report.write_bytes(binary[::-1])
    env = cli_env(tmp_path, dsn=pg_dsn)

    queued = await run_cli(env, "enqueue", str(jsonl))
    again = await run_cli(env, "enqueue", str(jsonl))  # a rerun: nothing twice
    sent = await run_cli(
        env,
        *("send", "--from", SENDER, "--to", TO, "--bcc", HIDDEN, "--subject", "Bericht"),
        *("--text", "Der Bericht.", "--attach", str(report)),
    )
    missing = await run_cli(
        env,
        *("send", "--from", SENDER, "--to", TO, "--subject", "x", "--text", "x"),
        *("--attach", str(report), "--attach", str(tmp_path / "nowhere.pdf")),
    )

    assert queued.code == 0 and queued.out.strip() == "queued 1 message(s)", queued
    assert again.code == 0 and "queued 0 message(s); 1 already queued" in again.out, again
    assert sent.code == 0, sent
    assert missing.code == 2 and "Traceback" not in missing.err, missing
    assert missing.messages == [
        f"dispatcher: error: --attach {tmp_path / 'nowhere.pdf'}: cannot read it: "
        "No such file or directory"
    ], missing
    assert await state_counts(pg_dsn) == {"queued": 2}

    async with sim_process() as sim:
        daemon = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)
        run = await run_cli(daemon, "run", "--drain", limit=120)
        assert run.code == 0, run
        records = {r["subject"]: r for r in await sim.messages(body=True)}

    assert sorted(records) == ["Bericht", "Rechnung März"]
    for record in records.values():
        assert record["to"] == [TO] and record["bcc"] == [HIDDEN]  # the envelope has it
        raw = base64.b64decode(record["raw"])
        assert HIDDEN.encode() not in raw and "Bcc" not in received(record)  # no header does
    invoice = received(records["Rechnung März"])
    assert str(invoice["From"]) == SENDER
    assert files_of(invoice) == [
        ("rechnung.pdf", "application/pdf", binary),
        (named, "text/plain", text_file),
    ]
    body = invoice.get_body(("html",))
    assert body is not None and "Anbei die <b>Rechnung</b>." in body.get_content()
    assert files_of(received(records["Bericht"])) == [
        ("Bericht Q3.pdf", "application/pdf", binary[::-1])
    ]
    assert await state_counts(pg_dsn) == {"sent": 2}

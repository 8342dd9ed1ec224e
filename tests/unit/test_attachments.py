"""Attachments: the MIME message they are built into, what validation refuses, the JSON field,
the content keys of `enqueue`, and `send --attach`'s guess of a file's type (no services)."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from dispatcher.cli.attach import content_type_of, read_attachment
from dispatcher.cli.jsonl import DefaultKeys, parse_line
from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.mime import Attachment, build_mime
from dispatcher.domain.validate import MAX_MESSAGE_BYTES, validate_message
from dispatcher.domain.wire import message_from_json
from dispatcher.errors import InputError
from dispatcher.queue.enqueue import validate_all

BINARY = bytes(range(256)) * 40  # every byte value, NUL and CR LF included
PDF = Attachment("report.pdf", "application/pdf", BINARY)
NAMED = Attachment("Prüfbericht – März.txt", "text/plain", "Grüße\r\n".encode())
MSG = NewMessage(
    from_addr="Jörg Müller <app@example.com>",
    to=('"Doe, Jane" <jane@example.com>',),
    cc=("cc@example.com",),
    bcc=("hidden@example.com",),
    reply_to=("help@example.com",),
    subject="Ihre Rechnung – März",
    text="Hallo, anbei die Rechnung.",
    html="<p>Hallo, anbei die <b>Rechnung</b>.</p>",
    attachments=(PDF, NAMED),
)
GOOD_JSON: dict[str, Any] = {
    "from": "a@example.com",
    "to": ["b@example.com"],
    "subject": "s",
    "text": "x",
}


def parsed(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def refused(**changes: Any) -> InputError:
    with pytest.raises(InputError) as info:
        validate_message(dataclasses.replace(MSG, **changes))
    assert "\n" not in str(info.value)
    return info.value


def test_a_message_with_attachments_is_queued_as_one_complete_mime_message() -> None:
    valid = validate_message(MSG)

    assert valid.raw is not None
    assert (valid.text, valid.html, valid.attachments) == (None, None, ())
    assert valid.subject == MSG.subject  # kept for `status` and `in-doubt list`
    assert valid.bcc == ("hidden@example.com",)  # the envelope: SES's Destination
    assert validate_message(valid) == valid  # validating again changes nothing
    mail = parsed(valid.raw)
    assert mail.get_content_type() == "multipart/mixed"
    assert str(mail["From"]) == "Jörg Müller <app@example.com>"
    assert str(mail["To"]) == '"Doe, Jane" <jane@example.com>'
    assert str(mail["Cc"]) == "cc@example.com"
    assert str(mail["Reply-To"]) == "help@example.com"
    assert str(mail["Subject"]) == "Ihre Rechnung – März"
    assert mail["MIME-Version"] == "1.0" and mail["Date"] and mail["Message-ID"]
    assert str(mail["Message-ID"]).endswith("@example.com>")
    body, *files = mail.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    text, html = body.iter_parts()
    assert text.get_content().rstrip() == "Hallo, anbei die Rechnung."
    assert html.get_content().rstrip() == "<p>Hallo, anbei die <b>Rechnung</b>.</p>"
    assert [(f.get_filename(), f.get_content_type()) for f in files] == [
        ("report.pdf", "application/pdf"),
        ("Prüfbericht – März.txt", "text/plain"),
    ]
    assert [f.get_payload(decode=True) for f in files] == [PDF.content, NAMED.content]
    assert all(f["Content-Transfer-Encoding"] == "base64" for f in files)


def test_the_mime_message_has_no_bcc_and_only_short_7bit_crlf_lines() -> None:
    raw = validate_message(MSG).raw
    assert raw is not None
    assert b"hidden@example.com" not in raw
    assert "Bcc" not in parsed(raw)
    assert raw.isascii()  # SES asks for 7-bit parts: non-ASCII text is encoded
    assert b"\n" not in raw.replace(b"\r\n", b"")  # no bare LF: SMTP line ends throughout
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78  # SES's limit is 998
    assert raw.count(b"MIME-Version") == 1  # not repeated in each part


def test_a_long_non_ascii_filename_is_folded_and_reads_back_whole() -> None:
    name = "Ü" * 250 + ".pdf"
    raw = validate_message(dataclasses.replace(MSG, attachments=(Attachment(name, "a/b", b""),)))
    assert raw.raw is not None
    assert max(len(line) for line in raw.raw.split(b"\r\n")) <= 78
    (_, attachment) = parsed(raw.raw).iter_parts()
    assert attachment.get_filename() == name and attachment.get_payload(decode=True) == b""


def test_attachments_alone_make_a_message_and_text_alone_goes_without_alternative() -> None:
    alone = validate_message(dataclasses.replace(MSG, text=None, html=None))
    assert alone.raw is not None
    assert [p.get_filename() for p in parsed(alone.raw).iter_parts()] == [
        "report.pdf",
        "Prüfbericht – März.txt",
    ]
    text_only = validate_message(dataclasses.replace(MSG, html=None, attachments=(PDF,)))
    assert text_only.raw is not None
    assert [p.get_content_type() for p in parsed(text_only.raw).iter_parts()] == [
        "text/plain",
        "application/pdf",
    ]


def test_build_mime_takes_the_date_it_is_given() -> None:
    raw = build_mime(
        from_addr="a@example.com",
        to=["b@example.com"],
        cc=[],
        reply_to=[],
        subject="s",
        text="x",
        html=None,
        attachments=[PDF],
        date=datetime(2026, 11, 28, 15, 0, tzinfo=UTC),
    )
    assert parsed(raw)["Date"] == "Sat, 28 Nov 2026 15:00:00 +0000"
    assert "Cc" not in parsed(raw) and "Reply-To" not in parsed(raw)


@pytest.mark.parametrize(
    ("attachment", "says"),
    [
        (Attachment("", "a/b", b"x"), "attachments[0] has no filename"),
        (Attachment("  ", "a/b", b"x"), "attachments[0] has no filename"),
        (Attachment("../etc/passwd", "a/b", b"x"), "without a directory"),
        (Attachment("C:\\x.pdf", "a/b", b"x"), "without a directory"),
        (Attachment("..", "a/b", b"x"), "without a directory"),
        (Attachment("a\r\nBcc: x@evil.com.pdf", "a/b", b"x"), "line break or control"),
        (Attachment("a\u2028b.pdf", "a/b", b"x"), "line break or control"),
        (Attachment("a\ud800.pdf", "a/b", b"x"), "lone surrogate"),
        (Attachment("x" * 252 + ".pdf", "a/b", b"x"), "256 characters; SES takes at most 255"),
        (Attachment("setup.exe", "a/b", b"x"), "'setup.exe': SES refuses messages with .exe"),
        (Attachment("Run.VBS", "a/b", b"x"), "SES refuses messages with .vbs attachments"),
        (Attachment("trick.js. ", "a/b", b"x"), "SES refuses messages with .js attachments"),
        (Attachment("a.pdf", "pdf", b"x"), "content type 'pdf' is not type/subtype"),
        (Attachment("a.pdf", "text/plain; charset=utf-8", b"x"), "is not type/subtype"),
        (Attachment("a.pdf", "application/pdf\r\nX: 1", b"x"), "is not type/subtype"),
        (Attachment("a.eml", "message/rfc822", b"x"), "cannot be sent base64-encoded"),
        (Attachment("a.pdf", "multipart/mixed", b"x"), "cannot be sent base64-encoded"),
        (Attachment("a.pdf", "a/b", "text"), "content must be bytes, not str"),  # type: ignore[arg-type]
    ],
)
def test_each_bad_attachment_is_refused_with_its_index_and_name(
    attachment: Attachment, says: str
) -> None:
    error = refused(attachments=(attachment,))
    assert says in str(error) and error.field == "attachments"


def test_an_exe_in_the_name_but_not_as_extension_is_fine() -> None:
    ok = Attachment("exe", "application/octet-stream", b"x")
    also = Attachment("setup.exe.pdf", "application/pdf", b"x")
    assert validate_message(dataclasses.replace(MSG, attachments=(ok, also))).raw is not None


def test_the_second_attachment_is_named_when_it_is_the_bad_one() -> None:
    error = refused(attachments=(PDF, Attachment("x.bat", "a/b", b"")))
    assert str(error).startswith("attachments[1] 'x.bat': ")


def test_raw_with_attachments_is_refused() -> None:
    error = refused(raw=b"From: a@example.com\r\n\r\nbody", text=None, html=None)
    assert "put the attachments inside the raw message" in str(error)
    assert error.field == "attachments"


def test_the_size_limit_applies_to_the_built_message_and_says_total_and_limit() -> None:
    # 31 MiB of file is under 40 MiB, but over it once base64-encoded (4/3).
    big = Attachment("big.bin", "application/octet-stream", bytes(31 * 2**20))
    error = refused(attachments=(big,))
    # The total (its Message-ID's length varies by a byte or two) and the limit.
    assert re.search(r"base64-encoded, is 44,48\d,\d{3} bytes", str(error)), error
    assert f"at most {MAX_MESSAGE_BYTES:,} bytes (40 MiB)" in str(error)
    # Over the limit before encoding: refused without building anything.
    huge = Attachment("huge.bin", "application/octet-stream", bytes(MAX_MESSAGE_BYTES + 1))
    assert "has attachments of 41,943,041 bytes" in str(refused(attachments=(huge,)))


# --- JSON (a line of `dispatcher enqueue`, the HTTP API's body) -------------------------------


def with_attachments(*items: object) -> dict[str, Any]:
    return {**GOOD_JSON, "attachments": list(items)}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_json_attachments_are_decoded_and_built() -> None:
    msg = message_from_json(
        with_attachments(
            {
                "filename": "a.bin",
                "content_type": "application/octet-stream",
                "content_base64": b64(BINARY),
            },
            {"filename": "é.txt", "content_type": "text/plain", "content_base64": ""},
        )
    )
    assert msg.attachments == (
        Attachment("a.bin", "application/octet-stream", BINARY),
        Attachment("é.txt", "text/plain", b""),
    )
    raw = validate_message(msg).raw
    assert raw is not None
    files = list(parsed(raw).iter_parts())[1:]
    assert [f.get_payload(decode=True) for f in files] == [BINARY, b""]


GOOD_ITEM = {"filename": "a.pdf", "content_type": "application/pdf", "content_base64": "eA=="}


@pytest.mark.parametrize(
    ("attachments", "says"),
    [
        ("eA==", '"attachments" must be a list'),
        ({"filename": "a"}, '"attachments" must be a list'),
        ([GOOD_ITEM, "eA=="], "attachments[1] must be an object"),
        ([{**GOOD_ITEM, "size": 1}], "attachments[0]: unknown key(s) size"),
        ([{**GOOD_ITEM, "content": "x"}], "attachments[0]: unknown key(s) content"),
        ([{"filename": "a.pdf", "content_base64": "eA=="}], "content_type missing"),
        ([{**GOOD_ITEM, "filename": 3}], "attachments[0]: filename missing or not a string"),
        ([GOOD_ITEM, {**GOOD_ITEM, "content_base64": "not base64!"}], "attachments[1] 'a.pdf'"),
        ([{**GOOD_ITEM, "content_base64": "eA"}], "not valid base64"),  # no padding
        ([{**GOOD_ITEM, "content_base64": "eA==\n"}], "not valid base64"),  # a line break
        ([{**GOOD_ITEM, "content_base64": "-_-_"}], "not valid base64"),  # URL-safe alphabet
        ([{**GOOD_ITEM, "filename": "x.scr"}], "SES refuses messages with .scr attachments"),
    ],
)
def test_bad_json_attachments_are_refused_naming_the_attachment(
    attachments: object, says: str
) -> None:
    with pytest.raises(InputError) as info:
        message_from_json({**GOOD_JSON, "attachments": attachments})
    assert says in str(info.value) and info.value.field == "attachments"
    assert "\n" not in str(info.value)


def test_a_jsonl_line_with_attachments_parses_like_any_other() -> None:
    line = json.dumps(with_attachments(GOOD_ITEM)).encode()
    msg = parse_line(1, line)
    assert isinstance(msg, NewMessage) and msg.attachments[0].content == b"x"


# --- default idempotency keys of `dispatcher enqueue` ----------------------------------------


def key_of(obj: dict[str, Any], keys: DefaultKeys | None = None) -> str:
    msg = parse_line(1, json.dumps(obj).encode())
    assert isinstance(msg, NewMessage), msg
    return (keys or DefaultKeys()).key(msg)


def test_a_line_without_attachments_keeps_the_key_it_always_had() -> None:
    # Computed before attachments existed: a file enqueued then is not queued again now.
    assert key_of(GOOD_JSON) == "jsonl:44ca4b64c8a89d6940e1ee3519078687:1"


def test_lines_differing_only_by_an_attachment_are_two_messages_and_a_rerun_is_none() -> None:
    one = with_attachments({**GOOD_ITEM, "content_base64": b64(b"one")})
    two = with_attachments({**GOOD_ITEM, "content_base64": b64(b"two")})
    renamed = with_attachments({**GOOD_ITEM, "filename": "b.pdf", "content_base64": b64(b"one")})
    keys = {key_of(one), key_of(two), key_of(renamed), key_of(GOOD_JSON)}
    assert len(keys) == 4
    assert key_of(one) == key_of(json.loads(json.dumps(one)))  # the same line again: same key


# --- `dispatcher send --attach FILE` ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "application/pdf"),
        ("photo.JPG", "image/jpeg"),
        ("data.tar.gz", "application/gzip"),
        ("mail.eml", "application/octet-stream"),  # message/rfc822 cannot be base64
        ("noext", "application/octet-stream"),
        ("x.unknownext", "application/octet-stream"),
    ],
)
def test_send_attach_guesses_the_type_from_the_name(name: str, expected: str) -> None:
    assert content_type_of(name) == expected


def test_send_attach_reads_the_file_by_its_base_name(tmp_path: Path) -> None:
    path = tmp_path / "Bericht März.pdf"
    path.write_bytes(BINARY)
    assert read_attachment(str(path)) == Attachment("Bericht März.pdf", "application/pdf", BINARY)
    with pytest.raises(InputError) as info:
        read_attachment(str(tmp_path / "missing.pdf"))
    assert "missing.pdf: cannot read it: No such file or directory" in str(info.value)
    with pytest.raises(InputError) as info:
        read_attachment(str(tmp_path))
    assert "cannot read it: Is a directory" in str(info.value)


def test_more_than_100_attachments_are_refused_before_anything_is_built() -> None:
    many = tuple(Attachment(f"page{i}.png", "image/png", b"") for i in range(101))
    error = refused(attachments=many)
    assert str(error).startswith(
        "the message has 101 attachments; the dispatcher takes at most 100"
    )
    assert validate_message(dataclasses.replace(MSG, attachments=many[:100])).raw is not None


def test_a_batch_names_the_message_and_keeps_the_field_at_fault() -> None:
    bad = dataclasses.replace(MSG, attachments=(Attachment("x.cmd", "text/plain", b""),))
    with pytest.raises(InputError) as info:
        validate_all([MSG, bad])
    assert str(info.value).startswith("message 1: attachments[0] 'x.cmd': SES refuses")
    assert info.value.field == "attachments"  # what the HTTP API answers as {"field": ...}

"""What a `POST /v1/messages` body means (dispatcher.doors.api_body): every bad body is one 400
that names the field (and the batch index), the client's idempotency keys scoped to its key."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import pytest

from dispatcher.doors.api_body import (
    BadBody,
    comparable_raw,
    max_given_key,
    read_body,
    unscoped_key,
)
from tests.support.hostile import GOOD, HOSTILE

KEY = "DKAAAAAAAAAAAAAAAAAA"  # 20 characters, as `keys create` makes them


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def refused(raw: bytes, header: str | None = None) -> BadBody:
    with pytest.raises(BadBody) as info:
        read_body(raw, KEY, header)
    return info.value


@pytest.mark.parametrize("row", HOSTILE, ids=[r.what for r in HOSTILE])
def test_every_hostile_message_is_refused_naming_the_field_it_changes(row: Any) -> None:
    (changed,) = row.changes
    bad = refused(body(row.fields))
    assert bad.field == changed, bad.error
    assert bad.index is None
    # In a batch: the same, with the index.
    in_batch = refused(body([GOOD, GOOD, row.fields]))
    assert (in_batch.field, in_batch.index) == (changed, 2)
    assert in_batch.error.startswith("message 2: ")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"from": None}, "from"),
        ({"to": 5}, "to"),
        ({"to": [], "cc": [], "bcc": []}, "to"),
        ({"subject": ""}, "subject"),
        ({"subject": 7}, "subject"),
        ({"text": None, "html": None}, "text"),
        ({"html": ["x"]}, "html"),
        ({"priority": "high"}, "priority"),
        ({"priority": True}, "priority"),
        ({"tags": ["a"]}, "tags"),
        ({"tags": {"dispatcher_id": "x"}}, "tags"),
        ({"send_after": "tomorrow"}, "send_after"),
        ({"send_after": "2026-01-01T10:00:00"}, "send_after"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": 5}, "idempotency_key"),
        ({"idempotency_key": "k" * 200}, "idempotency_key"),
        ({"configuration_set": "a b"}, "configuration_set"),
        ({"reply_to": "nope"}, "reply_to"),
        ({"bcc": ["x@"]}, "bcc"),
        ({"colour": "red"}, "colour"),
        ({"subject": "a\x00b"}, "subject"),
        ({"text": "\ud800"}, "text"),
    ],
)
def test_a_bad_field_is_named(fields: dict[str, Any], field: str) -> None:
    bad = refused(body({**GOOD, **fields}))
    assert bad.field == field, bad.error


def test_what_is_not_a_message_is_one_clear_error_and_never_an_exception() -> None:
    cases = {
        b"\xff\xfe{}": "not UTF-8",
        b"": "empty",
        b"{": "not valid JSON",
        b"[" * 100_000: "not valid JSON",
        b'{"priority": ' + b"9" * 5000 + b"}": "not valid JSON",
        b"[]": "batch is empty",
        b"42": "must be a JSON object",
        b'"text"': "must be a JSON object",
        body([GOOD, 5]): "message 1 must be a JSON object",
    }
    for raw, says in cases.items():
        assert says in refused(raw).error, raw[:40]


def test_a_byte_order_mark_is_skipped_as_enqueue_skips_it() -> None:
    (msg,) = read_body(b"\xef\xbb\xbf" + body(GOOD), KEY, None).messages
    assert msg.subject == GOOD["subject"]


def test_the_header_key_is_the_single_message_s_key_scoped_to_the_api_key() -> None:
    one = read_body(body(GOOD), KEY, "order-42")
    assert not one.batch
    (msg,) = one.messages
    assert msg.idempotency_key == f"http:{KEY}:order-42"
    assert unscoped_key(KEY, msg.idempotency_key) == "order-42"
    assert unscoped_key("DKOTHER", msg.idempotency_key) is None
    same = read_body(body({**GOOD, "idempotency_key": "order-42"}), KEY, "order-42")
    assert same.messages[0].idempotency_key == msg.idempotency_key
    differ = refused(body({**GOOD, "idempotency_key": "other"}), "order-42")
    assert differ.field == "idempotency_key"
    assert refused(body(GOOD), "").field == "idempotency_key"
    assert refused(body(GOOD), "a\x01b").field == "idempotency_key"
    too_long = refused(body(GOOD), "k" * (max_given_key(KEY) + 1))
    assert too_long.field == "idempotency_key" and str(max_given_key(KEY)) in too_long.error
    assert read_body(body(GOOD), KEY, "k" * max_given_key(KEY)).messages[0].idempotency_key


def test_a_batch_element_keeps_its_own_key_and_the_others_get_header_colon_index() -> None:
    batch = read_body(body([GOOD, {**GOOD, "idempotency_key": "mine"}, GOOD]), KEY, "b1")
    assert batch.batch
    assert [m.idempotency_key for m in batch.messages] == [
        f"http:{KEY}:b1:0",
        f"http:{KEY}:mine",
        f"http:{KEY}:b1:2",
    ]
    plain = read_body(body([GOOD, GOOD]), KEY, None)
    assert [m.idempotency_key for m in plain.messages] == [None, None]


def mime(text: str, attachment: bytes) -> bytes:
    """A message with an attachment as the standard library builds it: a new Date, Message-ID
    and boundaries each time (as a message with attachments is built at enqueue)."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = "app@example.com"
    msg["To"] = "jo@example.com"
    msg["Subject"] = "Invoice"
    msg["Date"] = format_datetime(datetime.now(UTC) - timedelta(seconds=random.randrange(9999)))
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content(text)
    msg.add_alternative(f"<p>{text}</p>", subtype="html")
    msg.add_attachment(attachment, "application", "pdf", filename="invoice.pdf")
    return msg.as_bytes()


def test_two_builds_of_one_mime_message_compare_equal_and_another_message_does_not() -> None:
    first, again = mime("Hi", b"%PDF-1"), mime("Hi", b"%PDF-1")
    assert first != again  # Date, Message-ID, boundaries
    assert comparable_raw(first) == comparable_raw(again)
    assert comparable_raw(mime("Hi!", b"%PDF-1")) != comparable_raw(first)
    assert comparable_raw(mime("Hi", b"%PDF-2")) != comparable_raw(first)
    assert comparable_raw(b"Subject: x\n\nbody") == b"Subject: x\n\nbody"

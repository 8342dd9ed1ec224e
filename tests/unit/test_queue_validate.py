"""validate_message: a message the queue would store but SES would refuse fails at enqueue."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.validate import validate_message
from dispatcher.errors import InputError

GOOD = NewMessage(
    from_addr="sender@example.com",
    to=("a@example.com",),
    subject="Hello",
    text="Hi there",
)


def check(**changes: Any) -> str:
    """The InputError text for GOOD with ``changes``; fails the test if it is accepted."""
    with pytest.raises(InputError) as info:
        validate_message(dataclasses.replace(GOOD, **changes))
    return str(info.value)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"text": None, "html": "<p>Hi</p>"},
        {"text": "t", "html": "<p>h</p>"},
        {"to": (), "cc": ("c@example.com",)},
        {"to": (), "bcc": ("b@example.com",)},
        {"to": tuple(f"r{i}@example.com" for i in range(50))},
        {"subject": "", "text": None, "raw": b"Subject: x\r\n\r\nbody"},
        {"priority": 32767},
        {"priority": -32768},
        {"send_after": datetime(2030, 1, 1, tzinfo=UTC)},
        {"tags": {"campaign": "spring-2030_a", "A-Z_0-9": "v"}},
        {"idempotency_key": "k" * 200},
        {"reply_to": ("reply@example.com",)},
    ],
)
def test_accepts_valid_messages(changes: dict[str, Any]) -> None:
    validate_message(dataclasses.replace(GOOD, **changes))


def test_sender_must_be_an_address() -> None:
    assert "from_addr is empty" in check(from_addr="")
    assert "no '@'" in check(from_addr="sender.example.com")
    assert "line break" in check(from_addr="a@b.c\r\nBcc: x@y.z")


def test_needs_a_recipient() -> None:
    assert "no recipient" in check(to=())


def test_every_address_is_checked() -> None:
    assert "cc[1] 'nobody' is not an email address" in check(cc=("c@example.com", "nobody"))
    assert "bcc[0] is empty" in check(bcc=("",))
    assert "reply_to[0]" in check(reply_to=("x",))
    assert "line break" in check(to=("a@example.com\nX-Injected: 1",))


def test_a_single_string_is_not_a_tuple_of_addresses() -> None:
    assert "not a single string" in check(to="a@example.com")


def test_at_most_50_recipients() -> None:
    text = check(
        to=tuple(f"t{i}@example.com" for i in range(30)),
        cc=tuple(f"c{i}@example.com" for i in range(20)),
        bcc=("b@example.com",),
    )
    assert "SES accepts at most 50 recipients per message (To+Cc+Bcc); this one has 51" in text


def test_raw_excludes_text_and_html() -> None:
    assert "not both" in check(raw=b"Subject: x\r\n\r\nbody")
    assert "not both" in check(text=None, html="<p>x</p>", raw=b"x")
    assert "raw is empty" in check(text=None, raw=b"")


def test_simple_message_needs_body_and_subject() -> None:
    assert "no body" in check(text=None)
    assert "no body" in check(text="")
    assert "no subject" in check(subject="")


def test_priority_fits_smallint() -> None:
    assert "priority 32768 is out of range; use -32768..32767" in check(priority=32768)
    assert "out of range" in check(priority=-32769)
    assert "must be an integer" in check(priority=1.5)


def test_send_after_needs_a_time_zone() -> None:
    assert "has no time zone" in check(send_after=datetime(2030, 1, 1))


def test_tags() -> None:
    assert "empty name" in check(tags={"": "v"})
    assert "empty value" in check(tags={"k": ""})
    assert "only ASCII letters, digits" in check(tags={"bad key": "v"})
    assert "only ASCII letters, digits" in check(tags={"k": "a.b"})
    assert "reserved" in check(tags={"dispatcher_id": "1"})
    assert "at most 255" in check(tags={"k": "v" * 256})


def test_idempotency_key() -> None:
    assert "use at most 200" in check(idempotency_key="k" * 201)
    assert "idempotency_key is empty" in check(idempotency_key="")


def test_recipient_count() -> None:
    msg = dataclasses.replace(GOOD, cc=("c@example.com",), bcc=("b@x.y", "c@x.y"))
    assert msg.recipient_count == 4


def test_an_already_normal_message_is_accepted_as_it_is_and_others_are_normalised() -> None:
    """The bulk common case costs no copy; anything to normalise still gets it."""
    assert validate_message(GOOD) is GOOD
    loose = dataclasses.replace(GOOD, to=(" A@Example.COM ",), cc=["b@example.com"])  # type: ignore[arg-type]
    valid = validate_message(loose)
    assert (valid.to, valid.cc) == (("A@example.com",), ("b@example.com",))
    tagged = dataclasses.replace(GOOD, tags={"kind": "welcome"})
    assert validate_message(tagged).tags == {"kind": "welcome"}

"""The one validator: addresses normalised once, and what SES can never take refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.validate import (
    MAX_MESSAGE_BYTES,
    check_list_management,
    parse_mailbox,
    suppression_key,
    validate_envelope,
    validate_message,
)
from dispatcher.domain.wire import message_from_json
from dispatcher.errors import InputError
from tests.support.hostile import GOOD, HOSTILE, Hostile

BASE = NewMessage(from_addr="app@example.com", to=("jo@example.com",), subject="Hi", text="t")


def normalised(**changes: Any) -> NewMessage:
    return validate_message(dataclasses.replace(BASE, **changes))


def refused(**changes: Any) -> str:
    with pytest.raises(InputError) as info:
        validate_message(dataclasses.replace(BASE, **changes))
    return str(info.value)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Jane Doe <jane@example.com>", '"Jane Doe" <jane@example.com>'),
        (" jane@example.com ", "jane@example.com"),
        ('"Jane" <JANE@Example.COM>', '"Jane" <JANE@example.com>'),
        ("  Jane   Doe   <jane@example.com> ", '"Jane Doe" <jane@example.com>'),
        ('"Doe, Jane" <jane@example.com>', '"Doe, Jane" <jane@example.com>'),
        (r'"Jane \"JD\" Doe" <jane@example.com>', r'"Jane \"JD\" Doe" <jane@example.com>'),
        ("<jane@example.com>", "jane@example.com"),
        ("jane@Bücher.Example", "jane@xn--bcher-kva.example"),
        ("Jörg <j@example.com>", "=?utf-8?b?SsO2cmc=?= <j@example.com>"),
    ],
)
def test_addresses_are_normalised_once_at_enqueue(given: str, stored: str) -> None:
    msg = normalised(to=(given,), from_addr=given, reply_to=(given,))
    assert msg.to == (stored,) and msg.from_addr == stored and msg.reply_to == (stored,)
    assert validate_message(msg) == msg  # normalising twice changes nothing


def test_every_form_of_one_address_has_one_suppression_key() -> None:
    forms = [
        "jane@example.com",
        "Jane Doe <jane@example.com>",
        " jane@example.com ",
        '"Jane" <JANE@example.com>',
        "JANE@EXAMPLE.COM",
    ]
    assert {suppression_key(f) for f in forms} == {"jane@example.com"}
    for form in forms:
        stored = normalised(to=(form,)).to[0]
        assert suppression_key(stored) == "jane@example.com"
    assert suppression_key("j@Bücher.example") == suppression_key("J@xn--bcher-kva.example")


def test_a_long_non_ascii_display_name_is_split_into_short_encoded_words() -> None:
    formatted = parse_mailbox("to", "Ä" * 60 + " <a@example.com>").formatted
    words = formatted.removesuffix(" <a@example.com>").split(" ")
    assert len(words) > 1 and all(len(w) <= 75 for w in words)


@pytest.mark.parametrize("row", HOSTILE, ids=[h.what for h in HOSTILE])
def test_every_hostile_row_is_refused_with_one_clear_line(row: Hostile) -> None:
    with pytest.raises(InputError) as info:
        message_from_json(row.fields)
    text = str(info.value)
    assert "\n" not in text and "\r" not in text and "\u2028" not in text.encode().decode()


def test_the_good_row_is_accepted() -> None:
    assert message_from_json(GOOD).to == ("jo@example.com",)


def test_what_is_wrong_with_an_address_is_said() -> None:
    assert "something before the @-sign" in refused(to=("@",))
    assert "'a@b@c'" in refused(to=("a@b@c",))
    assert "separate entries" in refused(to=("b@example.com, c@example.com",))
    assert "no '@'" in refused(from_addr="bad")
    assert "cc[1]" in refused(cc=("c@example.com", "nobody"))
    assert "unmatched" in refused(to=("Jane <jane@example.com",))


def test_header_injection_is_refused_in_every_header() -> None:
    assert "line break" in refused(subject="Hi\r\nBcc: victim@evil.com")
    assert "line break" in refused(subject="Hi\u2028there")
    assert "line break" in refused(from_addr="Jane\u2029 <a@example.com>")
    assert "configuration set" in refused(configuration_set="cs\r\nX: 1")
    assert "only ASCII letters" in refused(tags={"a": "b c"})
    assert "NUL" in refused(subject="a\x00b")
    assert "lone surrogate" in refused(text="a\ud800b")
    refused_tab = normalised(subject="a\tb")  # a tab is a header's own whitespace
    assert refused_tab.subject == "a\tb"


def test_ses_limits_are_enforced_at_enqueue() -> None:
    text = refused(text="x" * (MAX_MESSAGE_BYTES + 1))  # + the subject "Hi"
    assert f"{MAX_MESSAGE_BYTES + 3:,} bytes" in text and f"{MAX_MESSAGE_BYTES:,}" in text
    raw = b"Subject: x\r\nX-Long: " + b"y" * 1000 + b"\r\n\r\nbody"
    assert "line of 1008 characters (line 2)" in refused(subject="", text=None, raw=raw)
    assert "a line of" in refused(subject="s" * 1000)
    assert "shorten the display name" in refused(to=("x" * 1000 + " <a@example.com>",))
    assert "this one has 51" in refused(to=tuple(f"r{i}@example.com" for i in range(51)))
    normalised(text="x" * 1000, html="<p>" + "y" * 5000 + "</p>")


def test_a_campaign_envelope_is_checked_like_a_message() -> None:
    env = validate_envelope("News <news@Example.com>", ("r@example.com",), "cs-1", {"a": "b"}, -10)
    assert env.from_addr == '"News" <news@example.com>'
    with pytest.raises(InputError, match="reserved"):
        validate_envelope("a@example.com", tags={"campaign_id": "1"}, reserved_tags={"campaign_id"})
    with pytest.raises(InputError, match="out of range"):
        validate_envelope("a@example.com", priority=99999)


def test_suppressions_from_people_ses_and_feedback_are_keyed_alike() -> None:
    from dispatcher.feedback.events import normalize_address
    from dispatcher.feedback.store import check_address

    for form in ("Jane <JANE@Example.com>", " jane@example.com", '"J" <jane@EXAMPLE.com>'):
        assert check_address(form) == normalize_address(form) == "jane@example.com"
    assert check_address("al@Bücher.example") == "al@xn--bcher-kva.example"
    with pytest.raises(InputError):
        check_address("Jane Doe")


def test_the_fast_path_for_plain_addresses_answers_as_email_validator_does() -> None:
    import random

    from email_validator import EmailNotValidError, validate_email

    from dispatcher.domain.address import _plain_address

    rng = random.Random(13)
    parts = ["a", "Z", "0", "9", "-", "_", "+", "%", ".", "x", "--", "xn--", "..", "b"]
    tlds = ["com", "COM", "c0m", "123", "test", "local", "x", "-x", "x-", "io", "onion", "a1"]
    fast = 0
    for _ in range(6000):
        local = "".join(rng.choices(parts, k=rng.randint(1, 5)))
        labels = [
            "".join(rng.choices(parts, k=rng.randint(1, 4))) for _ in range(rng.randint(0, 2))
        ]
        spec = f"{local}@{'.'.join([*labels, rng.choice(tlds)])}"
        try:
            valid = validate_email(spec, check_deliverability=False, allow_smtputf8=False)
            expected: str | None = valid.ascii_email
        except EmailNotValidError:
            expected = None
        got = _plain_address(spec)
        if got is not None:
            fast += 1
            assert got == expected, spec
    assert fast > 60  # the fast path is taken often enough to matter


def test_a_contact_list_and_topic_follow_ses_name_rules() -> None:
    assert check_list_management(None, None) is None
    assert check_list_management("news", None) == ("news", None)
    assert check_list_management("news-2026", "weekly_digest") == ("news-2026", "weekly_digest")
    cases = [
        (None, "weekly", "needs its contact list"),
        ("", None, "contact list '' is not a valid name"),
        ("news letter", None, "1 to 64 ASCII letters"),
        ("news\r\nX: 1", None, "contact list"),
        ("a" * 65, None, "not a valid name"),
        ("news", "bad topic", "topic 'bad topic' is not a valid name"),
    ]
    for contact_list, topic, said in cases:
        with pytest.raises(InputError) as info:
            check_list_management(contact_list, topic)
        assert said in str(info.value), info.value
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "raw",
    [
        b"a" * 2000,
        b"x\r\n" + b"a" * 999 + b"\nb",
        b"a" * 998 + b"\r\n" + b"b" * 999,
        b"a" * 998,
        b"\r" + b"c" * 1000 + b"\r",
        b"ab\n" * 5 + b"z" * 5000,
    ],
)
def test_the_long_line_check_finds_the_first_line_over_998_characters(raw: bytes) -> None:
    from dispatcher.domain.validate import _LONG_LINE

    lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    first_long = next((line for line in lines if len(line) > 998), None)
    found = _LONG_LINE.search(raw)
    assert (found and found.group()) == first_long


def test_the_shortcut_for_common_messages_answers_as_the_full_checks_do() -> None:
    import random

    from dispatcher.domain.validate import _already_valid, _validate_full

    rng = random.Random(19)
    choices: dict[str, list[Any]] = {
        "from_addr": [
            "a@x.com",
            "a@X.com",
            " a@x.com",
            "Ann <a@x.com>",
            "a@x.test",
            "",
            "a\x00@x.com",
        ],
        "to": [
            ("b@y.org",),
            ("b@Y.org",),
            ["b@y.org"],
            (),
            ("b@y.org",) * 51,
            ("b@y.org", 5),
            ("b@y.org", "c@z.io"),
            ("b@\udc80.org",),
            "b@y.org",
            ("é@y.org",),
        ],
        "cc": [(), ("c@z.io",), []],
        "reply_to": [(), ("r@z.io",)],
        "subject": ["hi", "", "h\ni", "h\ti", "é", "x" * 989, "x" * 990, None, "\x7f"],
        "text": ["body", None, "", "é body", "b\x00", "\udc80", 5],
        "html": [None, "<p>x</p>", ""],
        "tags": [{}, {"a": "b"}, {"a": "b c"}, []],
        "priority": [0, 5, -32768, 32768, True, 1.0],
        "idempotency_key": [None, "k", "", "k" * 200, "k" * 201, "k\x00", "\udc80", 3],
        "configuration_set": [None, "cs-1", "bad cs", ""],
        "template_name": [None, "tpl"],
        "send_after": [None],
    }
    fast = 0
    for _ in range(5000):
        fields = {
            name: rng.choice(values) if rng.random() < 0.3 else values[0]
            for name, values in choices.items()
        }
        msg = NewMessage(**fields)
        try:
            full: NewMessage | str = _validate_full(msg)
        except InputError as exc:
            full = str(exc)
        if _already_valid(msg):
            fast += 1
            assert full is msg, fields
        try:
            got: NewMessage | str = validate_message(msg)
        except InputError as exc:
            got = str(exc)
        assert got == full, fields
    assert fast > 300  # the shortcut is taken often enough to matter

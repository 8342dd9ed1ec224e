"""SES requests as the SES-compatible endpoint reads them into messages (pure), and a message
queued with Template content as the adapter sends it on."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.validate import validate_message
from dispatcher.doors.keys import ApiKey
from dispatcher.doors.ses_requests import (
    SesError,
    foreign_sender,
    raw_message,
    v1_params,
    v1_send_email,
    v1_send_raw_email,
    v2_message,
)
from dispatcher.errors import InputError
from dispatcher.ses.adapter import SesAdapter

TEMPLATE = {"TemplateName": "welcome", "TemplateData": '{"name": "Ana"}'}


def v2(content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "FromEmailAddress": "shop@example.com",
        "Destination": {"ToAddresses": ["a@example.net"]},
        "Content": content,
        **extra,
    }


def test_template_content_is_kept_for_ses_to_render_and_sent_as_a_templated_send_email() -> None:
    msg = validate_message(v2_message(v2({"Template": TEMPLATE})))
    assert (msg.template_name, msg.template_data) == ("welcome", '{"name": "Ana"}')
    assert msg.text is None and msg.html is None and msg.raw is None
    none: Any = None
    outgoing = OutgoingMessage(
        id=7,
        from_addr=msg.from_addr,
        to=msg.to,
        template_name=msg.template_name,
        template_data=msg.template_data,
    )
    request = SesAdapter(none, none, None).build_request(outgoing)
    assert request["Content"] == {"Template": TEMPLATE}  # TemplateData verbatim


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ({"TemplateName": "no spaces allowed"}, "not an SES template name"),
        ({"TemplateName": "x" * 65}, "not an SES template name"),
        ({"TemplateName": "ok", "TemplateData": "[1]"}, "JSON object"),
        ({"TemplateName": "ok", "TemplateData": "{"}, "JSON object"),
    ],
)
def test_a_bad_template_is_refused_before_anything_is_queued(
    template: dict[str, str], error: str
) -> None:
    with pytest.raises(InputError, match=error):
        validate_message(v2_message(v2({"Template": template})))


def test_a_template_message_has_no_content_of_its_own() -> None:
    msg = v2_message(v2({"Template": TEMPLATE}))
    with pytest.raises(InputError, match="no text, html, raw or attachments of its own"):
        validate_message(dataclasses.replace(msg, text="hello"))


@pytest.mark.parametrize(
    "body",
    [
        v2({"Template": {**TEMPLATE, "TemplateArn": "arn:aws:ses:x"}}),
        v2({"Simple": {"Subject": {"Data": "s"}, "Body": {}, "Headers": [{"Name": "X"}]}}),
        v2({"Raw": {"Data": "aGk="}}, FeedbackForwardingEmailAddress="b@example.com"),
        v2({"Raw": {"Data": "not base64!"}}),
        v2({}),
        {"Content": {"Simple": "text"}},
    ],
)
def test_what_the_queue_cannot_carry_is_refused_as_a_bad_request(body: dict[str, Any]) -> None:
    with pytest.raises(SesError) as refused:
        v2_message(body)
    assert refused.value.status == 400
    assert refused.value.v2_code in ("BadRequestException",)


def test_raw_recipients_and_event_headers_come_from_the_message_unless_given() -> None:
    data = (
        b"From: Shop <shop@example.com>\r\nTo: a@example.net\r\nCc: b@example.net\r\n"
        b"Subject: =?utf-8?q?Caf=C3=A9?=\r\nX-SES-CONFIGURATION-SET: cs1\r\n"
        b"X-SES-MESSAGE-TAGS: kind=receipt\r\n\r\nbody\r\n"
    )
    msg = raw_message(data, None, (), (), ())
    assert (msg.from_addr, msg.to, msg.cc, msg.subject) == (
        "Shop <shop@example.com>",
        ("a@example.net",),
        ("b@example.net",),
        "Café",
    )
    assert (msg.configuration_set, dict(msg.tags)) == ("cs1", {"kind": "receipt"})
    given = raw_message(data, "other@example.com", ("c@example.net",), (), ())
    assert (given.from_addr, given.to, given.cc) == ("other@example.com", ("c@example.net",), ())


def test_a_v1_send_email_form_becomes_the_message() -> None:
    params = v1_params(
        b"Action=SendEmail&Source=shop%40example.com"
        b"&Destination.ToAddresses.member.1=a%40example.net"
        b"&Destination.ToAddresses.member.2=b%40example.net"
        b"&Destination.BccAddresses.member.1=c%40example.net"
        b"&Message.Subject.Data=Hi&Message.Body.Text.Data=hello+there"
        b"&Tags.member.1.Name=kind&Tags.member.1.Value=receipt"
    )
    msg = v1_send_email(params)
    assert msg.to == ("a@example.net", "b@example.net") and msg.bcc == ("c@example.net",)
    assert (msg.subject, msg.text, dict(msg.tags)) == ("Hi", "hello there", {"kind": "receipt"})
    with pytest.raises(SesError) as refused:
        v1_send_email({**params, "ReturnPath": "bounces@example.com"})
    assert refused.value.v1_code == "InvalidParameterValue"
    with pytest.raises(SesError) as no_source:
        v1_send_email({k: v for k, v in params.items() if k != "Source"})
    assert no_source.value.v1_code == "MissingParameter"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "Content",
        "Simple",
        "Raw",
        "Template",
        "Data",
        "Subject",
        "Body",
        "Text",
        "Destination",
        "ToAddresses",
        "FromEmailAddress",
        "TemplateName",
        "TemplateData",
        "EmailTags",
    ]
)
_shaped = st.recursive(
    _json, lambda inner: st.dictionaries(_keys, inner, max_size=4), max_leaves=16
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _shaped, max_size=5))
def test_any_v2_body_is_a_message_or_an_ses_error_never_a_crash(body: dict[str, Any]) -> None:
    with contextlib.suppress(SesError, InputError):
        validate_message(v2_message(body))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_v1_form_is_a_message_or_an_ses_error_never_a_crash(form: bytes) -> None:
    for build in (v1_send_email, v1_send_raw_email):
        with contextlib.suppress(SesError, InputError):
            validate_message(build(v1_params(form)))


def test_a_raw_message_may_not_name_a_sender_the_key_may_not_use_in_its_headers() -> None:
    key = ApiKey("DKX", "shop", senders=("*@example.com",))
    data = b"From: ceo@bank.example\r\nTo: a@example.net\r\nSubject: x\r\n\r\nbody\r\n"
    spoofed = raw_message(data, "shop@example.com", (), (), ())
    assert foreign_sender(key, spoofed) == "ceo@bank.example"
    sender = b"From: shop@example.com\r\nSender: x@bank.example\r\nTo: a@example.net\r\n\r\nb\r\n"
    assert foreign_sender(key, raw_message(sender, None, (), (), ())) == "x@bank.example"
    own = raw_message(
        data.replace(b"ceo@bank.example", b"Shop <shop@example.com>"), None, (), (), ()
    )
    assert foreign_sender(key, own) is None
    assert foreign_sender(ApiKey("DKY", "any"), spoofed) is None  # a key for any sender

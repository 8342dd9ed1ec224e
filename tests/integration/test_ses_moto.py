"""SesAdapter against moto in server mode: sends land once, SES's refusals come back classified."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aioboto3
import pytest

from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.outcome import Outcome
from dispatcher.domain.quota import Quota
from dispatcher.ses import SesAdapter
from tests.support.moto import MotoServer

SENDER = "sender@example.com"


@pytest.fixture
async def ses(moto: MotoServer) -> AsyncIterator[SesAdapter]:
    async with SesAdapter.open(moto.ses_settings()) as adapter:
        yield adapter


async def verify(moto: MotoServer, address: str) -> None:
    async with aioboto3.Session().client("ses", **moto.client_kwargs()) as v1:
        await v1.verify_email_identity(EmailAddress=address)


async def test_simple_message_lands_once(moto: MotoServer, ses: SesAdapter) -> None:
    await verify(moto, SENDER)
    msg = OutgoingMessage(
        id=41,
        from_addr=SENDER,
        to=("a@example.net",),
        cc=("b@example.net",),
        subject="Grüße",
        text="plain",
        html="<p>html</p>",
        tags={"campaign": "c7"},
    )

    result = await ses.send(msg)

    assert result.outcome is Outcome.SENT, result
    assert result.ses_message_id
    sent = moto.sent_messages()
    assert len(sent) == 1
    (rec,) = sent
    assert rec["model"] == "Message"
    assert rec["id"] == result.ses_message_id
    assert rec["source"] == SENDER
    assert rec["subject"] == "Grüße"
    assert rec["body"] == "<p>html</p>"  # moto keeps Html when both are given
    assert rec["destinations"] == {
        "ToAddresses": ["a@example.net"],
        "CcAddresses": ["b@example.net"],
    }
    # moto's v2 SendEmail drops EmailTags; test_ses_faults.py checks the dispatcher_id tag on
    # the wire instead.


async def test_raw_message_lands_once(moto: MotoServer, ses: SesAdapter) -> None:
    await verify(moto, SENDER)
    raw = (
        f"From: {SENDER}\r\nTo: r@example.net\r\nSubject: raw one\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n"
    ).encode()

    result = await ses.send(OutgoingMessage(id=42, from_addr=SENDER, raw=raw))

    assert result.outcome is Outcome.SENT, result
    sent = moto.sent_messages()
    assert [(r["model"], r["id"]) for r in sent] == [("RawMessage", result.ses_message_id)]
    assert sent[0]["destinations"] == ["r@example.net"]  # from the headers: no Destination sent
    assert sent[0]["raw_data"] == raw.decode()


async def test_unverified_sender_holds_the_sender_with_ses_reason(
    moto: MotoServer, ses: SesAdapter
) -> None:
    result = await ses.send(
        OutgoingMessage(id=43, from_addr="nobody@example.com", to=("a@example.net",), text="x")
    )

    # The sender's configuration, not this message (issue 15 item 4): held, not failed.
    assert result.outcome is Outcome.CONFIG_ERROR
    assert result.code == "MessageRejected"
    assert result.reason is not None
    assert result.reason.startswith("Email address not verified")
    assert "nobody@example.com" in result.reason
    assert moto.sent_messages() == []


async def test_unparseable_recipient_is_rejected_not_config_error(
    moto: MotoServer, ses: SesAdapter
) -> None:
    # moto answers InvalidParameterValue "Missing domain", as SES does for a bad address: one
    # typo in a list must fail that message, not stop the campaign.
    await verify(moto, SENDER)

    result = await ses.send(OutgoingMessage(id=44, from_addr=SENDER, to=("no-at-sign",), text="x"))

    assert (result.outcome, result.code) == (Outcome.REJECTED, "InvalidParameterValue"), result
    assert moto.sent_messages() == []


async def test_get_send_quota_returns_moto_numbers(moto: MotoServer, ses: SesAdapter) -> None:
    await verify(moto, SENDER)
    assert await ses.get_send_quota() == Quota(200.0, 1.0, 0.0)

    await ses.send(OutgoingMessage(id=45, from_addr=SENDER, to=("a@x.net", "b@x.net"), text="x"))

    quota = await ses.get_send_quota()
    assert quota == Quota(200.0, 1.0, 2.0)  # counts recipients, not calls
    assert not quota.unlimited

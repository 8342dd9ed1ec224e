"""The simulator as strict as a production SES account (issue 15): verified senders, pending
identities until their verification step, existing configuration sets, 1 request/s on
non-send actions, SES's address rules; --lenient and --auto-verify opt out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dispatcher.domain.outcome import Outcome
from dispatcher.ses import SesSettings
from dispatcher.ses.adapter import SesAdapter
from dispatcher.ses.classify import classify_error
from tests.support.sim import SimFactory, SimHandle, clients, error_of

SIMPLE = {"Simple": {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}}
V1_MESSAGE = {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}
NOT_VERIFIED = "Email address is not verified. The following identities failed the check in region "


async def v2_send(v2: Any, source: str, to: str = "a@elsewhere.org", **extra: Any) -> Any:
    return await v2.send_email(
        FromEmailAddress=source, Destination={"ToAddresses": [to]}, Content=SIMPLE, **extra
    )


async def v1_send(v1: Any, source: str, to: str = "a@elsewhere.org", **extra: Any) -> Any:
    return await v1.send_email(
        Source=source, Destination={"ToAddresses": [to]}, Message=V1_MESSAGE, **extra
    )


def raw(headers: str) -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\nbody\r\n").encode()


async def test_an_unverified_sender_is_refused_with_ses_text_v1_and_v2(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess(region="eu-west-1") as sim, clients(sim) as (v1, v2):
        with pytest.raises(ClientError) as v1_exc:
            await v1_send(v1, "news@unverified.org")
        with pytest.raises(ClientError) as v2_exc:
            await v2_send(v2, "News <news@unverified.org>")
        await v2_send(v2, "news@example.com")  # the fixture's identity, set up via the API
    text = NOT_VERIFIED + "EU-WEST-1: news@unverified.org"
    assert error_of(v1_exc) == ("MessageRejected", text, 400)
    assert error_of(v2_exc) == ("MessageRejected", text, 400)
    # The dispatcher's reading without the message: whose identity failed is unknown, so it
    # holds (the adapter, knowing the message, tells sender from sandbox recipient).
    assert classify_error(*error_of(v2_exc)) is Outcome.CONFIG_ERROR


async def test_a_new_identity_is_pending_until_its_verification_step(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess(identities=()) as sim, clients(sim) as (_, v2):
        created = await v2.create_email_identity(EmailIdentity="news.example")
        await v2.put_email_identity_mail_from_attributes(
            EmailIdentity="news.example",
            MailFromDomain="bounce.news.example",
            BehaviorOnMxFailure="USE_DEFAULT_VALUE",
        )
        with pytest.raises(ClientError) as pending_send:
            await v2_send(v2, "me@news.example")
        pending = await v2.get_email_identity(EmailIdentity="news.example")
        verified = await sim.admin("POST", "/_sim/identities/news.example/verify")
        await asyncio.sleep(1.0)  # GetEmailIdentity: once a second
        after = await v2.get_email_identity(EmailIdentity="news.example")
        await v2_send(v2, "me@news.example")
        with pytest.raises(AssertionError, match="404"):
            await sim.admin("POST", "/_sim/identities/nobody.example/verify")
        accepted = len(await sim.messages())
    assert (created["VerifiedForSendingStatus"], created["DkimAttributes"]["Status"]) == (
        False,
        "PENDING",
    )
    assert error_of(pending_send)[:2] == (
        "MessageRejected",
        NOT_VERIFIED + "US-EAST-1: me@news.example",
    )
    assert (pending["VerificationStatus"], pending["VerifiedForSendingStatus"]) == (
        "PENDING",
        False,
    )
    assert pending["DkimAttributes"]["Status"] == "PENDING"
    assert pending["MailFromAttributes"] == {
        "MailFromDomain": "bounce.news.example",
        "MailFromDomainStatus": "PENDING",
        "BehaviorOnMxFailure": "USE_DEFAULT_VALUE",
    }
    assert verified["verification_status"] == "SUCCESS"
    assert (after["VerificationStatus"], after["VerifiedForSendingStatus"]) == ("SUCCESS", True)
    assert after["DkimAttributes"]["Status"] == "SUCCESS"
    assert after["MailFromAttributes"]["MailFromDomainStatus"] == "SUCCESS"
    assert accepted == 1


async def test_an_unknown_configuration_set_is_refused_and_a_created_one_accepted(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess(configuration_sets=("news",)) as sim, clients(sim) as (v1, v2):
        with pytest.raises(ClientError) as v2_exc:
            await v2_send(v2, "me@example.com", ConfigurationSetName="never-created")
        with pytest.raises(ClientError) as v1_exc:
            await v1_send(v1, "me@example.com", ConfigurationSetName="never-created")
        await v2_send(v2, "me@example.com", ConfigurationSetName="news")
        assert [m["configuration_set"] for m in await sim.messages()] == ["news"]
    assert error_of(v2_exc) == (
        "NotFoundException",
        "Configuration set <never-created> does not exist.",
        404,
    )
    assert error_of(v1_exc)[0] == "ConfigurationSetDoesNotExist"


async def test_get_send_quota_answers_once_a_second_and_the_adapter_keeps_to_it(
    sim_process: SimFactory,
) -> None:
    async with sim_process() as sim, clients(sim) as (v1, v2):
        await v1.get_send_quota()
        with pytest.raises(ClientError) as v1_exc:
            await v1.get_send_quota()  # within the same second
        await v2.get_account()  # another action: its own second
        with pytest.raises(ClientError) as v2_exc:
            await v2.get_account()
        await v2_send(v2, "me@example.com")  # sends are not limited this way
        await v2_send(v2, "me@example.com")
        await asyncio.sleep(1.0)
        await v1.get_send_quota()
        settings = SesSettings(
            region="us-east-1",
            endpoint_url=sim.endpoint_url,
            access_key_id="testing",
            secret_access_key="testing",
        )
        await asyncio.sleep(1.0)
        async with SesAdapter.open(settings) as ses:
            quotas = [await ses.get_send_quota() for _ in range(3)]  # paced by the adapter
        stats = await sim.stats()
    assert error_of(v1_exc) == ("Throttling", "Rate exceeded", 400)
    assert error_of(v2_exc) == ("TooManyRequestsException", "Rate exceeded", 429)
    assert classify_error(*error_of(v1_exc)) is Outcome.THROTTLED
    assert [q.max_send_rate for q in quotas] == [14.0] * 3
    assert stats["api_throttled"] == 2 and stats["accepted"] == 2


async def test_raw_messages_headers_are_read_as_ses_reads_them(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess(configuration_sets=("news",)) as sim, clients(sim) as (v1, v2):
        await v1.send_raw_email(
            RawMessage={
                "Data": raw(
                    "From: me@example.com\nTo: a@elsewhere.org\nSubject: s\n"
                    "X-SES-CONFIGURATION-SET: news\nX-SES-MESSAGE-TAGS: campaign=spring, id=7"
                )
            }
        )
        with pytest.raises(ClientError) as unknown_set:
            await v1.send_raw_email(
                RawMessage={
                    "Data": raw(
                        "From: me@example.com\nTo: a@elsewhere.org\nX-SES-CONFIGURATION-SET: nope"
                    )
                }
            )
        with pytest.raises(ClientError) as sender:
            await v2.send_email(
                Content={
                    "Raw": {
                        "Data": raw(
                            "From: me@example.com\nSender: Ann <ann@unverified.org>\n"
                            "To: a@elsewhere.org"
                        )
                    }
                }
            )
        with pytest.raises(ClientError) as return_path:
            await v1_send(v1, "me@example.com", ReturnPath="bounces@unverified.org")
        with pytest.raises(ClientError) as feedback:
            await v2_send(v2, "me@example.com", FeedbackForwardingEmailAddress="fb@unverified.org")
        messages = await sim.messages()
    assert [(m["configuration_set"], m["tags"]) for m in messages] == [
        ("news", {"campaign": "spring", "id": "7"})
    ]
    assert error_of(unknown_set)[:2] == (
        "ConfigurationSetDoesNotExist",
        "Configuration set <nope> does not exist.",
    )
    assert error_of(sender)[1] == NOT_VERIFIED + "US-EAST-1: ann@unverified.org"
    assert error_of(return_path)[1] == NOT_VERIFIED + "US-EAST-1: bounces@unverified.org"
    assert error_of(feedback)[1] == NOT_VERIFIED + "US-EAST-1: fb@unverified.org"


@pytest.mark.parametrize(
    ("address", "text"),
    [
        ("user@localhost", "Missing domain"),
        ("francois@brave.com.", "Missing domain"),
        ("dån@example.com", "Local address contains control or whitespace"),
    ],
)
async def test_ses_address_rules_refuse_recipients_and_senders(
    sim: SimHandle, address: str, text: str
) -> None:
    async with clients(sim) as (v1, _):
        with pytest.raises(ClientError) as recipient:
            await v1_send(v1, "me@example.com", to=address)
        with pytest.raises(ClientError) as sender:
            await v1_send(v1, address)
    assert error_of(recipient) == ("InvalidParameterValue", text, 400)
    assert error_of(sender) == ("InvalidParameterValue", text, 400)
    assert await sim.messages() == []


async def test_lenient_and_auto_verify_flags_reach_the_process(sim_process: SimFactory) -> None:
    async with sim_process(auto_verify=True, identities=()) as sim, clients(sim) as (v1, v2):
        await v2.create_email_identity(EmailIdentity="news.example")
        await v2_send(v2, "me@news.example")  # verified at once: no verify step
        with pytest.raises(ClientError):
            await v2_send(v2, "me@unverified.org")
    async with sim_process(lenient=True, identities=()) as sim, clients(sim) as (v1, v2):
        await v2_send(v2, "me@unverified.org", ConfigurationSetName="never-created")
        await v1.get_send_quota()
        await v1.get_send_quota()  # no 1 request/s
        assert len(await sim.messages()) == 1

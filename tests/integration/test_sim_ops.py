"""Every simulated SES operation and every account-model error, through aioboto3 (v1 and v2).

Each error test also runs the answer through the dispatcher's classifier, so a code or text the
simulator invents cannot drift away from what the adapter reacts to.
"""

from __future__ import annotations

import asyncio
import base64
import json
from contextlib import AbstractAsyncContextManager
from typing import Any

import aioboto3
import aiohttp
import pytest
from botocore.exceptions import ClientError

from dispatcher.domain.outcome import Outcome
from dispatcher.ses import SesSettings
from dispatcher.ses.adapter import SesAdapter
from dispatcher.ses.classify import Identities, classify_bulk_status, classify_error
from tests.support.sim import Paced, SimFactory, SimHandle, clients, error_of

SIMPLE = {"Simple": {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}}
V1_MESSAGE = {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}
PAUSED_TEXT = (
    "Sending paused for this account. For more information, please check the inbox of the "
    "email address associated with your AWS account."
)


def paced(sim: SimHandle) -> AbstractAsyncContextManager[tuple[Any, Any]]:
    """v1 and v2 clients that keep to SES's 1 request/s on non-send actions."""
    return clients(sim, paced=True)


def outcome_of(
    exc: pytest.ExceptionInfo[ClientError], identities: Identities | None = None
) -> Outcome:
    """The dispatcher's reading; `identities`: the message's (sender vs recipient)."""
    return classify_error(*error_of(exc), identities)


async def v1_send(v1: Any, *to: str, source: str = "s@example.com", **extra: Any) -> Any:
    return await v1.send_email(
        Source=source, Destination={"ToAddresses": list(to)}, Message=V1_MESSAGE, **extra
    )


async def v2_send(v2: Any, *to: str, source: str = "s@example.com", **extra: Any) -> Any:
    return await v2.send_email(
        FromEmailAddress=source, Destination={"ToAddresses": list(to)}, Content=SIMPLE, **extra
    )


# -- identities ------------------------------------------------------------------------------


async def test_v1_verify_identities_pending_until_verified_and_list_them(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess(identities=()) as sim, paced(sim) as (v1, _):
        await v1.verify_email_identity(EmailAddress="Ann@Example.org")
        token = (await v1.verify_domain_identity(Domain="example.com"))["VerificationToken"]
        everything = (await v1.list_identities())["Identities"]
        pending = await v1.get_identity_verification_attributes(
            Identities=["ann@example.org", "example.com", "nobody.org"]
        )
        await sim.admin("POST", "/_sim/identities/example.com/verify")
        listed = await sim.admin("GET", "/_sim/identities")
        addresses = (await v1.list_identities(IdentityType="EmailAddress"))["Identities"]
        verified = await v1.get_identity_verification_attributes(Identities=["example.com"])
    assert len(base64.b64decode(token)) == 32
    assert everything == ["ann@example.org", "example.com"]
    assert addresses == ["ann@example.org"]
    assert {k: v["VerificationStatus"] for k, v in pending["VerificationAttributes"].items()} == {
        "ann@example.org": "Pending",
        "example.com": "Pending",
    }
    assert verified["VerificationAttributes"]["example.com"]["VerificationStatus"] == "Success"
    assert [(i["identity"], i["type"], i["verified"]) for i in listed] == [
        ("ann@example.org", "EMAIL_ADDRESS", False),
        ("example.com", "DOMAIN", True),
    ]


async def test_v2_create_and_get_email_identity_with_auto_verify(
    sim_inprocess: SimFactory,
) -> None:
    async with (
        sim_inprocess(auto_verify=True, identities=()) as sim,
        paced(sim) as (_, v2),
    ):
        created = await v2.create_email_identity(EmailIdentity="example.com")
        got = await v2.get_email_identity(EmailIdentity="example.com")
        await v2_send(v2, "a@x.org")  # verified at once: no verify step
        address = await v2.create_email_identity(EmailIdentity="me@other.org")
        with pytest.raises(ClientError) as missing:
            await v2.get_email_identity(EmailIdentity="nobody.org")
        with pytest.raises(ClientError) as again:
            await v2.create_email_identity(EmailIdentity="example.com")
        assert len(await sim.messages()) == 1
    assert (created["IdentityType"], created["VerifiedForSendingStatus"]) == ("DOMAIN", True)
    assert created["DkimAttributes"]["Status"] == "SUCCESS"
    assert (address["IdentityType"], address["VerifiedForSendingStatus"]) == (
        "EMAIL_ADDRESS",
        True,
    )
    assert got["VerificationStatus"] == "SUCCESS" and got["VerifiedForSendingStatus"]
    assert error_of(again)[0] == "AlreadyExistsException"
    assert error_of(missing) == (
        "NotFoundException",
        "Email identity nobody.org does not exist.",
        404,
    )


# -- templates -------------------------------------------------------------------------------


async def test_v1_template_and_send_templated_email(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim, paced(sim) as (v1, _):
        await v1.create_template(
            Template={
                "TemplateName": "welcome",
                "SubjectPart": "Hi {{name}}",
                "TextPart": "Dear {{name}}, your code is {{ code }}.",
                "HtmlPart": "<p>{{name}}</p>",
            }
        )
        got = (await v1.get_template(TemplateName="welcome"))["Template"]
        sent = await v1.send_templated_email(
            Source="s@example.com",
            Destination={"ToAddresses": ["a@example.com"]},
            Template="welcome",
            TemplateData=json.dumps({"name": "Ann", "code": 42}),
            Tags=[{"Name": "k", "Value": "v"}],
        )
        messages = await sim.messages(body=True)
    assert got["SubjectPart"] == "Hi {{name}}" and got["HtmlPart"] == "<p>{{name}}</p>"
    assert [m["message_id"] for m in messages] == [sent["MessageId"]]
    msg = messages[0]
    assert (msg["subject"], msg["text"], msg["html"]) == (
        "Hi Ann",
        "Dear Ann, your code is 42.",
        "<p>Ann</p>",
    )
    assert msg["template"] == "welcome" and msg["tags"] == {"k": "v"}


async def test_v2_template_create_get_and_send_stored_and_inline(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim, paced(sim) as (_, v2):
        await v2.create_email_template(
            TemplateName="t1",
            TemplateContent={"Subject": "Order {{id}}", "Text": "Shipped: {{id}}"},
        )
        got = await v2.get_email_template(TemplateName="t1")
        stored = await v2.send_email(
            FromEmailAddress="s@example.com",
            Destination={"ToAddresses": ["a@example.com"]},
            Content={"Template": {"TemplateName": "t1", "TemplateData": '{"id": "7"}'}},
        )
        inline = await v2.send_email(
            FromEmailAddress="s@example.com",
            Destination={"ToAddresses": ["b@example.com"]},
            Content={
                "Template": {
                    "TemplateContent": {"Subject": "Inline {{x}}", "Html": "<b>{{x}}</b>"},
                    "TemplateData": '{"x": "y"}',
                }
            },
        )
        with pytest.raises(ClientError) as missing:
            await v2.get_email_template(TemplateName="nope")
        messages = await sim.messages(body=True)
    assert got["TemplateContent"] == {"Subject": "Order {{id}}", "Text": "Shipped: {{id}}"}
    assert [m["message_id"] for m in messages] == [stored["MessageId"], inline["MessageId"]]
    assert (messages[0]["subject"], messages[0]["text"]) == ("Order 7", "Shipped: 7")
    assert (messages[1]["subject"], messages[1]["html"]) == ("Inline y", "<b>y</b>")
    assert error_of(missing) == ("NotFoundException", "Template nope does not exist.", 404)


async def test_v2_templated_send_records_its_headers(sim_inprocess: SimFactory) -> None:
    """Template content's Headers (sesv2 model: Template.Headers) go out with the mail, as
    Simple's do: an SES-template campaign's List-Unsubscribe rides on them."""
    headers = [
        {"Name": "List-Unsubscribe", "Value": "<https://news.example/u?e=a%40example.com>"},
        {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
    ]
    async with sim_inprocess() as sim, paced(sim) as (_, v2):
        await v2.create_email_template(
            TemplateName="t1", TemplateContent={"Subject": "Hi {{n}}", "Text": "Hello {{n}}"}
        )
        await v2.send_email(
            FromEmailAddress="s@example.com",
            Destination={"ToAddresses": ["a@example.com"]},
            Content={
                "Template": {"TemplateName": "t1", "TemplateData": '{"n": "A"}', "Headers": headers}
            },
        )
        [message] = await sim.messages()
    assert message["subject"] == "Hi A"
    assert message["headers"] == [[h["Name"], h["Value"]] for h in headers]


async def test_template_missing_v1_and_v2(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim, paced(sim) as (v1, v2):
        with pytest.raises(ClientError) as v1_exc:
            await v1.send_templated_email(
                Source="s@example.com",
                Destination={"ToAddresses": ["a@example.com"]},
                Template="gone",
                TemplateData="{}",
            )
        with pytest.raises(ClientError) as v2_exc:
            await v2.send_email(
                FromEmailAddress="s@example.com",
                Destination={"ToAddresses": ["a@example.com"]},
                Content={"Template": {"TemplateName": "gone", "TemplateData": "{}"}},
            )
        stats = await sim.stats()
    assert error_of(v1_exc) == ("TemplateDoesNotExist", "Template gone does not exist.", 400)
    assert error_of(v2_exc) == ("NotFoundException", "Template gone does not exist.", 404)
    assert outcome_of(v1_exc) is outcome_of(v2_exc) is Outcome.CONFIG_ERROR
    assert stats["accepted"] == 0 and stats["refused_account"] == 2


# -- bulk ------------------------------------------------------------------------------------


async def test_v1_send_bulk_templated_email_has_a_status_per_destination(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess(max_send_rate=2) as sim, paced(sim) as (v1, _):
        await v1.create_template(
            Template={"TemplateName": "b", "SubjectPart": "For {{who}}", "TextPart": "x"}
        )
        result = await v1.send_bulk_templated_email(
            Source="s@example.com",
            Template="b",
            DefaultTemplateData='{"who": "everyone"}',
            DefaultTags=[{"Name": "campaign", "Value": "c1"}],
            Destinations=[
                {
                    "Destination": {"ToAddresses": ["a@example.com"]},
                    "ReplacementTemplateData": '{"who": "Ann"}',
                    "ReplacementTags": [{"Name": "row", "Value": "1"}],
                },
                {"Destination": {"ToAddresses": ["not-an-address"]}},
                {"Destination": {"ToAddresses": ["c@example.com"]}},
                {"Destination": {"ToAddresses": ["d@example.com"]}},
            ],
        )
        messages = await sim.messages()
    statuses = result["Status"]
    assert [s["Status"] for s in statuses] == [
        "Success",
        "InvalidParameterValue",
        "Success",
        "AccountThrottled",
    ]
    assert statuses[1]["Error"] == "Missing final '@domain'"
    assert statuses[3]["Error"] == "Maximum sending rate exceeded."
    assert [m["message_id"] for m in messages] == [
        statuses[0]["MessageId"],
        statuses[2]["MessageId"],
    ]
    assert messages[0]["subject"] == "For Ann" and messages[1]["subject"] == "For everyone"
    assert messages[0]["tags"] == {"campaign": "c1", "row": "1"}


BULK_ENTRIES: list[dict[str, Any]] = [
    {
        "Destination": {"ToAddresses": ["a@example.com"]},
        "ReplacementEmailContent": {
            "ReplacementTemplate": {"ReplacementTemplateData": '{"n": "Ann"}'}
        },
    },
    {"Destination": {"ToAddresses": ["stranger@elsewhere.org"]}},
    {"Destination": {"ToAddresses": ["bad address@example.com"]}},
    {"Destination": {"ToAddresses": ["success@simulator.amazonses.com"]}},
    {"Destination": {"ToAddresses": ["c@example.com"]}},
]


async def test_v2_send_bulk_email_has_a_result_per_entry(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess(max_send_rate=2, sandbox=True) as sim,
        paced(sim) as (_, v2),
    ):
        await sim.verify("example.com")
        await v2.create_email_template(
            TemplateName="b", TemplateContent={"Subject": "Hi {{n}}", "Text": "t"}
        )
        result = await v2.send_bulk_email(
            FromEmailAddress="s@example.com",
            DefaultContent={"Template": {"TemplateName": "b", "TemplateData": '{"n": "all"}'}},
            DefaultEmailTags=[{"Name": "campaign", "Value": "c2"}],
            BulkEmailEntries=BULK_ENTRIES,
        )
        messages = await sim.messages()
    entries = result["BulkEmailEntryResults"]
    assert [e["Status"] for e in entries] == [
        "SUCCESS",
        "MESSAGE_REJECTED",
        "INVALID_PARAMETER",
        "SUCCESS",
        "ACCOUNT_THROTTLED",
    ]
    assert entries[1]["Error"] == (
        "Email address is not verified. The following identities failed the check in region "
        "US-EAST-1: stranger@elsewhere.org"
    )
    # Each entry as the dispatcher reads it, knowing whom the entry is from and to.
    whom = [
        Identities(frozenset({"s@example.com"}), frozenset(entry["Destination"]["ToAddresses"]))
        for entry in BULK_ENTRIES
    ]
    assert [
        classify_bulk_status(e["Status"], e.get("Error"), w)
        for e, w in zip(entries, whom, strict=True)
    ] == [
        Outcome.SENT,
        Outcome.REJECTED,
        Outcome.REJECTED,
        Outcome.SENT,
        Outcome.THROTTLED,
    ]
    assert [m["message_id"] for m in messages] == [entries[0]["MessageId"], entries[3]["MessageId"]]
    assert messages[0]["subject"] == "Hi Ann" and messages[0]["tags"] == {"campaign": "c2"}


async def test_bulk_calls_fail_whole_for_shared_problems(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim, paced(sim) as (v1, v2):
        with pytest.raises(ClientError) as v1_exc:
            await v1.send_bulk_templated_email(
                Source="s@example.com",
                Template="missing",
                DefaultTemplateData="{}",
                Destinations=[{"Destination": {"ToAddresses": ["a@example.com"]}}],
            )
        with pytest.raises(ClientError) as v2_exc:
            await v2.send_bulk_email(
                FromEmailAddress="s@example.com",
                DefaultContent={"Template": {"TemplateName": "missing", "TemplateData": "{}"}},
                BulkEmailEntries=[{"Destination": {"ToAddresses": ["a@example.com"]}}] * 51,
            )
    assert error_of(v1_exc)[0] == "TemplateDoesNotExist"
    assert error_of(v2_exc)[:2] == ("BadRequestException", "BulkEmailEntries count exceeds 50.")


# -- account state ---------------------------------------------------------------------------


async def test_account_paused_v1_and_v2_then_resumed(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim, paced(sim) as (v1, v2):
        await v1.update_account_sending_enabled(Enabled=False)
        enabled = (await v1.get_account_sending_enabled())["Enabled"]
        account = await v2.get_account()
        with pytest.raises(ClientError) as v1_exc:
            await v1_send(v1, "a@example.com")
        with pytest.raises(ClientError) as v2_exc:
            await v2_send(v2, "a@example.com")
        await v2.put_account_sending_attributes(SendingEnabled=True)
        await v2_send(v2, "a@example.com")
    assert enabled is False and account["SendingEnabled"] is False
    assert error_of(v1_exc) == ("AccountSendingPausedException", PAUSED_TEXT, 400)
    assert error_of(v2_exc) == ("SendingPausedException", PAUSED_TEXT, 400)
    assert outcome_of(v1_exc) is outcome_of(v2_exc) is Outcome.ACCOUNT_PAUSED


async def test_account_suspended_v1_and_v2(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim, paced(sim) as (v1, v2):
        state = await sim.admin("POST", "/_sim/account", {"enforcement_status": "SHUTDOWN"})
        account = await v2.get_account()
        with pytest.raises(ClientError) as v1_exc:
            await v1_send(v1, "a@example.com")
        with pytest.raises(ClientError) as v2_exc:
            await v2_send(v2, "a@example.com")
    assert state["enforcement_status"] == "SHUTDOWN"
    assert account["EnforcementStatus"] == "SHUTDOWN" and account["SendingEnabled"] is False
    assert error_of(v1_exc)[0] == "AccountSendingPausedException"
    assert error_of(v2_exc)[:2] == (
        "AccountSuspendedException",
        "Your account has been shut down because of issues related to your email sending "
        "practices.",
    )
    assert outcome_of(v1_exc) is outcome_of(v2_exc) is Outcome.ACCOUNT_PAUSED


async def test_configuration_set_missing_when_required(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess(require_configuration_sets=True) as sim,
        paced(sim) as (v1, v2),
    ):
        with pytest.raises(ClientError) as v1_exc:
            await v1_send(v1, "a@example.com", ConfigurationSetName="nope")
        with pytest.raises(ClientError) as v2_exc:
            await v2_send(v2, "a@example.com", ConfigurationSetName="nope")
        await v1.create_configuration_set(ConfigurationSet={"Name": "one"})
        await v2.create_configuration_set(ConfigurationSetName="two")
        with pytest.raises(ClientError) as again:
            await v2.create_configuration_set(ConfigurationSetName="one")
        await v1_send(v1, "a@example.com", ConfigurationSetName="one")
        await v2_send(v2, "a@example.com", ConfigurationSetName="two")
        sets = await sim.admin("GET", "/_sim/configuration-sets")
    assert error_of(v1_exc) == (
        "ConfigurationSetDoesNotExist",
        "Configuration set <nope> does not exist.",
        400,
    )
    assert error_of(v2_exc) == (
        "NotFoundException",
        "Configuration set <nope> does not exist.",
        404,
    )
    assert outcome_of(v1_exc) is outcome_of(v2_exc) is Outcome.CONFIG_ERROR
    assert error_of(again)[0] == "AlreadyExistsException"
    assert [s["name"] for s in sets] == ["one", "two"]


async def test_lenient_accepts_unknown_configuration_sets_and_unverified_senders(
    sim_inprocess: SimFactory,
) -> None:
    async with (
        sim_inprocess(lenient=True, identities=()) as sim,
        paced(sim) as (v1, v2),
    ):
        await v2_send(v2, "a@example.com", ConfigurationSetName="never-created")
        await v1_send(v1, "a@example.com", source="nobody@unverified.org")
        async with aioboto3.Session().client("ses", **sim.client_kwargs()) as unpaced:
            quotas = [await unpaced.get_send_quota() for _ in range(3)]  # no 1 request/s
        messages = await sim.messages()
    assert messages[0]["configuration_set"] == "never-created"
    assert messages[1]["from"] == "nobody@unverified.org"
    assert len(quotas) == 3


async def test_configuration_set_paused_v1_and_v2(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim, paced(sim) as (v1, v2):
        await v1.create_configuration_set(ConfigurationSet={"Name": "news"})
        await v1.update_configuration_set_sending_enabled(
            ConfigurationSetName="news", Enabled=False
        )
        with pytest.raises(ClientError) as v1_exc:
            await v1_send(v1, "a@example.com", ConfigurationSetName="news")
        with pytest.raises(ClientError) as v2_exc:
            await v2_send(v2, "a@example.com", ConfigurationSetName="news")
        await v2_send(v2, "a@example.com")  # the account itself still sends
        await v2.put_configuration_set_sending_options(
            ConfigurationSetName="news", SendingEnabled=True
        )
        await v2_send(v2, "a@example.com", ConfigurationSetName="news")
    assert error_of(v1_exc) == (
        "ConfigurationSetSendingPausedException",
        "Sending is paused for configuration set <news>.",
        400,
    )
    assert error_of(v2_exc) == (
        "SendingPausedException",
        "Sending is paused for configuration set <news>.",
        400,
    )
    # Only that set's mail is held, not the whole account's.
    assert outcome_of(v1_exc) is outcome_of(v2_exc) is Outcome.CONFIG_ERROR


async def test_mail_from_domain_not_verified_v1_and_v2(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess(identities=("unrelated.org",)) as sim,
        paced(sim) as (v1, v2),
    ):
        await v2.create_email_identity(EmailIdentity="example.com")
        await v2.put_email_identity_mail_from_attributes(
            EmailIdentity="example.com",
            MailFromDomain="fail.example.com",
            BehaviorOnMxFailure="REJECT_MESSAGE",
        )
        pending = await v2.get_email_identity(EmailIdentity="example.com")
        # The DNS step: the identity's records are found, the MAIL FROM's MX is not.
        await sim.admin("POST", "/_sim/identities/example.com/verify")
        identity = await v2.get_email_identity(EmailIdentity="example.com")
        with pytest.raises(ClientError) as v1_exc:
            await v1_send(v1, "a@elsewhere.org", source="news@example.com")
        with pytest.raises(ClientError) as v2_exc:
            await v2_send(v2, "a@elsewhere.org", source="news@example.com")
        await v2_send(v2, "a@elsewhere.org", source="me@unrelated.org")  # other senders go
    assert pending["MailFromAttributes"] == {
        "MailFromDomain": "fail.example.com",
        "MailFromDomainStatus": "PENDING",
        "BehaviorOnMxFailure": "REJECT_MESSAGE",
    }
    assert (pending["VerificationStatus"], pending["DkimAttributes"]["Status"]) == (
        "PENDING",
        "PENDING",
    )
    assert not pending["VerifiedForSendingStatus"] and identity["VerifiedForSendingStatus"]
    assert identity["MailFromAttributes"]["MailFromDomainStatus"] == "FAILED"
    text = "The MAIL FROM domain fail.example.com is not verified (no MX record found)."
    assert error_of(v1_exc) == ("MailFromDomainNotVerifiedException", text, 400)
    assert error_of(v2_exc) == ("MailFromDomainNotVerifiedException", text, 400)
    assert outcome_of(v1_exc) is outcome_of(v2_exc) is Outcome.CONFIG_ERROR


# -- sandbox and verification ----------------------------------------------------------------


async def test_sandbox_requires_verified_sender_and_recipients(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess(sandbox=True, max_send_rate=100, identities=()) as sim,
        paced(sim) as (v1, v2),
    ):
        with pytest.raises(ClientError) as sender:
            await v2_send(v2, "a@example.com", source="me@example.com")
        await sim.verify("example.com")  # a domain covers its addresses
        await v2_send(v2, "a@example.com", source="me@example.com")
        await v2_send(v2, "x@sub.example.com", source="me@example.com")  # and its subdomains
        await v2_send(v2, "bounce+1@simulator.amazonses.com", source="me@example.com")
        with pytest.raises(ClientError) as v2_exc:
            await v2_send(v2, "a@example.com", "b@elsewhere.org", source="me@example.com")
        with pytest.raises(ClientError) as v1_exc:
            await v1_send(v1, "b@elsewhere.org", source="me@example.com")
        await v1.verify_email_identity(EmailAddress="b@elsewhere.org")
        await sim.admin("POST", "/_sim/identities/b@elsewhere.org/verify")  # the link clicked
        await v1_send(v1, "b@elsewhere.org", source="me@example.com")
        account = await v2.get_account()
    prefix = "Email address is not verified. The following identities failed the check in region "
    assert error_of(sender) == (
        "MessageRejected",
        prefix + "US-EAST-1: me@example.com, a@example.com",  # every identity that failed
        400,
    )
    assert error_of(v2_exc) == ("MessageRejected", prefix + "US-EAST-1: b@elsewhere.org", 400)
    assert error_of(v1_exc) == ("MessageRejected", prefix + "US-EAST-1: b@elsewhere.org", 400)
    # A sandbox recipient not verified: this message fails (the sender was verified).
    whom = Identities(
        frozenset({"me@example.com"}), frozenset({"a@example.com", "b@elsewhere.org"})
    )
    assert outcome_of(v1_exc, whom) is outcome_of(v2_exc, whom) is Outcome.REJECTED
    assert account["ProductionAccessEnabled"] is False


async def test_production_requires_a_verified_sender_by_default(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess(identities=()) as sim, paced(sim) as (_, v2):
        with pytest.raises(ClientError) as exc:
            await v2_send(v2, "anyone@elsewhere.org", source="me@example.com")
        await sim.verify("me@example.com")
        await v2_send(v2, "anyone@elsewhere.org", source="Me <me@example.com>")
    assert error_of(exc)[0] == "MessageRejected" and "me@example.com" in error_of(exc)[1]


async def test_sandbox_flag_applies_sandbox_limits(sim_process: SimFactory) -> None:
    async with sim_process(sandbox=True) as sim, paced(sim) as (v1, v2):
        quota = await v1.get_send_quota()
        account = await v2.get_account()
        config = await sim.config()
    assert (quota["Max24HourSend"], quota["MaxSendRate"]) == (200.0, 1.0)
    assert account["ProductionAccessEnabled"] is False and config["sandbox"] is True


# -- suppression list ------------------------------------------------------------------------


async def test_v2_put_and_get_suppressed_destination(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim, paced(sim) as (_, v2):
        await v2.put_suppressed_destination(EmailAddress="Gone@Example.com", Reason="BOUNCE")
        got = await v2.get_suppressed_destination(EmailAddress="gone@example.com")
        with pytest.raises(ClientError) as missing:
            await v2.get_suppressed_destination(EmailAddress="here@example.com")
        with pytest.raises(ClientError) as bad:
            await v2.put_suppressed_destination(EmailAddress="x@example.com", Reason="SPAM")
        listed = await sim.admin("GET", "/_sim/suppressed")
    found = got["SuppressedDestination"]
    assert (found["EmailAddress"], found["Reason"]) == ("gone@example.com", "BOUNCE")
    assert found["LastUpdateTime"].year >= 2024
    assert error_of(missing)[0] == "NotFoundException" and error_of(missing)[2] == 404
    assert error_of(bad)[0] == "BadRequestException"
    assert listed == [{"address": "gone@example.com", "reason": "BOUNCE"}]


async def test_v2_list_suppressed_destinations_pages_and_filters(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess() as sim, paced(sim) as (_, v2):
        for i in range(5):
            reason = "COMPLAINT" if i == 2 else "BOUNCE"
            await v2.put_suppressed_destination(EmailAddress=f"r{i}@example.com", Reason=reason)
        async with SesAdapter.open(
            SesSettings(
                region="us-east-1",
                endpoint_url=sim.endpoint_url,
                access_key_id="testing",
                secret_access_key="testing",
            )
        ) as ses:
            paged = [item async for item in ses.list_suppressed(page_size=2)]  # 3 pages
        await asyncio.sleep(1.0)  # the adapter's last page was just now: SES's 1 request/s
        complaints = await v2.list_suppressed_destinations(Reasons=["COMPLAINT"])
        with pytest.raises(ClientError) as bad:
            await v2.list_suppressed_destinations(PageSize=1001)
        with pytest.raises(ClientError) as bad_token:
            await v2.list_suppressed_destinations(NextToken="not-a-token")
    assert error_of(bad_token) == (
        "InvalidNextTokenException",
        "Invalid NextToken not-a-token.",
        400,
    )
    assert paged == [(f"r{i}@example.com", "COMPLAINT" if i == 2 else "BOUNCE") for i in range(5)]
    summaries = complaints["SuppressedDestinationSummaries"]
    assert [s["EmailAddress"] for s in summaries] == ["r2@example.com"]
    assert "NextToken" not in complaints
    assert error_of(bad)[0] == "BadRequestException"


# -- message size ----------------------------------------------------------------------------


# aiohttp's client warns that a body this large blocks its loop: true, and fine in a test.
@pytest.mark.filterwarnings("ignore:Sending a large body directly")
async def test_message_size_limits_10_mb_v1_and_40_mb_v2(sim_inprocess: SimFactory) -> None:
    big_v1 = b"From: s@example.com\r\nTo: a@example.com\r\n\r\n" + b"x" * (10 * 1024 * 1024)
    async with sim_inprocess() as sim, paced(sim) as (v1, _):
        with pytest.raises(ClientError) as v1_exc:
            await v1.send_raw_email(RawMessage={"Data": big_v1})
        # The same size is fine for v2 (40 MB); above 40 MB it is refused.
        ok_raw = base64.b64encode(big_v1).decode()
        too_big = base64.b64encode(b"x" * (40 * 1024 * 1024 + 1)).decode()
        async with aiohttp.ClientSession() as http:
            url = sim.endpoint_url + "/v2/email/outbound-emails"
            async with http.post(url, json={"Content": {"Raw": {"Data": ok_raw}}}) as r:
                ok = r.status
            async with http.post(url, json={"Content": {"Raw": {"Data": too_big}}}) as r:
                refused = (r.status, r.headers["x-amzn-ErrorType"], await r.json())
    assert error_of(v1_exc) == (
        "InvalidParameterValue",
        "Message length is more than 10485760 bytes.",
        400,
    )
    assert ok == 200
    assert refused == (
        400,
        "BadRequestException",
        {"message": "Message length is more than 41943040 bytes."},
    )


# -- admin -----------------------------------------------------------------------------------


async def test_admin_rejects_bad_input_naming_the_field(sim: SimHandle) -> None:
    async with aiohttp.ClientSession() as http:
        checks = [
            ("/_sim/account", {"enforcement_status": "ASLEEP"}, "enforcement_status"),
            ("/_sim/account", {"sending_enabled": "no"}, "sending_enabled"),
            ("/_sim/identities", {"identity": ""}, "identity"),
            ("/_sim/identities", {"identity": "a.com", "colour": 1}, "colour"),
            ("/_sim/subscriptions", {"endpoint": "ftp://x"}, "endpoint"),
            ("/_sim/config", {"latency_model": "gaussian"}, "latency_model"),
            ("/_sim/config", {"fault_500_rate": 2}, "fault_500_rate"),
            ("/_sim/config", {"sandbox": 1}, "sandbox"),
            ("/_sim/storm", {"seconds": -1}, "seconds"),
        ]
        for path, body, field in checks:
            async with http.post(sim.endpoint_url + path, json=body) as r:
                assert r.status == 400, (path, body)
                assert field in (await r.json())["error"], (path, body)


async def test_admin_sets_up_the_account_that_the_api_then_sees(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess(require_configuration_sets=True) as sim,
        paced(sim) as (v1, v2),
    ):
        await sim.admin(
            "POST", "/_sim/templates", {"name": "t", "subject": "S {{x}}", "text": "{{x}}"}
        )
        await sim.admin("POST", "/_sim/configuration-sets", {"name": "cs", "sending_enabled": True})
        await sim.admin("POST", "/_sim/identities", {"identity": "example.com"})
        template = (await v1.get_template(TemplateName="t"))["Template"]
        identity = await v2.get_email_identity(EmailIdentity="example.com")
        await v2.send_email(
            FromEmailAddress="s@example.com",
            Destination={"ToAddresses": ["a@example.com"]},
            Content={"Template": {"TemplateName": "t", "TemplateData": '{"x": "1"}'}},
            ConfigurationSetName="cs",
        )
        templates = await sim.admin("GET", "/_sim/templates")
        await sim.admin("POST", "/_sim/reset?account=1")
        after = (
            (await v1.list_identities())["Identities"],
            await sim.admin("GET", "/_sim/templates"),
        )
    assert template["SubjectPart"] == "S {{x}}" and identity["IdentityType"] == "DOMAIN"
    assert [t["name"] for t in templates] == ["t"]
    assert after == ([], [])


async def test_malformed_v2_requests_name_the_problem(sim: SimHandle) -> None:
    url = sim.endpoint_url
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/v2/email/outbound-bulk-emails", data=b"[1]") as r:
            bulk = (r.status, r.headers["x-amzn-ErrorType"], await r.json())
        bad_data = {
            "FromEmailAddress": "s@example.com",
            "Destination": {"ToAddresses": ["a@example.com"]},
            "Content": {"Template": {"TemplateContent": {"Subject": "x"}, "TemplateData": "[]"}},
        }
        async with http.post(url + "/v2/email/outbound-emails", json=bad_data) as r:
            template = (r.status, r.headers["x-amzn-ErrorType"], await r.json())
        async with http.post(url + "/v2/email/identities", json={}) as r:
            identity = (r.status, await r.json())
    assert bulk == (
        400,
        "BadRequestException",
        {"message": "The request body must be a JSON object."},
    )
    assert template[:2] == (400, "BadRequestException")
    assert identity == (400, {"message": "Missing required parameter EmailIdentity."})


async def test_update_email_template_replaces_the_content(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim:
        session = aioboto3.Session()
        async with session.client("sesv2", **sim.client_kwargs()) as client:
            v2 = Paced(client)
            await v2.create_email_template(
                TemplateName="t", TemplateContent={"Subject": "old", "Text": "x"}
            )
            await v2.update_email_template(
                TemplateName="t", TemplateContent={"Subject": "new {{a}}", "Text": "y"}
            )
            got = await v2.get_email_template(TemplateName="t")
            with pytest.raises(ClientError) as missing:
                await v2.update_email_template(
                    TemplateName="nope", TemplateContent={"Subject": "s"}
                )
    assert got["TemplateContent"]["Subject"] == "new {{a}}"
    assert missing.value.response["Error"]["Code"] == "NotFoundException"

"""One scenario, two servers: moto (server mode) and the simulator must agree wherever both
implement the operation. The simulator runs as a production account that requires a verified
sender, which is what AWS does and what moto checks.

Where they differ on purpose, the transcript says so and the test asserts each side apart:
- moto has no rate, no quota and no sandbox: a burst over MaxSendRate is all accepted there;
- GetSendQuota: moto always answers 200/day at 1/s, the simulator its configured limits;
- error texts: the simulator uses SES's (e.g. "Recipient count exceeds 50." under
  InvalidParameterValue; moto answers MessageRejected "Too many recipients.");
- SendBulkTemplatedEmail: moto gives MessageIds without a per-destination Status;
- identities: moto verifies them the moment they are created; SES (and the simulator) keeps them
  pending until the link is clicked or the DNS records are found, so the scenario takes that step
  (`confirm`: the simulator's admin verification, nothing on moto);
- moto has no limit on non-send actions, which the scenario calls back to back: the simulator
  runs without its 1 request/s there (test_sim_shapes checks that limit's answer).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aioboto3
from botocore.exceptions import ClientError

from dispatcher.sim.settings import SimSettings
from tests.support.moto import MotoServer
from tests.support.sim import SimFactory

if TYPE_CHECKING:
    from types_aiobotocore_ses.type_defs import MessageTypeDef

V1_MESSAGE: MessageTypeDef = {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}
RAW = b"From: sender@example.com\r\nTo: to@example.net\r\nSubject: raw\r\n\r\nbody\r\n"
STRANGER_RAW = RAW.replace(b"sender@example.com", b"stranger@example.net")
SIMPLE: Any = {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}}
# The 1 request/s limit on non-send actions (issue 15 item 1, landing from another branch).
API_LIMIT = "api_requests_per_second"
NO_API_LIMIT = (
    {API_LIMIT: 0.0} if API_LIMIT in {f.name for f in dataclasses.fields(SimSettings)} else {}
)
Confirm = Callable[[str], Awaitable[None]]
BURST = 20  # sends back to back at the end: more than the simulator's bucket holds (15)


def _code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


async def _outcome(call: Any) -> tuple[str, Any]:
    """("ok", result) or ("error", code): what a caller branches on."""
    try:
        return "ok", await call
    except ClientError as exc:
        return "error", _code(exc)


async def _nothing(identity: str) -> None:
    """moto verifies identities as they are created: no step to take."""


async def scenario(client_kwargs: dict[str, Any], confirm: Confirm = _nothing) -> dict[str, Any]:
    """The same calls against either server; a transcript of what a caller can rely on."""
    out: dict[str, Any] = {}
    session = aioboto3.Session()
    async with (
        session.client("ses", **client_kwargs) as v1,
        session.client("sesv2", **client_kwargs) as v2,
    ):
        for name in (await v1.list_identities())["Identities"]:
            await v1.delete_identity(Identity=name)  # an empty account, whatever was set up
        out["unverified_sender"] = await _outcome(
            v1.send_email(
                Source="sender@example.com",
                Destination={"ToAddresses": ["to@example.net"]},
                Message=V1_MESSAGE,
            )
        )
        await v1.verify_email_identity(EmailAddress="sender@example.com")
        await confirm("sender@example.com")
        token = (await v1.verify_domain_identity(Domain="example.org"))["VerificationToken"]
        out["domain_token"] = isinstance(token, str) and len(token) > 0
        out["identities"] = sorted((await v1.list_identities())["Identities"])
        out["email_identities"] = (await v1.list_identities(IdentityType="EmailAddress"))[
            "Identities"
        ]
        out["domain_identities"] = (await v1.list_identities(IdentityType="Domain"))["Identities"]
        await v1.verify_email_address(EmailAddress="old@example.net")
        out["old_listed"] = "old@example.net" in (await v1.list_identities())["Identities"]
        await v1.delete_identity(Identity="old@example.net")
        out["old_deleted"] = "old@example.net" not in (await v1.list_identities())["Identities"]
        sent = await v1.send_email(
            Source="sender@example.com",
            Destination={"ToAddresses": ["to@example.net"], "CcAddresses": ["cc@example.net"]},
            Message=V1_MESSAGE,
        )
        out["send_email"] = bool(sent["MessageId"])
        raw = await v1.send_raw_email(RawMessage={"Data": RAW}, Destinations=["to@example.net"])
        out["send_raw_email"] = bool(raw["MessageId"])
        out["raw_unverified_from"] = await _outcome(
            v1.send_raw_email(RawMessage={"Data": STRANGER_RAW}, Destinations=["to@example.net"])
        )
        await v1.create_template(
            Template={"TemplateName": "t", "SubjectPart": "Hi {{n}}", "TextPart": "x {{n}}"}
        )
        out["duplicate_template"] = await _outcome(
            v1.create_template(Template={"TemplateName": "t", "SubjectPart": "again"})
        )
        out["get_missing_template"] = await _outcome(v1.get_template(TemplateName="nope"))
        template = (await v1.get_template(TemplateName="t"))["Template"]
        out["template"] = (template["TemplateName"], template["SubjectPart"], template["TextPart"])
        templated = await v1.send_templated_email(
            Source="sender@example.com",
            Destination={"ToAddresses": ["to@example.net"]},
            Template="t",
            TemplateData=json.dumps({"n": "Ann"}),
        )
        out["send_templated_email"] = bool(templated["MessageId"])
        out["missing_template"] = await _outcome(
            v1.send_templated_email(
                Source="sender@example.com",
                Destination={"ToAddresses": ["to@example.net"]},
                Template="nope",
                TemplateData="{}",
            )
        )
        out["templated_unverified_sender"] = await _outcome(
            v1.send_templated_email(
                Source="stranger@example.net",
                Destination={"ToAddresses": ["to@example.net"]},
                Template="t",
                TemplateData="{}",
            )
        )
        out["bulk_missing_template"] = await _outcome(
            v1.send_bulk_templated_email(
                Source="sender@example.com",
                Template="nope",
                DefaultTemplateData="{}",
                Destinations=[{"Destination": {"ToAddresses": ["a@example.net"]}}],
            )
        )
        bulk = await v1.send_bulk_templated_email(
            Source="sender@example.com",
            Template="t",
            DefaultTemplateData='{"n": "all"}',
            Destinations=[
                {"Destination": {"ToAddresses": ["a@example.net"]}},
                {"Destination": {"ToAddresses": ["b@example.net"]}},
            ],
        )
        out["bulk_message_ids"] = [bool(s.get("MessageId")) for s in bulk["Status"]]
        out["bulk_statuses"] = [s.get("Status") for s in bulk["Status"]]
        out["too_many"] = await _outcome(
            v1.send_email(
                Source="sender@example.com",
                Destination={"ToAddresses": [f"r{i}@example.net" for i in range(51)]},
                Message=V1_MESSAGE,
            )
        )
        await v1.create_configuration_set(ConfigurationSet={"Name": "cs"})
        out["duplicate_configuration_set"] = await _outcome(
            v1.create_configuration_set(ConfigurationSet={"Name": "cs"})
        )
        quota = await v1.get_send_quota()
        out["quota_keys"] = sorted(k for k in quota if k != "ResponseMetadata")
        out["quota"] = (quota["Max24HourSend"], quota["MaxSendRate"])
        # v2
        out["v2_unverified_domain"] = await _outcome(
            v2.send_email(
                FromEmailAddress="news@example.com",
                Destination={"ToAddresses": ["to@example.net"]},
                Content=SIMPLE,
            )
        )
        out["v2_unknown_identity"] = await _outcome(
            v2.get_email_identity(EmailIdentity="nope.example.com")
        )
        created = await v2.create_email_identity(EmailIdentity="example.com")
        await confirm("example.com")
        out["v2_identity_type"] = created["IdentityType"]
        got = await v2.get_email_identity(EmailIdentity="example.com")
        out["v2_get_identity_type"] = got["IdentityType"]
        await v2.create_email_identity(EmailIdentity="gone@example.net")
        await v2.delete_email_identity(EmailIdentity="gone@example.net")
        out["v2_deleted_identity"] = await _outcome(
            v2.get_email_identity(EmailIdentity="gone@example.net")
        )
        simple = await v2.send_email(
            FromEmailAddress="news@example.com",
            Destination={"ToAddresses": ["to@example.net"]},
            Content=SIMPLE,
        )
        out["v2_simple"] = bool(simple["MessageId"])
        v2_raw = await v2.send_email(
            FromEmailAddress="sender@example.com",
            Destination={"ToAddresses": ["to@example.net"]},
            Content={"Raw": {"Data": RAW}},
        )
        out["v2_raw"] = bool(v2_raw["MessageId"])
        out["v2_raw_unverified_from"] = await _outcome(
            v2.send_email(Content={"Raw": {"Data": STRANGER_RAW}})
        )
        # A burst well over MaxSendRate: SES (and the simulator) throttles, moto does not.
        burst = [
            await _outcome(
                v2.send_email(
                    FromEmailAddress="sender@example.com",
                    Destination={"ToAddresses": [f"burst{i}@example.net"]},
                    Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
                )
            )
            for i in range(BURST)
        ]
        out["burst_errors"] = sorted({r[1] for r in burst if r[0] == "error"})
        out["burst_accepted"] = sum(1 for r in burst if r[0] == "ok")
    return out


# Keys where the two differ on purpose (see the module docstring); everything else must match.
ON_PURPOSE = {"too_many", "bulk_statuses", "quota", "burst_errors", "burst_accepted"}


async def test_moto_and_the_simulator_agree_where_both_implement_it(
    moto_server: MotoServer, sim_inprocess: SimFactory
) -> None:
    moto_server.reset()
    moto = await scenario(moto_server.client_kwargs())
    # 5/s with 3 s of burst: the scenario's own sends fit; a burst beyond the bucket does not,
    # however long the set-up steps took (the bucket holds 15 at most).
    async with sim_inprocess(
        require_verified_sender=True, max_send_rate=5, burst_seconds=3, **NO_API_LIMIT
    ) as sim:
        ours = await scenario(sim.client_kwargs(), sim.verify)
        accepted = (await sim.stats())["accepted"]
    same = {k: v for k, v in ours.items() if k not in ON_PURPOSE}
    assert same == {k: v for k, v in moto.items() if k not in ON_PURPOSE}
    # What both say, spelled out.
    assert ours["unverified_sender"] == ("error", "MessageRejected")
    assert ours["missing_template"] == ("error", "TemplateDoesNotExist")
    assert ours["duplicate_configuration_set"] == ("error", "ConfigurationSetAlreadyExists")
    assert ours["identities"] == ["example.org", "sender@example.com"]
    assert ours["domain_identities"] == ["example.org"]
    assert ours["old_listed"] and ours["old_deleted"]
    assert ours["duplicate_template"] == ("error", "AlreadyExists")
    assert ours["get_missing_template"] == ("error", "TemplateDoesNotExist")
    assert ours["bulk_missing_template"] == ("error", "TemplateDoesNotExist")
    for key in ("raw_unverified_from", "templated_unverified_sender", "v2_unverified_domain"):
        assert ours[key] == ("error", "MessageRejected"), key
    assert ours["v2_raw_unverified_from"] == ("error", "MessageRejected")
    assert ours["v2_unknown_identity"] == ("error", "NotFoundException")
    assert ours["v2_deleted_identity"] == ("error", "NotFoundException")
    assert ours["bulk_message_ids"] == [True, True]
    # Where they differ on purpose.
    assert moto["too_many"] == ("error", "MessageRejected")
    assert ours["too_many"] == ("error", "InvalidParameterValue")
    assert moto["bulk_statuses"] == [None, None]
    assert ours["bulk_statuses"] == ["Success", "Success"]
    assert moto["quota"] == (200.0, 1.0)
    assert ours["quota"] == (50000.0, 5.0)
    assert moto["burst_errors"] == []  # moto has no rate limit
    assert ours["burst_errors"] == ["TooManyRequestsException"]
    assert moto["burst_accepted"] == BURST
    assert 0 < ours["burst_accepted"] < BURST
    assert accepted >= 6 + ours["burst_accepted"]  # what the scenario sent, as recorded

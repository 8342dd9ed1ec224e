"""One scenario, two servers: moto (server mode) and the simulator must agree wherever both
implement the operation. The simulator runs as a production account that requires a verified
sender, which is what AWS does and what moto checks, with --auto-verify: moto verifies a new
identity at once, AWS (and the simulator by default) keeps it pending. Both are called as AWS
asks, each non-send action at most once a second (moto has no such limit).

Where they differ on purpose, the transcript says so and the test asserts each side apart:
- moto has no rate, no quota and no sandbox: a burst over MaxSendRate is all accepted there;
- GetSendQuota: moto always answers 200/day at 1/s, the simulator its configured limits;
- error texts: the simulator uses SES's (e.g. "Recipient count exceeds 50." under
  InvalidParameterValue; moto answers MessageRejected "Too many recipients.");
- SendBulkTemplatedEmail: moto gives MessageIds without a per-destination Status.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import aioboto3
from botocore.exceptions import ClientError

from tests.support.moto import MotoServer
from tests.support.sim import Paced, SimFactory

if TYPE_CHECKING:
    from types_aiobotocore_ses.type_defs import MessageTypeDef

V1_MESSAGE: MessageTypeDef = {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}
RAW = b"From: sender@example.com\r\nTo: to@example.net\r\nSubject: raw\r\n\r\nbody\r\n"


def _code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


async def _outcome(call: Any) -> tuple[str, Any]:
    """("ok", result) or ("error", code): what a caller branches on."""
    try:
        return "ok", await call
    except ClientError as exc:
        return "error", _code(exc)


async def scenario(client_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The same calls against either server; a transcript of what a caller can rely on."""
    out: dict[str, Any] = {}
    session = aioboto3.Session()
    async with (
        session.client("ses", **client_kwargs) as ses,
        session.client("sesv2", **client_kwargs) as sesv2,
    ):
        v1, v2 = Paced(ses), Paced(sesv2)
        out["unverified_sender"] = await _outcome(
            v1.send_email(
                Source="sender@example.com",
                Destination={"ToAddresses": ["to@example.net"]},
                Message=V1_MESSAGE,
            )
        )
        await v1.verify_email_identity(EmailAddress="sender@example.com")
        token = (await v1.verify_domain_identity(Domain="example.org"))["VerificationToken"]
        out["domain_token"] = isinstance(token, str) and len(token) > 0
        out["identities"] = sorted((await v1.list_identities())["Identities"])
        out["email_identities"] = (await v1.list_identities(IdentityType="EmailAddress"))[
            "Identities"
        ]
        sent = await v1.send_email(
            Source="sender@example.com",
            Destination={"ToAddresses": ["to@example.net"], "CcAddresses": ["cc@example.net"]},
            Message=V1_MESSAGE,
        )
        out["send_email"] = bool(sent["MessageId"])
        raw = await v1.send_raw_email(RawMessage={"Data": RAW}, Destinations=["to@example.net"])
        out["send_raw_email"] = bool(raw["MessageId"])
        await v1.create_template(
            Template={"TemplateName": "t", "SubjectPart": "Hi {{n}}", "TextPart": "x {{n}}"}
        )
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
        created = await v2.create_email_identity(EmailIdentity="example.com")
        out["v2_identity_type"] = created["IdentityType"]
        got = await v2.get_email_identity(EmailIdentity="example.com")
        out["v2_get_identity_type"] = got["IdentityType"]
        simple = await v2.send_email(
            FromEmailAddress="news@example.com",
            Destination={"ToAddresses": ["to@example.net"]},
            Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
        )
        out["v2_simple"] = bool(simple["MessageId"])
        v2_raw = await v2.send_email(
            FromEmailAddress="sender@example.com",
            Destination={"ToAddresses": ["to@example.net"]},
            Content={"Raw": {"Data": RAW}},
        )
        out["v2_raw"] = bool(v2_raw["MessageId"])
        # A burst well over MaxSendRate: SES (and the simulator) throttles, moto does not.
        burst = [
            await _outcome(
                v2.send_email(
                    FromEmailAddress="sender@example.com",
                    Destination={"ToAddresses": [f"burst{i}@example.net"]},
                    Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
                )
            )
            for i in range(20)
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
    # 5/s with 3 s of burst: the scenario's own sends fit; the 20-send burst does not.
    async with sim_inprocess(
        auto_verify=True, identities=(), max_send_rate=5, burst_seconds=3
    ) as sim:
        ours = await scenario(sim.client_kwargs())
        accepted = (await sim.stats())["accepted"]
    same = {k: v for k, v in ours.items() if k not in ON_PURPOSE}
    assert same == {k: v for k, v in moto.items() if k not in ON_PURPOSE}
    # What both say, spelled out.
    assert ours["unverified_sender"] == ("error", "MessageRejected")
    assert ours["missing_template"] == ("error", "TemplateDoesNotExist")
    assert ours["duplicate_configuration_set"] == ("error", "ConfigurationSetAlreadyExists")
    assert ours["identities"] == ["example.org", "sender@example.com"]
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
    assert moto["burst_accepted"] == 20
    assert 0 < ours["burst_accepted"] < 20
    assert accepted >= 6 + ours["burst_accepted"]  # what the scenario sent, as recorded

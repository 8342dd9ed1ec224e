"""The SES-compatible endpoint (issue 16 item 4) as applications use it: boto3's `sesv2` and
`ses` clients and the AWS CLI, pointed at `dispatcher run` with `[api] enabled` and a key from
`dispatcher keys create`, in front of the simulator. What arrives, at which pace, what each
refusal says, that a refused request leaves no row, and that every answer has SES's shape."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aioboto3
import botocore.auth
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from dispatcher.doors.ses_ids import message_id_of
from tests.support.cli import cli_env, fetch, run_cli, start_cli, stop_cli
from tests.support.dispatch import dispatcher_ids, eventually
from tests.support.moto import free_port
from tests.support.shapes import Exchange, check, error_code, report
from tests.support.sim import SimFactory

OK = "success@simulator.amazonses.com"
SENDER = "shop@example.com"  # the simulator account has example.com verified
RATE = 3.0  # the account's MaxSendRate: what the sends must keep to
# Authentication errors AWS answers for every action (not in the service models).
AUTH_ERRORS = frozenset(
    {
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
    }
)


class Recorder:
    """Every raw answer the clients receive, with the operation that asked for it."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def __call__(self, operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        self.exchanges.append(
            Exchange(
                operation_model,
                int(response_dict["status_code"]),
                dict(response_dict["headers"]),
                bytes(response_dict["body"]),
            )
        )

    def problems(self) -> list[str]:
        out: list[str] = []
        for e in self.exchanges:
            found = check(e)
            if not e.ok and error_code(e) in AUTH_ERRORS:
                found = [p for p in found if "is neither modeled" not in p]
            out += found
        return out


@asynccontextmanager
async def ses_clients(
    endpoint: str, key_id: str, secret: str, recorder: Recorder
) -> AsyncIterator[tuple[Any, Any]]:
    """(sesv2, ses) as an application makes them: only endpoint_url and the keys changed."""
    session = aioboto3.Session()
    kwargs: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region_name": "eu-west-1",
        "aws_access_key_id": key_id,
        "aws_secret_access_key": secret,
        "config": AioConfig(retries={"mode": "standard", "total_max_attempts": 1}),
    }
    async with session.client("sesv2", **kwargs) as v2, session.client("ses", **kwargs) as v1:
        for client in (v1, v2):
            client.meta.events.register("before-parse.*", recorder)
        yield v2, v1


async def refused(call: Awaitable[Any]) -> tuple[str, str, int]:
    """(code, message, HTTP status) of a call that must fail."""
    with pytest.raises(ClientError) as info:
        await call
    err = info.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


def simple(subject: str) -> dict[str, Any]:
    return {"Simple": {"Subject": {"Data": subject}, "Body": {"Text": {"Data": "hello"}}}}


def raw(subject: str, to: str = OK) -> bytes:
    return (
        f"From: Shop <{SENDER}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nraw body\r\n"
    ).encode()


async def message_rows(dsn: str) -> int:
    rows = await fetch(dsn, "SELECT count(*) AS n FROM dispatcher.messages")
    return int(rows[0]["n"])


async def test_boto3_and_the_aws_cli_send_through_the_dispatcher_paced_and_refusals_queue_nothing(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    async with sim_process(max_send_rate=RATE, max_24_hour_send=500) as sim:
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            endpoint_url=sim.endpoint_url,
            DISPATCHER_API__ENABLED="true",
            DISPATCHER_API__LISTEN_PORT=str(port),
        )
        # The application's template lives in the SES account, made there as it always was.
        async with aioboto3.Session().client("sesv2", **sim.client_kwargs()) as account:
            await account.create_email_template(
                TemplateName="welcome",
                TemplateContent={"Subject": "Welcome {{name}}", "Text": "Hi {{name}}"},
            )
        made = await run_cli(env, "keys", "create", "shop", "--from", "*@example.com", "--json")
        assert made.code == 0, made
        key = json.loads(made.out)
        other = json.loads((await run_cli(env, "keys", "create", "gone", "--json")).out)
        assert (await run_cli(env, "keys", "revoke", other["id"])).code == 0
        daemon = await start_cli(env, "run", output=tmp_path / "run.log")
        recorder = Recorder()
        try:
            async with ses_clients(endpoint, key["id"], key["secret"], recorder) as (v2, v1):

                async def account_read() -> bool:
                    try:
                        await v2.get_account()
                    except Exception:  # not listening yet, or no quota reading yet (503)
                        return False
                    return True

                await eventually(account_read, limit=30.0, step=0.2)

                # The account's numbers, as the daemon read them from SES.
                account = await v2.get_account()
                assert account["SendQuota"] == {
                    "Max24HourSend": 500.0,
                    "MaxSendRate": RATE,
                    "SentLast24Hours": 0.0,
                }
                quota = await v1.get_send_quota()
                assert (quota["Max24HourSend"], quota["MaxSendRate"]) == (500.0, RATE)

                answered: list[str] = []
                for i in range(4):
                    r = await v2.send_email(
                        FromEmailAddress=SENDER,
                        Destination={"ToAddresses": [OK]},
                        Content=simple(f"v2 simple {i}"),
                        EmailTags=[{"Name": "campaign", "Value": "spring"}],
                    )
                    answered.append(r["MessageId"])
                for i in range(2):
                    r = await v2.send_email(Content={"Raw": {"Data": raw(f"v2 raw {i}")}})
                    answered.append(r["MessageId"])
                r = await v2.send_email(
                    FromEmailAddress=SENDER,
                    Destination={"ToAddresses": [OK]},
                    Content={
                        "Template": {"TemplateName": "welcome", "TemplateData": '{"name": "Ana"}'}
                    },
                )
                answered.append(r["MessageId"])
                for i in range(2):
                    r = await v1.send_email(
                        Source=SENDER,
                        Destination={"ToAddresses": [OK], "CcAddresses": [OK]},
                        Message={"Subject": {"Data": f"v1 {i}"}, "Body": {"Html": {"Data": "<p>"}}},
                    )
                    answered.append(r["MessageId"])
                for i in range(2):
                    r = await v1.send_raw_email(
                        RawMessage={"Data": raw(f"v1 raw {i}")}, Destinations=[OK]
                    )
                    answered.append(r["MessageId"])

                aws = shutil.which("aws")
                assert aws is not None, "the AWS CLI (pip awscli) is not on PATH"
                cli_env_vars = {
                    **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                    "AWS_ACCESS_KEY_ID": key["id"],
                    "AWS_SECRET_ACCESS_KEY": key["secret"],
                    "AWS_DEFAULT_REGION": "eu-west-1",
                    "AWS_CONFIG_FILE": str(tmp_path / "none"),
                    "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                }
                proc = await asyncio.create_subprocess_exec(
                    aws,
                    "sesv2",
                    "send-email",
                    "--endpoint-url",
                    endpoint,
                    "--from-email-address",
                    SENDER,
                    "--destination",
                    f"ToAddresses={OK}",
                    "--content",
                    json.dumps(simple("aws cli")),
                    env=cli_env_vars,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await asyncio.wait_for(proc.communicate(), 60)
                assert proc.returncode == 0, err.decode()
                answered.append(json.loads(out)["MessageId"])

                rows_before = await message_rows(pg_dsn)
                # A wrong secret, an unknown or revoked key: SES's codes, nothing queued.
                async with ses_clients(endpoint, key["id"], "x" * 40, recorder) as (bad2, bad1):
                    code, text, status = await refused(
                        bad2.send_email(
                            FromEmailAddress=SENDER,
                            Destination={"ToAddresses": [OK]},
                            Content=simple("forged"),
                        )
                    )
                    assert (code, status) == ("SignatureDoesNotMatch", 403)
                    assert text.startswith("The request signature we calculated does not match")
                    code, _, status = await refused(
                        bad1.send_raw_email(RawMessage={"Data": raw("forged")})
                    )
                    assert (code, status) == ("SignatureDoesNotMatch", 403)
                async with ses_clients(endpoint, other["id"], other["secret"], recorder) as (
                    gone2,
                    gone1,
                ):
                    assert (await refused(gone2.get_account()))[0] == "UnrecognizedClientException"
                    assert (await refused(gone1.get_send_quota()))[0] == "InvalidClientTokenId"
                # A sender outside the key's patterns: refused as SES refuses a message.
                code, text, status = await refused(
                    v2.send_email(
                        FromEmailAddress="ceo@elsewhere.example",
                        Destination={"ToAddresses": [OK]},
                        Content=simple("not ours"),
                    )
                )
                assert (code, status) == ("MessageRejected", 400) and "*@example.com" in text
                code, _, _ = await refused(
                    v1.send_email(
                        Source="ceo@elsewhere.example",
                        Destination={"ToAddresses": [OK]},
                        Message={"Subject": {"Data": "x"}, "Body": {"Text": {"Data": "x"}}},
                    )
                )
                assert code == "MessageRejected"
                spoofed = raw("spoofed").replace(SENDER.encode(), b"ceo@elsewhere.example")
                code, text, _ = await refused(
                    v1.send_raw_email(Source=SENDER, RawMessage={"Data": spoofed})
                )
                assert code == "MessageRejected" and "ceo@elsewhere.example" in text
                # Bad input, and Template content (not served): SES's validation errors.
                code, text, _ = await refused(
                    v2.send_email(
                        FromEmailAddress=SENDER,
                        Destination={"ToAddresses": ["not an address"]},
                        Content=simple("bad"),
                    )
                )
                assert code == "BadRequestException" and "not an address" in text
                code, text, _ = await refused(
                    v2.send_email(
                        FromEmailAddress=SENDER,
                        Destination={"ToAddresses": [OK]},
                        Content={"Template": {"TemplateName": "welcome", "TemplateData": "[1]"}},
                    )
                )
                assert code == "BadRequestException" and "JSON object" in text
                # A client whose clock is 10 minutes slow signs a stale date.
                slow = datetime.utcnow() - timedelta(minutes=10)  # naive UTC, as botocore's
                monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: slow)
                code, text, status = await refused(v1.send_raw_email(RawMessage={"Data": raw("x")}))
                assert (code, status) == ("SignatureDoesNotMatch", 403)
                assert text.startswith("Signature expired: ")
                code, text, _ = await refused(v2.get_account())
                assert code == "InvalidSignatureException" and "Signature expired" in text
                monkeypatch.undo()
                assert await message_rows(pg_dsn) == rows_before

                ids = [message_id_of(m) for m in answered]
                assert all(i is not None for i in ids) and len(set(ids)) == len(ids) == 12

                async def all_sent() -> bool:
                    rows = await fetch(
                        pg_dsn, "SELECT count(*) AS n FROM dispatcher.jobs WHERE state = 'sent'"
                    )
                    return int(rows[0]["n"]) >= len(ids)

                await eventually(all_sent, limit=30.0, step=0.2)
                await asyncio.sleep(0.5)  # nothing more may come
                received = await sim.messages()
                stats = await sim.stats()
                recorder_problems = recorder.problems()
            status_out = await run_cli(env, "status", answered[0])
        finally:
            assert await stop_cli(daemon) == 0

    # Each exactly once, with the key that queued it recorded.
    assert Counter(dispatcher_ids(received)) == Counter(ids)
    keys = await fetch(pg_dsn, "SELECT DISTINCT key_id FROM dispatcher.messages")
    assert [r["key_id"] for r in keys] == [key["id"]]
    by_subject = {m["subject"]: m for m in received}
    assert by_subject["v2 simple 0"]["tags"]["campaign"] == "spring"
    assert by_subject["v1 0"]["cc"] == [OK]
    assert "aws cli" in by_subject
    # Template content: SES rendered the account's template with the application's data.
    assert by_subject["Welcome Ana"]["template"] == "welcome"
    # Paced at the account's rate: 14 recipients at 3/s, never throttled by SES.
    stamps = sorted(m["accepted_at"] for m in received)
    recipients = sum(len(m["to"]) + len(m["cc"]) + len(m["bcc"]) for m in received)
    assert recipients == 14
    assert stamps[-1] - stamps[0] >= (recipients - 2 * RATE) / RATE, stamps
    assert stats["throttled"] == 0, stats
    # The MessageId leads `dispatcher status` to the message and its SES MessageId.
    assert status_out.code == 0, status_out
    ses_id = next(m["message_id"] for m in received if m["subject"] == "v2 simple 0")
    assert ses_id in status_out.out
    answered_ops = {(e.name, e.ok) for e in recorder.exchanges}
    for op in ("SendEmail", "SendRawEmail", "GetSendQuota", "GetAccount"):
        assert {(op, True), (op, False)} <= answered_ops, op
    assert not recorder_problems, report(recorder_problems)

"""The SES simulator through real aioboto3 clients (`ses` v1 and `sesv2`) on loopback."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from tests.support.sim import REPO_ROOT, SimFactory, SimHandle, clients, error_of

SIMPLE = {"Simple": {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}}
V1_MESSAGE = {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}


async def v2_send(v2: Any, *to: str, **extra: Any) -> dict[str, Any]:
    return await v2.send_email(  # type: ignore[no-any-return]
        FromEmailAddress="sender@example.com",
        Destination={"ToAddresses": list(to)},
        Content=SIMPLE,
        **extra,
    )


async def test_v2_simple_send_is_recorded_with_recipients_and_tags(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess(configuration_sets=("default",)) as sim, clients(sim) as (_, v2):
        result = await v2.send_email(
            FromEmailAddress="Sender <sender@example.com>",
            Destination={
                "ToAddresses": ["to@example.com"],
                "CcAddresses": ["cc@example.com"],
                "BccAddresses": ["bcc@example.com"],
            },
            Content=SIMPLE,
            EmailTags=[
                {"Name": "dispatcher_id", "Value": "42"},
                {"Name": "campaign", "Value": "spring"},
            ],
            ConfigurationSetName="default",
        )
        messages = await sim.messages()
        stats = await sim.stats()
    assert [m["message_id"] for m in messages] == [result["MessageId"]]
    msg = messages[0]
    assert msg["from"] == "Sender <sender@example.com>"
    assert (msg["to"], msg["cc"], msg["bcc"]) == (
        ["to@example.com"],
        ["cc@example.com"],
        ["bcc@example.com"],
    )
    assert msg["subject"] == "Hello"
    assert msg["tags"] == {"dispatcher_id": "42", "campaign": "spring"}
    assert msg["configuration_set"] == "default"
    assert isinstance(msg["accepted_at"], float)
    assert stats["accepted"] == 1 and stats["recipients_accepted"] == 3


async def test_v2_raw_send_takes_recipients_from_headers_unless_destination_is_given(
    sim_inprocess: SimFactory,
) -> None:
    raw = (
        b"From: Sender <sender@example.com>\r\n"
        b"To: Ann <ann@example.com>, bob@example.com\r\n"
        b"Cc: carl@example.com\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    )
    async with sim_inprocess() as sim, clients(sim) as (_, v2):
        first = await v2.send_email(
            Content={"Raw": {"Data": raw}}, EmailTags=[{"Name": "k", "Value": "v"}]
        )
        second = await v2.send_email(
            Destination={"ToAddresses": ["only@example.com"]}, Content={"Raw": {"Data": raw}}
        )
        messages = await sim.messages(body=True)
    assert [m["message_id"] for m in messages] == [first["MessageId"], second["MessageId"]]
    assert messages[0]["to"] == ["ann@example.com", "bob@example.com"]
    assert messages[0]["cc"] == ["carl@example.com"]
    assert messages[0]["from"] == "Sender <sender@example.com>"
    assert messages[0]["subject"] == "Grüße"
    assert messages[0]["tags"] == {"k": "v"}
    assert base64.b64decode(messages[0]["raw"]) == raw  # arrived base64, stored decoded
    assert messages[1]["to"] == ["only@example.com"] and messages[1]["cc"] == []


async def test_v1_send_email_and_send_raw_email(sim_inprocess: SimFactory) -> None:
    raw = b"From: a@example.com\r\nTo: x@example.com\r\nSubject: raw\r\n\r\nbody"
    async with sim_inprocess() as sim, clients(sim) as (v1, _):
        sent = await v1.send_email(
            Source="a@example.com",
            Destination={"ToAddresses": ["x@example.com", "y@example.com"]},
            Message=V1_MESSAGE,
            Tags=[{"Name": "dispatcher_id", "Value": "7"}],
        )
        sent_raw = await v1.send_raw_email(RawMessage={"Data": raw}, Destinations=["z@example.com"])
        messages = await sim.messages()
    assert [m["message_id"] for m in messages] == [sent["MessageId"], sent_raw["MessageId"]]
    assert messages[0]["to"] == ["x@example.com", "y@example.com"]
    assert messages[0]["tags"] == {"dispatcher_id": "7"}
    assert messages[0]["api"] == "v1"
    assert messages[1]["to"] == ["z@example.com"] and messages[1]["subject"] == "raw"


async def test_message_ids_are_unique_and_shaped_like_ses(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess(max_send_rate=1000) as sim, clients(sim) as (_, v2):
        results = await asyncio.gather(*(v2_send(v2, "a@example.com") for _ in range(20)))
    ids = [r["MessageId"] for r in results]
    assert len(set(ids)) == 20
    assert all(i.startswith("0100") and i.endswith("-000000") and len(i) == 60 for i in ids)


async def test_over_the_rate_v2_answers_429_too_many_requests(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess(max_send_rate=1) as sim, clients(sim) as (_, v2):
        await v2_send(v2, "a@example.com")
        with pytest.raises(ClientError) as exc:
            await v2_send(v2, "b@example.com")
        stats = await sim.stats()
        messages = await sim.messages()
    assert error_of(exc) == ("TooManyRequestsException", "Maximum sending rate exceeded.", 429)
    assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    assert stats["throttled"] == 1 and stats["accepted"] == 1
    assert len(messages) == 1


async def test_a_multi_recipient_burst_passes_then_sends_fail_until_paid_back(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess(max_send_rate=20) as sim, clients(sim) as (_, v2):
        to = [f"r{i}@example.com" for i in range(40)]  # 2 s worth at 20/s, bucket holds 1 s
        await v2_send(v2, *to)  # level 20 - 40 = -20
        await asyncio.sleep(0.5)  # level about -10: still refused
        with pytest.raises(ClientError) as exc:
            await v2_send(v2, "late@example.com")
        await asyncio.sleep(0.6)  # level about +2
        await v2_send(v2, "later@example.com")
        stats = await sim.stats()
    assert error_of(exc)[0] == "TooManyRequestsException"
    assert stats["recipients_accepted"] == 41


async def test_daily_quota_v2_and_v1_and_the_mailbox_simulator_is_exempt(
    sim_inprocess: SimFactory,
) -> None:
    async with (
        sim_inprocess(max_send_rate=100, max_24_hour_send=2) as sim,
        clients(sim) as (
            v1,
            v2,
        ),
    ):
        await v2_send(v2, "a@example.com", "b@example.com")
        with pytest.raises(ClientError) as v2_exc:
            await v2_send(v2, "c@example.com")
        with pytest.raises(ClientError) as v1_exc:
            await v1.send_email(
                Source="s@example.com",
                Destination={"ToAddresses": ["c@example.com"]},
                Message=V1_MESSAGE,
            )
        await v2_send(v2, "success@simulator.amazonses.com", "bounce+x1@simulator.amazonses.com")
        quota = await v1.get_send_quota()
        stats = await sim.stats()
    assert error_of(v2_exc) == ("LimitExceededException", "Daily message quota exceeded.", 400)
    assert error_of(v1_exc) == ("Throttling", "Daily message quota exceeded.", 400)
    assert quota["SentLast24Hours"] == 2.0
    assert stats["daily_quota_exceeded"] == 2 and stats["accepted"] == 2


async def test_v1_rate_error_parses_as_throttling(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess(max_send_rate=1) as sim, clients(sim) as (v1, _):
        kwargs: dict[str, Any] = {
            "Source": "s@example.com",
            "Destination": {"ToAddresses": ["x@example.com"]},
            "Message": V1_MESSAGE,
        }
        await v1.send_email(**kwargs)
        with pytest.raises(ClientError) as exc:
            await v1.send_email(**kwargs)
        with pytest.raises(ClientError) as raw_exc:
            await v1.send_raw_email(
                RawMessage={"Data": b"From: s@example.com\r\nTo: x@example.com\r\n\r\nhi"}
            )
    assert error_of(exc) == ("Throttling", "Maximum sending rate exceeded.", 400)
    response: Any = exc.value.response
    assert response["Error"]["Type"] == "Sender"
    assert error_of(raw_exc)[:2] == ("Throttling", "Maximum sending rate exceeded.")


async def test_get_send_quota_counts_recipients_and_frees_as_the_window_passes(
    sim_inprocess: SimFactory,
) -> None:
    async with (
        sim_inprocess(max_send_rate=50, max_24_hour_send=10, quota_window_seconds=1.0) as sim,
        clients(sim) as (v1, v2),
    ):
        before = await v1.get_send_quota()
        await v2_send(v2, "a@example.com", "b@example.com", "c@example.com")
        await v1.send_email(
            Source="s@example.com",
            Destination={"ToAddresses": ["d@example.com"], "BccAddresses": ["e@example.com"]},
            Message=V1_MESSAGE,
        )
        # GetAccount: GetSendQuota answers once a second, as on AWS.
        account = await v2.get_account()
        await asyncio.sleep(1.1)
        after = await v1.get_send_quota()
    assert (before["Max24HourSend"], before["MaxSendRate"], before["SentLast24Hours"]) == (
        10.0,
        50.0,
        0.0,
    )
    assert account["SendQuota"] == {
        "Max24HourSend": 10.0,
        "MaxSendRate": 50.0,
        "SentLast24Hours": 5.0,
    }
    assert account["SendingEnabled"] and account["EnforcementStatus"] == "HEALTHY"
    assert after["SentLast24Hours"] == 0.0


async def test_settings_change_at_runtime(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess(max_send_rate=1, max_24_hour_send=100) as sim,
        clients(sim) as (
            v1,
            v2,
        ),
    ):
        await v2_send(v2, "a@example.com")
        with pytest.raises(ClientError):
            await v2_send(v2, "b@example.com")
        new = await sim.configure(max_send_rate=200, max_24_hour_send=-1)
        await asyncio.sleep(0.05)  # the bucket refills at the new rate, it is not refilled
        results = await asyncio.gather(*(v2_send(v2, f"r{i}@example.com") for i in range(5)))
        quota = await v1.get_send_quota()
        config = await sim.config()
        async with aiohttp.ClientSession() as http:
            async with http.post(
                sim.endpoint_url + "/_sim/config", json={"max_send_rate": -3}
            ) as bad:
                bad_status, bad_body = bad.status, await bad.json()
            async with http.post(sim.endpoint_url + "/_sim/config", json={"speed": 3}) as unk:
                unknown_status, unknown_body = unk.status, await unk.json()
    assert new["max_send_rate"] == 200.0 and new["max_24_hour_send"] == -1.0
    assert config == new
    assert len(results) == 5
    assert (quota["MaxSendRate"], quota["Max24HourSend"]) == (200.0, -1.0)
    assert bad_status == 400 and "max_send_rate" in bad_body["error"]
    assert unknown_status == 400 and "speed" in unknown_body["error"]


async def test_latency_is_added_to_each_send(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess(latency_ms=200) as sim, clients(sim) as (_, v2):
        await v2_send(v2, "warm@example.com")  # connection set up outside the measurement
        loop = asyncio.get_running_loop()
        started = loop.time()
        await v2_send(v2, "a@example.com")
        elapsed = loop.time() - started
    assert 0.19 <= elapsed < 1.0


async def test_invalid_messages_are_rejected_with_ses_errors(sim_inprocess: SimFactory) -> None:
    too_many = [f"r{i}@example.com" for i in range(51)]
    async with sim_inprocess(max_send_rate=1000) as sim, clients(sim) as (v1, v2):
        with pytest.raises(ClientError) as v2_many:
            await v2_send(v2, *too_many)
        with pytest.raises(ClientError) as v2_bad:
            await v2_send(v2, "good@example.com", "not-an-address")
        with pytest.raises(ClientError) as v1_many:
            await v1.send_email(
                Source="s@example.com",
                Destination={"ToAddresses": too_many},
                Message=V1_MESSAGE,
            )
        with pytest.raises(ClientError) as v1_bad:
            await v1.send_email(
                Source="s@example.com",
                Destination={"ToAddresses": ["not-an-address"]},
                Message=V1_MESSAGE,
            )
        with pytest.raises(ClientError) as v1_none:
            await v1.send_raw_email(RawMessage={"Data": b"From: s@example.com\r\n\r\nhi"})
        stats = await sim.stats()
    assert error_of(v2_many) == ("BadRequestException", "Recipient count exceeds 50.", 400)
    assert error_of(v2_bad) == (
        "BadRequestException",
        "Invalid email address not-an-address.",
        400,
    )
    assert error_of(v1_many) == ("InvalidParameterValue", "Recipient count exceeds 50.", 400)
    assert error_of(v1_bad) == ("InvalidParameterValue", "Missing final '@domain'", 400)
    assert error_of(v1_none) == ("InvalidParameterValue", "Missing required header 'To'.", 400)
    assert stats["rejected"] == 5 and stats["accepted"] == 0


async def test_malformed_requests_get_clean_errors_not_tracebacks(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess() as sim, aiohttp.ClientSession() as http:
        url = sim.endpoint_url
        async with http.post(url + "/v2/email/outbound-emails", data=b"{not json") as r:
            not_json = (r.status, r.headers.get("x-amzn-ErrorType"), await r.json())
        async with http.post(url + "/v2/email/outbound-emails", json={}) as r:
            no_content = (r.status, r.headers.get("x-amzn-ErrorType"), await r.json())
        simple_no_subject = {"FromEmailAddress": "a@example.com", "Content": {"Simple": {}}}
        async with http.post(url + "/v2/email/outbound-emails", json=simple_no_subject) as r:
            broken = (r.status, r.headers.get("x-amzn-ErrorType"), await r.json())
        async with http.post(url + "/", data={"Action": "SendEmail"}) as r:
            v1_missing = (r.status, await r.text())
    assert not_json[:2] == (400, "BadRequestException")
    assert no_content == (
        400,
        "BadRequestException",
        {"message": "Missing required parameter Content."},
    )
    assert broken[:2] == (400, "BadRequestException")
    assert v1_missing[0] == 400
    assert "<Code>MissingParameter</Code>" in v1_missing[1]
    assert "Traceback" not in str((not_json, no_content, broken, v1_missing))


async def test_unknown_action_and_route_answer_clean_errors(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim, clients(sim) as (v1, _):
        with pytest.raises(ClientError) as exc:
            await v1.list_receipt_filters()  # a real SES action the simulator does not implement
        async with aiohttp.ClientSession() as http:
            async with http.post(sim.endpoint_url + "/", data={"Action": "Nope"}) as r:
                action = (r.status, await r.text())
            async with http.get(sim.endpoint_url + "/nowhere") as r:
                route = (r.status, r.content_type, await r.json())
            async with http.delete(sim.endpoint_url + "/v2/email/dedicated-ip-pools/x") as r:
                v2_route = (r.status, r.headers.get("x-amzn-ErrorType"), await r.json())
            async with http.put(sim.endpoint_url + "/_sim/stats") as r:
                wrong_method = (r.status, await r.json())
    assert error_of(exc) == (
        "InvalidAction",
        "Could not find operation ListReceiptFilters for version 2010-12-01",
        400,
    )
    assert action[0] == 400 and "<Code>InvalidAction</Code>" in action[1]
    assert route[0] == 404 and route[1] == "application/json" and "/nowhere" in route[2]["error"]
    assert v2_route[:2] == (404, "UnknownOperationException")
    assert wrong_method[0] == 404


async def test_reset_clears_messages_counters_and_limits(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess(max_send_rate=1, max_24_hour_send=1) as sim,
        clients(sim) as (
            v1,
            v2,
        ),
    ):
        await v2_send(v2, "a@example.com")
        with pytest.raises(ClientError):
            await v2_send(v2, "b@example.com")
        stats = await sim.reset()
        assert stats["accepted"] == 0 and stats["throttled"] == 0
        assert stats["daily_quota_exceeded"] == 0
        assert await sim.messages() == []
        assert (await v1.get_send_quota())["SentLast24Hours"] == 0.0
        await v2_send(v2, "c@example.com")  # rate and quota are free again
        assert len(await sim.messages()) == 1


async def test_sim_process_fixture_runs_the_cli_as_a_subprocess(sim_process: SimFactory) -> None:
    async with sim_process(max_send_rate=2, max_24_hour_send=1000, region="eu-west-1") as sim:
        assert sim.pid is not None and sim.endpoint_url.startswith("http://127.0.0.1:")
        assert (await sim.config())["max_send_rate"] == 2.0
        async with clients(sim) as (v1, v2):
            sent = await v2_send(v2, "a@example.com", "b@example.com")
            with pytest.raises(ClientError) as exc:
                await v2_send(v2, "c@example.com")
            await sim.configure(max_send_rate=100)
            quota = await v1.get_send_quota()
        messages = await sim.messages()
        stats = await sim.stats()
        pid = sim.pid
    assert [m["message_id"] for m in messages] == [sent["MessageId"]]
    assert error_of(exc)[0] == "TooManyRequestsException"
    assert quota["MaxSendRate"] == 100.0 and quota["SentLast24Hours"] == 2.0
    assert stats["throttled"] == 1
    with pytest.raises(ProcessLookupError):  # stopped at exit
        os.kill(pid, 0)


async def test_sim_fixture_and_in_process_state(sim: SimHandle) -> None:
    assert sim.state is not None
    async with clients(sim) as (_, v2):
        await v2_send(v2, "a@example.com")
    assert sim.state.counters.accepted == 1
    assert (await sim.config())["max_send_rate"] == 14.0


async def test_cli_refuses_a_bad_setting_naming_it() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher.sim",
        "--port",
        "0",
        "--max-send-rate",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO_ROOT),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert out == b""
    assert b"max_send_rate must be > 0" in err

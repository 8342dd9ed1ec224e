"""The lean sesv2 client against real servers: what it raises equals what the aioboto3 client
raises for the same answer or network fault, and the simulator and moto accept its sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aioboto3
import pytest
import uvloop
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentials
from botocore.exceptions import BotoCoreError, ClientError

from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.outcome import Outcome
from dispatcher.doors.sigv4 import parse_authorization, signature_matches
from dispatcher.ses import SesAdapter, SesSettings
from dispatcher.ses.adapter import classify_exception
from dispatcher.ses.lean import LeanSes
from dispatcher.ses.signing import SendSigner
from tests.integration.test_ses_faults import (
    Handler,
    close_after_request,
    fake_ses,
    never_answer,
    record_only,
    reset_after_request,
    respond,
    v2_error,
)
from tests.support.moto import MotoServer
from tests.support.sim import SimFactory

REGION = "us-east-1"
PARAMS: dict[str, Any] = {
    "FromEmailAddress": "s@example.com",
    "Destination": {"ToAddresses": ["r@example.net"]},
    "Content": {
        "Simple": {
            "Subject": {"Data": "s", "Charset": "UTF-8"},
            "Body": {"Text": {"Data": "t", "Charset": "UTF-8"}},
        }
    },
    "EmailTags": [{"Name": "dispatcher_id", "Value": "1"}],
}


@asynccontextmanager
async def both(endpoint_url: str, read_timeout: float = 15.0) -> AsyncIterator[tuple[Any, Any]]:
    """(lean client, aioboto3 sesv2 client) on one endpoint, as SesAdapter.open builds them."""
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        read_timeout=read_timeout,
        parameter_validation=False,
    )
    credentials = AioCredentials("k", "s")
    async with aioboto3.Session().client(
        "sesv2",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="k",
        aws_secret_access_key="s",
        config=config,
    ) as v2:
        SendSigner(credentials, REGION).register(v2.meta.events)
        async with LeanSes.open(
            endpoint_url,
            credentials,
            REGION,
            user_agent="dispatcher/test",
            model=v2.meta.service_model,
            error_class=v2.exceptions.from_code,
            connect_timeout=5.0,
            read_timeout=read_timeout,
            max_connections=4,
        ) as lean:
            yield lean, v2


async def raised(client: Any) -> Exception:
    try:
        await client.send_email(**PARAMS)
    except (ClientError, BotoCoreError) as exc:
        return exc
    raise AssertionError("no exception")


def comparable(exc: Exception) -> dict[str, Any]:
    """What the dispatcher reads of the exception: SES's refusal in full (without what differs
    per request: ids, dates); for a network fault, how it is classified (the wording differs:
    the lean client's own HTTP/1.1 errors stand where aiohttp's do)."""
    result = classify_exception(exc)
    assert result is not None, exc
    if not isinstance(exc, ClientError):
        return {"botocore": isinstance(exc, BotoCoreError), "outcome": result.outcome}
    meta = exc.response["ResponseMetadata"]
    return {
        "type": type(exc),
        "text": str(exc),
        "error": exc.response["Error"],
        "status": meta["HTTPStatusCode"],
        "retries": meta.get("RetryAttempts"),
        "modeled": {k: v for k, v in exc.response.items() if k != "ResponseMetadata"},
        "classified": result,
    }


@pytest.mark.parametrize(
    ("handler", "outcome"),
    [
        (v2_error(429, "TooManyRequestsException", "Maximum sending rate exceeded."),
         Outcome.THROTTLED),
        (v2_error(400, "LimitExceededException", "Daily message quota exceeded."),
         Outcome.DAILY_QUOTA),
        (v2_error(400, "MessageRejected", "Illegal header"), Outcome.REJECTED),
        (v2_error(400, "BadRequestException", "Invalid tag"), Outcome.CONFIG_ERROR),
        (v2_error(404, "NotFoundException", "Configuration set <x> does not exist."),
         Outcome.CONFIG_ERROR),
        (v2_error(500, "InternalServiceErrorException", "oops"), Outcome.TRANSIENT),
        (respond(502, b"<html>bad gateway</html>", content_type="text/html"), Outcome.TRANSIENT),
        (respond(503, b"", content_type="application/json"), Outcome.TRANSIENT),
        (close_after_request, Outcome.IN_DOUBT),
        (reset_after_request, Outcome.IN_DOUBT),
        (never_answer, Outcome.IN_DOUBT),
    ],
)  # fmt: skip
async def test_lean_raises_what_botocore_raises(handler: Handler, outcome: Outcome) -> None:
    async with fake_ses(handler) as fake, both(fake.endpoint_url, read_timeout=0.5) as (lean, v2):
        mine = await asyncio.wait_for(raised(lean), 10)
        theirs = await asyncio.wait_for(raised(v2), 10)

    assert comparable(mine) == comparable(theirs)
    result = classify_exception(mine)
    assert result is not None and result.outcome is outcome, result
    assert len(fake.requests) == 2  # one attempt each: nothing retried


async def test_the_request_as_it_arrives_verifies_with_botocores_signer() -> None:
    """Host (with its port), path and body as the server read them: what SES checks."""
    async with fake_ses(record_only) as fake, both(fake.endpoint_url) as (lean, _):
        assert await lean.send_email(**PARAMS) == {"MessageId": "m-1"}
    (req,) = fake.requests
    assert req.headers["host"] == fake.endpoint_url.removeprefix("http://")
    assert json.loads(req.body) == PARAMS
    signed = parse_authorization(req.headers["authorization"])
    for secret, ok in (("s", True), ("not the secret", False)):
        assert ok is signature_matches(
            signed,
            secret,
            method=req.method,
            raw_path=req.path,
            raw_query="",
            headers=lambda name: [req.headers[name]] if name in req.headers else [],
            body=req.body,
            amz_date=req.headers["x-amz-date"],
        )


async def test_nothing_listening_is_what_botocore_raises() -> None:
    async with both("http://127.0.0.1:9") as (lean, v2):
        assert comparable(await raised(lean)) == comparable(await raised(v2))


async def test_the_simulator_accepts_lean_sends(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess(max_send_rate=100) as sim:
        settings = SesSettings(
            endpoint_url=sim.endpoint_url, access_key_id="t", secret_access_key="t", client="lean"
        )
        async with SesAdapter.open(settings) as ses:
            await ses.ensure_template("t1", "Hi {{name}}", "<p>{{name}}</p>", "{{name}}")
            raw = b"From: s@example.com\r\nTo: r@example.net\r\nSubject: r\r\n\r\nbody\r\n"
            alone = [
                await ses.send(OutgoingMessage(id=1, from_addr="s@example.com", to=("a@x.net",),
                                               subject="Grüße", text="t", html="<b>h</b>")),
                await ses.send(OutgoingMessage(id=2, from_addr="s@example.com", raw=raw)),
                await ses.send_templated(
                    "t1", OutgoingMessage(id=3, from_addr="s@example.com", to=("c@x.net",)),
                    {"name": "Zoë"},
                ),
            ]  # fmt: skip
            bulk = await ses.send_bulk(
                "t1",
                [
                    (OutgoingMessage(id=i, from_addr="s@example.com", to=(f"b{i}@x.net",)),
                     {"name": f"n{i}"})
                    for i in range(10, 13)
                ],
            )  # fmt: skip
            refused = await ses.send(
                OutgoingMessage(id=4, from_addr="s@example.com", to=("not-an-address",), text="t")
            )
        stored = await sim.messages(body=True)

    assert [r.outcome for r in alone + bulk] == [Outcome.SENT] * 6
    ids = {r.ses_message_id for r in alone + bulk}
    assert len(ids) == 6 and None not in ids
    assert {m["message_id"] for m in stored} >= ids
    assert (refused.outcome, refused.reason) == (
        Outcome.REJECTED,
        "Invalid email address not-an-address.",
    )


async def test_moto_accepts_a_lean_send(moto: MotoServer) -> None:
    async with aioboto3.Session().client("ses", **moto.client_kwargs()) as v1:
        await v1.verify_email_identity(EmailAddress="sender@example.com")
    msg = OutgoingMessage(id=8, from_addr="sender@example.com", to=("a@example.net",), text="hi")
    async with SesAdapter.open(moto.ses_settings(client="lean")) as ses:
        sent = await ses.send(msg)
        unverified = await ses.send(OutgoingMessage(id=9, from_addr="x@nowhere.example",
                                                    to=("a@example.net",), text="hi"))  # fmt: skip

    assert sent.outcome is Outcome.SENT and sent.ses_message_id
    assert [m["id"] for m in moto.sent_messages()] == [sent.ses_message_id]
    assert unverified.outcome is Outcome.CONFIG_ERROR, unverified
    assert json.dumps(unverified.reason or "").find("not verified") >= 0


async def test_lean_sends_on_uvloop(sim_inprocess: SimFactory) -> None:
    """The daemon runs on uvloop, whose transports are not asyncio's classes."""

    async def on_uvloop(endpoint_url: str) -> list[Outcome]:
        settings = SesSettings(
            endpoint_url=endpoint_url, access_key_id="t", secret_access_key="t", client="lean"
        )
        async with SesAdapter.open(settings) as ses:
            msgs = [
                OutgoingMessage(id=i, from_addr="s@example.com", to=("a@x.net",), text="t")
                for i in range(3)
            ]
            results = await asyncio.gather(*(ses.send(m) for m in msgs))
        return [r.outcome for r in results]

    async def cut(endpoint_url: str) -> Outcome:
        async with both(endpoint_url) as (lean, _):
            result = classify_exception(await raised(lean))
            assert result is not None
            return result.outcome

    async with sim_inprocess(max_send_rate=100) as sim:
        sent = await asyncio.to_thread(uvloop.run, on_uvloop(sim.endpoint_url))
    async with fake_ses(close_after_request) as fake:
        in_doubt = await asyncio.to_thread(uvloop.run, cut(fake.endpoint_url))

    assert sent == [Outcome.SENT] * 3
    assert in_doubt is Outcome.IN_DOUBT


async def test_a_lean_send_with_an_assumed_roles_temporary_credentials(moto: MotoServer) -> None:
    async with aioboto3.Session().client("ses", **moto.client_kwargs()) as v1:
        await v1.verify_email_identity(EmailAddress="sender@example.com")
    settings = moto.ses_settings(role_arn="arn:aws:iam::123456789012:role/ses", client="lean")
    msg = OutgoingMessage(id=8, from_addr="sender@example.com", to=("a@example.net",), text="hi")
    async with SesAdapter.open(settings) as ses:
        sent = await ses.send(msg)
    assert sent.outcome is Outcome.SENT, sent
    assert [m["id"] for m in moto.sent_messages()] == [sent.ses_message_id]


async def test_through_an_http_proxy_the_sends_go_through_botocore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lean client does not tunnel: with HTTP(S)_PROXY set for the endpoint, botocore sends."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with fake_ses(record_only) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.endpoint_url)
        settings = SesSettings(
            endpoint_url="http://email.ses.test:8080",
            access_key_id="k",
            secret_access_key="s",
            client="lean",
        )
        async with SesAdapter.open(settings) as ses:
            sent = await ses.send(OutgoingMessage(id=1, from_addr="s@x.net", to=("a@x.net",)))
    assert sent.outcome is Outcome.SENT, sent
    (req,) = proxy.requests
    assert req.path == "http://email.ses.test:8080/v2/email/outbound-emails"  # absolute: proxied

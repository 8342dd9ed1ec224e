"""SesAdapter against misbehaving loopback servers: what reaches the wire, how failures are
classified (TRANSIENT = never sent, IN_DOUBT = SES may have it), and that botocore never retries;
each send test through both clients of the sends (ses.client: lean and botocore).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import pytest

from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.outcome import Outcome
from dispatcher.ses import SesAdapter, SesError, SesSettings
from dispatcher.ses.settings import CLIENTS
from tests.support.moto import free_port

MSG = OutgoingMessage(id=7, from_addr="s@example.com", to=("r@example.net",), text="hi")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Conn:
    """What a handler gets: the parsed request and the raw stream to answer (or not) on."""

    request: Request
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    stop: asyncio.Event  # set when the server shuts down: a handler that waits must end


Handler = Callable[[Conn], Awaitable[None]]


@dataclass
class FakeSes:
    endpoint_url: str
    requests: list[Request] = field(default_factory=list)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, path, headers, body)


@asynccontextmanager
async def fake_ses(handler: Handler) -> AsyncIterator[FakeSes]:
    """An HTTP/1.1 server on 127.0.0.1 that records each request and lets `handler` answer it."""
    tasks: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()
    fake = FakeSes("")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            while (req := await _read_request(reader)) is not None:
                fake.requests.append(req)
                await handler(Conn(req, reader, writer, stop))
                if writer.is_closing():
                    break
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fake.endpoint_url = f"http://127.0.0.1:{port}"
    async with server:
        try:
            yield fake
        finally:
            # Let handlers end by themselves (before the server waits for its connections):
            # cancelling a stream handler task makes Python 3.11 log a spurious traceback.
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)


def respond(
    status: int, body: bytes, headers: dict[str, str] | None = None, content_type: str = ""
) -> Handler:
    async def handler(conn: Conn) -> None:
        hdrs = {"Content-Length": str(len(body)), "x-amzn-RequestId": "req-1", **(headers or {})}
        if content_type:
            hdrs["Content-Type"] = content_type
        head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        conn.writer.write(head.encode() + b"\r\n" + body)
        await conn.writer.drain()

    return handler


def v2_error(status: int, code: str, message: str) -> Handler:
    """A REST-JSON (sesv2) error as SES sends it."""
    body = json.dumps({"message": message}).encode()
    return respond(status, body, {"x-amzn-ErrorType": code}, "application/json")


def v1_error(status: int, code: str, message: str) -> Handler:
    """A Query/XML (ses v1) error as SES sends it."""
    body = (
        '<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
        "</Error><RequestId>req-1</RequestId></ErrorResponse>"
    ).encode()
    return respond(status, body, content_type="text/xml")


async def never_answer(conn: Conn) -> None:
    await conn.stop.wait()
    conn.writer.close()


async def close_after_request(conn: Conn) -> None:
    conn.writer.close()


async def reset_after_request(conn: Conn) -> None:
    sock = conn.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    conn.writer.close()


async def record_only(conn: Conn) -> None:
    await respond(200, b'{"MessageId": "m-1"}', content_type="application/json")(conn)


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    """Each send test runs through both clients of the sends (ses.client)."""
    return str(request.param)


def settings(fake: FakeSes | str, **kw: Any) -> SesSettings:
    url = fake if isinstance(fake, str) else fake.endpoint_url
    return SesSettings(endpoint_url=url, access_key_id="k", secret_access_key="s", **kw)


# --- what goes on the wire ---------------------------------------------------------------


async def test_simple_request_carries_tags_charset_and_default_configuration_set(
    client: str,
) -> None:
    msg = OutgoingMessage(
        id=99,
        from_addr="s@example.com",
        to=("a@example.net",),
        bcc=("b@example.net",),
        subject="Grüße",
        text="t",
        html="<b>h</b>",
        reply_to=("r@example.com",),
        tags={"campaign": "c1", "dispatcher_id": "spoofed"},
    )
    async with (
        fake_ses(record_only) as fake,
        SesAdapter.open(settings(fake, configuration_set="default-set", client=client)) as ses,
    ):
        result = await ses.send(msg)

    assert (result.outcome, result.ses_message_id) == (Outcome.SENT, "m-1")
    (req,) = fake.requests
    assert (req.method, req.path) == ("POST", "/v2/email/outbound-emails")
    assert req.headers["user-agent"].startswith("dispatcher/")  # fixed, cheap User-Agent
    body = json.loads(req.body)
    assert body == {
        "FromEmailAddress": "s@example.com",
        "Destination": {"ToAddresses": ["a@example.net"], "BccAddresses": ["b@example.net"]},
        "ReplyToAddresses": ["r@example.com"],
        "Content": {
            "Simple": {
                "Subject": {"Data": "Grüße", "Charset": "UTF-8"},
                "Body": {
                    "Text": {"Data": "t", "Charset": "UTF-8"},
                    "Html": {"Data": "<b>h</b>", "Charset": "UTF-8"},
                },
            }
        },
        "EmailTags": [
            {"Name": "dispatcher_id", "Value": "99"},
            {"Name": "campaign", "Value": "c1"},
        ],
        "ConfigurationSetName": "default-set",
    }


async def test_raw_request_omits_empty_destination_and_keeps_message_configuration_set(
    client: str,
) -> None:
    raw = b"From: s@example.com\r\nTo: x@example.net\r\nSubject: r\r\n\r\nbody\r\n"
    msg = OutgoingMessage(id=5, from_addr="s@example.com", raw=raw, configuration_set="own")
    async with (
        fake_ses(record_only) as fake,
        SesAdapter.open(settings(fake, configuration_set="default-set", client=client)) as ses,
    ):
        assert (await ses.send(msg)).outcome is Outcome.SENT

    body = json.loads(fake.requests[0].body)
    assert "Destination" not in body
    assert base64.b64decode(body["Content"]["Raw"]["Data"]) == raw
    assert body["ConfigurationSetName"] == "own"
    assert body["EmailTags"] == [{"Name": "dispatcher_id", "Value": "5"}]


# --- SES errors: classified, and exactly one attempt (SDK retries off) -----------------------


@pytest.mark.parametrize(
    ("handler", "outcome", "code"),
    [
        (v2_error(429, "TooManyRequestsException", "Too many requests"), Outcome.THROTTLED,
         "TooManyRequestsException"),
        (v2_error(400, "LimitExceededException", "Daily message quota exceeded."),
         Outcome.DAILY_QUOTA, "LimitExceededException"),
        (v2_error(500, "InternalServiceErrorException", "oops"), Outcome.TRANSIENT,
         "InternalServiceErrorException"),
        (v2_error(503, "ServiceUnavailable", "busy"), Outcome.TRANSIENT, "ServiceUnavailable"),
        (respond(502, b"<html>bad gateway</html>", content_type="text/html"), Outcome.TRANSIENT,
         "502"),
        (v2_error(400, "SendingPausedException", "paused"), Outcome.ACCOUNT_PAUSED,
         "SendingPausedException"),
        (v2_error(404, "NotFoundException", "Configuration set <x> does not exist."),
         Outcome.CONFIG_ERROR, "NotFoundException"),
        (v2_error(400, "MessageRejected", "Bad content"), Outcome.REJECTED, "MessageRejected"),
        # No identity listed: sender or recipient cannot be told, so the sender is held.
        (v2_error(400, "MessageRejected", "Email address is not verified."),
         Outcome.CONFIG_ERROR, "MessageRejected"),
    ],
)  # fmt: skip
async def test_send_error_is_classified_after_one_attempt(
    handler: Handler, outcome: Outcome, code: str, client: str
) -> None:
    async with fake_ses(handler) as fake, SesAdapter.open(settings(fake, client=client)) as ses:
        result = await ses.send(MSG)

    assert (result.outcome, result.code) == (outcome, code)
    assert len(fake.requests) == 1  # botocore retried nothing, not even 429 or 5xx


async def test_quota_error_raises_ses_error_after_one_attempt() -> None:
    handler = v1_error(400, "Throttling", "Maximum sending rate exceeded.")
    async with fake_ses(handler) as fake, SesAdapter.open(settings(fake)) as ses:
        with pytest.raises(SesError) as info:
            await ses.get_send_quota()

    assert info.value.outcome is Outcome.THROTTLED
    assert info.value.code == "Throttling"
    assert "Maximum sending rate exceeded." in str(info.value)
    assert len(fake.requests) == 1
    assert fake.requests[0].body.startswith(b"Action=GetSendQuota")


async def test_quota_5xx_is_not_retried() -> None:
    async with (
        fake_ses(v1_error(500, "InternalFailure", "x")) as fake,
        SesAdapter.open(settings(fake)) as ses,
    ):
        with pytest.raises(SesError) as info:
            await ses.get_send_quota()
    assert info.value.outcome is Outcome.TRANSIENT
    assert len(fake.requests) == 1


# --- network faults ---------------------------------------------------------------------


async def test_nothing_listening_is_transient(client: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with SesAdapter.open(settings(url, connect_timeout=1.0, client=client)) as ses:
        result = await ses.send(MSG)
        with pytest.raises(SesError) as info:
            await ses.get_send_quota()

    assert result.outcome is Outcome.TRANSIENT
    assert result.reason is not None and "Cannot connect to host" in result.reason
    assert info.value.outcome is Outcome.TRANSIENT


async def test_connect_timeout_is_transient(client: str) -> None:
    # A listening socket whose accept queue is full and never drained: the kernel drops further
    # SYNs, so the connect hangs until connect_timeout.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                s = socket.socket()
                s.setblocking(False)
                with suppress(BlockingIOError):
                    s.connect(("127.0.0.1", port))
                fillers.append(s)
            async with SesAdapter.open(
                settings(f"http://127.0.0.1:{port}", connect_timeout=0.3, client=client)
            ) as ses:
                result = await asyncio.wait_for(ses.send(MSG), 10)
        finally:
            for s in fillers:
                s.close()

    assert result.outcome is Outcome.TRANSIENT, result
    assert result.reason is not None and result.reason.startswith("ConnectTimeoutError")


async def test_no_answer_after_request_is_in_doubt(client: str) -> None:
    async with (
        fake_ses(never_answer) as fake,
        SesAdapter.open(settings(fake, read_timeout=0.5, client=client)) as ses,
    ):
        result = await asyncio.wait_for(ses.send(MSG), 10)

    assert result.outcome is Outcome.IN_DOUBT, result
    assert result.reason is not None and result.reason.startswith("ReadTimeoutError")
    assert len(fake.requests) == 1  # the whole request reached the server: SES may have it


async def test_connection_closed_after_request_is_in_doubt(client: str) -> None:
    async with (
        fake_ses(close_after_request) as fake,
        SesAdapter.open(settings(fake, client=client)) as ses,
    ):
        result = await ses.send(MSG)

    assert result.outcome is Outcome.IN_DOUBT, result
    assert result.reason is not None and result.reason.startswith("ConnectionClosedError")
    assert len(fake.requests) == 1


async def test_connection_reset_after_request_is_in_doubt(client: str) -> None:
    # aiobotocore wraps this ClientOSError as EndpointConnectionError, the same type as a refused
    # connection: only the wrapped aiohttp error tells "never sent" from "sent, then reset". The
    # lean client knows the request was written and says the connection closed.
    async with (
        fake_ses(reset_after_request) as fake,
        SesAdapter.open(settings(fake, client=client)) as ses,
    ):
        result = await ses.send(MSG)

    assert result.outcome is Outcome.IN_DOUBT, result
    assert result.reason is not None
    if client == "botocore":
        assert result.reason.startswith("EndpointConnectionError")
        assert "ClientOSError" in result.reason
    else:
        assert result.reason.startswith("ConnectionClosedError")
        assert "Connection reset by peer" in result.reason
    assert len(fake.requests) == 1


async def test_adapter_keeps_working_after_a_fault(client: str) -> None:
    answers = iter([close_after_request, record_only])

    async def handler(conn: Conn) -> None:
        await next(answers)(conn)

    async with fake_ses(handler) as fake, SesAdapter.open(settings(fake, client=client)) as ses:
        first = await ses.send(MSG)
        second = await ses.send(MSG)

    assert (first.outcome, second.outcome) == (Outcome.IN_DOUBT, Outcome.SENT)
    assert len(fake.requests) == 2

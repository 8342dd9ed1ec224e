"""The simulator's front (dispatcher/sim/front.py) answers the send routes exactly as the aiohttp
application does, and hands any other request, with its connection, to that application.

Spoken over raw sockets so that what is compared is the bytes a client receives.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from dispatcher.sim import admin
from dispatcher.sim.account import Template
from dispatcher.sim.launch import start_simulator
from dispatcher.sim.server import SimServer
from dispatcher.sim.settings import SimSettings

SEND = "/v2/email/outbound-emails"
BULK = "/v2/email/outbound-bulk-emails"
TEMPLATE = {"Subject": "Hi {{name}}", "Html": "<p>Hello {{name}}</p>", "Text": "Hello {{name}}"}


def send_body(to: str = "success@simulator.amazonses.com", sender: str = "s@example.com") -> bytes:
    content = {"Template": {"TemplateName": "t", "TemplateData": json.dumps({"name": "Ann"})}}
    return json.dumps(
        {"FromEmailAddress": sender, "Destination": {"ToAddresses": [to]}, "Content": content}
    ).encode()


SIMPLE_BODY = json.dumps(
    {
        "FromEmailAddress": "s@example.com",
        "Destination": {"ToAddresses": ["success@simulator.amazonses.com"]},
        "Content": {"Simple": {"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "Hello"}}}},
    }
).encode()
BULK_BODY = json.dumps(
    {
        "FromEmailAddress": "s@example.com",
        "DefaultContent": {"Template": {"TemplateName": "t", "TemplateData": "{}"}},
        "BulkEmailEntries": [
            {"Destination": {"ToAddresses": ["success@simulator.amazonses.com"]}},
            {"Destination": {"ToAddresses": ["not an address"]}},
        ],
    }
).encode()


def request(method: str, target: str, body: bytes = b"", *, extra: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: sim\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def answer(reader: asyncio.StreamReader) -> bytes:
    """One whole HTTP/1.1 answer (Content-Length framed)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    assert found is not None, head
    return head + await reader.readexactly(int(found.group(1)))


def masked(data: bytes) -> bytes:
    """An answer without what differs between two answers to the same request."""
    data = re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", data)
    data = re.sub(rb"(x-amzn-RequestId: )[^\r]*", rb"\1-", data)
    return re.sub(rb'"MessageId": ?"[^"]*"', b'"MessageId":"-"', data)


@asynccontextmanager
async def simulator(**settings: Any) -> AsyncIterator[SimServer]:
    async with SimServer(SimSettings(max_send_rate=1000, **settings)) as sim:
        admin.apply(sim.state, sim.publisher, "verify", {"identity": "example.com"})
        sim.state.account.templates["t"] = Template(
            "t", subject=TEMPLATE["Subject"], text=TEMPLATE["Text"], html=TEMPLATE["Html"]
        )
        yield sim


async def test_the_front_answers_sends_byte_for_byte_as_the_application_does() -> None:
    cases = [
        (SEND, send_body(), ""),  # accepted
        (SEND, send_body(sender="s@unverified.example.org"), ""),  # refused: 400 MessageRejected
        (SEND, b'{"Content": ', ""),  # not JSON: BadRequestException
        (SEND, send_body(), "Connection: close\r\n"),  # answered, then closed
        (BULK, BULK_BODY, ""),  # per-entry results, in json_response's Content-Type
    ]
    async with simulator(api_requests_per_second=0) as sim:
        for path, body, extra in cases:
            answers = []
            # The query string leaves the path (and so the aiohttp route) as it is, but the
            # front serves only the bare path: the second request takes the application's way.
            for target in (path, f"{path}?via=app"):
                reader, writer = await asyncio.open_connection(sim.host, sim.port)
                writer.write(request("POST", target, body, extra=extra))
                answers.append(await answer(reader))
                if extra:
                    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
                writer.close()
            front, app = answers
            assert masked(front) == masked(app), (path, extra)
        accepted = [m.to for m in sim.state.messages]
    # Each accepted send once per way in; the bulk call's good entry twice, its bad one never.
    assert accepted == [["success@simulator.amazonses.com"]] * 6


async def test_one_connection_carries_sends_and_any_other_call_in_order() -> None:
    async with simulator() as sim:
        reader, writer = await asyncio.open_connection(sim.host, sim.port)
        writer.write(request("POST", SEND, send_body()))
        first = await answer(reader)
        assert sim.open_connections() == 1
        # A send and then another call in one write (pipelined): answered in order, the
        # second by the application, and the connection is still one connection.
        writer.write(request("POST", SEND, send_body()) + request("GET", "/_sim/stats"))
        second, stats = await answer(reader), await answer(reader)
        assert sim.open_connections() == 1
        writer.write(request("POST", SEND, send_body()))  # now served by the application
        third = await answer(reader)
        # A body that arrives in pieces on a fresh connection is read whole.
        r2, w2 = await asyncio.open_connection(sim.host, sim.port)
        data = request("POST", SEND, send_body())
        for i in range(0, len(data), 7):
            w2.write(data[i : i + 7])
            await w2.drain()
            await asyncio.sleep(0)
        fourth = await answer(r2)
        assert sim.open_connections() == 2
        writer.close()
        w2.close()
        for _ in range(100):
            if sim.open_connections() == 0:
                break
            await asyncio.sleep(0.01)
        assert sim.open_connections() == 0
    for sent in (first, second, third, fourth):
        assert sent.startswith(b"HTTP/1.1 200 OK\r\n") and b'"MessageId"' in sent
    assert stats.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(stats.split(b"\r\n\r\n", 1)[1])["accepted"] == 2  # the two sends before it
    assert len(sim.state.messages) == 4


async def test_requests_the_front_does_not_take_are_answered_by_the_application() -> None:
    chunked = send_body()
    chunked_request = (
        (
            f"POST {SEND} HTTP/1.1\r\nHost: sim\r\nTransfer-Encoding: chunked\r\n\r\n"
            f"{len(chunked):x}\r\n"
        ).encode()
        + chunked
        + b"\r\n0\r\n\r\n"
    )
    async with simulator() as sim:
        answers = []
        for data in (
            chunked_request,  # chunked: aiohttp reads it
            request("GET", SEND),  # another method: no such operation
            b"POST " + SEND.encode() + b" HTTP/1.1\r\nBad Header\r\n\r\n",  # 400 from aiohttp
        ):
            reader, writer = await asyncio.open_connection(sim.host, sim.port)
            writer.write(data)
            answers.append(await answer(reader))
            writer.close()
    assert answers[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert answers[1].startswith(b"HTTP/1.1 404 Not Found\r\nx-amzn-ErrorType: UnknownOperation")
    assert answers[2].split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert b"Invalid header token" in answers[2]
    assert len(sim.state.messages) == 1


async def test_the_simulator_process_hands_a_connection_over_on_its_own_loop() -> None:
    # `python -m dispatcher.sim` runs on uvloop when it is installed: the hand-over
    # (set_protocol on its transport) must work there as on the stock loop.
    async with start_simulator(max_send_rate=1000) as sim:
        host, port = sim.endpoint_url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request("POST", SEND, SIMPLE_BODY))
        refused = await answer(reader)  # by the front: no identity verified yet
        identity = json.dumps({"EmailIdentity": "example.com"}).encode()
        writer.write(request("POST", "/v2/email/identities", identity))
        created = await answer(reader)  # by the application, on the same connection
        writer.write(request("POST", "/_sim/identities/example.com/verify"))
        verified = await answer(reader)
        writer.write(request("POST", SEND, SIMPLE_BODY))
        sent = await answer(reader)
        writer.close()
    assert refused.startswith(b"HTTP/1.1 400 Bad Request\r\nx-amzn-ErrorType: MessageRejected")
    assert created.startswith(b"HTTP/1.1 200 OK\r\n")
    assert verified.startswith(b"HTTP/1.1 200 OK\r\n")
    assert sent.startswith(b"HTTP/1.1 200 OK\r\n") and b'"MessageId"' in sent

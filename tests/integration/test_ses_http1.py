"""Http1Pool, the lean client's HTTP/1.1, against a loopback server answering byte by byte as
scripted: every way an answer can be framed, when a connection is reused, and what a failure
before and after the request was written raises."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dispatcher.ses.http1 import (
    ConnectFailed,
    Disconnected,
    Http1Pool,
    ProtocolError,
)
from dispatcher.ses.lean import ssl_context
from tests.support.moto import free_port
from tests.support.tls import certificate

OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
    b'{"MessageId":1}'
)


@dataclass
class Server:
    port: int
    connections: int = 0
    closed: int = 0  # connections the client closed (or that ended)
    requests: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def server(
    *answers: list[bytes | None] | None, tls: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    """Answers the n-th request with the n-th script: its pieces written one by one (a pause
    between them), a None piece closes the connection; a None script closes it without an
    answer. After the scripts, OK."""
    scripts = list(answers)
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        srv.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                srv.requests.append(head + await reader.readexactly(length))
                script = scripts.pop(0) if scripts else [OK]
                if script is None:
                    break
                closing = None in script
                for piece in script:
                    if piece is None:
                        break
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)
                if closing:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            srv.closed += 1
            handlers.discard(task)

    listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    srv = Server(listener.sockets[0].getsockname()[1])
    async with listener:
        yield srv
        # The client closed its connections: the handlers end on their own (cancelling a
        # stream handler makes Python 3.11 log a spurious traceback).
        if handlers:
            await asyncio.wait(list(handlers), timeout=2.0)


def pool(port: int, read_timeout: float = 5.0, limit: int = 4, idle: float = 10.0) -> Http1Pool:
    return Http1Pool(
        "127.0.0.1",
        port,
        tls=None,
        limit=limit,
        connect_timeout=2.0,
        read_timeout=read_timeout,
        idle_seconds=idle,
    )


async def post(p: Http1Pool) -> tuple[int, dict[str, str], bytes]:
    return await p.post("/v2/email/outbound-emails", {"Content-Type": "application/json"}, b"{}")


@pytest.mark.parametrize(
    ("script", "status", "body", "reused"),
    [
        ([OK], 200, b'{"MessageId":1}', True),
        ([OK[:9], OK[9:40], OK[40:]], 200, b'{"MessageId":1}', True),  # split anywhere
        ([b"HTTP/1.1 100 Continue\r\n\r\n", OK], 200, b'{"MessageId":1}', True),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"Mes", b"sa\r\n",
          b"8;x=1\r\ngeId\":1}\r\n0\r\n\r\n"], 200, b'{"MessageId":1}', True),
        ([b"HTTP/1.1 429 Too Many\r\nContent-Length: 2\r\nx-amzn-ErrorType: Throttling\r\n\r\n{}"],
         429, b"{}", True),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"],
         200, b"{}", False),
        ([b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}"], 200, b"{}", False),
        ([b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n<html>", b"</html>", None],
         502, b"<html></html>", False),  # delimited by the close
        ([b"HTTP/1.1 204 No Content\r\n\r\n"], 204, b"", True),
    ],
)  # fmt: skip
async def test_answers_are_read_whole_and_connections_reused_when_they_may_be(
    script: list[bytes | None], status: int, body: bytes, reused: bool
) -> None:
    async with server(script) as srv:
        p = pool(srv.port)
        first = await post(p)
        second = await post(p)
        await p.close()

    assert (first[0], first[2]) == (status, body)
    assert second[0] == 200
    assert srv.connections == (1 if reused else 2)


async def test_header_names_are_lower_case_and_repeated_ones_joined() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nX-Amzn-RequestId: r1\r\nVary: a\r\nVARY: b\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    async with server([answer]) as srv:
        p = pool(srv.port)
        status, headers, _ = await post(p)
        await p.close()
    assert status == 200
    assert headers["x-amzn-requestid"] == "r1"
    assert headers["vary"] == "a, b"


async def test_the_request_carries_host_length_and_the_given_headers() -> None:
    async with server() as srv:
        p = pool(srv.port)
        await p.post("/x", {"Authorization": "AWS4-HMAC-SHA256 sig", "X-Amz-Date": "d"}, b"body")
        await p.close()
    assert srv.requests == [
        b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: AWS4-HMAC-SHA256 sig\r\n"
        b"X-Amz-Date: d\r\nContent-Length: 4\r\n\r\nbody" % srv.port
    ]


async def test_nothing_listening_is_connect_failed() -> None:
    p = pool(free_port())
    with pytest.raises(ConnectFailed) as info:
        await post(p)
    assert "Cannot connect to host" in str(info.value)


@pytest.mark.parametrize(
    ("script", "error"),
    [
        (None, Disconnected),  # closed after the request, no answer
        ([OK[:30], None], Disconnected),  # closed mid-answer
        ([b"SMTP 220 hello\r\n\r\n"], ProtocolError),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"], ProtocolError),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], ProtocolError),
    ],
)
async def test_a_failure_after_the_request_was_written(
    script: list[bytes | None] | None, error: type[Exception]
) -> None:
    async with server(script) as srv:
        p = pool(srv.port)
        with pytest.raises(error):
            await post(p)
        after = await post(p)  # a new connection: the broken one is never reused
        await p.close()
    assert after[0] == 200
    assert srv.connections == 2


async def test_silence_past_the_read_timeout_is_a_timeout() -> None:
    async with server([OK[:20], b"", b"", b""]) as srv:  # then stalls (OK's rest never comes)
        p = pool(srv.port, read_timeout=0.2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await post(p)
        took = loop.time() - start
        await p.close()
    assert 0.2 <= took < 2.0


async def test_at_most_limit_connections_and_waiters_get_them_in_turn() -> None:
    slow: list[bytes | None] = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", b"", b"{}"]
    async with server(*([slow] * 6)) as srv:
        p = pool(srv.port, limit=2)
        answers = await asyncio.gather(*(post(p) for _ in range(6)))
        await p.close()
    assert [a[2] for a in answers] == [b"{}"] * 6
    assert srv.connections == 2


async def test_connections_idle_longer_than_idle_seconds_are_closed() -> None:
    slow: list[bytes | None] = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", b"", b"{}"]
    async with server(slow, slow, slow) as srv:
        p = pool(srv.port, idle=0.25)
        await asyncio.gather(post(p), post(p), post(p))  # a burst: three connections
        for _ in range(6):  # then one at a time: one connection does
            await asyncio.sleep(0.1)
            await post(p)
        await asyncio.sleep(0.05)  # the server sees the closes
        closed_while_in_use = srv.closed
        await p.close()
    assert srv.connections == 3
    assert closed_while_in_use == 2  # the two the burst left idle, not the one in use


@pytest.mark.parametrize(("name", "ok"), [("localhost", True), ("elsewhere.example", False)])
async def test_tls_checks_the_chain_and_the_host_name(tmp_path: Path, name: str, ok: bool) -> None:
    """Signed by the CA bundle given, but for another host: refused before anything is sent."""
    server_tls, ca_bundle = certificate(tmp_path, name)
    async with server(tls=server_tls) as srv:
        p = Http1Pool(
            "localhost",
            srv.port,
            tls=ssl_context(ca_bundle),
            limit=1,
            connect_timeout=5.0,
            read_timeout=5.0,
        )
        if ok:
            assert (await post(p))[0] == 200
        else:
            with pytest.raises(ConnectFailed) as info:
                await post(p)
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            assert "Hostname mismatch" in str(info.value)
        await p.close()
    assert len(srv.requests) == (1 if ok else 0)

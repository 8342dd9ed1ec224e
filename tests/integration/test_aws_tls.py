"""The AWS clients made through aioboto3 (GetAccount, GetSendQuota, templates, the SQS poller,
STS, and the sends with `ses.client = "botocore"`) check the TLS certificate's host name, as
the lean send client does: aiobotocore 2.25 alone accepted a certificate for any host signed
by a trusted CA."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aioboto3
import pytest
from botocore.exceptions import SSLError

from dispatcher.ses.adapter import adapter_config
from dispatcher.ses.settings import SesSettings
from tests.support.tls import certificate

ACCOUNT = b'{"SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 0.0}}'


@asynccontextmanager
async def tls_server(tls: ssl.SSLContext) -> AsyncIterator[tuple[int, list[bytes]]]:
    """Answers each request with ACCOUNT; yields its port and the requests it read."""
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            requests.append(head)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(ACCOUNT), ACCOUNT)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    async with listener:
        yield listener.sockets[0].getsockname()[1], requests


@pytest.mark.parametrize(("name", "ok"), [("localhost", True), ("elsewhere.example", False)])
async def test_the_sesv2_client_checks_the_host_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, ok: bool
) -> None:
    server_tls, ca_bundle = certificate(tmp_path, name)
    monkeypatch.setenv("AWS_CA_BUNDLE", ca_bundle)  # the certificate is trusted; is the name?
    async with tls_server(server_tls) as (port, requests):
        settings = SesSettings(
            region="us-east-1",
            endpoint_url=f"https://localhost:{port}",
            access_key_id="testing",
            secret_access_key="testing",
        )
        session = aioboto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        async with session.client(
            "sesv2", endpoint_url=settings.endpoint_url, config=adapter_config(settings)
        ) as ses:
            if ok:
                answer = await ses.get_account()
                assert answer["SendQuota"]["MaxSendRate"] == 1.0
            else:
                with pytest.raises(SSLError) as info:
                    await ses.get_account()
                assert "Hostname mismatch" in str(info.value)
    assert len([r for r in requests if r.startswith(b"GET")]) == (1 if ok else 0)

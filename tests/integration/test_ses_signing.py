"""The adapter's sends carry a SigV4 signature botocore itself would accept: the requests as they
reach an HTTP server on loopback, checked with the SES endpoint's verifier (botocore's signer)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.outcome import Outcome
from dispatcher.doors.sigv4 import parse_authorization, signature_matches
from dispatcher.ses import SesAdapter
from dispatcher.ses.settings import SesSettings

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@asynccontextmanager
async def capturing_ses() -> AsyncIterator[tuple[str, list[tuple[web.Request, bytes]]]]:
    """An endpoint that answers every SendEmail "sent" and keeps each request."""
    seen: list[tuple[web.Request, bytes]] = []

    async def send_email(request: web.Request) -> web.Response:
        seen.append((request, await request.read()))
        return web.json_response({"MessageId": f"m-{len(seen)}"})

    app = web.Application()
    app.router.add_post("/v2/email/outbound-emails", send_email)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def botocore_accepts(request: web.Request, body: bytes, secret: str) -> bool:
    return signature_matches(
        parse_authorization(request.headers.get("Authorization")),
        secret,
        method=request.method,
        raw_path=request.rel_url.raw_path,
        raw_query=request.rel_url.raw_query_string,
        headers=lambda name: request.headers.getall(name, []),
        body=body,
        amz_date=request.headers["X-Amz-Date"],
    )


async def test_sends_are_signed_as_botocore_signs() -> None:
    async with capturing_ses() as (url, seen):
        settings = SesSettings(
            region="eu-west-1", endpoint_url=url, access_key_id="AKID", secret_access_key=SECRET
        )
        async with SesAdapter.open(settings) as ses:
            for i in range(3):
                msg = OutgoingMessage(
                    id=i, from_addr="shop@example.com", to=("a@b.example",), subject="Grüße"
                )
                result = await ses.send(msg)
                assert (result.outcome, result.ses_message_id) == (Outcome.SENT, f"m-{i + 1}")
        assert len(seen) == 3
        for request, body in seen:
            assert botocore_accepts(request, body, SECRET)
            assert not botocore_accepts(request, body, "another secret")
            signed = parse_authorization(request.headers["Authorization"])
            assert (signed.region, signed.service) == ("eu-west-1", "ses")
            # Signed by SendSigner (what SES needs), not botocore's general signer.
            assert signed.signed_headers == ("host", "x-amz-date")

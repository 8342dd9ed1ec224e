"""The webhook sender against a real receiver on loopback: a receiver that answers again gets its
backed-off events at once, and a stop cuts a hanging POST short without waiting out its lease."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from dispatcher.domain.jobs import NewMessage
from dispatcher.queue.repository import Queue
from dispatcher.webhooks.sender import run_webhooks
from dispatcher.webhooks.settings import WebhookSettings
from dispatcher.webhooks.store import WebhookStore
from tests.support.cli import fetch
from tests.support.dispatch import eventually
from tests.support.moto import free_port

SECRET = "sender-test-secret-0123456789"
Handler = Callable[[web.Request], Awaitable[web.Response]]


@contextlib.asynccontextmanager
async def receiver(port: int, handle: Handler) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield
    finally:
        await runner.cleanup()


def message(subject: str) -> NewMessage:
    return NewMessage("app@example.com", to=("x@example.com",), subject=subject, text="t")


async def test_an_endpoint_that_answers_again_gets_its_backlog_at_once(
    queue: Queue, pg_dsn: str
) -> None:
    port = free_port()
    hook = WebhookSettings(
        f"http://127.0.0.1:{port}/hook", SECRET, events=("queued",), retry_base=120.0
    )
    await WebhookStore(queue.pool).sync([hook])  # as the daemon does first: events from now on
    stop = asyncio.Event()
    sender = asyncio.create_task(run_webhooks(queue.pool, [hook], stop))
    received: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((await request.json())["data"]["subject"])
        return web.Response(status=200)

    try:
        first = (await queue.enqueue(message("while down"))).id

        async def refused() -> bool:
            rows = await fetch(
                pg_dsn,
                "SELECT next_at > now() + interval '50 seconds' AS later "
                "FROM dispatcher.webhook_deliveries WHERE message_id = $1 AND attempts = 1 "
                "AND lease_until IS NULL",
                first,
            )
            return bool(rows and rows[0]["later"])

        await eventually(refused, limit=10)  # its next try is a minute or two away
        async with receiver(port, handle):
            await queue.enqueue(message("once up"))

            async def both() -> bool:
                return sorted(received) == ["once up", "while down"]

            await eventually(both, limit=5)  # not after the backoff: at once
    finally:
        stop.set()
        await asyncio.wait_for(sender, 10)


async def test_a_stop_cuts_a_hanging_post_short_and_frees_its_event(
    queue: Queue, pg_dsn: str
) -> None:
    port = free_port()
    hook = WebhookSettings(f"http://127.0.0.1:{port}/hook", SECRET, timeout=60.0)
    arrived, done = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        arrived.set()
        await done.wait()  # answers only after the test (the sender has hung up by then)
        return web.Response(status=200)

    await WebhookStore(queue.pool).sync([hook])
    async with receiver(port, hang):
        stop = asyncio.Event()
        sender = asyncio.create_task(run_webhooks(queue.pool, [hook], stop))
        await queue.enqueue(message("hangs"))
        await asyncio.wait_for(arrived.wait(), 10)
        stop.set()
        await asyncio.wait_for(sender, 5)  # not the 60 s timeout, nor the lease
        done.set()
    rows = await fetch(
        pg_dsn,
        "SELECT state, attempts, lease_until, next_at <= now() AS due "
        "FROM dispatcher.webhook_deliveries",
    )
    assert [tuple(r) for r in rows] == [("pending", 1, None, True)]

"""The SNS HTTP endpoint (aiohttp): verify, record durably, answer, then process.

Every POST is checked in this order: body size (413), the ``x-amz-sns-message-type`` header
(400), the SNS signature and its certificate, topic and URLs (``sns.SnsVerifier``: 400/403,
or 503 when a certificate cannot be fetched so SNS retries). A Notification is recorded before
the 200 goes out (a replayed MessageId records nothing and is answered 200 too, so SNS stops
retrying); its effects (suppressions, per-message state) are applied by a background task
right after. A SubscriptionConfirmation whose SubscribeURL passed the host check is confirmed
by a GET, also after answering. A rejected message records nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import structlog
from aiohttp import web

from dispatcher.feedback.events import MalformedEvent, ParsedEvent, parse_event
from dispatcher.feedback.sns import (
    NOTIFICATION,
    RAW_DELIVERY,
    SUBSCRIPTION_CONFIRMATION,
    TYPES,
    CertFetcher,
    SnsRejected,
    SnsVerifier,
)
from dispatcher.feedback.store import FeedbackStore

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_PATH",
    "certificate_fetcher",
    "create_app",
    "idle",
    "subscription_confirmer",
]

log = structlog.get_logger()

DEFAULT_MAX_BODY = 256 * 1024  # SNS messages are at most 256 KB
DEFAULT_PATH = "/sns"
MAX_CERT_BYTES = 64 * 1024
HTTP_TIMEOUT = 10.0  # seconds for a certificate fetch or a confirmation GET
SHUTDOWN_GRACE = 5.0  # seconds background work may take to finish at cleanup
SWEEP_LIMIT = 1000  # unprocessed events picked up at start

Confirmer = Callable[[str], Awaitable[None]]

_TASKS = web.AppKey("feedback_tasks", set[asyncio.Task[Any]])


def certificate_fetcher(http: aiohttp.ClientSession) -> CertFetcher:
    """GET a certificate URL (already host-checked by the verifier), bounded in size and time."""

    async def fetch(url: str) -> bytes:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT)
        async with http.get(url, timeout=timeout, allow_redirects=False) as resp:
            resp.raise_for_status()
            data = await resp.content.read(MAX_CERT_BYTES + 1)
        if len(data) > MAX_CERT_BYTES:
            raise ValueError(f"the certificate at {url} is larger than {MAX_CERT_BYTES} bytes")
        return data

    return fetch


def subscription_confirmer(http: aiohttp.ClientSession) -> Confirmer:
    """GET a SubscribeURL (already host-checked); no redirects, so it cannot be bounced off."""

    async def confirm(url: str) -> None:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT)
        async with http.get(url, timeout=timeout, allow_redirects=False) as resp:
            resp.raise_for_status()
            await resp.content.read(MAX_CERT_BYTES)

    return confirm


def _answer(status: int, **body: Any) -> web.Response:
    return web.json_response(body, status=status)


def create_app(
    verifier: SnsVerifier,
    store: FeedbackStore,
    *,
    confirm: Confirmer,
    max_body: int = DEFAULT_MAX_BODY,
    path: str = DEFAULT_PATH,
) -> web.Application:
    """An aiohttp application taking SNS HTTP(S) deliveries on POST ``path``."""
    app = web.Application(client_max_size=max_body)
    tasks: set[asyncio.Task[Any]] = set()
    app[_TASKS] = tasks

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def process(event_id: int) -> None:
        try:
            await store.process(event_id)
        except (asyncpg.PostgresError, OSError) as exc:
            # The event stays recorded and unprocessed; the next sweep picks it up.
            log.warning("feedback.process_failed", event_id=event_id, error=str(exc))
        except Exception:
            # A defect with one event must not take the endpoint down; it stays unprocessed.
            log.exception("feedback.process_crashed", event_id=event_id)

    async def confirm_subscription(url: str, topic_arn: str) -> None:
        try:
            await confirm(url)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("feedback.confirm_failed", topic_arn=topic_arn, error=str(exc))
        else:
            log.info("feedback.subscription_confirmed", topic_arn=topic_arn)

    async def sweep() -> None:
        try:
            done = await store.process_pending(SWEEP_LIMIT)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("feedback.sweep_failed", error=str(exc))
            return
        if done:
            log.info("feedback.sweep", processed=done)

    async def handle(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > max_body:
            return _reject(request, 413, "too_large", f"the body is over {max_body} bytes")
        if request.headers.get("x-amz-sns-rawdelivery", "").lower() == "true":
            return _reject(request, 400, "raw_delivery", RAW_DELIVERY)
        kind = request.headers.get("x-amz-sns-message-type")
        if kind not in TYPES:
            return _reject(request, 400, "bad_message_type", "x-amz-sns-message-type")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _reject(request, 413, "too_large", f"the body is over {max_body} bytes")
        try:
            message = await verifier.verify(body)
        except SnsRejected as exc:
            return _reject(request, exc.status, exc.problem.code, exc.detail)
        if message.type != kind:
            return _reject(request, 400, "bad_message_type", "header and body Type differ")
        if message.type == SUBSCRIPTION_CONFIRMATION:
            assert message.subscribe_url is not None  # checked by the verifier
            spawn(confirm_subscription(message.subscribe_url, message.topic_arn), "sns-confirm")
            return _answer(200, result="confirming")
        if message.type != NOTIFICATION:
            log.info("feedback.unsubscribed", topic_arn=message.topic_arn)
            return _answer(200, result="ok")
        event: ParsedEvent | None
        try:
            event = parse_event(message.message)
        except MalformedEvent as exc:
            # Authentic but unreadable: kept for a person; a retry by SNS would not help.
            log.warning(
                "feedback.malformed_event", sns_message_id=message.message_id, error=str(exc)
            )
            event = None
        try:
            event_id = await store.record(
                sns_message_id=message.message_id,
                topic_arn=message.topic_arn,
                raw=message.raw or {},
                event=event,
            )
        except (asyncpg.PostgresError, OSError) as exc:
            log.error("feedback.record_failed", sns_message_id=message.message_id, error=str(exc))
            return _answer(503, error="unavailable")  # SNS retries
        if event_id is None:
            log.info("feedback.duplicate", sns_message_id=message.message_id)
            return _answer(200, result="duplicate")
        spawn(process(event_id), f"feedback-process-{event_id}")
        return _answer(200, result="recorded", event_id=event_id)

    async def on_startup(app: web.Application) -> None:
        spawn(sweep(), "feedback-sweep")

    async def on_cleanup(app: web.Application) -> None:
        if tasks:
            _, pending = await asyncio.wait(set(tasks), timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.router.add_post(path, handle)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def _reject(request: web.Request, status: int, code: str, detail: str) -> web.Response:
    log.warning("feedback.rejected", status=status, code=code, detail=detail, peer=request.remote)
    return _answer(status, error=code, detail=detail)


async def idle(app: web.Application, within: float = 5.0) -> None:
    """Wait (at most ``within`` seconds) until the app's background work is done (tests)."""
    tasks = app[_TASKS]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while tasks and loop.time() < deadline:
        await asyncio.wait(set(tasks), timeout=deadline - loop.time())

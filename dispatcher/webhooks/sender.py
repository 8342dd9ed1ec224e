"""The daemon's webhook loop: one task per endpoint claims due events, POSTs them signed, and
records what the receiver answered. It shares nothing with sending but the pool (at most two
connections, see store.py), so a slow or dead receiver never holds up mail.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.clock import wait_event
from dispatcher.db.outage import connection_lost
from dispatcher.webhooks.retry import ERROR_CHARS, judge
from dispatcher.webhooks.settings import WebhookSettings, shown_url
from dispatcher.webhooks.signing import body_of, headers
from dispatcher.webhooks.store import Claimed, Result, WebhookStore

__all__ = ["EndpointSender", "run_webhooks"]

log = structlog.get_logger()

POLL_INTERVAL = 0.5  # seconds between looks for due events when there were none
BATCH = 16  # POSTs in flight per endpoint (one message's events still go one by one)
PRUNE_INTERVAL = 600.0  # seconds between prunes of delivered events
KEEP_DONE = 7 * 86400.0  # delivered / given-up events are kept this long (seconds) for status
DB_RETRY = 2.0  # seconds before the next round after the database was unreachable


class EndpointSender:
    """Delivers one endpoint's events until `stop`."""

    def __init__(
        self,
        store: WebhookStore,
        endpoint_id: int,
        settings: WebhookSettings,
        http: aiohttp.ClientSession,
        *,
        rand: Callable[[], float] = random.random,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._store = store
        self._id = endpoint_id
        self._settings = settings
        self._http = http
        self._rand = rand
        self._poll = poll_interval
        # A POST failed since the last success: the next success pulls the backlog forward.
        self._failing = False
        self._log = log.bind(endpoint=shown_url(settings.url))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await self.round(stop)
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                self._log.warning("webhook.db_unavailable", error=repr(exc))
                await wait_event(stop, DB_RETRY)
                continue
            if not busy:
                await wait_event(stop, self._poll)

    async def round(self, stop: asyncio.Event) -> bool:
        """Claim and POST one batch; True if there may be more due at once."""
        await self._store.order_late()
        lease = self._settings.timeout * 2 + 5.0  # then another process may take it over
        claimed = await self._store.claim(self._id, BATCH, lease)
        if not claimed:
            return False
        posts = {asyncio.create_task(self._post(c)): c for c in claimed}
        stopping = asyncio.create_task(stop.wait())
        try:
            pending: set[asyncio.Task[Result]] = set(posts)
            while pending and not stop.is_set():
                done, _ = await asyncio.wait(
                    pending | {stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= done
        finally:
            stopping.cancel()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        results = [t.result() for t in posts if t.done() and not t.cancelled()]
        await self._store.release([posts[t] for t in posts if t.cancelled()])
        await self._store.settle(results)
        delivered = sum(r.state == "delivered" for r in results)
        if delivered and self._failing:
            self._failing = False
            await self._store.wake(self._id)  # back: the backlog goes now, not at its backoff
            self._log.info("webhook.endpoint_back")
            return True
        failed = [r for r in results if r.state == "pending"]
        if failed and not self._failing:  # once per outage, not once per event
            self._failing = True
            self._log.warning("webhook.endpoint_failing", error=failed[0].error)
        return len(claimed) == BATCH or delivered > 0

    async def _post(self, claimed: Claimed) -> Result:
        event = claimed.event
        body = body_of(event)
        status: int | None = None
        error: str | None = None
        try:
            async with self._http.post(
                self._settings.url,
                data=body,
                headers=headers(self._settings.secret, int(time.time()), event, body),
                allow_redirects=False,  # a redirect is a misconfigured URL, not a delivery
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
            ) as resp:
                status = resp.status
                if not 200 <= status < 300:
                    error = (await resp.content.read(ERROR_CHARS)).decode("utf-8", "replace")
        except TimeoutError:
            error = f"no answer within {self._settings.timeout:g} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        verdict = judge(
            status,
            error,
            attempts=claimed.attempts,
            created_at=event.created_at,
            now=datetime.now(UTC),
            settings=self._settings,
            rand=self._rand(),
        )
        fields = {"event_id": event.id, "type": event.type, "message_id": event.message_id}
        if verdict.state == "delivered":
            self._log.debug("webhook.delivered", **fields, attempts=claimed.attempts)
        elif verdict.state == "given_up":
            self._log.error(
                "webhook.given_up",
                **fields,
                attempts=claimed.attempts,
                error=verdict.error,
                give_up_hours=self._settings.give_up_hours,
            )
        else:
            self._log.debug(
                "webhook.failed",
                **fields,
                attempts=claimed.attempts,
                error=verdict.error,
                retry_in=round(verdict.delay, 2),
            )
        return Result(event.id, claimed.attempts, verdict.state, verdict.delay, verdict.error)


async def run_webhooks(
    pool: asyncpg.Pool, endpoints: Sequence[WebhookSettings], stop: asyncio.Event
) -> None:
    """Sync the configured endpoints into the database, then deliver their events until `stop`.

    With no endpoint configured, only the sync runs: endpoints another config added stop
    receiving new events (the triggers write none).
    """
    store = WebhookStore(pool)
    while True:  # Postgres away at start-up: the daemon rides it out, so do we
        try:
            ids, dropped = await store.sync(endpoints)
            break
        except Exception as exc:
            if not connection_lost(exc):
                raise
            log.warning("webhook.db_unavailable", error=repr(exc))
            if await wait_event(stop, DB_RETRY):
                return
    for url in dropped:
        log.warning("webhook.endpoint_unsubscribed", endpoint=shown_url(url))
    if not endpoints:
        return
    async with aiohttp.ClientSession() as http:
        tasks = [
            asyncio.create_task(
                EndpointSender(store, ids[e.url], e, http).run(stop), name=f"webhook-{ids[e.url]}"
            )
            for e in endpoints
        ]
        tasks.append(asyncio.create_task(_prune_until(store, stop), name="webhook-prune"))
        log.info("webhook.started", endpoints=[shown_url(e.url) for e in endpoints])
        try:
            # All end at `stop`; if one fails first, the others are cancelled (their leased
            # events are retried once the lease ends) and the failure is raised.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                raise failure


async def _prune_until(store: WebhookStore, stop: asyncio.Event) -> None:
    while not await wait_event(stop, PRUNE_INTERVAL):
        try:
            await store.prune(KEEP_DONE)
        except Exception as exc:
            if not connection_lost(exc):
                raise

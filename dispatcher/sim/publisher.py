"""Publishes SES events: signed SNS HTTP POSTs to subscribed endpoints, a JSONL file, and a
bounded in-memory record for /_sim/events. Delay, duplicates and reordering are injected here.

A subscription starts pending: the simulator POSTs a SubscriptionConfirmation and delivers
nothing until its SubscribeURL is fetched (as SNS does), unless it was made with auto_confirm.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import IO, Any

import aiohttp

from dispatcher.sim import sns
from dispatcher.sim.events import ACCOUNT_ID, EVENT_TYPES, SesEvent, build_events, iso
from dispatcher.sim.state import SentMessage, SimState

log = logging.getLogger("dispatcher.sim")

KINDS = ("identity", "configuration_set")
POST_TIMEOUT = 5.0  # seconds per SNS POST
ATTEMPTS = 3  # SNS retries a failed HTTP delivery; a few quick attempts here
RETRY_DELAY = 0.2  # seconds, doubled per attempt
MEMORY = 10_000  # events and delivery attempts kept for inspection


@dataclass(slots=True)
class Subscription:
    id: str
    endpoint: str
    topic_arn: str
    kind: str  # "identity": notificationType JSON; "configuration_set": eventType JSON
    configuration_set: str | None  # configuration_set kind: only this set's mail; None = any
    token: str
    confirmed: bool = False
    types: frozenset[str] | None = None  # only these event types (Bounce, ...); None = all
    # Identity notifications: the original headers in `mail` (SES's
    # SetIdentityHeadersInNotificationsEnabled); without them `mail` has no headersTruncated,
    # headers, commonHeaders (notification-contents.html).
    headers: bool = True

    @property
    def arn(self) -> str:
        return f"{self.topic_arn}:{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subscription_arn": self.arn,
            "endpoint": self.endpoint,
            "topic_arn": self.topic_arn,
            "kind": self.kind,
            "configuration_set": self.configuration_set,
            "confirmed": self.confirmed,
            "types": sorted(self.types) if self.types is not None else None,
            "headers": self.headers,
        }


class Publisher:
    """Turns accepted messages into events and sends them where they are wanted."""

    def __init__(self, state: SimState, *, rng: random.Random | None = None) -> None:
        self.state = state
        self.signer = sns.Signer()
        self.base_url = ""  # set by the server once it knows its port
        self.record = False  # keep events in memory even with nowhere to send them
        self.subscriptions: dict[str, Subscription] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=MEMORY)
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=MEMORY)
        self._rng = rng or random.Random()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._file: IO[str] | None = None
        self._file_path = ""
        state.listeners.append(self.on_accept)

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(
        self,
        endpoint: str,
        *,
        kind: str = "identity",
        configuration_set: str | None = None,
        topic_arn: str | None = None,
        auto_confirm: bool = False,
        types: list[str] | None = None,
        headers: bool = True,
    ) -> Subscription:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if types is not None and (
            not isinstance(types, list) or not set(types) <= set(EVENT_TYPES)
        ):
            raise ValueError(f"types must be a list of {', '.join(EVENT_TYPES)}, got {types!r}")
        region = self.state.settings.region
        sub = Subscription(
            id=str(uuid.uuid4()),
            endpoint=endpoint,
            topic_arn=topic_arn
            or f"arn:aws:sns:{region}:{ACCOUNT_ID}:ses-{kind.replace('_', '-')}",
            kind=kind,
            configuration_set=configuration_set,
            token=os.urandom(32).hex(),
            confirmed=auto_confirm,
            types=frozenset(types) if types is not None else None,
            headers=headers,
        )
        self.subscriptions[sub.id] = sub
        if not auto_confirm:
            body = sns.subscription_confirmation(
                self.signer,
                topic_arn=sub.topic_arn,
                token=sub.token,
                timestamp=iso(time.time()),
                base_url=self.base_url,
                version=self.state.settings.sns_signature_version,
            )
            self._spawn(self._post(sub, body, "SubscriptionConfirmation", 0.0))
        return sub

    def confirm(self, topic_arn: str, token: str) -> Subscription | None:
        for sub in self.subscriptions.values():
            if sub.token == token and sub.topic_arn == topic_arn:
                sub.confirmed = True
                return sub
        return None

    def unsubscribe(self, ident: str) -> bool:
        for key, sub in list(self.subscriptions.items()):
            if ident in (sub.id, sub.arn):
                del self.subscriptions[key]
                return True
        return False

    # -- events ----------------------------------------------------------------------------

    def on_accept(self, record: SentMessage) -> None:
        """The state's listener: cheap when nothing wants events."""
        settings = self.state.settings
        if not (self.subscriptions or settings.events_file or self.record):
            return
        events = build_events(
            record,
            region=settings.region,
            suppressed=self.state.account.suppressed,
            now=time.time(),
            feedback_id=feedback_id,
        )
        self.publish(record, events)

    def publish(
        self, record: SentMessage, events: list[SesEvent], *, remember: bool = False
    ) -> None:
        """Send `events` about `record` wherever they are wanted (`remember`: keep them in
        /_sim/events even with no subscriber)."""
        settings = self.state.settings
        self.state.counters.events += len(events)
        delay = settings.event_delay_ms / 1000.0
        reorder = settings.event_reorder_ms / 1000.0
        for event in events:
            if remember or self.record or self.subscriptions:
                self.events.append(event_json(event))
            wait = delay + (self._rng.random() * reorder if reorder else 0.0)
            if settings.events_file:
                if wait:
                    self._spawn(self._write_later(event, wait))
                else:
                    self._write(event)
            for sub in self.subscriptions.values():
                if not sub.confirmed:
                    continue  # SNS delivers nothing to a pending subscription
                if sub.types is not None and event.type not in sub.types:
                    continue
                if sub.kind == "identity":
                    payload = event.notification
                    if payload is not None and not sub.headers:
                        payload = _without_headers(payload)
                else:
                    wanted = sub.configuration_set
                    payload = (
                        event.event
                        if wanted is None or wanted == record.configuration_set
                        else None
                    )
                if payload is None:
                    continue
                body = sns.notification(
                    self.signer,
                    topic_arn=sub.topic_arn,
                    message=json.dumps(payload),
                    timestamp=iso(time.time()),
                    base_url=self.base_url,
                    subscription_arn=sub.arn,
                    version=settings.sns_signature_version,
                )
                self._spawn(self._post(sub, body, "Notification", wait))
                if settings.event_duplicate_rate and (
                    self._rng.random() < settings.event_duplicate_rate
                ):
                    # SNS delivers at least once: a duplicate has the same MessageId.
                    extra = wait + self._rng.random() * max(reorder, 0.05)
                    self._spawn(self._post(sub, body, "Notification", extra))

    def _write(self, event: SesEvent) -> None:
        path = self.state.settings.events_file
        if self._file is None or path != self._file_path:
            if self._file is not None:
                self._file.close()
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
            self._file_path = path
        for payload in (event.notification, event.event):
            if payload is not None:
                self._file.write(json.dumps(payload, separators=(",", ":")) + "\n")
        self._file.flush()

    async def _write_later(self, event: SesEvent, wait: float) -> None:
        await asyncio.sleep(wait)
        if self.state.settings.events_file:
            self._write(event)

    # -- HTTP ------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, sub: Subscription, body: dict[str, Any], kind: str, wait: float) -> None:
        if wait > 0:
            await asyncio.sleep(wait)
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT), raise_for_status=False
            )
        headers = {
            "x-amz-sns-message-type": kind,
            "x-amz-sns-message-id": body["MessageId"],
            "x-amz-sns-topic-arn": sub.topic_arn,
            "Content-Type": "text/plain; charset=UTF-8",
            "User-Agent": "Amazon Simple Notification Service Agent",
        }
        if kind == "Notification":
            headers["x-amz-sns-subscription-arn"] = sub.arn
        data = json.dumps(body).encode()
        for attempt in range(1, ATTEMPTS + 1):
            status: int | None = None
            error = ""
            try:
                async with self._http.post(sub.endpoint, data=data, headers=headers) as resp:
                    status = resp.status
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.deliveries.append(
                {
                    "subscription": sub.id,
                    "type": kind,
                    "message_id": body["MessageId"],
                    "attempt": attempt,
                    "status": status,
                    "error": error,
                }
            )
            if status is not None and 200 <= status < 300:
                return
            if attempt < ATTEMPTS:
                await asyncio.sleep(RETRY_DELAY * 2 ** (attempt - 1))
        log.warning("sim.sns_delivery_failed endpoint=%s type=%s", sub.endpoint, kind)

    async def drain(self, within: float = 5.0) -> None:
        """Wait (at most `within` seconds) until every scheduled delivery has finished."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self._tasks and loop.time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=deadline - loop.time())

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._file is not None:
            self._file.close()
            self._file = None


def _without_headers(notification: dict[str, Any]) -> dict[str, Any]:
    mail = {
        k: v
        for k, v in notification["mail"].items()
        if k not in ("headersTruncated", "headers", "commonHeaders")
    }
    return {**notification, "mail": mail}


def feedback_id() -> str:
    """A new bounce or complaint feedbackId, in SES's shape."""
    return f"0100{int(time.time() * 1000):012x}-{uuid.uuid4()}-000000"


def event_json(event: SesEvent) -> dict[str, Any]:
    return {
        "type": event.type,
        "message_id": event.message_id,
        "recipients": list(event.recipients),
        "notification": event.notification,
        "event": event.event,
    }

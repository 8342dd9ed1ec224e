"""Feedback in Postgres: record SES events durably (once per SNS MessageId), then process them
(recipients, per-message state, suppressions) exactly once; and the suppression list itself.

Recording and processing are two steps so the HTTP endpoint can answer as soon as the event is
durable. ``process`` locks the event row and sets ``processed_at`` in the transaction that
applies its effects: a second call, a replay or a concurrent process changes nothing, and
``process_pending`` finishes what a crash left recorded but unprocessed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.db.outage import connection_lost
from dispatcher.db.sql import named_queries
from dispatcher.errors import InputError
from dispatcher.feedback.events import (
    EventKind,
    MalformedEvent,
    ParsedEvent,
    failure_reason,
    normalize_address,
    parse_event,
    storable,
    suppression_reason,
)
from dispatcher.feedback.guard import Counts

query = named_queries("dispatcher.feedback", "feedback.sql")

__all__ = [
    "TRANSIENT_LIMIT",
    "TRANSIENT_WINDOW_DAYS",
    "CampaignFeedback",
    "FeedbackStore",
    "HeldSender",
    "MessageEvent",
    "Processed",
    "Suppression",
    "check_address",
]

log = structlog.get_logger()

# Transient bounces: an address is suppressed after this many within this many days.
# (To become settings: feedback.transient_bounce_limit / transient_bounce_days.)
TRANSIENT_LIMIT = 3
TRANSIENT_WINDOW_DAYS = 7.0
CHUNK = 5000  # addresses per statement for import/add/remove
MALFORMED = "malformed"  # events.kind of an authentic SNS message whose SES JSON was unreadable
# Tagless events are tied to a send whose MessageId was recorded after them for this long.
LATE_LINK_SECONDS = 900.0
# The guard's per-minute counters are folded (their shards into one row) once this old.
FOLD_AFTER = 120.0
# Events whose recipients are recorded one by one (the guard's rates and suppressions read them).
_PER_RECIPIENT = frozenset({EventKind.BOUNCE, EventKind.COMPLAINT, EventKind.DELIVERY})


@dataclass(frozen=True, slots=True)
class Suppression:
    address: str
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HeldSender:
    """A sender whose mail waits out a configuration error SES reported for it."""

    from_addr: str
    configuration_set: str | None
    reason: str | None  # SES's words, `Code: message`
    retry_at: datetime  # when its mail is tried again


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """One SES event of a message: when it happened, its kind, and what it said (None when
    the stored JSON could not be read)."""

    at: datetime
    kind: str
    event: ParsedEvent | None


@dataclass(frozen=True, slots=True)
class CampaignFeedback:
    """What came back for one campaign: the guard's counts plus deliveries and all bounces."""

    counts: Counts  # recipients sent, hard bounces, complaints
    delivered: int
    bounced_any: int  # hard and soft


@dataclass(frozen=True, slots=True)
class Processed:
    """What processing one event did."""

    event_id: int
    kind: str
    suppressed: tuple[str, ...]  # addresses newly suppressed by it


def check_address(address: str) -> str:
    """The suppression key of an address typed or imported by a person (a display name is
    dropped, the domain lower-cased and in ASCII); InputError if it is plainly not an address."""
    key = normalize_address(address)
    local, at, domain = key.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in key) or len(key) > 320:
        raise InputError(f"{address!r} is not an email address")
    return key


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class FeedbackStore:
    """Event recording and suppressions over the queue's connection pool."""

    __slots__ = ("_pool", "_transient_limit", "_transient_window")

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        transient_limit: int = TRANSIENT_LIMIT,
        transient_window_days: float = TRANSIENT_WINDOW_DAYS,
    ) -> None:
        self._pool = pool
        self._transient_limit = transient_limit
        self._transient_window = transient_window_days * 86400.0

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool (the unsubscribe receiver reads a recipient's address on it)."""
        return self._pool

    # -- events -------------------------------------------------------------------------------

    async def record(
        self,
        *,
        sns_message_id: str,
        topic_arn: str,
        raw: Mapping[str, Any],
        event: ParsedEvent | None,
    ) -> int | None:
        """Store one SNS notification; its event id, or None if this MessageId was seen.

        A NUL or lone surrogate anywhere (Postgres refuses both in text and jsonb) is stored as
        U+FFFD, so an authentic event with one is recorded rather than refused on every retry.
        """
        try:
            clean = storable(dict(raw))
        except RecursionError:  # nested past Python's limit: stored as it came, NUL-free or not
            clean = dict(raw)
        if clean != raw:
            log.warning("feedback.unstorable_replaced", sns_message_id=sns_message_id)
        sns_message_id, topic_arn = storable(sns_message_id), storable(topic_arn)
        async with self._pool.acquire() as conn:
            event_id: int | None = await conn.fetchval(
                query("event_record"),
                sns_message_id,
                topic_arn,
                event.kind.value if event is not None else MALFORMED,
                event.event_type if event is not None else None,
                event.ses_message_id if event is not None else None,
                event.message_id if event is not None else None,
                event.timestamp if event is not None else None,
                json.dumps(clean),
                json.dumps(storable(event.to_json())) if event is not None else None,
            )
        return event_id

    async def process(self, event_id: int) -> Processed | None:
        """Apply a recorded event's effects once; None if done already (or being done)."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(query("event_lock_unprocessed"), event_id)
            if row is None:
                return None
            suppressed: tuple[str, ...] = ()
            event = self._reparse(row["raw"])
            if event is not None:
                suppressed = await self._apply(conn, event_id, event, row["received_at"])
            await conn.execute(query("event_mark_processed"), event_id)
        result = Processed(event_id, row["kind"], suppressed)
        if suppressed:
            log.info(
                "feedback.suppressed", event_id=event_id, kind=row["kind"], count=len(suppressed)
            )
        return result

    async def link_late(self, within: float = LATE_LINK_SECONDS) -> int:
        """Tie events that came before their send's MessageId was recorded to the message, and
        count them for it (the guard's campaign rates read those counts); how many messages."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(query("events_link_late"), float(within))
            for row in rows:
                await conn.execute(
                    query("message_feedback_add"),
                    row["message_id"],
                    row["delivered"],
                    row["bounced"],
                    row["complained"],
                )
        return len(rows)

    async def process_pending(self, limit: int = 100) -> int:
        """Process events recorded but never processed (a crash in between); how many."""
        async with self._pool.acquire() as conn:
            ids = [r["id"] for r in await conn.fetch(query("event_pending"), limit)]
        done = 0
        for event_id in ids:
            try:
                processed = await self.process(event_id)
            except Exception as exc:
                if connection_lost(exc):
                    raise
                # One event that cannot be applied must not keep the ones after it waiting.
                log.exception("feedback.process_crashed", event_id=event_id)
                continue
            if processed is not None:
                done += 1
        return done

    @staticmethod
    def _reparse(raw: Any) -> ParsedEvent | None:
        """The event from the stored SNS body (the one source of truth)."""
        try:
            return parse_event(_json(raw)["Message"])
        except (MalformedEvent, KeyError, TypeError):
            return None

    async def _apply(
        self, conn: asyncpg.Connection, event_id: int, event: ParsedEvent, received: datetime
    ) -> tuple[str, ...]:
        # Ours by the dispatcher_id tag, else by SES's MessageId: identity notifications (and
        # mail sent without our tag) carry no tags on AWS.
        message_id = event.message_id
        if message_id is None and event.ses_message_id:
            message_id = await conn.fetchval(
                query("message_by_ses_id"), event.ses_message_id, event_id
            )
        failed = failure_reason(event)
        # Recorded `sent` when SES took the call; it was never delivered.
        if (
            failed is not None
            and message_id is not None
            and await conn.fetchval(
                query("message_undelivered"), message_id, event.kind.value, failed
            )
        ):
            log.warning("message.not_delivered", message_id=message_id, reason=failed)
        if event.kind not in _PER_RECIPIENT or not event.recipients:
            return ()
        addresses = [r.address for r in event.recipients]
        await conn.execute(
            query("recipient_events_insert"),
            event_id,
            event.kind.value,
            event.bounce_type,
            event.bounce_subtype,
            event.timestamp or received,
            addresses,
            [r.status for r in event.recipients],
            [r.diagnostic for r in event.recipients],
            message_id,
        )
        if message_id is not None:
            n = len(addresses)
            await conn.execute(
                query("message_feedback_add"),
                message_id,
                n if event.kind is EventKind.DELIVERY else 0,
                n if event.kind is EventKind.BOUNCE else 0,
                n if event.kind is EventKind.COMPLAINT else 0,
            )
        reason = suppression_reason(event)
        if reason is not None:
            rows = await conn.fetch(query("suppression_add"), addresses, [reason] * len(addresses))
            return tuple(r["address"] for r in rows)
        if event.kind is EventKind.BOUNCE and event.bounce_type == "Transient":
            over = await conn.fetch(
                query("transient_bounces_over"),
                addresses,
                self._transient_limit,
                self._transient_window,
            )
            if over:
                days = f"{self._transient_window / 86400:g}"
                rows = await conn.fetch(
                    query("suppression_add"),
                    [r["address"] for r in over],
                    [f"{r['n']} transient bounces within {days} days" for r in over],
                )
                return tuple(r["address"] for r in rows)
        return ()

    async def message_events(self, message_id: int) -> list[MessageEvent]:
        """The SES events tied to one message, oldest first, as recorded."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("message_events"), message_id)
        out: list[MessageEvent] = []
        for r in rows:
            event = self._reparse(r["raw"])
            out.append(MessageEvent(r["occurred_at"] or r["received_at"], r["kind"], event))
        return out

    # -- reputation --------------------------------------------------------------------------

    async def account_counts(self, window_seconds: float) -> Counts:
        """Recipients sent, hard bounces and complaints account-wide in the window."""
        async with self._pool.acquire() as conn:
            r = await conn.fetchrow(query("guard_account"), float(window_seconds))
        return Counts(sent=r["sent"], bounced=r["bounced"], complained=r["complained"])

    async def campaign_counts(self, campaign_id: int | None = None) -> dict[int, CampaignFeedback]:
        """Feedback per running campaign (or of one campaign), over its whole life."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("guard_campaigns"), campaign_id)
        return {
            r["campaign_id"]: CampaignFeedback(
                counts=Counts(sent=r["sent"], bounced=r["bounced"], complained=r["complained"]),
                delivered=r["delivered"],
                bounced_any=r["bounced_any"],
            )
            for r in rows
        }

    async def fold_tallies(self, keep_seconds: float) -> tuple[int, int]:
        """Fold the guard's per-minute counters of past minutes into one row each and drop
        those older than `keep_seconds`; (rows folded, rows dropped), (0, 0) on another's turn."""
        async with self._pool.acquire() as conn, conn.transaction():
            r = await conn.fetchrow(query("tally_fold"), FOLD_AFTER, float(keep_seconds))
        return r["folded"], r["expired"]

    async def hold_sending(self, reason: str) -> bool:
        """Hold all sending in every daemon (no job is claimed); False if already held."""
        async with self._pool.acquire() as conn:
            return await conn.fetchval(query("sending_hold_set"), reason) is not None

    async def sending_hold(self) -> tuple[str, datetime] | None:
        """(reason, since) while all sending is held, else None."""
        async with self._pool.acquire() as conn:
            r = await conn.fetchrow(query("sending_hold_get"))
        return None if r is None else (r["reason"], r["held_at"])

    async def held_senders(self) -> list[HeldSender]:
        """Senders held by a configuration error now, soonest retry first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("held_senders"))
        return [
            HeldSender(r["from_addr"], r["configuration_set"], r["reason"], r["retry_at"])
            for r in rows
        ]

    async def release_sending(self) -> str | None:
        """Lift the hold; its reason, or None if sending was not held."""
        async with self._pool.acquire() as conn:
            reason: str | None = await conn.fetchval(query("sending_hold_clear"))
        return reason

    # -- suppressions -------------------------------------------------------------------------

    async def suppress(self, addresses: Iterable[str], reason: str) -> list[str]:
        """Suppress addresses (checked, lower-cased); the ones that were not suppressed yet."""
        return await self.import_suppressions((a, reason) for a in addresses)

    async def import_suppressions(self, rows: Iterable[tuple[str, str]]) -> list[str]:
        """(address, reason) pairs in one transaction: all or nothing. The new addresses."""
        added: list[str] = []
        async with self._pool.acquire() as conn, conn.transaction():
            chunk: dict[str, str] = {}
            for address, reason in rows:
                chunk.setdefault(check_address(address), reason or "added by operator")
                if len(chunk) >= CHUNK:
                    added += await self._add(conn, chunk)
                    chunk = {}
            if chunk:
                added += await self._add(conn, chunk)
        return added

    @staticmethod
    async def _add(conn: asyncpg.Connection, chunk: Mapping[str, str]) -> list[str]:
        rows = await conn.fetch(query("suppression_add"), list(chunk), list(chunk.values()))
        return [r["address"] for r in rows]

    async def unsuppress(self, addresses: Sequence[str]) -> list[str]:
        """Remove addresses from the list; the ones that were on it."""
        keys = sorted({check_address(a) for a in addresses})
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("suppression_remove"), keys)
        return sorted(r["address"] for r in rows)

    async def lookup(self, addresses: Sequence[str]) -> dict[str, Suppression]:
        """The suppressions among these addresses, by lower-cased address."""
        keys = [normalize_address(a) for a in addresses]
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("suppression_get"), keys)
        return {r["address"]: Suppression(r["address"], r["reason"], r["created_at"]) for r in rows}

    async def count(self) -> int:
        async with self._pool.acquire() as conn:
            n: int = await conn.fetchval(query("suppression_count"))
        return n

    async def iter_suppressions(self, page: int = 1000) -> AsyncIterator[Suppression]:
        """Every suppression in address order, a page per round trip (memory stays flat)."""
        after = ""
        while True:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(query("suppression_list"), after, page)
            for r in rows:
                yield Suppression(r["address"], r["reason"], r["created_at"])
            if len(rows) < page:
                return
            after = rows[-1]["address"]

"""Campaigns in Postgres: streamed import, lifecycle (start, pause, resume, cancel), reports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from dispatcher.campaigns import materialise
from dispatcher.campaigns.materialise import Materialiser, materialise_chunk
from dispatcher.campaigns.recipients import RecipientRow, RejectedRow
from dispatcher.db.sql import named_queries
from dispatcher.domain.validate import (
    CAMPAIGN_RESERVED_TAGS,
    check_list_management,
    validate_envelope,
)
from dispatcher.errors import InputError

query = named_queries("dispatcher.campaigns", "campaigns.sql")

RECIPIENT_COLUMNS = ["campaign_id", "line", "email", "variables"]
# Before each variable's value in campaign_recipients.variables (see migration 0022): a
# character recipients.py refuses in any field, as it would break a mail header.
_SEPARATOR = "\x1e"


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """What `campaign create` was given (templates are stored as written, rendered per send)."""

    name: str
    from_addr: str
    subject: str
    html: str
    text: str | None = None
    reply_to: tuple[str, ...] = ()
    configuration_set: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    unsubscribe_url: str | None = None
    send_at: datetime | None = None
    priority: int = -10
    mode: str = "render"  # or "ses_template": SendBulkEmail from an SES template
    # Send window (dispatcher.campaigns.windows): hours in `timezone`, or in each recipient's
    # zone from the list's column `timezone_column` (empty cells: `timezone`, else UTC).
    send_window: str | None = None
    timezone: str | None = None
    timezone_column: str | None = None
    # SES v2 list management: every send names this contact list (and topic).
    contact_list: str | None = None
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    email: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    id: int
    imported: int
    rejected: list[Rejected]
    duplicates: int
    suppressed: int


@dataclass(frozen=True, slots=True)
class CampaignRow:
    """A campaign's definition and state, as stored."""

    id: int
    name: str
    state: str
    from_addr: str
    reply_to: tuple[str, ...]
    configuration_set: str | None
    tags: dict[str, str]
    subject: str
    html: str
    text: str | None
    unsubscribe_url: str | None
    send_at: datetime | None
    priority: int
    recipients: int
    pause_reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    mode: str = "render"
    send_window: str | None = None
    timezone: str | None = None
    timezone_column: str | None = None
    contact_list: str | None = None
    topic: str | None = None

    @property
    def ses_template_name(self) -> str:
        """The SES template a `ses_template` campaign sends with (created by the worker).

        The creation time is part of the name: two installations sharing one SES account
        (staging and production, say) both have a campaign 1 and must not overwrite each
        other's template.
        """
        return f"dispatcher-campaign-{self.id}-{int(self.created_at.timestamp() * 1000)}"


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    campaign: CampaignRow
    counts: dict[str, int]  # job state -> count, every state present
    failures: dict[str, int]  # outcome -> count, for failed and in-doubt mail
    # state -> count of the mail retention removed (dispatcher.retention); in `counts` too
    pruned: dict[str, int] = field(default_factory=dict)
    waiting_for_window: int = 0  # queued, not due before their send window opens

    @property
    def done(self) -> int:
        return sum(self.counts[s] for s in ("sent", "failed", "cancelled", "unknown"))

    def to_json(self) -> dict[str, Any]:
        c = self.campaign
        return {
            "id": c.id,
            "name": c.name,
            "state": c.state,
            "pause_reason": c.pause_reason,
            "recipients": c.recipients,
            "counts": self.counts,
            "failures": self.failures,
            "pruned": self.pruned,
            "send_window": c.send_window,
            "waiting_for_window": self.waiting_for_window,
            "contact_list": c.contact_list,  # SES list management: the options every send names
            "topic": c.topic,
            "created_at": c.created_at.isoformat(),
            "started_at": c.started_at.isoformat() if c.started_at else None,
            "finished_at": c.finished_at.isoformat() if c.finished_at else None,
        }


JOB_STATES = ("held", "queued", "claimed", "in_flight", "sent", "failed", "unknown", "cancelled")


def _row(r: Any) -> CampaignRow:
    tags = json.loads(r["tags"]) if isinstance(r["tags"], str) else dict(r["tags"] or {})
    return CampaignRow(
        id=r["id"],
        name=r["name"],
        state=r["state"],
        from_addr=r["from_addr"],
        reply_to=tuple(r["reply_to"]),
        configuration_set=r["configuration_set"],
        tags=tags,
        subject=r["subject"],
        html=r["html"],
        text=r["text_body"],
        unsubscribe_url=r["unsubscribe_url"],
        send_at=r["send_at"],
        priority=r["priority"],
        recipients=r["recipients"],
        pause_reason=r["pause_reason"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        mode=r.get("mode", "render"),
        send_window=r.get("send_window"),
        timezone=r.get("window_timezone"),
        timezone_column=r.get("timezone_column"),
        contact_list=r.get("contact_list"),
        topic=r.get("contact_topic"),
    )


class CampaignStore:
    """Campaign operations over the queue's connection pool; every change is one transaction."""

    __slots__ = ("_pool",)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # -- create -------------------------------------------------------------------------------

    async def create(
        self,
        spec: CampaignSpec,
        rows: Iterable[RecipientRow | RejectedRow],
        *,
        strict: bool = False,
    ) -> ImportResult:
        """Import a campaign and its list in one transaction: all of it, or nothing.

        Good rows stream with COPY into campaign_recipients, one narrow row each (they become
        message + job rows as the campaign is sent: dispatcher.campaigns.materialise); the
        database removes duplicates (first line wins, compared lower-cased) and suppressed
        addresses. With `strict`, one rejected row rejects the whole file (InputError listing
        the first ones). `rows` come from one reader: every row has the header's columns.
        """
        envelope = validate_envelope(
            spec.from_addr,
            spec.reply_to,
            spec.configuration_set,
            spec.tags,
            spec.priority,
            reserved_tags=CAMPAIGN_RESERVED_TAGS,
        )
        spec = replace(
            spec, from_addr=envelope.from_addr, reply_to=envelope.reply_to, tags=envelope.tags
        )
        check_list_management(spec.contact_list, spec.topic)
        rejected: list[Rejected] = []
        columns: list[str] | None = None
        copied = 0

        def records() -> Iterator[tuple[int, int, str, str]]:
            nonlocal columns, copied
            for row in rows:
                if isinstance(row, RejectedRow):
                    rejected.append(Rejected(row.line, row.email, row.reason))
                    continue
                values = _SEPARATOR.join(["", *row.variables.values()])  # each after one
                if columns is None:
                    columns = list(row.variables)
                # Rows of one reader share its header; the reader refuses the separator.
                if values.count(_SEPARATOR) != len(columns):
                    raise ValueError(f"line {row.line}: columns {list(row.variables)}")
                copied += 1
                yield (campaign_id, row.line, row.email, values)

        async with self._pool.acquire() as conn, conn.transaction():
            # The duplicate search sorts the whole list: in memory, not in temporary files.
            await conn.execute(query("campaign_import_work_mem"))
            campaign_id: int = await conn.fetchval(
                query("campaign_insert"),
                spec.name,
                spec.from_addr,
                list(spec.reply_to),
                spec.configuration_set,
                json.dumps(spec.tags),
                spec.subject,
                spec.html,
                spec.text,
                spec.unsubscribe_url,
                spec.send_at,
                spec.priority,
                spec.mode,
                spec.send_window,
                spec.timezone,
                spec.timezone_column,
                spec.contact_list,
                spec.topic,
            )
            # Streamed (binary COPY, asyncpg pulls the rows as it sends): memory stays flat.
            await conn.copy_records_to_table(
                "campaign_recipients",
                schema_name="dispatcher",
                columns=RECIPIENT_COLUMNS,
                records=records(),
            )
            if strict and rejected:
                shown = "; ".join(f"line {r.line}: {r.reason}" for r in rejected[:5])
                more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
                raise InputError(
                    f"{len(rejected)} bad row(s) in the recipient list and --strict is set, "
                    f"so nothing was imported: {shown}{more}"
                )
            dups = await conn.fetch(query("campaign_duplicates"), campaign_id)
            for r in dups:
                rejected.append(
                    Rejected(r["line"], r["email"], f"duplicate of line {r['first_line']}")
                )
            # A duplicate of a suppressed address is reported once, as the duplicate.
            dup_lines = {r["line"] for r in dups}
            suppressed = [
                r
                for r in await conn.fetch(query("campaign_suppressed"), campaign_id)
                if r["line"] not in dup_lines
            ]
            for r in suppressed:
                rejected.append(Rejected(r["line"], r["email"], f"suppressed: {r['reason']}"))
            dropped = sorted(dup_lines | {r["line"] for r in suppressed})
            if dropped:
                await conn.execute(query("campaign_drop_recipients"), campaign_id, dropped)
            imported = copied - len(dropped)
            if imported == 0:  # raised inside the transaction: the campaign is rolled back
                raise _nobody_left(rejected, len(dups), len(suppressed))
            await conn.execute(
                query("campaign_set_recipients"), campaign_id, imported, columns or []
            )
        rejected.sort(key=lambda r: r.line)
        return ImportResult(campaign_id, imported, rejected, len(dups), len(suppressed))

    # -- lifecycle ----------------------------------------------------------------------------

    async def get(self, campaign_id: int) -> CampaignRow:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(query("campaign_get"), campaign_id)
        if row is None:
            raise InputError(f"no campaign with id {campaign_id}; see `dispatcher campaign list`")
        return _row(row)

    async def start(self, campaign_id: int) -> CampaignRow:
        """Draft or paused -> running; its held mail becomes sendable (from send_at on)."""
        current = await self.get(campaign_id)
        if current.state not in ("draft", "paused"):
            raise InputError(
                f"campaign {campaign_id} is {current.state}; only a draft or paused campaign "
                "can be started"
            )
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.fetchval(query("campaign_mark_running"), campaign_id)
            await conn.execute(query("campaign_release_held"), campaign_id)
            if current.send_at is None or current.send_at <= datetime.now(UTC):
                # The first chunk now (this transaction holds the row): the first claim
                # finds mail; the daemons' materialisers keep ahead from there.
                await materialise_chunk(conn, campaign_id, materialise.CHUNK)
            await conn.execute(query("wake_workers"))  # idle daemons start at commit
        return await self.get(campaign_id)

    async def pause(self, campaign_id: int, reason: str = "paused by operator") -> bool:
        """Running -> paused at once for every daemon; False if it was not running."""
        await self.finish_done(campaign_id)  # all sent: finished, not paused
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(query("campaign_mark_paused"), campaign_id, reason) is None:
                return False
            await conn.execute(query("campaign_hold_jobs"), campaign_id)
        return True

    async def cancel(self, campaign_id: int) -> int:
        """Everything not yet sent is cancelled; sent mail stays sent. Returns the count."""
        await self.get(campaign_id)
        await self.finish_done(campaign_id)  # all sent: finished, not cancelled
        async with self._pool.acquire() as conn, conn.transaction():
            # Its recipients not yet materialised stay where they are, cancelled with it.
            left = await conn.fetchval(query("campaign_mark_cancelled"), campaign_id)
            if left is None:
                raise InputError(f"campaign {campaign_id} is already cancelled or finished")
            rows = await conn.fetch(query("campaign_cancel_jobs"), campaign_id)
        return len(rows) + int(left)

    async def retry_failed(self, campaign_id: int) -> int:
        """Requeue recipients whose failure was retryable (transient); returns how many."""
        current = await self.get(campaign_id)
        if current.state == "cancelled":
            raise InputError(f"campaign {campaign_id} is cancelled")
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(query("campaign_retry_failed"), campaign_id)
            if rows:
                await conn.fetchval(query("campaign_reopen"), campaign_id)
                await conn.execute(query("wake_workers"))
        return len(rows)

    async def finish_done(self, campaign_id: int | None = None) -> list[int]:
        """Mark running campaigns with nothing left to send as finished."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("campaign_finish_done"), campaign_id)
        return [r["id"] for r in rows]

    def materialiser(self, rate: Callable[[], float]) -> Materialiser:
        """The loop that turns recipients into jobs ahead of a sending at `rate`/s."""
        return Materialiser(self._pool, rate)

    # -- inspection ---------------------------------------------------------------------------

    async def status(self, campaign_id: int) -> CampaignStatus:
        await self.finish_done(campaign_id)
        campaign = await self.get(campaign_id)
        async with self._pool.acquire() as conn:
            counts_rows = await conn.fetch(query("campaign_counts"), campaign_id)
            failure_rows = await conn.fetch(query("campaign_failures"), campaign_id)
            pruned_rows = await conn.fetch(query("campaign_pruned_counts"), campaign_id)
            waiting = 0
            if campaign.send_window is not None:  # no window: no query
                waiting = await conn.fetchval(query("campaign_window_waiting"), campaign_id)
        counts = dict.fromkeys(JOB_STATES, 0)
        counts.update({r["state"]: r["n"] for r in counts_rows})
        failures = {r["outcome"]: r["n"] for r in failure_rows}
        pruned = {r["state"]: r["n"] for r in pruned_rows}
        return CampaignStatus(campaign, counts, failures, pruned, waiting)

    async def list(self) -> list[CampaignStatus]:
        await self.finish_done()
        async with self._pool.acquire() as conn:
            ids = [r["id"] for r in await conn.fetch(query("campaign_list"))]
        return [await self.status(i) for i in ids]

    async def report_rows(self, campaign_id: int) -> AsyncIterator[Any]:
        """Per-recipient rows, streamed with a cursor (memory stays flat)."""
        await self.get(campaign_id)
        # One snapshot: a recipient materialised meanwhile is listed once, in one of the parts.
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            for part in ("campaign_report", "campaign_report_unmaterialised"):
                async for row in conn.cursor(query(part), campaign_id, prefetch=2000):
                    yield row


def _nobody_left(rejected: list[Rejected], duplicates: int, suppressed: int) -> InputError:
    """Why a list left no recipient (a campaign of nobody would only look like it was sent)."""
    bad = len(rejected) - duplicates - suppressed
    first = min(rejected, key=lambda r: r.line, default=None)
    example = f" (first: line {first.line}: {first.reason})" if first is not None else ""
    return InputError(
        f"no recipient left in the list: {bad} row(s) rejected, {duplicates} duplicate(s), "
        f"{suppressed} suppressed{example}; nothing was created: give a list with at least "
        "one address that may be mailed"
    )

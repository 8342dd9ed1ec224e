"""What Postgres holds for every process of the account, read by one scrape (or one dashboard
poll), each query bounded: see metrics.sql for what each costs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import structlog

from dispatcher.accounts.settings import DEFAULT_ACCOUNT, account_names
from dispatcher.config import Config
from dispatcher.config.settings import GuardSettings
from dispatcher.db.sql import named_queries
from dispatcher.feedback.guard import Counts
from dispatcher.feedback.store import FeedbackStore
from dispatcher.pacing.providers import ProviderSettings
from dispatcher.worker.lane_store import lanes_view
from dispatcher.worker.quota_store import SharedQuotaStore, SharedReading

__all__ = [
    "QUEUE_STATES",
    "SHARED_TIMEOUT",
    "AccountFacts",
    "CampaignFacts",
    "SharedFacts",
    "SharedReader",
    "read_shared",
]

log = structlog.get_logger()
query = named_queries("dispatcher.obs", "metrics.sql")

# The queue's depth: the states mail waits or moves in. The final ones (sent, failed, cancelled)
# grow with the table and would need a scan per scrape (seconds at tens of millions of rows);
# dispatcher_sends_total{outcome} counts them as they happen, the Prometheus way.
QUEUE_STATES = ("held", "queued", "claimed", "in_flight", "unknown")
SHARED_TIMEOUT = 5.0  # seconds a scrape waits for Postgres before it reports it down
_NOBODY = uuid.UUID(int=0)  # the owner a reader syncs the quota as: it records no sends


@dataclass(frozen=True, slots=True)
class CampaignFacts:
    """A running or paused campaign: its label, progress and feedback."""

    label: str  # its name (with its id only when two of them share a name)
    state: str
    recipients: int
    by_state: dict[str, int]
    feedback: Counts | None  # None for a paused one (the guard judges running ones)
    id: int = 0  # for the dashboard's buttons (never a label: ids are unbounded)
    pause_reason: str | None = None


@dataclass(frozen=True, slots=True)
class AccountFacts:
    """One SES account's shared quota reading and provider lanes."""

    quota: SharedReading
    lanes: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SharedFacts:
    """What Postgres holds for every process of the account, as read by one scrape."""

    states: dict[str, int]
    quota: SharedReading
    held: bool
    held_senders: int
    account: Counts
    campaigns: list[CampaignFacts]
    feedback: dict[str, int]
    workers: dict[str, int]
    webhooks: dict[str, tuple[int, float]] = field(default_factory=dict)  # backlog, oldest age
    campaign_lane: dict[str, int] = field(default_factory=dict)  # campaigns' part of `states`
    lanes: list[dict[str, Any]] = field(default_factory=list)  # provider lanes (lane_store)
    # `quota` and `lanes` are the default account's (the dashboard and /readyz read those);
    # /metrics shows every account's, each under its name.
    default_account: str = DEFAULT_ACCOUNT
    other_accounts: dict[str, AccountFacts] = field(default_factory=dict)

    def accounts(self) -> dict[str, AccountFacts]:
        """Each SES account's quota reading and provider lanes, the default account's first."""
        return {self.default_account: AccountFacts(self.quota, self.lanes), **self.other_accounts}


class SharedReader:
    """Reads `SharedFacts`, each query bounded (metrics.sql says what each costs)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        feedback: FeedbackStore,
        quota: SharedQuotaStore,
        guard: GuardSettings,
        providers: Sequence[ProviderSettings] = (),
        others: Sequence[str] = (),
    ) -> None:
        self._providers = providers
        self._others = others  # the other accounts, read too (the default is `quota`'s)
        self._pool = pool
        self._feedback = feedback
        self._quota = quota
        self._guard = guard

    @classmethod
    def for_config(
        cls, pool: asyncpg.Pool, feedback: FeedbackStore, quota: SharedQuotaStore, cfg: Config
    ) -> SharedReader:
        """The daemon's reader: `quota` is the default account's board, the other accounts'
        ([[accounts]]) are read beside it."""
        others = account_names(cfg.accounts)[1:]
        return cls(pool, feedback, quota, cfg.guard, cfg.providers, others=others)

    async def read(self) -> SharedFacts:
        window = self._guard.window_hours * 3600.0
        async with self._pool.acquire() as conn:
            active = await conn.fetchrow(query("active_states"))
            progress = await conn.fetch(query("campaign_progress"))
            kinds = await conn.fetch(query("feedback_kinds"), window)
            hosts = await conn.fetch(query("workers_by_host"))
            hooks = await conn.fetch(query("webhook_backlog"))
        states = {state: int(active[state]) for state in QUEUE_STATES}
        lane = {
            s: int(active[f"{s}_campaign"]) for s in ("queued", "claimed", "in_flight", "unknown")
        }
        lane["held"] = states["held"]  # only campaigns hold mail
        reading = await self._quota.sync(_NOBODY, {})  # records nothing: no sends
        others = {
            name: AccountFacts(
                await SharedQuotaStore(self._pool, name).sync(_NOBODY, {}),
                await self._lanes(name),
            )
            for name in self._others
        }
        running = await self._feedback.campaign_counts()
        return SharedFacts(
            states=states,
            quota=reading,
            held=await self._feedback.sending_hold() is not None,
            held_senders=len(await self._feedback.held_senders()),
            account=await self._feedback.account_counts(window),
            campaigns=_campaigns(progress, {k: v.counts for k, v in running.items()}),
            feedback={r["kind"]: r["n"] for r in kinds},
            workers={r["hostname"]: r["n"] for r in hosts},
            webhooks={r["endpoint"]: (r["backlog"], r["oldest_age"]) for r in hooks},
            campaign_lane=lane,
            lanes=await self._lanes(self._quota.account),
            default_account=self._quota.account,
            other_accounts=others,
        )

    async def _lanes(self, account: str) -> list[dict[str, Any]]:
        """The provider lanes of `account`."""
        return await lanes_view(self._pool, self._providers, waiting=False, account=account) or []


def _campaigns(rows: Sequence[asyncpg.Record], feedback: dict[int, Counts]) -> list[CampaignFacts]:
    by_id: dict[int, tuple[str, str, int, dict[str, int], str | None]] = {}
    for r in rows:
        entry = by_id.setdefault(
            r["id"], (r["name"], r["campaign_state"], r["recipients"], {}, r["pause_reason"])
        )
        if r["state"] is not None:
            entry[3][r["state"]] = entry[3].get(r["state"], 0) + r["n"]  # jobs + recipients
    names = [name for name, *_ in by_id.values()]
    out = []
    for cid, (name, state, recipients, by_state, reason) in by_id.items():
        label = name if names.count(name) == 1 else f"{name} ({cid})"
        facts = CampaignFacts(label, state, recipients, by_state, feedback.get(cid), cid, reason)
        out.append(facts)
    return out


async def read_shared(reader: SharedReader) -> SharedFacts | None:
    """The shared facts, or None (logged) when Postgres does not answer within SHARED_TIMEOUT."""
    try:
        return await asyncio.wait_for(reader.read(), SHARED_TIMEOUT)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("metrics.database_unavailable", error=repr(exc))
        return None

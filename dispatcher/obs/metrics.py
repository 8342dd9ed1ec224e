"""Prometheus metrics: what this process did (copied from its plain counters once a second, so
the send path only adds to integers and lists), and what Postgres holds for every process
(read at scrape time, bounded: see metrics.sql for what each query costs).

Under `run --processes N` every child answers on the same socket, so a scrape lands on any of
them: the process-local metrics then live in prometheus-client's multiprocess files (a
directory the parent makes, named by PROMETHEUS_MULTIPROC_DIR) and each scrape sums them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from dispatcher.config.settings import GuardSettings
from dispatcher.db.sql import named_queries
from dispatcher.feedback.guard import Counts
from dispatcher.feedback.store import FeedbackStore
from dispatcher.pacing.providers import ProviderSettings
from dispatcher.worker.counters import Counters
from dispatcher.worker.lane_store import lanes_view
from dispatcher.worker.quota_store import SharedQuotaStore, SharedReading

__all__ = [
    "CONTENT_TYPE",
    "MULTIPROC_ENV",
    "ProcessMetrics",
    "SharedFacts",
    "SharedReader",
    "multiprocess_dir",
    "reap",
    "render",
    "shared_families",
]

log = structlog.get_logger()
query = named_queries("dispatcher.obs", "metrics.sql")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it when first imported
# The text format every Prometheus since 2.0 parses (prometheus-client's latest is 1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACHIEVED_WINDOW = 10.0  # seconds the achieved rate is averaged over
# The queue's depth: the states mail waits or moves in. The final ones (sent, failed, cancelled)
# grow with the table and would need a scan per scrape (seconds at tens of millions of rows);
# dispatcher_sends_total{outcome} counts them as they happen, the Prometheus way.
QUEUE_STATES = ("held", "queued", "claimed", "in_flight", "unknown")
SHARED_TIMEOUT = 5.0  # seconds a scrape waits for Postgres before it reports it down
_NOBODY = uuid.UUID(int=0)  # the owner a reader syncs the quota as: it records no sends
OUTCOMES = ("sent", "failed", "retried", "in_doubt")  # the Counters fields sends end in
# One-click unsubscribe POSTs (dispatcher.feedback.unsubscribe): a new suppression, a repeat of
# one, or refused (bad token, gone campaign or message, no one-click body).
UNSUBSCRIBE_OUTCOMES = ("unsubscribed", "repeat", "refused")
# SES answers in tens of milliseconds; throttling and retries inside the SDK take seconds.
SEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# From enqueue to SES's yes: under a second when idle, hours behind a campaign or a quota.
ACCEPTED_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)


class ProcessMetrics:
    """The metrics of this process, updated from `Counters` by `update` (never on the send path)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sends = Counter(
            "dispatcher_sends",
            "Messages SES answered, by what became of them",
            ["outcome"],
            registry=r,
        )
        self.recipients = Counter(
            "dispatcher_recipients_sent", "Recipients SES accepted (To + Cc + Bcc)", registry=r
        )
        self.throttled = Counter(
            "dispatcher_throttled", "Sends SES refused for the send rate (Throttling)", registry=r
        )
        self.calls = Counter(
            "dispatcher_ses_calls", "SendEmail and SendBulkEmail requests made", registry=r
        )
        self.in_flight = Gauge(
            "dispatcher_in_flight",
            "Messages handed to SES, answer not known yet",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.send_slots = Gauge(
            "dispatcher_send_slots",
            "Concurrent SES calls allowed now: rate x latency, delivery.max_in_flight at most",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rate_allowed = Gauge(
            "dispatcher_send_rate_allowed",
            "Recipients per second the pacing allows",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rate_achieved = Gauge(
            "dispatcher_send_rate_achieved",
            f"Recipients per second accepted by SES over the last {ACHIEVED_WINDOW:g} s",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.send_seconds = Histogram(
            "dispatcher_send_seconds", "SES send call latency", registry=r, buckets=SEND_BUCKETS
        )
        self.accepted = Histogram(
            "dispatcher_enqueue_to_accepted_seconds",
            "From enqueue to SES accepting the message, by lane (message or campaign)",
            ["lane"],
            registry=r,
            buckets=ACCEPTED_BUCKETS,
        )
        # Counted by the feedback listener's receiver as requests come (not from Counters).
        self.unsubscribes = Counter(
            "dispatcher_unsubscribes",
            "One-click unsubscribe POSTs received, by result",
            ["outcome"],
            registry=r,
        )
        for outcome in UNSUBSCRIBE_OUTCOMES:
            self.unsubscribes.labels(outcome=outcome)
        for outcome in OUTCOMES:  # every series present from the start, at 0
            self.sends.labels(outcome=outcome)
        for lane in ("message", "campaign"):
            self.accepted.labels(lane=lane)
        self._seen: dict[str, int] = {}
        self._sent: deque[tuple[float, int]] = deque()

    def unsubscribes_counter(self) -> Callable[[str], None]:
        """A function that counts one unsubscribe POST by its result (UNSUBSCRIBE_OUTCOMES)."""
        return lambda outcome: self.unsubscribes.labels(outcome=outcome).inc()

    def update(
        self,
        c: Counters,
        *,
        in_flight: int,
        rate_allowed: float,
        now: float,
        send_slots: int | None = None,
    ) -> None:
        """Copy what `c` counted since the last update; move its latency samples over."""
        for outcome in OUTCOMES:
            self.sends.labels(outcome=outcome).inc(self._delta(c, outcome))
        self.recipients.inc(self._delta(c, "recipients_sent"))
        self.throttled.inc(self._delta(c, "throttled"))
        self.calls.inc(self._delta(c, "ses_calls"))
        self.in_flight.set(in_flight)
        if send_slots is not None:
            self.send_slots.set(send_slots)
        self.rate_allowed.set(rate_allowed)
        self._sent.append((now, c.recipients_sent))
        while len(self._sent) > 2 and now - self._sent[1][0] >= ACHIEVED_WINDOW:
            self._sent.popleft()
        (t0, n0), (t1, n1) = self._sent[0], self._sent[-1]
        self.rate_achieved.set((n1 - n0) / (t1 - t0) if t1 > t0 else 0.0)
        samples, c.send_seconds = c.send_seconds or [], []  # from now on, samples are kept
        for seconds in samples:
            self.send_seconds.observe(seconds)
        accepted, c.accepted_after = c.accepted_after or [], []
        for campaign, seconds in accepted:
            self.accepted.labels(lane="campaign" if campaign else "message").observe(seconds)

    def _delta(self, c: Counters, name: str) -> int:
        value: int = getattr(c, name)
        delta = value - self._seen.get(name, 0)
        self._seen[name] = value
        return max(delta, 0)


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


class SharedReader:
    """Reads `SharedFacts`, each query bounded (metrics.sql says what each costs)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        feedback: FeedbackStore,
        quota: SharedQuotaStore,
        guard: GuardSettings,
        providers: Sequence[ProviderSettings] = (),
    ) -> None:
        self._providers = providers
        self._pool = pool
        self._feedback = feedback
        self._quota = quota
        self._guard = guard

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
            # the default (first) account's lanes, as the quota reading above
            lanes=await lanes_view(
                self._pool, self._providers, waiting=False, account=self._quota.account
            )
            or [],
        )


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


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _rate(part: int, sent: int) -> float:
    return part / sent if sent else 0.0


def shared_families(facts: SharedFacts | None, guard: GuardSettings) -> Iterator[Metric]:
    """The metrics of `facts` (None: Postgres did not answer, only dispatcher_database_up 0)."""
    up = _gauge("dispatcher_database_up", "1 if Postgres answered this scrape's queries")
    up.add_metric([], 0.0 if facts is None else 1.0)
    yield up
    if facts is None:
        return
    messages = _gauge(
        "dispatcher_messages", "Messages in the queue by state (held to in doubt)", ["state"]
    )
    for state, n in facts.states.items():
        messages.add_metric([state], n)
    yield messages
    in_doubt = _gauge("dispatcher_in_doubt", "Messages in doubt: see `dispatcher in-doubt list`")
    in_doubt.add_metric([], facts.states.get("unknown", 0))
    yield in_doubt
    quota = facts.quota.quota
    if quota is not None:
        for name, doc, value in (
            (
                "dispatcher_quota_max_24h",
                "Max24HourSend (recipients; -1 unlimited)",
                quota.max_24_hour_send,
            ),
            (
                "dispatcher_quota_used_24h",
                "Recipients sent in the last 24 h (SES's reading plus "
                "what every worker sent since)",
                quota.sent_last_24_hours + facts.quota.others_sent,
            ),
            ("dispatcher_quota_max_send_rate", "MaxSendRate (recipients/s)", quota.max_send_rate),
            (
                "dispatcher_quota_reading_age_seconds",
                "Age of the shared GetSendQuota reading",
                facts.quota.age,
            ),
        ):
            g = _gauge(name, doc)
            g.add_metric([], value)
            yield g
    held = _gauge("dispatcher_sending_held", "1 while the guard holds all sending")
    held.add_metric([], 1.0 if facts.held else 0.0)
    yield held
    senders = _gauge("dispatcher_held_senders", "Senders whose mail waits out an SES config error")
    senders.add_metric([], facts.held_senders)
    yield senders
    workers = _gauge("dispatcher_workers", "Live worker processes by host", ["host"])
    for host, n in facts.workers.items():
        workers.add_metric([host], n)
    yield workers
    window = f"in the guard's window (guard.window_hours = {guard.window_hours:g})"
    kinds = _gauge(
        "dispatcher_feedback_recipients", f"Recipients with an SES event {window}", ["kind"]
    )
    for kind, n in facts.feedback.items():
        kinds.add_metric([kind], n)
    yield kinds
    backlog = _gauge(
        "dispatcher_webhook_backlog", "Webhook events not delivered yet, per endpoint", ["endpoint"]
    )
    oldest = _gauge(
        "dispatcher_webhook_oldest_pending_seconds",
        "Age of the oldest webhook event not delivered yet, per endpoint",
        ["endpoint"],
    )
    for endpoint, (n, age) in facts.webhooks.items():
        backlog.add_metric([endpoint], n)
        oldest.add_metric([endpoint], age)
    yield backlog
    yield oldest
    yield from _guard_families(facts, guard)
    yield from _campaign_families(facts.campaigns)
    yield from _lane_families(facts.lanes)


def _lane_families(lanes: Sequence[dict[str, Any]]) -> Iterator[Metric]:
    """Each provider lane ([[providers]]): its limits, today's sends and its back-off."""
    if not lanes:
        return
    families = [
        ("rate", "Configured rate of a provider lane (recipients/s, all processes)"),
        ("daily_cap", "Configured daily cap of a provider lane (recipients per UTC day)"),
        ("sent_today", "Recipients admitted through a provider lane today (UTC)"),
    ]
    for key, doc in families:
        g = _gauge(f"dispatcher_lane_{key}", doc, ["provider"])
        for lane in lanes:
            if lane[key] is not None:
                g.add_metric([lane["provider"]], float(lane[key]))
        yield g
    off = _gauge(
        "dispatcher_lane_backed_off",
        "1 while a provider lane is slowed for a burst of delays or soft bounces",
        ["provider"],
    )
    for lane in lanes:
        off.add_metric([lane["provider"]], 1.0 if lane["backed_off"] else 0.0)
    yield off


def _guard_families(facts: SharedFacts, guard: GuardSettings) -> Iterator[Metric]:
    labels = ["scope", "campaign"]
    bounce = _gauge("dispatcher_guard_bounce_rate", "Hard bounces / recipients sent", labels)
    complaint = _gauge("dispatcher_guard_complaint_rate", "Complaints / recipients sent", labels)
    sent = _gauge("dispatcher_guard_recipients_sent", "Recipients the guard's rates count", labels)
    scopes: list[tuple[str, str, Counts]] = [("account", "", facts.account)]
    scopes += [("campaign", c.label, c.feedback) for c in facts.campaigns if c.feedback]
    for scope, label, counts in scopes:
        bounce.add_metric([scope, label], _rate(counts.bounced, counts.sent))
        complaint.add_metric([scope, label], _rate(counts.complained, counts.sent))
        sent.add_metric([scope, label], counts.sent)
    yield from (bounce, complaint, sent)
    limits = _gauge("dispatcher_guard_threshold", "Where the guard pauses", ["scope", "rate"])
    limits.add_metric(["account", "bounce"], guard.bounce_threshold)
    limits.add_metric(["account", "complaint"], guard.complaint_threshold)
    limits.add_metric(["campaign", "bounce"], guard.campaign_bounce_threshold)
    limits.add_metric(["campaign", "complaint"], guard.campaign_complaint_threshold)
    min_volume = _gauge("dispatcher_guard_min_volume", "Recipients sent before a rate is judged")
    min_volume.add_metric([], guard.min_volume)
    yield from (limits, min_volume)


def _campaign_families(campaigns: Iterable[CampaignFacts]) -> Iterator[Metric]:
    total = _gauge(
        "dispatcher_campaign_recipients",
        "Recipients of a running or paused campaign",
        ["campaign", "state"],
    )
    mail = _gauge(
        "dispatcher_campaign_messages",
        "A running or paused campaign's mail by state",
        ["campaign", "state"],
    )
    for c in campaigns:
        total.add_metric([c.label, c.state], c.recipients)
        for state, n in c.by_state.items():
            mail.add_metric([c.label, state], n)
    yield from (total, mail)


class _Families(Collector):
    """Already-read families as a collector (generate_latest asks collectors)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class _Chain(Collector):
    def __init__(self, *parts: Collector) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self._parts:
            yield from part.collect()


def process_source(local: ProcessMetrics) -> Collector:
    """This process's metrics, or every process's (summed) under `run --processes`."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        return MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]
    return local.registry


def render(
    local: ProcessMetrics,
    facts: SharedFacts | None,
    guard: GuardSettings,
    ready: bool | None = None,
) -> bytes:
    """One scrape's text: the processes' metrics, then the shared ones (and readiness, when
    judged: /readyz's answer as a gauge, for alerts)."""
    families = list(shared_families(facts, guard))
    if ready is not None:
        gauge = _gauge("dispatcher_ready", "1 when /readyz would answer 200 (this process)")
        gauge.add_metric([], 1.0 if ready else 0.0)
        families.append(gauge)
    return generate_latest(_Chain(process_source(local), _Families(families)))


async def read_shared(reader: SharedReader) -> SharedFacts | None:
    """The shared facts, or None (logged) when Postgres does not answer within SHARED_TIMEOUT."""
    try:
        return await asyncio.wait_for(reader.read(), SHARED_TIMEOUT)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("metrics.database_unavailable", error=repr(exc))
        return None


@contextlib.contextmanager
def multiprocess_dir(enabled: bool) -> Iterator[str | None]:
    """For `run --processes`: a fresh directory for the children's metric files (None if not
    `enabled`), removed at the end."""
    if not enabled:
        yield None
        return
    path = tempfile.mkdtemp(prefix="dispatcher-metrics-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def reap(child: asyncio.subprocess.Process, path: str | None) -> int:
    """A child's exit code, once it ended; its live gauges leave the sums (its counters stay)."""
    code = await child.wait()
    if path is not None:
        mark_process_dead(child.pid, path)  # type: ignore[no-untyped-call]
    return code

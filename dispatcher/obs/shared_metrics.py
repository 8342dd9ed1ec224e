"""The shared facts (shared_facts.py) as Prometheus metric families, built afresh each scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from dispatcher.config.settings import GuardSettings
from dispatcher.domain.quota import Quota
from dispatcher.feedback.guard import Counts
from dispatcher.obs.shared_facts import AccountFacts, CampaignFacts, SharedFacts
from dispatcher.worker.quota_store import SharedReading

__all__ = ["gauge", "shared_families"]


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _rate(part: int, sent: int) -> float:
    return part / sent if sent else 0.0


def shared_families(facts: SharedFacts | None, guard: GuardSettings) -> Iterator[Metric]:
    """The metrics of `facts` (None: Postgres did not answer, only dispatcher_database_up 0)."""
    up = gauge("dispatcher_database_up", "1 if Postgres answered this scrape's queries")
    up.add_metric([], 0.0 if facts is None else 1.0)
    yield up
    if facts is None:
        return
    messages = gauge(
        "dispatcher_messages", "Messages in the queue by state (held to in doubt)", ["state"]
    )
    for state, n in facts.states.items():
        messages.add_metric([state], n)
    yield messages
    in_doubt = gauge("dispatcher_in_doubt", "Messages in doubt: see `dispatcher in-doubt list`")
    in_doubt.add_metric([], facts.states.get("unknown", 0))
    yield in_doubt
    accounts = facts.accounts()
    yield from _quota_families(accounts)
    held = gauge("dispatcher_sending_held", "1 while the guard holds all sending")
    held.add_metric([], 1.0 if facts.held else 0.0)
    yield held
    senders = gauge("dispatcher_held_senders", "Senders whose mail waits out an SES config error")
    senders.add_metric([], facts.held_senders)
    yield senders
    workers = gauge("dispatcher_workers", "Live worker processes by host", ["host"])
    for host, n in facts.workers.items():
        workers.add_metric([host], n)
    yield workers
    window = f"in the guard's window (guard.window_hours = {guard.window_hours:g})"
    kinds = gauge(
        "dispatcher_feedback_recipients", f"Recipients with an SES event {window}", ["kind"]
    )
    for kind, n in facts.feedback.items():
        kinds.add_metric([kind], n)
    yield kinds
    backlog = gauge(
        "dispatcher_webhook_backlog", "Webhook events not delivered yet, per endpoint", ["endpoint"]
    )
    oldest = gauge(
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
    yield from _lane_families(accounts)


def _quota_families(accounts: Mapping[str, AccountFacts]) -> Iterator[Metric]:
    """Each account's shared GetSendQuota reading (none before its first reading)."""
    read = {name: (a.quota, a.quota.quota) for name, a in accounts.items() if a.quota.quota}
    if not read:
        return
    families: list[tuple[str, str, Callable[[SharedReading, Quota], float]]] = [
        (
            "max_24h",
            "Max24HourSend (recipients; -1 unlimited)",
            lambda _, q: q.max_24_hour_send,
        ),
        (
            "used_24h",
            "Recipients sent in the last 24 h (SES's reading plus what every worker sent since)",
            lambda r, q: q.sent_last_24_hours + r.others_sent,
        ),
        ("max_send_rate", "MaxSendRate (recipients/s)", lambda _, q: q.max_send_rate),
        ("reading_age_seconds", "Age of the shared GetSendQuota reading", lambda r, _: r.age),
    ]
    for key, doc, value in families:
        g = gauge(f"dispatcher_quota_{key}", doc, ["account"])
        for name, (reading, quota) in read.items():
            g.add_metric([name], value(reading, quota))
        yield g


def _lane_families(accounts: Mapping[str, AccountFacts]) -> Iterator[Metric]:
    """Each provider lane ([[providers]]) of each account: its limits, today's sends and its
    back-off."""
    lanes = [(name, lane) for name, a in accounts.items() for lane in a.lanes]
    if not lanes:
        return
    families = [
        ("rate", "Configured rate of a provider lane (recipients/s, all processes)"),
        ("daily_cap", "Configured daily cap of a provider lane (recipients per UTC day)"),
        ("sent_today", "Recipients admitted through a provider lane today (UTC)"),
    ]
    labels = ["account", "provider"]
    for key, doc in families:
        g = gauge(f"dispatcher_lane_{key}", doc, labels)
        for name, lane in lanes:
            if lane[key] is not None:
                g.add_metric([name, lane["provider"]], float(lane[key]))
        yield g
    off = gauge(
        "dispatcher_lane_backed_off",
        "1 while a provider lane is slowed for a burst of delays or soft bounces",
        labels,
    )
    for name, lane in lanes:
        off.add_metric([name, lane["provider"]], 1.0 if lane["backed_off"] else 0.0)
    yield off


def _guard_families(facts: SharedFacts, guard: GuardSettings) -> Iterator[Metric]:
    labels = ["scope", "campaign"]
    bounce = gauge("dispatcher_guard_bounce_rate", "Hard bounces / recipients sent", labels)
    complaint = gauge("dispatcher_guard_complaint_rate", "Complaints / recipients sent", labels)
    sent = gauge("dispatcher_guard_recipients_sent", "Recipients the guard's rates count", labels)
    scopes: list[tuple[str, str, Counts]] = [("account", "", facts.account)]
    scopes += [("campaign", c.label, c.feedback) for c in facts.campaigns if c.feedback]
    for scope, label, counts in scopes:
        bounce.add_metric([scope, label], _rate(counts.bounced, counts.sent))
        complaint.add_metric([scope, label], _rate(counts.complained, counts.sent))
        sent.add_metric([scope, label], counts.sent)
    yield from (bounce, complaint, sent)
    limits = gauge("dispatcher_guard_threshold", "Where the guard pauses", ["scope", "rate"])
    limits.add_metric(["account", "bounce"], guard.bounce_threshold)
    limits.add_metric(["account", "complaint"], guard.complaint_threshold)
    limits.add_metric(["campaign", "bounce"], guard.campaign_bounce_threshold)
    limits.add_metric(["campaign", "complaint"], guard.campaign_complaint_threshold)
    min_volume = gauge("dispatcher_guard_min_volume", "Recipients sent before a rate is judged")
    min_volume.add_metric([], guard.min_volume)
    yield from (limits, min_volume)


def _campaign_families(campaigns: Iterable[CampaignFacts]) -> Iterator[Metric]:
    total = gauge(
        "dispatcher_campaign_recipients",
        "Recipients of a running or paused campaign",
        ["campaign", "state"],
    )
    mail = gauge(
        "dispatcher_campaign_messages",
        "A running or paused campaign's mail by state",
        ["campaign", "state"],
    )
    for c in campaigns:
        total.add_metric([c.label, c.state], c.recipients)
        for state, n in c.by_state.items():
            mail.add_metric([c.label, state], n)
    yield from (total, mail)

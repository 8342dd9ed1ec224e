"""Metric names and labels follow Prometheus' conventions, label sets stay bounded whatever the
traffic, and the copy from the worker's counters moves with the clock."""

from __future__ import annotations

import uuid
from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from dispatcher.config.settings import GuardSettings
from dispatcher.domain.quota import Quota
from dispatcher.feedback.guard import Counts
from dispatcher.obs.metrics import (
    AccountFacts,
    CampaignFacts,
    ProcessMetrics,
    SharedFacts,
    render,
    shared_families,
)
from dispatcher.worker.counters import Counters
from dispatcher.worker.quota_store import SharedReading

# Every label name a series may carry: each has a small, fixed or operator-chosen set of values.
# endpoint: a configured webhook endpoint's URL (without query or credentials).
BOUNDED_LABELS = {
    "state",
    "outcome",
    "lane",
    "scope",
    "campaign",
    "rate",
    "kind",
    "host",
    "le",
    "endpoint",
    "provider",  # a provider lane: shipped or configured in [[providers]]
    "account",  # an SES account: `default`, or configured in [[accounts]]
}
GUARD = GuardSettings()


def facts(campaigns: int = 3) -> SharedFacts:
    reading = SharedReading(
        epoch=3,
        polling_epoch=3,
        quota=Quota(max_24_hour_send=50_000, max_send_rate=14, sent_last_24_hours=1000),
        age=12.0,
        leader=uuid.uuid4(),
        others_sent=250.0,
    )
    return SharedFacts(
        states={"held": 0, "queued": 10, "claimed": 1, "in_flight": 3, "unknown": 2},
        quota=reading,
        held=False,
        held_senders=1,
        account=Counts(sent=1000, bounced=30, complained=1),
        campaigns=[
            CampaignFacts(
                f"spring {i}",
                "running",
                5000,
                {"sent": 100, "queued": 4900},
                Counts(sent=100, bounced=5, complained=0),
            )
            for i in range(campaigns)
        ],
        feedback={"delivery": 900, "bounce": 30, "complaint": 1},
        workers={"mail-1": 2},
        webhooks={"https://hooks.example/in": (7, 42.5)},
        lanes=[
            {
                "provider": "google",
                "rate": 5.0,
                "daily_cap": 100000,
                "sent_today": 40,
                "waiting": None,
                "backed_off": "30 delivery delays or soft bounces",
            },
            {
                "provider": "other",
                "rate": None,
                "daily_cap": None,
                "sent_today": 200,
                "waiting": None,
                "backed_off": None,
            },
        ],
    )


def scrape(
    local: ProcessMetrics, shared: SharedFacts | None
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    text = render(local, shared, GUARD).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_names_have_the_prefix_units_and_counters_end_in_total() -> None:
    text = render(ProcessMetrics(), facts(), GUARD).decode()
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("dispatcher_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for s in family.samples:
            assert set(s.labels) <= BOUNDED_LABELS, (s.name, s.labels)
            assert not any("@" in v for v in s.labels.values()), s  # no addresses


def test_the_series_do_not_grow_with_traffic() -> None:
    """A thousand times the mail gives the same series: values change, label sets do not."""
    small, large = ProcessMetrics(), ProcessMetrics()
    c = Counters(send_seconds=[0.05] * 10, accepted_after=[])
    c.sent, c.recipients_sent = 10, 12
    small.update(c, account="default", in_flight=1, rate_allowed=14.0, now=1.0)
    c = Counters(
        send_seconds=[0.05 + i / 10_000 for i in range(10_000)],
        accepted_after=[(i % 2 == 0, float(i)) for i in range(10_000)],
    )
    c.sent, c.recipients_sent, c.failed, c.in_doubt = 10_000, 12_000, 50, 3
    large.update(c, account="default", in_flight=40, rate_allowed=14.0, now=1.0)
    shape = {name: set(series) for name, series in scrape(small, facts()).items()}
    assert shape == {name: set(series) for name, series in scrape(large, facts()).items()}


def test_campaign_series_follow_the_running_campaigns_only() -> None:
    few = scrape(ProcessMetrics(), facts(campaigns=2))
    assert len(few["dispatcher_campaign_recipients"]) == 2
    none = scrape(ProcessMetrics(), facts(campaigns=0))
    assert "dispatcher_campaign_recipients" not in none  # finished ones leave no series behind


def test_counters_are_copied_as_deltas_and_samples_drained() -> None:
    metrics = ProcessMetrics()
    c = Counters(send_seconds=[0.1, 0.2], accepted_after=[(False, 0.5), (True, 100.0)])
    c.sent, c.recipients_sent, c.ses_calls = 2, 3, 2
    metrics.update(c, account="default", in_flight=0, rate_allowed=10.0, now=100.0)
    c.sent, c.recipients_sent, c.ses_calls, c.throttled = 5, 9, 5, 1
    metrics.update(c, account="default", in_flight=3, rate_allowed=10.0, now=102.0, send_slots=12)
    got = scrape(metrics, None)
    default = (("account", "default"),)
    assert got["dispatcher_send_slots"][default] == 12
    assert got["dispatcher_sends_total"][(*default, ("outcome", "sent"))] == 5
    assert got["dispatcher_recipients_sent_total"][default] == 9
    assert got["dispatcher_throttled_total"][default] == 1
    assert got["dispatcher_in_flight"][default] == 3
    assert got["dispatcher_send_rate_achieved"][default] == 3.0  # 6 recipients in 2 s
    assert got["dispatcher_send_seconds_count"][default] == 2
    campaign = (*default, ("lane", "campaign"))
    assert got["dispatcher_enqueue_to_accepted_seconds_count"][campaign] == 1
    assert (c.send_seconds, c.accepted_after) == ([], [])  # moved, not copied again
    assert got["dispatcher_database_up"][()] == 0  # no shared facts: Postgres did not answer


def test_the_achieved_rate_forgets_what_is_older_than_its_window() -> None:
    metrics = ProcessMetrics()
    c = Counters()
    for second in range(31):
        c.recipients_sent = 100 * second if second < 20 else 2000  # stops sending at 20 s
        metrics.update(c, account="default", in_flight=0, rate_allowed=100.0, now=float(second))
    assert scrape(metrics, None)["dispatcher_send_rate_achieved"][(("account", "default"),)] == 0


def test_shared_gauges_say_what_the_quota_and_guard_read() -> None:
    got = {m.name: m for m in shared_families(facts(), GUARD)}
    used = got["dispatcher_quota_used_24h"].samples[0].value
    assert used == 1250  # SES's reading plus what every worker sent since
    rates = {tuple(s.labels.values()): s.value for s in got["dispatcher_guard_bounce_rate"].samples}
    assert rates[("account", "")] == 0.03
    assert rates[("campaign", "spring 0")] == 0.05


def test_the_webhook_backlog_is_shown_per_endpoint() -> None:
    got = {m.name: m for m in shared_families(facts(), GUARD)}
    [backlog] = got["dispatcher_webhook_backlog"].samples
    assert backlog.labels == {"endpoint": "https://hooks.example/in"} and backlog.value == 7
    [oldest] = got["dispatcher_webhook_oldest_pending_seconds"].samples
    assert oldest.value == 42.5


def test_each_provider_lane_shows_its_limits_sends_and_back_off() -> None:
    got = scrape(ProcessMetrics(), facts())
    google = (("account", "default"), ("provider", "google"))
    other = (("account", "default"), ("provider", "other"))
    assert got["dispatcher_lane_rate"] == {google: 5.0}
    assert got["dispatcher_lane_daily_cap"] == {google: 100000.0}
    assert got["dispatcher_lane_sent_today"] == {google: 40.0, other: 200.0}
    assert got["dispatcher_lane_backed_off"] == {google: 1.0, other: 0.0}


def test_each_account_has_its_own_series_of_what_it_sent_and_its_quota() -> None:
    metrics = ProcessMetrics(accounts=("brand-a", "brand-b"))
    a, b = Counters(), Counters()
    a.sent, a.recipients_sent, a.throttled = 3, 4, 1
    b.sent, b.recipients_sent = 7, 7
    metrics.update(a, account="brand-a", in_flight=1, rate_allowed=20.0, now=1.0)
    metrics.update(b, account="brand-b", in_flight=0, rate_allowed=4.0, now=1.0)
    reading_b = SharedReading(1, 1, Quota(30, 4, 10), 2.0, None, 5.0)
    shared = replace(
        facts(),
        default_account="brand-a",
        other_accounts={"brand-b": AccountFacts(reading_b, [])},
    )
    got = scrape(metrics, shared)
    sent = got["dispatcher_sends_total"]
    assert sent[(("account", "brand-a"), ("outcome", "sent"))] == 3
    assert sent[(("account", "brand-b"), ("outcome", "sent"))] == 7
    assert got["dispatcher_throttled_total"] == {
        (("account", "brand-a"),): 1,
        (("account", "brand-b"),): 0,
    }
    assert got["dispatcher_send_rate_allowed"] == {
        (("account", "brand-a"),): 20.0,
        (("account", "brand-b"),): 4.0,
    }
    assert got["dispatcher_quota_used_24h"] == {
        (("account", "brand-a"),): 1250,
        (("account", "brand-b"),): 15,
    }
    assert got["dispatcher_quota_max_send_rate"][(("account", "brand-b"),)] == 4
    assert (("account", "brand-a"), ("provider", "google")) in got["dispatcher_lane_rate"]

"""What this process did, as Prometheus metrics: copied from each worker pool's plain counters
once a second (`ProcessMetrics.update`, from the ticker in live.py), so the send path only adds
to integers and lists."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dispatcher.accounts.settings import DEFAULT_ACCOUNT
from dispatcher.worker.counters import Counters

__all__ = ["ACHIEVED_WINDOW", "OUTCOMES", "UNSUBSCRIBE_OUTCOMES", "ProcessMetrics"]

ACHIEVED_WINDOW = 10.0  # seconds the achieved rate is averaged over
OUTCOMES = ("sent", "failed", "retried", "in_doubt")  # the Counters fields sends end in
# One-click unsubscribe POSTs (dispatcher.feedback.unsubscribe): a new suppression, a repeat of
# one, or refused (bad token, gone campaign or message, no one-click body).
UNSUBSCRIBE_OUTCOMES = ("unsubscribed", "repeat", "refused")
# SES answers in tens of milliseconds; throttling and retries inside the SDK take seconds.
SEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# From enqueue to SES's yes: under a second when idle, hours behind a campaign or a quota.
ACCEPTED_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)


def _live_gauge(name: str, doc: str, registry: CollectorRegistry) -> Gauge:
    return Gauge(name, doc, ["account"], registry=registry, multiprocess_mode="livesum")


class ProcessMetrics:
    """The metrics of this process, updated from `Counters` by `update` (never on the send path).

    What concerns one SES account's sending carries its name in an `account` label (the default
    account's, `default` without [[accounts]]): each account has its own pool, rate and quota.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        accounts: Sequence[str] = (DEFAULT_ACCOUNT,),
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sends = Counter(
            "dispatcher_sends",
            "Messages SES answered, by what became of them",
            ["account", "outcome"],
            registry=r,
        )
        self.recipients = Counter(
            "dispatcher_recipients_sent",
            "Recipients SES accepted (To + Cc + Bcc)",
            ["account"],
            registry=r,
        )
        self.throttled = Counter(
            "dispatcher_throttled",
            "Sends SES refused for the send rate (Throttling)",
            ["account"],
            registry=r,
        )
        self.calls = Counter(
            "dispatcher_ses_calls",
            "SendEmail and SendBulkEmail requests made",
            ["account"],
            registry=r,
        )
        # Summed over the live processes under `run --processes` (a dead one's leave the sum).
        self.in_flight = _live_gauge(
            "dispatcher_in_flight", "Messages handed to SES, answer not known yet", r
        )
        self.send_slots = _live_gauge(
            "dispatcher_send_slots",
            "Concurrent SES calls allowed now: rate x latency, delivery.max_in_flight at most",
            r,
        )
        self.rate_allowed = _live_gauge(
            "dispatcher_send_rate_allowed", "Recipients per second the pacing allows", r
        )
        self.rate_achieved = _live_gauge(
            "dispatcher_send_rate_achieved",
            f"Recipients per second accepted by SES over the last {ACHIEVED_WINDOW:g} s",
            r,
        )
        self.send_seconds = Histogram(
            "dispatcher_send_seconds",
            "SES send call latency",
            ["account"],
            registry=r,
            buckets=SEND_BUCKETS,
        )
        self.accepted = Histogram(
            "dispatcher_enqueue_to_accepted_seconds",
            "From enqueue to SES accepting the message, by lane (message or campaign)",
            ["account", "lane"],
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
        self._seen: dict[tuple[str, str], int] = {}  # (account, Counters field): value copied
        self._sent: dict[str, deque[tuple[float, int]]] = {}  # account: (time, recipients sent)
        for account in accounts:
            self._add(account)

    def _add(self, account: str) -> None:
        """Every series of `account` present from the start, at 0."""
        for outcome in OUTCOMES:
            self.sends.labels(account=account, outcome=outcome)
        for each in (self.recipients, self.throttled, self.calls, self.send_seconds):
            each.labels(account=account)
        for gauge in (self.in_flight, self.send_slots, self.rate_allowed, self.rate_achieved):
            gauge.labels(account=account)
        for lane in ("message", "campaign"):
            self.accepted.labels(account=account, lane=lane)
        self._sent[account] = deque()

    def unsubscribes_counter(self) -> Callable[[str], None]:
        """A function that counts one unsubscribe POST by its result (UNSUBSCRIBE_OUTCOMES)."""
        return lambda outcome: self.unsubscribes.labels(outcome=outcome).inc()

    def update(
        self,
        c: Counters,
        *,
        account: str,
        in_flight: int,
        rate_allowed: float,
        now: float,
        send_slots: int | None = None,
    ) -> None:
        """Copy what `c`, the counters of `account`'s pool, counted since the last update; move
        its latency samples over."""
        if account not in self._sent:
            self._add(account)
        for outcome in OUTCOMES:
            self.sends.labels(account=account, outcome=outcome).inc(
                self._delta(c, account, outcome)
            )
        self.recipients.labels(account=account).inc(self._delta(c, account, "recipients_sent"))
        self.throttled.labels(account=account).inc(self._delta(c, account, "throttled"))
        self.calls.labels(account=account).inc(self._delta(c, account, "ses_calls"))
        self.in_flight.labels(account=account).set(in_flight)
        if send_slots is not None:
            self.send_slots.labels(account=account).set(send_slots)
        self.rate_allowed.labels(account=account).set(rate_allowed)
        sent = self._sent[account]
        sent.append((now, c.recipients_sent))
        while len(sent) > 2 and now - sent[1][0] >= ACHIEVED_WINDOW:
            sent.popleft()
        (t0, n0), (t1, n1) = sent[0], sent[-1]
        self.rate_achieved.labels(account=account).set((n1 - n0) / (t1 - t0) if t1 > t0 else 0.0)
        samples, c.send_seconds = c.send_seconds or [], []  # from now on, samples are kept
        latency = self.send_seconds.labels(account=account)
        for seconds in samples:
            latency.observe(seconds)
        accepted, c.accepted_after = c.accepted_after or [], []
        for campaign, seconds in accepted:
            lane = "campaign" if campaign else "message"
            self.accepted.labels(account=account, lane=lane).observe(seconds)

    def _delta(self, c: Counters, account: str, name: str) -> int:
        value: int = getattr(c, name)
        delta = value - self._seen.get((account, name), 0)
        self._seen[account, name] = value
        return max(delta, 0)

"""What this process did, as Prometheus metrics: copied from the worker's plain counters once a
second (`ProcessMetrics.update`, from the ticker in live.py), so the send path only adds to
integers and lists."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
    return Gauge(name, doc, registry=registry, multiprocess_mode="livesum")


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

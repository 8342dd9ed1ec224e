"""The dashboard's view model: pure functions from what the daemon and Postgres report to the
JSON the page draws (no I/O here; dispatcher/obs/ui/handlers.py gathers the inputs)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatcher.accounts.store import AccountRow
from dispatcher.domain.jobs import UnknownJob
from dispatcher.feedback.guard import Thresholds, reputation_view
from dispatcher.feedback.store import HeldSender
from dispatcher.obs.metrics import QUEUE_STATES, SharedFacts

__all__ = [
    "CHART_SECONDS",
    "ErrorKind",
    "ProcessNumbers",
    "RateHistory",
    "accounts_view",
    "chart_span",
    "dashboard",
    "nice_ceiling",
]

CHART_SECONDS = 300.0  # the rate chart shows the last five minutes
FINAL = ("sent", "failed", "cancelled")  # a campaign's mail that is done


@dataclass(frozen=True, slots=True)
class ProcessNumbers:
    """What /metrics' process part says (summed over `run --processes`) at one instant."""

    rate_achieved: float
    rate_allowed: float
    in_flight: float
    sends: Mapping[str, float]  # dispatcher_sends_total by outcome
    throttled: float


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """Failed mail of one outcome in the recent window, with its latest error text."""

    kind: str
    count: int
    last_at: datetime
    example: str | None


class RateHistory:
    """Rate samples (achieved, allowed) over the last `window` seconds, for the chart."""

    __slots__ = ("_samples", "window")

    def __init__(self, window: float = CHART_SECONDS) -> None:
        self.window = window
        self._samples: deque[tuple[float, float, float]] = deque()

    def add(self, now: float, achieved: float, allowed: float) -> None:
        self._samples.append((now, achieved, allowed))
        while self._samples and now - self._samples[0][0] > self.window:
            self._samples.popleft()

    def points(self, now: float) -> list[tuple[float, float, float]]:
        """(seconds before `now` as a negative number, achieved, allowed), oldest first."""
        return [
            (round(t - now, 1), round(a, 3), round(b, 3))
            for t, a, b in self._samples
            if now - t <= self.window
        ]


def chart_span(points: Sequence[tuple[float, float, float]], window: float) -> float:
    """Seconds the chart's x axis spans: the samples' age in whole minutes (at least one),
    up to `window`, so a fresh daemon's first seconds are not a sliver at the right edge."""
    age = -points[0][0] if points else 0.0
    return min(window, max(60.0, 60.0 * math.ceil(age / 60.0)))


def nice_ceiling(value: float) -> float:
    """The chart's top: the next 1, 2 or 5 times a power of ten at or above `value` (1 for 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power  # pragma: no cover - the loop always returns


def _pct(part: float, whole: float) -> float | None:
    return None if whole <= 0 else round(100.0 * part / whole, 1)


def quota_view(facts: SharedFacts, headroom: float) -> dict[str, Any] | None:
    """Daily quota used and what is left before the governor stops (None: no reading yet)."""
    quota = facts.quota.quota
    if quota is None:
        return None
    used = quota.sent_last_24_hours + facts.quota.others_sent
    limit = quota.max_24_hour_send
    if limit < 0:
        return {"max_24h": None, "used_24h": used, "stop_at": None, "left": None, "pct": None}
    stop_at = limit * headroom
    return {
        "max_24h": limit,
        "used_24h": used,
        "stop_at": stop_at,
        "left": max(0.0, stop_at - used),
        "pct": _pct(used, limit),
        "max_send_rate": quota.max_send_rate,
        "reading_age_seconds": round(facts.quota.age, 1),
    }


def queue_view(facts: SharedFacts) -> list[dict[str, Any]]:
    """One row per active state: total, the single messages' lane and the campaigns' lane."""
    rows = []
    for state in QUEUE_STATES:
        total = facts.states.get(state, 0)
        campaign = facts.campaign_lane.get(state, 0)
        rows.append(
            {"state": state, "total": total, "message": total - campaign, "campaign": campaign}
        )
    return rows


def campaigns_view(facts: SharedFacts, th: Thresholds) -> list[dict[str, Any]]:
    """Running and paused campaigns: progress, guard rates, and which buttons apply."""
    out = []
    for c in facts.campaigns:
        done = sum(c.by_state.get(s, 0) for s in FINAL)
        guard = None if c.feedback is None else reputation_view(c.feedback, th)
        out.append(
            {
                "id": c.id,
                "label": c.label,
                "state": c.state,
                "pause_reason": c.pause_reason,
                "recipients": c.recipients,
                "by_state": dict(c.by_state),
                "sent": c.by_state.get("sent", 0),
                "done": done,
                "pct": _pct(done, c.recipients),
                "guard": guard,
                "actions": ["pause", "cancel"] if c.state == "running" else ["resume", "cancel"],
            }
        )
    return out


def in_doubt_view(jobs: Iterable[UnknownJob]) -> list[dict[str, Any]]:
    return [
        {
            "id": j.id,
            "since": j.updated_at.isoformat(),
            "from": j.from_addr,
            "to": list(j.to),
            "subject": j.subject,
            "error": j.last_error,
        }
        for j in jobs
    ]


def held_view(held: Iterable[HeldSender], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "from": h.from_addr,
            "configuration_set": h.configuration_set,
            "reason": h.reason or "not recorded",
            "retry_in_seconds": max(0, round((h.retry_at - now).total_seconds())),
        }
        for h in held
    ]


def accounts_view(
    rows: Sequence[AccountRow], regions: Mapping[str, str]
) -> list[dict[str, Any]] | None:
    """One row per SES account (None with only one: the rest of the page is that account)."""
    if len(rows) < 2:
        return None
    out = []
    for r in rows:
        unlimited = r.max_24_hour_send is not None and r.max_24_hour_send < 0
        out.append(
            {
                "name": r.name,
                "default": r.default,
                "region": regions.get(r.name),
                "max_send_rate": r.max_send_rate,  # None: its quota was not read yet
                "max_24_hour_send": None if unlimited else r.max_24_hour_send,
                "unlimited": unlimited,
                "sent_last_24_hours": r.sent_last_24_hours,
                "queued": r.queued,
                "workers": r.workers,
                "paused": r.paused_reason,  # SES paused or suspended it
                "held": r.held_reason,  # the reputation guard holds its sending
            }
        )
    return out


def errors_view(kinds: Sequence[ErrorKind], numbers: ProcessNumbers | None) -> dict[str, Any]:
    """Failed mail by outcome (recent, every process) and the transient kinds this daemon met."""
    transient = {}
    if numbers is not None:
        transient = {
            "throttled": int(numbers.throttled),
            "retried": int(numbers.sends.get("retried", 0)),
            "in_doubt": int(numbers.sends.get("in_doubt", 0)),
        }
    failed = [
        {"kind": k.kind, "count": k.count, "last_at": k.last_at.isoformat(), "example": k.example}
        for k in kinds
    ]
    return {"failed": failed, "since_start": transient}


def dashboard(
    facts: SharedFacts | None,
    *,
    th: Thresholds,
    campaign_th: Thresholds,
    window_hours: float,
    quota_headroom: float,
    hold: tuple[str, datetime] | None,
    held: Sequence[HeldSender],
    in_doubt: Sequence[UnknownJob],
    errors: Sequence[ErrorKind],
    numbers: ProcessNumbers | None,
    history: RateHistory,
    now: float,
    wall: datetime,
    accounts: Sequence[AccountRow] = (),
    regions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Everything /ui/state.json answers (facts None: Postgres did not answer in time)."""
    points = history.points(now)
    top = max([p[1] for p in points] + [p[2] for p in points] + [0.0])
    rate: dict[str, Any] = {
        "achieved": None if numbers is None else round(numbers.rate_achieved, 2),
        "allowed": None if numbers is None else round(numbers.rate_allowed, 2),
        "window_seconds": chart_span(points, history.window),
        "points": points,
        "y_max": nice_ceiling(top),
    }
    view: dict[str, Any] = {
        "at": wall.isoformat(),
        "database_up": facts is not None,
        "rate": rate,
        "in_flight": None if numbers is None else int(numbers.in_flight),
        "sends": {} if numbers is None else {k: int(v) for k, v in numbers.sends.items()},
        "errors": errors_view(errors, numbers),
    }
    if facts is None:
        return view
    account = reputation_view(facts.account, th, window_hours=window_hours)
    view |= {
        "quota": quota_view(facts, quota_headroom),
        "queue": queue_view(facts),
        "campaigns": campaigns_view(facts, campaign_th),
        "guard": account,
        "sending_held": None if hold is None else {"reason": hold[0], "since": hold[1].isoformat()},
        "held_senders": held_view(held, wall),
        "in_doubt": in_doubt_view(in_doubt),
        "in_doubt_total": facts.states.get("unknown", 0),
        "lanes": facts.lanes,  # provider lanes: rate, cap, sent today, backed off
        "accounts": accounts_view(accounts, regions or {}),  # None: one SES account
    }
    return view

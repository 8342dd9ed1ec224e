"""The reputation guard's decision: which campaigns to pause, and why. Pure: no I/O.

AWS judges an account by its hard-bounce rate (review at 5 %) and complaint rate (review at
0.1 %) over recent sending. The guard computes the same rates per running campaign (over its
life) and account-wide (over a rolling window), and pauses before AWS's levels: a campaign whose
own rate crosses a threshold is paused; an account-wide crossing pauses every running campaign
(transactional mail keeps going: it is rarely the cause, and a password reset must still arrive).
Rates are judged only from `min_volume` recipients sent, so the first few bounces of a campaign
cannot stop it on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "AWS_BOUNCE_REVIEW",
    "AWS_COMPLAINT_REVIEW",
    "Counts",
    "Thresholds",
    "decide",
    "hold_reason",
    "reputation_lines",
    "reputation_view",
    "verdict",
]

AWS_BOUNCE_REVIEW = 0.05  # AWS reviews the account at this hard-bounce rate
AWS_COMPLAINT_REVIEW = 0.001  # ... and at this complaint rate


@dataclass(frozen=True, slots=True)
class Counts:
    """Recipients sent, hard-bounced and complained in one scope (a campaign, the account)."""

    sent: int
    bounced: int
    complained: int

    @property
    def bounce_rate(self) -> float | None:
        return self.bounced / self.sent if self.sent else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complained / self.sent if self.sent else None


@dataclass(frozen=True, slots=True)
class Thresholds:
    bounce: float
    complaint: float
    min_volume: int


def _pct(rate: float) -> str:
    return f"{rate * 100:.2f}".rstrip("0").rstrip(".") + "%"


def verdict(counts: Counts, th: Thresholds, scope: str) -> str | None:
    """Why this scope must stop ("guard: ..."), or None while it is within the thresholds."""
    if counts.sent < th.min_volume:
        return None
    over = []
    if counts.bounced / counts.sent >= th.bounce:
        over.append(
            f"bounce rate {_pct(counts.bounced / counts.sent)} ({counts.bounced:,} hard bounces), "
            f"threshold {_pct(th.bounce)}"
        )
    if counts.complained / counts.sent >= th.complaint:
        over.append(
            f"complaint rate {_pct(counts.complained / counts.sent)} "
            f"({counts.complained:,} complaints), threshold {_pct(th.complaint)}"
        )
    if not over:
        return None
    return f"guard: {scope} {' and '.join(over)} over {counts.sent:,} recipients sent"


def decide(
    account: Counts,
    campaigns: Mapping[int, Counts],
    th: Thresholds,
    campaign_th: Thresholds | None = None,
    *,
    account_pauses_campaigns: bool = True,
) -> dict[int, str]:
    """The running campaigns to pause, each with its reason; {} when all is well.

    Each campaign is judged by `campaign_th` (default `th`); an account-wide trip (by `th`)
    pauses every running campaign unless `account_pauses_campaigns` is False (the caller holds
    all sending instead: see `hold_reason`).
    """
    account_reason = verdict(account, th, "account") if account_pauses_campaigns else None
    out: dict[int, str] = {}
    for campaign_id, counts in campaigns.items():
        reason = verdict(counts, campaign_th or th, "campaign")
        if reason is None and account_reason is not None:
            reason = account_reason
        if reason is not None:
            out[campaign_id] = reason
    return out


def hold_reason(account: Counts, th: Thresholds) -> str | None:
    """With `account_action = "all"`: why all sending must stop, or None."""
    return verdict(account, th, "account")


def reputation_view(
    counts: Counts, th: Thresholds, *, window_hours: float | None = None
) -> dict[str, object]:
    """Rates next to the guard's thresholds and AWS's review levels (for `status --json`)."""
    view: dict[str, object] = {
        "recipients_sent": counts.sent,
        "hard_bounces": counts.bounced,
        "complaints": counts.complained,
        "bounce_rate": counts.bounce_rate,
        "complaint_rate": counts.complaint_rate,
        "guard_bounce_threshold": th.bounce,
        "guard_complaint_threshold": th.complaint,
        "aws_bounce_review": AWS_BOUNCE_REVIEW,
        "aws_complaint_review": AWS_COMPLAINT_REVIEW,
        "judged": counts.sent >= th.min_volume,  # below min_volume the guard waits for volume
    }
    if window_hours is not None:
        view["window_hours"] = window_hours
    return view


def reputation_lines(view: Mapping[str, object]) -> list[str]:
    """The same view for a person: one line per rate."""

    def rate(value: object) -> str:
        return "-" if not isinstance(value, float) else _pct(value)

    lines = [
        f"  bounce rate      {rate(view['bounce_rate']):>8}  "
        f"({view['hard_bounces']} hard bounces / {view['recipients_sent']} sent; "
        f"guard pauses at {rate(view['guard_bounce_threshold'])}, "
        f"AWS reviews at {rate(view['aws_bounce_review'])})",
        f"  complaint rate   {rate(view['complaint_rate']):>8}  "
        f"({view['complaints']} complaints; guard pauses at "
        f"{rate(view['guard_complaint_threshold'])}, "
        f"AWS reviews at {rate(view['aws_complaint_review'])})",
    ]
    if not view["judged"]:
        lines.append("  (too few recipients sent yet for the guard to judge)")
    return lines

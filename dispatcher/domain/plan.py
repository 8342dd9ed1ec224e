"""How one claimed job goes out: what campaigns tell the worker about a job before it is sent."""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.domain.jobs import ClaimedJob

__all__ = ["Fail", "GiveBack", "Plan", "Send", "SendBulk", "Wait"]


@dataclass(frozen=True, slots=True)
class Send:
    """Send this (rendered) job with SendEmail."""

    job: ClaimedJob


@dataclass(frozen=True, slots=True)
class SendBulk:
    """Send this job with SendBulkEmail and the campaign's SES template, with others like it."""

    job: ClaimedJob
    template: str


@dataclass(frozen=True, slots=True)
class Fail:
    """This job can never be sent (its render failed): it fails with `reason`, SES not asked."""

    job: ClaimedJob
    outcome: str
    reason: str


@dataclass(frozen=True, slots=True)
class GiveBack:
    """Not now: the job's campaign was paused (for `reason`); the job goes back untouched."""

    job: ClaimedJob
    reason: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Not before `delay` seconds: the recipient's send window is closed until then."""

    job: ClaimedJob
    delay: float


Plan = Send | SendBulk | Fail | GiveBack | Wait

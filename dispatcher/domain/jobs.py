"""The job types every layer speaks: a message to enqueue, a claimed job, its settlement, views."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.mime import Attachment

__all__ = [
    "STATES",
    "ClaimedJob",
    "Enqueued",
    "Held",
    "JobView",
    "NewMessage",
    "Pending",
    "Recovered",
    "ResolveTo",
    "SettleState",
    "Settlement",
    "UnknownJob",
    "WorkerView",
]

STATES = ("held", "queued", "claimed", "in_flight", "sent", "failed", "unknown", "cancelled")
"""Every job state, in lifecycle order (the values of the enum dispatcher.job_state).

`held`: campaign mail waiting for its campaign to start or resume.
"""

SettleState = Literal["sent", "queued", "failed", "unknown"]
ResolveTo = Literal["queued", "sent", "failed"]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to enqueue: content, plus when and in which order it may be sent."""

    from_addr: str
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    raw: bytes | None = None  # a complete MIME message; excludes text/html
    reply_to: tuple[str, ...] = ()
    configuration_set: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None  # enqueueing the same key again returns the first id
    priority: int = 0  # higher is claimed first; -32768..32767
    send_after: datetime | None = None  # tz-aware; not claimed before this instant
    key_id: str | None = None  # the key a door authenticated (dispatcher.doors.keys)
    # Built into a MIME message by validation, which queues it as raw (text and html inside).
    attachments: tuple[Attachment, ...] = ()
    # An SES template in the account and its TemplateData (a JSON object): SES renders the
    # content at send time; the message then has no subject, text, html or raw of its own.
    template_name: str | None = None
    template_data: str | None = None

    @property
    def recipient_count(self) -> int:
        """SES quotas count recipients (To + Cc + Bcc), not calls."""
        return len(self.to) + len(self.cc) + len(self.bcc)


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The id of an enqueued message; ``created`` is False if its idempotency key existed."""

    id: int
    created: bool


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job leased to one worker; ``token`` must accompany its launch and settlement."""

    token: int
    attempts: int
    priority: int
    message: OutgoingMessage
    campaign_id: int | None = None  # campaign mail: content rendered at send time from
    variables: dict[str, str] | None = None  # the campaign's template and these variables
    enqueued_at: float | None = None  # messages.created_at (Unix time), for /metrics

    @property
    def id(self) -> int:
        return self.message.id


def recipients_of(jobs: Sequence[ClaimedJob]) -> int:
    """What sending `jobs` costs of the rate and the daily quota (To + Cc + Bcc of each)."""
    if len(jobs) == 1:  # the common case, on the hot path: no generator
        return jobs[0].message.recipient_count
    return sum(j.message.recipient_count for j in jobs)


@dataclass(frozen=True, slots=True)
class Settlement:
    """The result of one send, recorded by ``Queue.settle`` if ``token`` is still current."""

    id: int
    token: int
    state: SettleState
    ses_message_id: str | None = None
    outcome: str | None = None
    error: str | None = None
    attempt_used: bool = False
    delay: float = 0.0  # state "queued": seconds before it may be claimed again


@dataclass(frozen=True, slots=True)
class Recovered:
    """What ``Queue.recover`` did with the jobs of dead workers."""

    requeued: int  # claimed (never handed to SES) -> queued
    in_doubt: int  # in_flight (maybe sent) -> unknown, or queued with policy "resend"


@dataclass(frozen=True, slots=True)
class Peers:
    """The other workers of an account that send now, as `rate_share` counts them."""

    others: int  # active workers besides this one
    before: int  # ... of them ranked before it (by worker id): its turn among them all


@dataclass(frozen=True, slots=True)
class Pending:
    """Work a draining worker still waits for, and mail scheduled beyond the horizon."""

    waiting: int
    scheduled_later: int
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True)
class Held:
    """Queued mail held back by a sending error that needs a person (config, paused account)."""

    count: int
    reason: str | None  # the most recent such error, in SES's words


@dataclass(frozen=True, slots=True)
class WorkerView:
    """A live (or not yet recovered) worker process."""

    id: uuid.UUID
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True, slots=True)
class UnknownJob:
    """A message that may or may not have been sent; a person decides (resolve_unknown)."""

    id: int
    updated_at: datetime
    last_error: str | None
    from_addr: str
    to: tuple[str, ...]
    subject: str


@dataclass(frozen=True, slots=True)
class JobView:
    """One message and its job, as ``dispatcher status <id>`` shows it."""

    id: int
    state: str
    attempts: int
    priority: int
    run_at: datetime
    sent_at: datetime | None
    ses_message_id: str | None
    last_outcome: str | None
    last_error: str | None
    idempotency_key: str | None
    from_addr: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    subject: str
    created_at: datetime

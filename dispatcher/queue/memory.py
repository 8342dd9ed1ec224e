"""The job store in memory: the same leases, fencing tokens and states as the Postgres queue.

For unit tests of the worker in virtual time (`now` is injected) and for experiments; nothing
here survives the process. The conformance suite (`tests/conformance/`) runs the same tests
against this and `Queue`. Every method is a single step without an await inside, so two tasks
never see each other's half-done change: the in-memory counterpart of one SQL statement
(and of SKIP LOCKED: a job is claimed by whoever comes first).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import get_args

from dispatcher.domain.jobs import (
    STATES,
    ClaimedJob,
    Enqueued,
    Held,
    JobView,
    NewMessage,
    Peers,
    Pending,
    Recovered,
    ResolveTo,
    Settlement,
    SettleState,
    UnknownJob,
)
from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.retry import InDoubtPolicy
from dispatcher.domain.validate import suppression_key
from dispatcher.errors import InputError
from dispatcher.queue.enqueue import validate_all

__all__ = ["MemoryJobStore"]

_HOLDING = frozenset({"config_error", "account_paused"})  # outcomes `held()` reports


@dataclass(slots=True)
class _Job:
    message: OutgoingMessage
    idempotency_key: str | None
    priority: int
    run_at: datetime
    scheduled: bool
    created_at: datetime
    state: str = "queued"
    attempts: int = 0
    lease_owner: uuid.UUID | None = None
    lease_token: int = 0
    last_outcome: str | None = None
    last_error: str | None = None
    ses_message_id: str | None = None
    sent_at: datetime | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    campaign_id: int | None = None
    variables: dict[str, str] | None = None

    def order(self) -> tuple[int, datetime, int]:
        return (-self.priority, self.run_at, self.message.id)


@dataclass(slots=True)
class _Worker:
    lease_seconds: float
    heartbeat_at: datetime
    active_until: datetime | None = None


class MemoryJobStore:
    """`JobStore` (and the operator's side of `Queue`) in memory."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._now = now if now is not None else (lambda: datetime.now(UTC))
        self._jobs: dict[int, _Job] = {}
        self._keys: dict[str, int] = {}
        self._workers: dict[uuid.UUID, _Worker] = {}
        # Workers whose session lock is held: a process that dies ends its session.
        self._sessions: set[uuid.UUID] = set()
        self.server_started: datetime | None = None  # set by `restart`
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self.campaigns: dict[int, str] = {}  # campaign id -> draft | running | paused | ...
        self.suppressed: set[str] = set()  # suppression keys (domain.validate.suppression_key)
        self.hold_all: str | None = None  # the guard holds all sending, for this reason

    # -- enqueue ----------------------------------------------------------------------------

    async def enqueue(self, msg: NewMessage) -> Enqueued:
        return (await self.enqueue_many([msg]))[0]

    async def enqueue_many(
        self,
        msgs: Sequence[NewMessage],
        *,
        campaign_id: int | None = None,
        variables: Sequence[dict[str, str]] | None = None,
    ) -> list[Enqueued]:
        """Queue messages (all validated first); campaign mail waits while its campaign does."""
        msgs = validate_all(msgs)  # checked and normalised, as Queue stores them
        now = self._now()
        out: list[Enqueued] = []
        for i, msg in enumerate(msgs):
            key = msg.idempotency_key
            if key is not None and key in self._keys:
                out.append(Enqueued(self._keys[key], created=False))
                continue
            job_id = next(self._ids)
            self._jobs[job_id] = _Job(
                message=_outgoing(job_id, msg),
                idempotency_key=key,
                priority=msg.priority,
                run_at=msg.send_after or now,
                scheduled=msg.send_after is not None,
                created_at=now,
                updated_at=now,
                campaign_id=campaign_id,
                variables=dict(variables[i]) if variables is not None else None,
                state=self._requeue_state(campaign_id),
            )
            if key is not None:
                self._keys[key] = job_id
            out.append(Enqueued(job_id, created=True))
        return out

    def set_campaign_state(self, campaign_id: int, state: str) -> None:
        """Start, pause or cancel a campaign: its waiting mail follows (held <-> queued)."""
        self.campaigns[campaign_id] = state
        now = self._now()
        for job in self._jobs.values():
            if job.campaign_id == campaign_id and job.state in ("queued", "held"):
                job.state, job.updated_at = self._requeue_state(campaign_id), now

    # -- the worker's side ------------------------------------------------------------------

    async def claim(self, owner: uuid.UUID, limit: int) -> list[ClaimedJob]:
        if limit <= 0 or self.hold_all is not None:
            return []
        now = self._now()
        lanes: dict[int | None, list[_Job]] = {}
        for job in self._jobs.values():
            if job.state == "queued" and job.run_at <= now:
                lanes.setdefault(job.campaign_id, []).append(job)
        offered: list[tuple[int, int, datetime, int, _Job]] = []
        for lane in lanes.values():
            lane.sort(key=_Job.order)
            for turn, job in enumerate(lane[:limit], start=1):
                offered.append((-job.priority, turn, job.run_at, job.message.id, job))
        offered.sort(key=lambda o: o[:4])
        token = next(self._tokens)
        claimed = []
        for *_, job in offered[:limit]:
            job.state, job.lease_owner, job.lease_token, job.updated_at = (
                "claimed",
                owner,
                token,
                now,
            )
            claimed.append(
                ClaimedJob(
                    token=token,
                    attempts=job.attempts,
                    priority=job.priority,
                    message=job.message,
                    campaign_id=job.campaign_id,
                    variables=dict(job.variables) if job.variables is not None else None,
                )
            )
        return claimed

    async def claim_screened(
        self, owner: uuid.UUID, limit: int
    ) -> tuple[list[ClaimedJob], frozenset[str] | None]:
        return await self.claim(owner, limit), None  # (the caller looks them all up)

    async def launch(
        self, owner: uuid.UUID, jobs: Sequence[ClaimedJob] | Sequence[tuple[int, int]]
    ) -> set[int]:
        pairs = [(j.id, j.token) if isinstance(j, ClaimedJob) else j for j in jobs]
        launched = set()
        for job_id, token in pairs:
            job = self._jobs.get(job_id)
            if job is None or job.lease_token != token or job.lease_owner != owner:
                continue
            if job.state == "claimed":
                job.state, job.updated_at = "in_flight", self._now()
            if job.state == "in_flight":  # also: launched before, the answer was lost
                launched.add(job_id)
        return launched

    async def settle(self, settlements: Sequence[Settlement]) -> set[int]:
        for s in settlements:
            if s.state not in get_args(SettleState):
                raise InputError(f"job {s.id}: cannot settle to state {s.state!r}")
        now = self._now()
        recorded = set()
        for s in settlements:
            job = self._jobs.get(s.id)
            if job is None or job.lease_token != s.token:
                continue
            # A late result is kept only where it is still the truth (see queries.sql settle).
            if not (
                job.state in ("claimed", "in_flight", "unknown")
                or (job.state in ("queued", "held") and s.state == "sent")
            ):
                continue
            requeued = s.state == "queued"
            job.state = self._requeue_state(job.campaign_id) if requeued else s.state
            job.ses_message_id = s.ses_message_id or job.ses_message_id
            if s.state == "sent":
                job.sent_at = now
            job.last_outcome, job.last_error = s.outcome, s.error
            job.attempts += int(s.attempt_used)
            if requeued:
                job.run_at = now + timedelta(seconds=s.delay)
            job.scheduled, job.lease_owner, job.updated_at = False, None, now
            recorded.add(s.id)
        return recorded

    async def release(
        self, owner: uuid.UUID, ids: Sequence[int], delay: float = 0.0, *, scheduled: bool = False
    ) -> int:
        now = self._now()
        due = now + timedelta(seconds=delay)
        jobs = [self._jobs.get(i) for i in set(ids)]
        mine = [j for j in jobs if j and j.lease_owner == owner and j.state == "claimed"]
        for job in mine:
            self._give_back(job, now)
            job.run_at = max(job.run_at, due)
            job.scheduled = job.scheduled or scheduled
        return len(mine)

    async def release_orphans(self, owner: uuid.UUID, held: Sequence[int]) -> int:
        now = self._now()
        keep = set(held)
        orphans = [
            j
            for j in self._jobs.values()
            if j.lease_owner == owner and j.state == "claimed" and j.message.id not in keep
        ]
        for job in orphans:
            self._give_back(job, now)
        return len(orphans)

    async def register_worker(self, owner: uuid.UUID, lease_seconds: float) -> None:
        worker = self._workers.get(owner)
        if worker is None:
            self._workers[owner] = _Worker(float(lease_seconds), self._now())
        else:
            worker.heartbeat_at = self._now()

    async def heartbeat(self, owner: uuid.UUID) -> bool:
        worker = self._workers.get(owner)
        if worker is None:
            return False
        worker.heartbeat_at = self._now()
        return True

    async def unregister_worker(self, owner: uuid.UUID) -> None:
        self._workers.pop(owner, None)

    async def hold_session(self, owner: uuid.UUID) -> bool:
        self._sessions.add(owner)
        return True

    async def end_session(self, owner: uuid.UUID) -> None:
        self._sessions.discard(owner)

    def restart(self) -> None:
        """Model a database restart: every session (and its lock) ends."""
        self._sessions.clear()
        self.server_started = self._now()

    async def recover(
        self, in_doubt: InDoubtPolicy, session_grace: float | None = None
    ) -> Recovered:
        if in_doubt not in get_args(InDoubtPolicy):
            raise InputError(f"in_doubt policy must be 'hold' or 'resend', not {in_doubt!r}")
        now = self._now()
        for owner, w in list(self._workers.items()):
            if w.heartbeat_at < now - timedelta(seconds=w.lease_seconds) or (
                session_grace is not None
                and owner not in self._sessions
                and w.heartbeat_at < now - timedelta(seconds=session_grace)
                and (self.server_started is None or w.heartbeat_at > self.server_started)
            ):
                del self._workers[owner]
        requeued = doubted = 0
        for job in self._jobs.values():
            if job.state not in ("claimed", "in_flight") or job.lease_owner in self._workers:
                continue
            if job.state == "claimed":
                requeued += 1
                self._give_back(job, now)
                continue
            doubted += 1
            if in_doubt == "resend":
                job.state = self._requeue_state(job.campaign_id)
                job.attempts += 1
            else:
                job.state = "unknown"
            job.last_outcome = "in_doubt"
            job.last_error = "worker lost while the message was being sent"
            job.lease_owner, job.updated_at = None, now
        return Recovered(requeued=requeued, in_doubt=doubted)

    async def rate_share(self, owner: uuid.UUID, busy: bool, ttl: float) -> Peers:
        now = self._now()
        me = self._workers.get(owner)
        if me is not None:
            me.active_until = now + timedelta(seconds=ttl) if busy else None
        others = [
            o
            for o, w in self._workers.items()
            if o != owner and w.active_until is not None and w.active_until > now
        ]
        return Peers(len(others), sum(o < owner for o in others))  # Postgres: uuid order

    async def pending(self, horizon_seconds: float = 0.0) -> Pending:
        horizon = self._now() + timedelta(seconds=horizon_seconds)
        active = [j for j in self._jobs.values() if j.state in ("queued", "claimed", "in_flight")]
        later = [j for j in active if j.scheduled and j.run_at > horizon]
        queued_at = [j.run_at for j in active if j.state == "queued"]
        return Pending(
            waiting=len(active) - len(later),
            scheduled_later=sum(1 for j in later if j.state == "queued"),
            next_run_at=min(queued_at, default=None),
        )

    async def held(self) -> Held:
        now = self._now()
        queued = [j for j in self._jobs.values() if j.state == "queued"]
        if self.hold_all is not None:
            return Held(len(queued), self.hold_all)
        held = [j for j in queued if j.run_at > now and j.last_outcome in _HOLDING]
        latest = max(held, key=lambda j: j.updated_at, default=None)
        return Held(len(held), latest.last_error if latest else None)

    async def suppressed_among(self, addresses: Sequence[str]) -> set[str]:
        return {suppression_key(a) for a in addresses} & self.suppressed

    # -- inspection and operator actions ----------------------------------------------------

    async def counts(self) -> dict[str, int]:
        result = dict.fromkeys(STATES, 0)
        for job in self._jobs.values():
            result[job.state] += 1
        return result

    async def get(self, message_id: int) -> JobView | None:
        job = self._jobs.get(message_id)
        if job is None:
            return None
        m = job.message
        return JobView(
            id=m.id,
            state=job.state,
            attempts=job.attempts,
            priority=job.priority,
            run_at=job.run_at,
            sent_at=job.sent_at,
            ses_message_id=job.ses_message_id,
            last_outcome=job.last_outcome,
            last_error=job.last_error,
            idempotency_key=job.idempotency_key,
            from_addr=m.from_addr,
            to=m.to,
            cc=m.cc,
            bcc=m.bcc,
            subject=m.subject,
            created_at=job.created_at,
        )

    async def list_unknown(self, limit: int = 100) -> list[UnknownJob]:
        unknown = sorted(i for i, j in self._jobs.items() if j.state == "unknown")[:limit]
        return [self._unknown_view(self._jobs[i]) for i in unknown]

    async def resolve_unknown(self, ids: Sequence[int] | None, to: ResolveTo) -> list[int]:
        if to not in get_args(ResolveTo):
            raise InputError(f"an unknown message resolves to queued, sent or failed, not {to!r}")
        now = self._now()
        moved = []
        for job in self._select(ids):
            if job.state == "unknown":
                job.state, job.run_at, job.updated_at = to, now, now
                if to == "sent" and job.sent_at is None:
                    job.sent_at = now
                if to != "queued":
                    job.last_error = "resolved by operator"
                moved.append(job.message.id)
        return sorted(moved)

    async def cancel(self, ids: Sequence[int]) -> list[int]:
        now = self._now()
        cancelled = []
        for job in self._select(ids):
            if job.state in ("queued", "unknown"):
                job.state, job.lease_owner, job.updated_at = "cancelled", None, now
                cancelled.append(job.message.id)
        return sorted(cancelled)

    # -- helpers ----------------------------------------------------------------------------

    def _requeue_state(self, campaign_id: int | None) -> str:
        """As dispatcher.requeue_state(): campaign mail waits while its campaign does."""
        if campaign_id is None:
            return "queued"
        state = self.campaigns.get(campaign_id, "draft")
        if state in ("draft", "paused"):
            return "held"
        if state == "cancelled":
            return "cancelled"
        return "queued"

    def _give_back(self, job: _Job, now: datetime) -> None:
        job.state, job.lease_owner, job.updated_at = self._requeue_state(job.campaign_id), None, now

    def _select(self, ids: Iterable[int] | None) -> list[_Job]:
        if ids is None:
            return list(self._jobs.values())
        return [self._jobs[i] for i in set(ids) if i in self._jobs]

    @staticmethod
    def _unknown_view(job: _Job) -> UnknownJob:
        m = job.message
        return UnknownJob(m.id, job.updated_at, job.last_error, m.from_addr, m.to, m.subject)


def _outgoing(job_id: int, msg: NewMessage) -> OutgoingMessage:
    return OutgoingMessage(
        id=job_id,
        from_addr=msg.from_addr,
        to=tuple(msg.to),
        cc=tuple(msg.cc),
        bcc=tuple(msg.bcc),
        subject=msg.subject,
        text=msg.text,
        html=msg.html,
        raw=msg.raw,
        reply_to=tuple(msg.reply_to),
        configuration_set=msg.configuration_set,
        tags=dict(msg.tags),
        template_name=msg.template_name,
        template_data=msg.template_data,
    )

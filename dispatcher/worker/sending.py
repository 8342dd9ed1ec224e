"""One send: launch, ask SES, learn from the answer, decide each job's fate, record it.

One path for both calls: a message sent alone is a group of one (SendEmail); a campaign with
an SES template sends groups of up to 50 with SendBulkEmail.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import structlog

from dispatcher.domain.jobs import ClaimedJob, Settlement, recipients_of
from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.outcome import Outcome, SendResult
from dispatcher.domain.quota import Quota
from dispatcher.domain.retry import RetryPolicy, decide
from dispatcher.worker.admission import Admission
from dispatcher.worker.counters import Counters
from dispatcher.worker.ledger import Ledger

__all__ = ["BULK_ENTRIES", "Sender", "Sending"]

log = structlog.get_logger()

BULK_ENTRIES = 50  # SendBulkEmail's limit per call


class Sender(Protocol):
    """What the worker needs of the SES adapter."""

    async def send(self, msg: OutgoingMessage) -> SendResult: ...

    async def get_send_quota(self) -> Quota: ...

    async def send_bulk(
        self, template_name: str, messages: list[tuple[OutgoingMessage, dict[str, str]]]
    ) -> list[SendResult]: ...

    async def send_templated(
        self, template_name: str, msg: OutgoingMessage, variables: dict[str, str]
    ) -> SendResult: ...


class Sending:
    """Runs admitted groups; every failure of a send task stops the worker through `fail`."""

    def __init__(
        self,
        ses: Sender,
        admission: Admission,
        ledger: Ledger,
        counters: Counters,
        retry: RetryPolicy,
        *,
        pause_campaign: Callable[[int, str], Awaitable[None]] | None,
        fail: Callable[[BaseException], None],
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._ses = ses
        self._admission = admission
        self._ledger = ledger
        self._counters = counters
        self._retry = retry
        self._pause_campaign = pause_campaign
        self._fail = fail
        self._rand = rand

    def start(self, group: Sequence[ClaimedJob], template: str | None) -> None:
        """Send an admitted group (it holds one slot): launched with the next launch group
        commit, then sent in a task of its own."""
        self._ledger.send(_Admitted(self, group, template))

    async def _send(
        self, sendable: list[ClaimedJob], template: str | None, recipients: int, taken: float
    ) -> None:
        """The SES call of launched jobs; `recipients` as admitted, `taken`: when the slot was."""
        slot_held = True
        try:
            # Launch times, not completion times, measure the pace (latency shifts both ends).
            c = self._counters
            c.last_send_at = now = time.monotonic()
            if c.first_send_at is None:
                c.first_send_at = now
            c.ses_calls += 1
            bulk = template is not None and len(sendable) > 1  # else SendEmail (templated)
            results = await self._call(sendable, template, bulk)
            if c.send_seconds is not None:
                c.send_seconds.append(time.monotonic() - now)
            # max_in_flight bounds SES calls on the wire: writing the result (group commit,
            # up to settle_interval of linger) must not keep the next send waiting.
            slot_held = False
            self._admission.answered(recipients, time.monotonic() - taken)
            settlements = [
                self._settlement(j, r, bulk) for j, r in zip(sendable, results, strict=True)
            ]
            await self._ledger.settle(settlements)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("worker.send_task_failed", message_id=sendable[0].id, error=repr(exc))
            self._fail(exc)
        finally:
            if slot_held:  # not sent, or cut off: counted as answered (the safe side)
                self._admission.answered(recipients)

    async def _call(
        self, jobs: list[ClaimedJob], template: str | None, bulk: bool
    ) -> list[SendResult]:
        try:
            if template is None:
                [job] = jobs
                return [await self._ses.send(job.message)]
            entries = [(j.message, {"email": j.message.to[0], **(j.variables or {})}) for j in jobs]
            if not bulk:  # SendEmail with the template: no 1 request/s limit on it
                [(msg, data)] = entries
                return [await self._ses.send_templated(template, msg, data)]
            return await self._ses.send_bulk(template, entries)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the adapter classifies; anything else is a bug: in doubt
            return [SendResult(Outcome.IN_DOUBT, reason=f"unexpected error: {exc!r}")] * len(jobs)

    def _settlement(self, job: ClaimedJob, result: SendResult, bulk: bool) -> Settlement:
        self._ledger.answered(job)
        self._counters.attempts += 1
        pause = self._admission.learn(job, result, bulk)
        if pause is not None and job.campaign_id is not None and self._pause_campaign:
            # Shared by every recipient: pause the campaign rather than fail them one by one.
            self._ledger.aside(self._pause_campaign(job.campaign_id, pause))
        decision = decide(result, job.attempts, self._retry, self._rand())
        self._count(job.message, decision.state, result)
        accepted = self._counters.accepted_after
        if accepted is not None and decision.state == "sent" and job.enqueued_at is not None:
            waited = max(time.time() - job.enqueued_at, 0.0)  # clocks of two hosts may differ
            accepted.append((job.campaign_id is not None, waited))
        return Settlement(
            id=job.id,
            token=job.token,
            state=decision.state,
            ses_message_id=result.ses_message_id,
            outcome=decision.outcome,
            error=decision.error,
            attempt_used=decision.attempt_used,
            delay=decision.delay,
        )

    def _count(self, msg: OutgoingMessage, state: str, result: SendResult) -> None:
        c = self._counters
        outcome = result.outcome
        if outcome is Outcome.THROTTLED:
            c.throttled += 1
        elif outcome is Outcome.DAILY_QUOTA:
            c.daily_quota += 1
        if state == "sent":
            c.sent += 1
            c.recipients_sent += msg.recipient_count
        elif state == "failed":
            c.failed += 1
            log.warning("message.failed", message_id=msg.id, code=result.code, reason=result.reason)
        elif state == "unknown":
            c.in_doubt += 1
            log.warning("message.in_doubt", message_id=msg.id, reason=result.reason)
        elif outcome is Outcome.TRANSIENT or outcome is Outcome.IN_DOUBT:
            c.retried += 1


class _Admitted:
    """A group admitted for sending (it holds a send slot) until its launch is written."""

    __slots__ = ("_recipients", "_sending", "_taken", "_template", "jobs")

    def __init__(self, sending: Sending, jobs: Sequence[ClaimedJob], template: str | None) -> None:
        self._sending = sending
        self.jobs = jobs
        self._template = template
        self._recipients = recipients_of(jobs)  # as admitted
        self._taken = time.monotonic()  # the slot was taken just before

    def launched(self, sendable: list[ClaimedJob]) -> Coroutine[Any, Any, None] | None:
        if not sendable:  # every job lost its lease: nothing to send
            self.abandoned()
            return None
        return self._sending._send(sendable, self._template, self._recipients, self._taken)

    def abandoned(self) -> None:
        self._sending._admission.answered(self._recipients)  # counted as answered: safe side

"""One message as JSON: its job and the SES events tied to it, as `dispatcher status ID --json`
prints it and the HTTP API's `GET /v1/messages/{id}` answers it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dispatcher.domain.jobs import JobView

if TYPE_CHECKING:
    from dispatcher.feedback.store import MessageEvent

__all__ = ["event_json", "job_json", "message_json"]


def job_json(job: JobView) -> dict[str, Any]:
    """The message and its job: state, attempts, recipients, SES MessageId, last error."""
    return {
        "id": job.id,
        "state": job.state,
        "from": job.from_addr,
        "to": list(job.to),
        "cc": list(job.cc),
        "bcc": list(job.bcc),
        "subject": job.subject,
        "created_at": job.created_at,
        "attempts": job.attempts,
        "run_at": job.run_at,
        "sent_at": job.sent_at,
        "ses_message_id": job.ses_message_id,
        "last_outcome": job.last_outcome,
        "last_error": job.last_error,
    }


def event_json(e: MessageEvent) -> dict[str, Any]:
    """One SES event (delivery, bounce, complaint, delay...) as recorded."""
    body: dict[str, Any] = e.event.to_json() if e.event is not None else {"kind": e.kind}
    return {"at": e.at, **body}


def message_json(job: JobView, events: Sequence[MessageEvent]) -> dict[str, Any]:
    """``{"message": ..., "events": [...]}`` (datetimes left as they are for the caller)."""
    return {"message": job_json(job), "events": [event_json(e) for e in events]}

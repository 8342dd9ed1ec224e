"""`dispatcher status ID`: one message, its job, and every SES event tied to it."""

from __future__ import annotations

import json

from dispatcher import app
from dispatcher.domain.jobs import JobView
from dispatcher.errors import InputError
from dispatcher.feedback.events import ParsedEvent
from dispatcher.feedback.store import MessageEvent
from dispatcher.message_view import message_json

__all__ = ["show_message"]


async def show_message(stores: app.Stores, message_id: int, *, as_json: bool) -> int:
    """Print message `message_id` and its events; InputError (exit 2) if there is none."""
    job = await stores.queue.get(message_id)
    if job is None:
        raise InputError(f"no message with id {message_id}")
    events = await stores.feedback.message_events(message_id)
    if as_json:
        print(json.dumps(message_json(job, events), indent=2, default=str))
        return 0
    _print_job(job)
    print(f"events ({len(events)}):" if events else "events: none received")
    for e in events:
        print(f"  {e.at:%Y-%m-%d %H:%M:%S %Z}  {_describe(e)}")
    return 0


def _print_job(job: JobView) -> None:
    print(f"message {job.id}: {job.state}")
    rows = [
        ("from", job.from_addr),
        ("to", ", ".join(job.to)),
        ("cc", ", ".join(job.cc)),
        ("bcc", ", ".join(job.bcc)),
        ("subject", job.subject),
        ("created", f"{job.created_at:%Y-%m-%d %H:%M:%S %Z}"),
        ("attempts", str(job.attempts)),
        ("sent at", f"{job.sent_at:%Y-%m-%d %H:%M:%S %Z}" if job.sent_at else ""),
        ("SES id", job.ses_message_id or ""),
        ("last", f"{job.last_outcome}: {job.last_error}" if job.last_error else ""),
    ]
    for name, value in rows:
        if value:
            print(f"  {name:<9} {value}")


def _describe(e: MessageEvent) -> str:
    """One line: the event type, then what it says about whom."""
    event = e.event
    if event is None:
        return f"{e.kind} (its JSON could not be read)"
    head = event.event_type
    if event.bounce_type:
        head += f" {event.bounce_type}/{event.bounce_subtype or 'General'}"
    if event.complaint_type:
        head += f" ({event.complaint_type})"
    parts = [head, *(_recipient(event, i) for i in range(len(event.recipients)))]
    if event.detail:
        parts.append(event.detail)
    return "  ".join(parts)


def _recipient(event: ParsedEvent, i: int) -> str:
    r = event.recipients[i]
    return " ".join(x for x in (r.address, r.status, r.diagnostic) if x)

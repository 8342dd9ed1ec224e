"""Mail sent and feedback recorded the way the daemon does it (queue claim, launch, settle;
events recorded and processed), and the reputation guard's numbers as it read them before its
counters (migration 0025): full scans of the rows, the reference the counters must equal."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from dispatcher.domain.jobs import Settlement
from dispatcher.feedback.events import parse_event
from dispatcher.feedback.store import FeedbackStore
from dispatcher.queue.repository import Queue

__all__ = ["OLD_ACCOUNT", "OLD_CAMPAIGNS", "OLD_COUNTS", "OLD_KINDS", "event", "send", "ses_id"]


def ses_id(message_id: int) -> str:
    return f"ses-{message_id}"


async def send(queue: Queue, account: str = "default", state: str = "sent") -> list[int]:
    """Claim every due job of `account` and settle it `state` (in_flight for "unknown": the
    worker died with them on the wire); the ids."""
    view = queue.for_account(account)
    owner = uuid.uuid4()
    await view.register_worker(owner, 30.0)
    done: list[int] = []
    while jobs := await view.claim(owner, 500):
        await view.launch(owner, jobs)
        if state != "unknown":
            ses = state == "sent"
            await view.settle([
                Settlement(j.id, j.token, state, ses_id(j.id) if ses else None)  # type: ignore[arg-type]
                for j in jobs
            ])  # fmt: skip
        done += [j.id for j in jobs]
        if state == "unknown":
            break
    return done


async def event(
    feedback: FeedbackStore,
    message_id: int | None,
    kind: str,
    addresses: list[str],
    *,
    bounce_type: str = "Permanent",
    ses_message_id: str | None = None,
    at: datetime | None = None,
) -> int:
    """An SES event (Bounce, Complaint, Delivery, Reject) about `message_id` (tagged; None: a
    tagless one about `ses_message_id`), recorded and processed; its event id."""
    when = (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    mail: dict[str, Any] = {
        "timestamp": when,
        "messageId": ses_message_id or (ses_id(message_id) if message_id else "ses-x"),
    }
    if message_id is not None:
        mail["tags"] = {"dispatcher_id": [str(message_id)]}
    body: dict[str, Any] = {"eventType": kind, "mail": mail}
    if kind == "Bounce":
        body["bounce"] = {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "timestamp": when,
            "bouncedRecipients": [{"emailAddress": a} for a in addresses],
        }
    elif kind == "Complaint":
        body["complaint"] = {
            "timestamp": when,
            "complainedRecipients": [{"emailAddress": a} for a in addresses],
        }
    elif kind == "Delivery":
        body["delivery"] = {"timestamp": when, "recipients": addresses}
    elif kind == "Reject":
        body["reject"] = {"reason": "Bad content"}
    message = json.dumps(body)
    sns = {"Type": "Notification", "MessageId": str(uuid.uuid4()), "Message": message}
    event_id = await feedback.record(
        sns_message_id=sns["MessageId"], topic_arn="arn:t", raw=sns, event=parse_event(message)
    )
    assert event_id is not None
    await feedback.process(event_id)
    return event_id


# The guard's queries before migration 0025, word for word.
OLD_ACCOUNT = """
SELECT
    (SELECT coalesce(sum(cardinality(m.to_addrs) + cardinality(m.cc_addrs)
                         + cardinality(m.bcc_addrs)), 0)
     FROM dispatcher.jobs j JOIN dispatcher.messages m ON m.id = j.id
     WHERE j.state = 'sent' AND j.sent_at > now() - make_interval(secs => $1))::bigint AS sent,
    (SELECT count(*) FROM dispatcher.recipient_events
     WHERE kind = 'bounce' AND bounce_type = 'Permanent'
       AND occurred_at > now() - make_interval(secs => $1)) AS bounced,
    (SELECT count(*) FROM dispatcher.recipient_events
     WHERE kind = 'complaint' AND occurred_at > now() - make_interval(secs => $1)) AS complained
"""

OLD_CAMPAIGNS = """
WITH scope AS (
    SELECT id FROM dispatcher.campaigns
    WHERE ($1::bigint IS NULL AND state = 'running') OR id = $1
), sent AS (
    SELECT j.campaign_id,
           sum(cardinality(m.to_addrs) + cardinality(m.cc_addrs) + cardinality(m.bcc_addrs)) AS n
    FROM dispatcher.jobs j JOIN scope s ON s.id = j.campaign_id
    JOIN dispatcher.messages m ON m.id = j.id
    WHERE j.state = 'sent'
    GROUP BY 1
), fb AS (
    SELECT mf.campaign_id,
           count(*) FILTER (WHERE re.kind = 'bounce' AND re.bounce_type = 'Permanent') AS bounced,
           count(*) FILTER (WHERE re.kind = 'bounce') AS bounced_any,
           count(*) FILTER (WHERE re.kind = 'complaint') AS complained,
           count(*) FILTER (WHERE re.kind = 'delivery') AS delivered
    FROM dispatcher.message_feedback mf
    JOIN scope s ON s.id = mf.campaign_id
    JOIN dispatcher.events e ON e.message_id = mf.message_id
    JOIN dispatcher.recipient_events re ON re.event_id = e.id
    GROUP BY 1
), pruned AS (
    SELECT cp.campaign_id, sum(cp.recipients) FILTER (WHERE cp.state = 'sent') AS sent,
           sum(cp.bounced) AS bounced, sum(cp.bounced_any) AS bounced_any,
           sum(cp.complained) AS complained, sum(cp.delivered) AS delivered
    FROM dispatcher.campaign_pruned cp JOIN scope s ON s.id = cp.campaign_id
    GROUP BY 1
)
SELECT s.id AS campaign_id, (coalesce(sent.n, 0) + coalesce(p.sent, 0))::bigint AS sent,
       (coalesce(fb.bounced, 0) + coalesce(p.bounced, 0))::bigint AS bounced,
       (coalesce(fb.bounced_any, 0) + coalesce(p.bounced_any, 0))::bigint AS bounced_any,
       (coalesce(fb.complained, 0) + coalesce(p.complained, 0))::bigint AS complained,
       (coalesce(fb.delivered, 0) + coalesce(p.delivered, 0))::bigint AS delivered
FROM scope s
LEFT JOIN sent ON sent.campaign_id = s.id
LEFT JOIN fb ON fb.campaign_id = s.id
LEFT JOIN pruned p ON p.campaign_id = s.id
ORDER BY 1
"""

OLD_COUNTS = """
WITH sent AS (
    SELECT j.account, sum(cardinality(m.to_addrs) + cardinality(m.cc_addrs)
                          + cardinality(m.bcc_addrs)) AS n
    FROM dispatcher.jobs j JOIN dispatcher.messages m ON m.id = j.id
    WHERE j.state = 'sent' AND j.sent_at > now() - make_interval(secs => $1)
    GROUP BY 1
), feedback AS (
    SELECT coalesce(j.account,
                    (SELECT a.name FROM dispatcher.accounts a ORDER BY a.position LIMIT 1))
               AS account,
           count(*) FILTER (WHERE re.kind = 'bounce' AND re.bounce_type = 'Permanent')
               AS bounced,
           count(*) FILTER (WHERE re.kind = 'complaint') AS complained
    FROM dispatcher.recipient_events re
    JOIN dispatcher.events e ON e.id = re.event_id
    LEFT JOIN dispatcher.jobs j ON j.id = e.message_id
    WHERE re.kind IN ('bounce', 'complaint')
      AND re.occurred_at > now() - make_interval(secs => $1)
    GROUP BY 1
)
SELECT a.name, coalesce(s.n, 0)::bigint AS sent, coalesce(f.bounced, 0) AS bounced,
       coalesce(f.complained, 0) AS complained
FROM dispatcher.accounts a
LEFT JOIN sent s ON s.account = a.name
LEFT JOIN feedback f ON f.account = a.name
ORDER BY a.position
"""

# The metrics' feedback counts (dispatcher/obs/metrics.sql feedback_kinds) before 0025.
OLD_KINDS = """
SELECT k.kind, (SELECT count(*) FROM dispatcher.recipient_events re
                WHERE re.kind = k.kind AND re.occurred_at > now() - make_interval(secs => $1)) AS n
FROM unnest(ARRAY['delivery', 'bounce', 'complaint']) AS k(kind)
"""

-- Named queries for the feedback loop (events, suppressions), read by dispatcher.db.sql.

-- name: event_record
-- Durable first: a replayed SNS MessageId inserts nothing and returns no row.
INSERT INTO dispatcher.events (sns_message_id, topic_arn, kind, event_type, ses_message_id,
                               message_id, occurred_at, raw, parsed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb)
ON CONFLICT (sns_message_id) DO NOTHING
RETURNING id;

-- name: event_lock_unprocessed
-- The event to process, locked; no row if it is already processed or another process has it.
SELECT id, kind, received_at, raw
FROM dispatcher.events
WHERE id = $1 AND processed_at IS NULL
FOR UPDATE SKIP LOCKED;

-- name: event_pending
-- Recorded but not processed (a crash between the two): up to $1, oldest first.
SELECT id FROM dispatcher.events WHERE processed_at IS NULL ORDER BY id LIMIT $1;

-- name: event_mark_processed
UPDATE dispatcher.events SET processed_at = now() WHERE id = $1;

-- name: recipient_events_insert
INSERT INTO dispatcher.recipient_events (event_id, address, kind, bounce_type, bounce_subtype,
                                         status, diagnostic, occurred_at)
SELECT $1, u.address, $2, $3, $4, u.status, u.diagnostic, $5
FROM unnest($6::text[], $7::text[], $8::text[]) AS u(address, status, diagnostic)
ON CONFLICT (event_id, address) DO NOTHING;

-- name: transient_bounces_over
-- Of the addresses $1, those with at least $2 transient bounces since $3 seconds ago.
SELECT address, count(*) AS n
FROM dispatcher.recipient_events
WHERE address = ANY($1::text[]) AND kind = 'bounce' AND bounce_type = 'Transient'
  AND occurred_at > now() - make_interval(secs => $3)
GROUP BY address
HAVING count(*) >= $2;

-- name: message_feedback_add
INSERT INTO dispatcher.message_feedback (message_id, campaign_id, delivered, bounced, complained)
VALUES ($1, (SELECT campaign_id FROM dispatcher.messages WHERE id = $1), $2, $3, $4)
ON CONFLICT (message_id) DO UPDATE
SET delivered = message_feedback.delivered + EXCLUDED.delivered,
    bounced = message_feedback.bounced + EXCLUDED.bounced,
    complained = message_feedback.complained + EXCLUDED.complained,
    last_event_at = now();

-- name: message_feedback_get
SELECT message_id, campaign_id, delivered, bounced, complained, last_event_at
FROM dispatcher.message_feedback WHERE message_id = $1;

-- name: suppression_add
-- Addresses (lower-cased) with one reason each; an address already suppressed keeps its first
-- reason. Returns the addresses that are new.
INSERT INTO dispatcher.suppressions (address, reason)
SELECT u.address, u.reason FROM unnest($1::text[], $2::text[]) AS u(address, reason)
ON CONFLICT (address) DO NOTHING
RETURNING address;

-- name: suppression_remove
DELETE FROM dispatcher.suppressions WHERE address = ANY($1::text[]) RETURNING address;

-- name: suppression_list
-- A page in address order, after $1 ('' for the first page).
SELECT address, reason, created_at FROM dispatcher.suppressions
WHERE address > $1
ORDER BY address
LIMIT $2;

-- name: suppression_get
SELECT address, reason, created_at FROM dispatcher.suppressions WHERE address = ANY($1::text[]);

-- name: suppression_count
SELECT count(*) FROM dispatcher.suppressions;

-- name: guard_account
-- Account-wide, over the last $1 seconds: recipients sent, hard bounces, complaints.
SELECT
    (SELECT coalesce(sum(cardinality(m.to_addrs) + cardinality(m.cc_addrs)
                         + cardinality(m.bcc_addrs)), 0)
     FROM dispatcher.jobs j JOIN dispatcher.messages m ON m.id = j.id
     WHERE j.state = 'sent' AND j.sent_at > now() - make_interval(secs => $1))::bigint AS sent,
    (SELECT count(*) FROM dispatcher.recipient_events
     WHERE kind = 'bounce' AND bounce_type = 'Permanent'
       AND occurred_at > now() - make_interval(secs => $1)) AS bounced,
    (SELECT count(*) FROM dispatcher.recipient_events
     WHERE kind = 'complaint' AND occurred_at > now() - make_interval(secs => $1)) AS complained;

-- name: guard_campaigns
-- Per campaign (the running ones when $1 is null, else campaign $1), over its whole life:
-- recipients sent, hard bounces, complaints, and deliveries.
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
    -- What the campaign's rows removed by retention counted (dispatcher.retention).
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
LEFT JOIN pruned p ON p.campaign_id = s.id;

-- name: message_by_ses_id
-- Our message for an SES MessageId (an event whose dispatcher_id tag was missing), and the
-- event row tied to it.
WITH found AS (
    SELECT id FROM dispatcher.jobs WHERE ses_message_id = $1 LIMIT 1
)
UPDATE dispatcher.events e SET message_id = found.id
FROM found WHERE e.id = $2
RETURNING found.id;

-- name: sending_hold_set
-- Hold all sending (the guard, account_action "all"); true if it was not held already.
INSERT INTO dispatcher.sending_hold (reason) VALUES ($1)
ON CONFLICT (account) DO NOTHING
RETURNING true;

-- name: sending_hold_get
-- The first hold of any account (several accounts: each has its own row).
SELECT reason, held_at FROM dispatcher.sending_hold ORDER BY held_at LIMIT 1;

-- name: sending_hold_clear
DELETE FROM dispatcher.sending_hold RETURNING reason;

-- name: held_senders
-- Senders held by a configuration error SES reported for them (an unverified sender, a missing
-- configuration set, ...): the mail that met it waits in `queued` until run_at (now +
-- delivery.config_error_delay), when it is tried again. Derived from the jobs, so it shows what
-- every worker holds and survives restarts.
SELECT m.from_addr, m.configuration_set,
       (array_agg(j.last_error ORDER BY j.updated_at DESC))[1] AS reason,
       max(j.run_at) AS retry_at
FROM dispatcher.jobs j JOIN dispatcher.messages m ON m.id = j.id
WHERE j.state = 'queued' AND j.last_outcome = 'config_error' AND j.run_at > now()
GROUP BY m.from_addr, m.configuration_set
ORDER BY retry_at, m.from_addr;

-- name: message_undelivered
-- A Rendering Failure or Reject event: SES accepted the call (the job is `sent` with SES's
-- MessageId, or `unknown` if its answer was lost: the event settles that doubt) but delivered
-- nothing. The job becomes `failed` with SES's reason; a job in any other state (already
-- failed, resent, cancelled) is left alone. True if it changed.
UPDATE dispatcher.jobs
SET state = 'failed', last_outcome = $2, last_error = $3, updated_at = now()
WHERE id = $1 AND state IN ('sent', 'unknown')
RETURNING true;

-- name: message_events
-- The events of message $1, oldest first: tied to it by tag or by SES MessageId, and also a
-- tagless event that arrived before its send was recorded (so it could not be tied then).
SELECT id, kind, event_type, occurred_at, received_at, raw
FROM dispatcher.events
WHERE message_id = $1
   OR ses_message_id = (SELECT ses_message_id FROM dispatcher.jobs WHERE id = $1)
ORDER BY coalesce(occurred_at, received_at), id;

-- name: events_link_late
-- Events without our tag (identity notifications) that were processed before the settle of
-- their send recorded its SES MessageId (SES, or the simulator, can be that quick): tied to the
-- message now, over the last $1 seconds; per message, the recipients each kind counts.
WITH linked AS (
    UPDATE dispatcher.events e SET message_id = j.id
    FROM dispatcher.jobs j
    WHERE e.message_id IS NULL AND e.processed_at IS NOT NULL AND e.ses_message_id IS NOT NULL
      AND e.received_at > now() - make_interval(secs => $1)
      AND j.ses_message_id = e.ses_message_id
    RETURNING e.id, e.message_id
)
SELECT l.message_id,
       count(re.address) FILTER (WHERE re.kind = 'delivery') AS delivered,
       count(re.address) FILTER (WHERE re.kind = 'bounce') AS bounced,
       count(re.address) FILTER (WHERE re.kind = 'complaint') AS complained
FROM linked l LEFT JOIN dispatcher.recipient_events re ON re.event_id = l.id
GROUP BY l.message_id;

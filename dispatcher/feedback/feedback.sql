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
-- The recipients of event $1, and the guard's counters (migration 0025) for those recorded, of
-- message $9 (NULL: tied to none yet), in the same statement: per minute it happened in for
-- the account of the message's job ('' for none: the default account's), and for the
-- message's campaign. As the guard read them from the rows: hard bounces and complaints per
-- account, every kind per campaign; and deliveries and bounces of any type per account, for
-- the metrics (feedback_kinds).
WITH recorded AS (
    INSERT INTO dispatcher.recipient_events (event_id, address, kind, bounce_type,
                                             bounce_subtype, status, diagnostic, occurred_at)
    SELECT $1, u.address, $2, $3, $4, u.status, u.diagnostic, $5
    FROM unnest($6::text[], $7::text[], $8::text[]) AS u(address, status, diagnostic)
    ON CONFLICT (event_id, address) DO NOTHING
    RETURNING kind, bounce_type, occurred_at
), r AS (
    SELECT dispatcher.minute_of(re.occurred_at) AS bucket,
           count(*) FILTER (WHERE re.kind = 'delivery') AS delivered,
           count(*) FILTER (WHERE re.kind = 'bounce' AND re.bounce_type = 'Permanent')
               AS bounced,
           count(*) FILTER (WHERE re.kind = 'bounce') AS bounced_any,
           count(*) FILTER (WHERE re.kind = 'complaint') AS complained
    FROM recorded re
    GROUP BY 1
), by_account AS (
    INSERT INTO dispatcher.guard_account_tally AS t (bucket, account, shard, bounced,
                                                     complained, delivered, bounced_any)
    SELECT r.bucket,
           coalesce((SELECT j.account FROM dispatcher.jobs j WHERE j.id = $9::bigint), ''),
           dispatcher.tally_shard(), r.bounced, r.complained, r.delivered, r.bounced_any
    FROM r WHERE r.bounced_any + r.complained + r.delivered > 0
    ORDER BY 1, 2
    ON CONFLICT (bucket, account, shard) DO UPDATE
    SET bounced = t.bounced + EXCLUDED.bounced, complained = t.complained + EXCLUDED.complained,
        delivered = t.delivered + EXCLUDED.delivered,
        bounced_any = t.bounced_any + EXCLUDED.bounced_any
)
INSERT INTO dispatcher.guard_campaign_tally AS t (campaign_id, shard, delivered, bounced,
                                                  bounced_any, complained)
SELECT m.campaign_id, dispatcher.tally_shard(), sum(r.delivered), sum(r.bounced),
       sum(r.bounced_any), sum(r.complained)
FROM r, dispatcher.messages m
WHERE m.id = $9::bigint AND m.campaign_id IS NOT NULL
GROUP BY m.campaign_id
ON CONFLICT (campaign_id, shard) DO UPDATE
SET delivered = t.delivered + EXCLUDED.delivered, bounced = t.bounced + EXCLUDED.bounced,
    bounced_any = t.bounced_any + EXCLUDED.bounced_any,
    complained = t.complained + EXCLUDED.complained;

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
-- Account-wide, over the last $1 seconds: recipients sent, hard bounces, complaints. From the
-- counters kept as mail is sent and feedback recorded (migration 0025): one row per minute, so
-- the window's edge is the start of its first minute (up to 59 s more than $1).
SELECT coalesce(sum(sent), 0)::bigint AS sent, coalesce(sum(bounced), 0)::bigint AS bounced,
       coalesce(sum(complained), 0)::bigint AS complained
FROM dispatcher.guard_account_tally
WHERE bucket >= dispatcher.minute_of(now() - make_interval(secs => $1));

-- name: guard_campaigns
-- Per campaign (the running ones when $1 is null, else campaign $1), over its whole life:
-- recipients sent, hard bounces, complaints, and deliveries. From the counters (migration
-- 0025), which retention leaves alone: what pruned rows counted stays counted.
WITH scope AS (
    SELECT id FROM dispatcher.campaigns
    WHERE ($1::bigint IS NULL AND state = 'running') OR id = $1
), tally AS (
    SELECT t.campaign_id, sum(t.sent) AS sent, sum(t.bounced) AS bounced,
           sum(t.bounced_any) AS bounced_any, sum(t.complained) AS complained,
           sum(t.delivered) AS delivered
    FROM dispatcher.guard_campaign_tally t JOIN scope s ON s.id = t.campaign_id
    GROUP BY 1
)
SELECT s.id AS campaign_id, coalesce(t.sent, 0)::bigint AS sent,
       coalesce(t.bounced, 0)::bigint AS bounced,
       coalesce(t.bounced_any, 0)::bigint AS bounced_any,
       coalesce(t.complained, 0)::bigint AS complained,
       coalesce(t.delivered, 0)::bigint AS delivered
FROM scope s LEFT JOIN tally t ON t.campaign_id = s.id;

-- name: tally_fold
-- The guard's upkeep of its per-minute counters: the shards of minutes older than $1 seconds
-- become one row (shard 0), so a window's read costs a row per minute; minutes older than $2
-- seconds (past any window the guard is asked for) go. One process at a time (the others skip
-- their turn).
WITH turn AS (
    SELECT pg_try_advisory_xact_lock(1684632432, 25) AS mine
), folded AS (
    DELETE FROM dispatcher.guard_account_tally t
    WHERE (SELECT mine FROM turn) AND t.shard <> 0
      AND t.bucket < now() - make_interval(secs => $1)
    RETURNING t.bucket, t.account, t.sent, t.bounced, t.complained, t.delivered, t.bounced_any
), merged AS (
    INSERT INTO dispatcher.guard_account_tally AS t (bucket, account, shard, sent, bounced,
                                                     complained, delivered, bounced_any)
    SELECT f.bucket, f.account, 0, sum(f.sent), sum(f.bounced), sum(f.complained),
           sum(f.delivered), sum(f.bounced_any)
    FROM folded f
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (bucket, account, shard) DO UPDATE
    SET sent = t.sent + EXCLUDED.sent, bounced = t.bounced + EXCLUDED.bounced,
        complained = t.complained + EXCLUDED.complained,
        delivered = t.delivered + EXCLUDED.delivered,
        bounced_any = t.bounced_any + EXCLUDED.bounced_any
), expired AS (
    DELETE FROM dispatcher.guard_account_tally t
    WHERE (SELECT mine FROM turn) AND t.bucket < now() - make_interval(secs => $2)
    RETURNING 1
)
SELECT (SELECT count(*) FROM folded) AS folded, (SELECT count(*) FROM expired) AS expired;

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
-- A job that was sent no longer counts for the reputation guard (migration 0025).
WITH was AS (
    SELECT id, state, sent_at, account, campaign_id, recipients FROM dispatcher.jobs
    WHERE id = $1 AND state IN ('sent', 'unknown')
    FOR UPDATE
), done AS (
    UPDATE dispatcher.jobs j
    SET state = 'failed', last_outcome = $2, last_error = $3, updated_at = now()
    FROM was WHERE j.id = was.id
    RETURNING was.state AS old_state, was.sent_at, was.account, was.campaign_id, was.recipients
), by_account AS (
    INSERT INTO dispatcher.guard_account_tally AS t (bucket, account, shard, sent)
    SELECT dispatcher.minute_of(d.sent_at), d.account, dispatcher.tally_shard(), -d.recipients
    FROM done d WHERE d.old_state = 'sent' AND d.sent_at IS NOT NULL
    ON CONFLICT (bucket, account, shard) DO UPDATE SET sent = t.sent + EXCLUDED.sent
), by_campaign AS (
    INSERT INTO dispatcher.guard_campaign_tally AS t (campaign_id, shard, sent)
    SELECT d.campaign_id, dispatcher.tally_shard(), -d.recipients
    FROM done d WHERE d.old_state = 'sent' AND d.campaign_id IS NOT NULL
    ON CONFLICT (campaign_id, shard) DO UPDATE SET sent = t.sent + EXCLUDED.sent
)
SELECT true FROM done;

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
    RETURNING e.id, e.message_id, j.account
), counted AS (
    SELECT l.message_id, l.account, m.campaign_id, re.kind, re.bounce_type,
           dispatcher.minute_of(re.occurred_at) AS bucket
    FROM linked l
    JOIN dispatcher.recipient_events re ON re.event_id = l.id
    LEFT JOIN dispatcher.messages m ON m.id = l.message_id
), moved AS (
    -- The guard's counters (migration 0025): these counted for no account ('', the default
    -- account's) and are now their job's account's; and they count for its campaign.
    INSERT INTO dispatcher.guard_account_tally AS t (bucket, account, shard, bounced,
                                                     complained, delivered, bounced_any)
    SELECT c.bucket, x.account, dispatcher.tally_shard(),
           x.sign * count(*) FILTER (WHERE c.kind = 'bounce' AND c.bounce_type = 'Permanent'),
           x.sign * count(*) FILTER (WHERE c.kind = 'complaint'),
           x.sign * count(*) FILTER (WHERE c.kind = 'delivery'),
           x.sign * count(*) FILTER (WHERE c.kind = 'bounce')
    FROM counted c CROSS JOIN LATERAL (VALUES ('', -1), (c.account, 1)) AS x(account, sign)
    WHERE c.kind IN ('bounce', 'complaint', 'delivery')
    GROUP BY c.bucket, x.account, x.sign ORDER BY 1, 2
    ON CONFLICT (bucket, account, shard) DO UPDATE
    SET bounced = t.bounced + EXCLUDED.bounced, complained = t.complained + EXCLUDED.complained,
        delivered = t.delivered + EXCLUDED.delivered,
        bounced_any = t.bounced_any + EXCLUDED.bounced_any
), campaign AS (
    INSERT INTO dispatcher.guard_campaign_tally AS t (campaign_id, shard, delivered, bounced,
                                                      bounced_any, complained)
    SELECT c.campaign_id, dispatcher.tally_shard(),
           count(*) FILTER (WHERE c.kind = 'delivery'),
           count(*) FILTER (WHERE c.kind = 'bounce' AND c.bounce_type = 'Permanent'),
           count(*) FILTER (WHERE c.kind = 'bounce'),
           count(*) FILTER (WHERE c.kind = 'complaint')
    FROM counted c WHERE c.campaign_id IS NOT NULL
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (campaign_id, shard) DO UPDATE
    SET delivered = t.delivered + EXCLUDED.delivered, bounced = t.bounced + EXCLUDED.bounced,
        bounced_any = t.bounced_any + EXCLUDED.bounced_any,
        complained = t.complained + EXCLUDED.complained
)
SELECT l.message_id,
       count(re.address) FILTER (WHERE re.kind = 'delivery') AS delivered,
       count(re.address) FILTER (WHERE re.kind = 'bounce') AS bounced,
       count(re.address) FILTER (WHERE re.kind = 'complaint') AS complained
FROM linked l LEFT JOIN dispatcher.recipient_events re ON re.event_id = l.id
GROUP BY l.message_id;

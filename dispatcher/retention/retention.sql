-- Named queries of the pruner (dispatcher.retention.store), read by dispatcher.db.sql. Every
-- batch is one short statement over at most $limit rows, the oldest first from the head of an
-- index; SKIP LOCKED: a row someone holds is left for the next run, the pruner never waits.
-- {state} and {clock} are filled in by the store from a fixed table (a literal state lets the
-- planner use the partial index of that state): sent mail ages by sent_at (jobs_sent_at),
-- failed and cancelled mail by updated_at (jobs_finished).

-- name: db_now
SELECT now();

-- name: try_lock
-- One pruner at a time across processes and hosts: a session lock held for the run.
SELECT pg_try_advisory_lock($1);

-- name: unlock
SELECT pg_advisory_unlock($1);

-- name: content_mark
SELECT content_done_until FROM dispatcher.retention_marks WHERE state = $1::dispatcher.job_state;

-- name: content_mark_set
INSERT INTO dispatcher.retention_marks (state, content_done_until)
VALUES ($1::dispatcher.job_state, $2)
ON CONFLICT (state) DO UPDATE SET content_done_until = greatest(
    retention_marks.content_done_until, EXCLUDED.content_done_until);

-- name: prune_content
-- Bodies, raw MIME and campaign variables of mail finished in {state} between $2 and $1.
-- Subject, addresses and tags stay (status and reports show them). Returns the rows changed.
WITH due AS (
    SELECT m.id
    FROM dispatcher.jobs j JOIN dispatcher.messages m ON m.id = j.id
    WHERE j.state = '{state}' AND j.{clock} < $1
      AND j.{clock} >= coalesce($2, '-infinity'::timestamptz)
      AND m.content_pruned_at IS NULL
    ORDER BY j.{clock}
    LIMIT $3
    FOR UPDATE OF m SKIP LOCKED
)
UPDATE dispatcher.messages m
SET text_body = NULL, html_body = NULL, raw = NULL, variables = NULL, content_pruned_at = now()
FROM due WHERE m.id = due.id;

-- name: count_content
SELECT count(*)
FROM dispatcher.jobs j JOIN dispatcher.messages m ON m.id = j.id
WHERE j.state = '{state}' AND j.{clock} < $1
  AND j.{clock} >= coalesce($2, '-infinity'::timestamptz)
  AND m.content_pruned_at IS NULL;

-- name: prune_rows
-- Mail finished in {state} before $1: the message, its job (no foreign key cascades it since
-- 0023), its feedback events and counters. What a campaign's rows counted is added to campaign_pruned first, so
-- its totals stay. Returns (rows, events) removed.
WITH doomed AS (
    SELECT j.id, j.campaign_id, j.state, coalesce(j.last_outcome, '') AS outcome, j.recipients
    FROM dispatcher.jobs j
    WHERE j.state = '{state}' AND j.{clock} < $1
    ORDER BY j.{clock}
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), feedback AS (
    SELECT d.campaign_id, d.state, d.outcome,
           count(*) FILTER (WHERE re.kind = 'delivery') AS delivered,
           count(*) FILTER (WHERE re.kind = 'bounce' AND re.bounce_type = 'Permanent') AS bounced,
           count(*) FILTER (WHERE re.kind = 'bounce') AS bounced_any,
           count(*) FILTER (WHERE re.kind = 'complaint') AS complained
    FROM doomed d
    JOIN dispatcher.events e ON e.message_id = d.id
    JOIN dispatcher.recipient_events re ON re.event_id = e.id
    WHERE d.campaign_id IS NOT NULL
    GROUP BY 1, 2, 3
), per_campaign AS (
    SELECT campaign_id, state, outcome, count(*) AS messages, sum(recipients) AS recipients
    FROM doomed WHERE campaign_id IS NOT NULL
    GROUP BY 1, 2, 3
), kept AS (
    INSERT INTO dispatcher.campaign_pruned AS cp (campaign_id, state, outcome, messages,
                                                  recipients, delivered, bounced, bounced_any,
                                                  complained)
    SELECT p.campaign_id, p.state, p.outcome, p.messages, p.recipients,
           coalesce(f.delivered, 0), coalesce(f.bounced, 0), coalesce(f.bounced_any, 0),
           coalesce(f.complained, 0)
    FROM per_campaign p
    LEFT JOIN feedback f USING (campaign_id, state, outcome)
    ON CONFLICT (campaign_id, state, outcome) DO UPDATE
    SET messages = cp.messages + EXCLUDED.messages,
        recipients = cp.recipients + EXCLUDED.recipients,
        delivered = cp.delivered + EXCLUDED.delivered,
        bounced = cp.bounced + EXCLUDED.bounced,
        bounced_any = cp.bounced_any + EXCLUDED.bounced_any,
        complained = cp.complained + EXCLUDED.complained
), events AS (
    DELETE FROM dispatcher.events e USING doomed d WHERE e.message_id = d.id
    RETURNING e.id
), counters AS (
    DELETE FROM dispatcher.message_feedback f USING doomed d WHERE f.message_id = d.id
), jobs_gone AS (
    DELETE FROM dispatcher.jobs j USING doomed d WHERE j.id = d.id
), gone AS (
    DELETE FROM dispatcher.messages m USING doomed d WHERE m.id = d.id
    RETURNING m.id
)
SELECT (SELECT count(*) FROM gone) AS rows, (SELECT count(*) FROM events) AS events;

-- name: count_rows
SELECT count(*) FROM dispatcher.jobs j
WHERE j.state = '{state}' AND j.{clock} < $1;

-- name: prune_untied_events
-- Processed feedback events tied to no message (no row can take them along), received
-- before $1.
DELETE FROM dispatcher.events
WHERE id IN (SELECT id FROM dispatcher.events
             WHERE message_id IS NULL AND received_at < $1 AND processed_at IS NOT NULL
             ORDER BY received_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED);

-- name: count_untied_events
SELECT count(*) FROM dispatcher.events
WHERE message_id IS NULL AND received_at < $1 AND processed_at IS NOT NULL;

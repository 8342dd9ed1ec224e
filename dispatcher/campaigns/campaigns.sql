-- Named queries for campaigns (dispatcher.campaigns.store), read by dispatcher.db.sql.

-- name: wake_workers
-- Idle daemons LISTEN on this channel; delivered when the transaction commits.
SELECT pg_notify('dispatcher_jobs', '');

-- name: campaign_insert
INSERT INTO dispatcher.campaigns (name, from_addr, reply_to, configuration_set, tags, subject,
                                  html, text_body, unsubscribe_url, send_at, priority, mode,
                                  send_window, window_timezone, timezone_column, contact_list,
                                  contact_topic)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
RETURNING id;

-- name: campaign_import_work_mem
-- The import's duplicate search sorts the list by address: 1,000,000 rows sort in memory in
-- about 70 MB; with the default 4 MB they spill to temporary files, several times slower.
SET LOCAL work_mem = '128MB';

-- name: campaign_duplicates
-- Rows whose address appeared on an earlier line: reported, not imported. Compared
-- lower-cased (the addresses are normalized ASCII: that is their suppression key).
-- (A window, not a correlated subquery: a lookup per row made a 20,000-row import take 20 s.)
SELECT line, email, first_line
FROM (SELECT line, email, min(line) OVER (PARTITION BY lower(email)) AS first_line
      FROM dispatcher.campaign_recipients WHERE campaign_id = $1) s
WHERE line > first_line
ORDER BY line;

-- name: campaign_suppressed
SELECT r.line, r.email, x.reason
FROM dispatcher.campaign_recipients r JOIN dispatcher.suppressions x ON x.address = lower(r.email)
WHERE r.campaign_id = $1
ORDER BY r.line;

-- name: campaign_drop_recipients
-- Duplicates and suppressed addresses leave the list before the campaign exists.
DELETE FROM dispatcher.campaign_recipients WHERE campaign_id = $1 AND line = ANY($2::int[]);

-- name: campaign_set_recipients
UPDATE dispatcher.campaigns
SET recipients = $2, unmaterialised = $2, variable_columns = $3, updated_at = now()
WHERE id = $1;

-- name: campaign_get
SELECT id, name, state::text, from_addr, reply_to, configuration_set, tags, subject, html,
       text_body, unsubscribe_url, send_at, priority, recipients, pause_reason, created_at,
       started_at, finished_at, mode, send_window, window_timezone, timezone_column,
       contact_list, contact_topic
FROM dispatcher.campaigns WHERE id = $1;

-- name: campaign_window_waiting
-- Queued mail of a campaign with a send window that is not due yet: a worker gave it back
-- until its window opens (scheduled, like mail sent later on purpose). Through the campaign
-- lane's index (campaign_id, priority, run_at).
SELECT count(*) FROM dispatcher.jobs
WHERE campaign_id = $1 AND state = 'queued' AND scheduled AND run_at > now();

-- name: campaign_list
SELECT id, name, state::text, recipients, pause_reason, created_at, started_at, finished_at
FROM dispatcher.campaigns ORDER BY id;

-- name: campaign_counts
-- The rows there, those retention pruned (dispatcher.retention), and the recipients not yet
-- message + job rows (in the state their job would have), by state.
SELECT state::text, sum(n)::bigint AS n
FROM (SELECT state, count(*) AS n FROM dispatcher.jobs WHERE campaign_id = $1 GROUP BY state
      UNION ALL
      SELECT state, messages FROM dispatcher.campaign_pruned WHERE campaign_id = $1
      UNION ALL
      SELECT dispatcher.unmaterialised_state(state), unmaterialised
      FROM dispatcher.campaigns WHERE id = $1 AND unmaterialised > 0) c
GROUP BY state;

-- name: campaign_pruned_counts
SELECT state::text, sum(messages)::bigint AS n
FROM dispatcher.campaign_pruned WHERE campaign_id = $1
GROUP BY state;

-- name: campaign_failures
-- Failed and in-doubt mail by kind, for status and the report.
SELECT outcome, sum(n)::bigint AS n
FROM (SELECT coalesce(last_outcome, 'unknown') AS outcome, count(*) AS n
      FROM dispatcher.jobs
      WHERE campaign_id = $1 AND state IN ('failed', 'unknown')
      GROUP BY 1
      UNION ALL
      SELECT coalesce(nullif(outcome, ''), 'unknown'), messages
      FROM dispatcher.campaign_pruned WHERE campaign_id = $1 AND state = 'failed') f
GROUP BY 1 ORDER BY 2 DESC;

-- name: campaign_mark_running
-- start and resume: the campaign runs; $2 = true allows resuming from a pause the reputation
-- guard or a configuration error set (a person decided).
UPDATE dispatcher.campaigns
SET state = 'running', pause_reason = NULL, updated_at = now(),
    started_at = coalesce(started_at, now())
WHERE id = $1 AND state IN ('draft', 'paused')
RETURNING id;

-- name: campaign_release_held
-- Held jobs become sendable (from send_at on if that is later than now).
UPDATE dispatcher.jobs j
SET state = 'queued', updated_at = now(),
    run_at = greatest(now(), coalesce(c.send_at, now())),
    lease_owner = NULL
FROM dispatcher.campaigns c
WHERE c.id = $1 AND j.campaign_id = $1 AND j.state = 'held'
RETURNING j.id;

-- name: campaign_mark_paused
UPDATE dispatcher.campaigns
SET state = 'paused', pause_reason = $2, updated_at = now()
WHERE id = $1 AND state = 'running'
RETURNING id;

-- name: campaign_hold_jobs
-- Waiting and claimed-but-not-sent jobs go back to held: a worker holding a claimed one can no
-- longer launch it (launch requires state 'claimed'), so the pause is effective at once for
-- every daemon. Jobs already in flight finish.
UPDATE dispatcher.jobs
SET state = 'held', lease_owner = NULL, updated_at = now()
WHERE campaign_id = $1 AND state IN ('queued', 'claimed')
RETURNING id;

-- name: campaign_mark_cancelled
-- Returns how many of its recipients were not yet materialised (they never will be).
UPDATE dispatcher.campaigns
SET state = 'cancelled', updated_at = now(), finished_at = now()
WHERE id = $1 AND state IN ('draft', 'running', 'paused')
RETURNING unmaterialised;

-- name: campaign_cancel_jobs
UPDATE dispatcher.jobs
SET state = 'cancelled', lease_owner = NULL, updated_at = now()
WHERE campaign_id = $1 AND state IN ('held', 'queued', 'claimed')
RETURNING id;

-- name: campaign_retry_failed
-- Only failures that may go better next time: transient errors that ran out of attempts.
-- Rejected, bounced, complained and suppressed stay failed. A finished campaign runs again
-- (campaign_reopen, same transaction), so its retried mail is sendable at once. Mail whose
-- variables retention removed stays failed too: it could not be rendered again.
UPDATE dispatcher.jobs j
SET state = CASE WHEN c.state IN ('running', 'finished') THEN 'queued'::dispatcher.job_state
                 ELSE 'held'::dispatcher.job_state END,
    attempts = 0, run_at = now(), updated_at = now()
FROM dispatcher.campaigns c
WHERE c.id = $1 AND j.campaign_id = $1 AND j.state = 'failed' AND j.last_outcome = 'transient'
  AND c.state IN ('running', 'paused', 'finished', 'draft')
  AND NOT EXISTS (SELECT 1 FROM dispatcher.messages m
                  WHERE m.id = j.id AND m.content_pruned_at IS NOT NULL)
RETURNING j.id;

-- name: campaign_reopen
-- A finished campaign with retried mail runs again.
UPDATE dispatcher.campaigns
SET state = 'running', finished_at = NULL, updated_at = now()
WHERE id = $1 AND state = 'finished'
RETURNING id;

-- name: campaign_finish_done
-- Running campaigns with nothing left to send are finished.
UPDATE dispatcher.campaigns c
SET state = 'finished', finished_at = now(), updated_at = now()
WHERE c.state = 'running'
  AND ($1::bigint IS NULL OR c.id = $1)
  AND c.unmaterialised = 0
  AND NOT EXISTS (SELECT 1 FROM dispatcher.jobs j
                  WHERE j.campaign_id = c.id
                    AND j.state IN ('held', 'queued', 'claimed', 'in_flight'))
RETURNING c.id;

-- name: campaign_report
SELECT m.to_addrs[1] AS address, j.state::text AS state, j.ses_message_id, j.last_outcome,
       j.last_error, j.attempts, m.created_at, j.sent_at, j.updated_at
FROM dispatcher.jobs j JOIN dispatcher.messages m ON m.id = j.id
WHERE j.campaign_id = $1
ORDER BY j.id;

-- name: campaign_report_unmaterialised
-- The report's rows for recipients not yet message + job (after those that are: they are
-- materialised in list order), in the state their job would have.
SELECT r.email AS address, dispatcher.unmaterialised_state(c.state)::text AS state,
       NULL::text AS ses_message_id, NULL::text AS last_outcome, NULL::text AS last_error,
       0 AS attempts, c.created_at, NULL::timestamptz AS sent_at, c.updated_at
FROM dispatcher.campaign_recipients r JOIN dispatcher.campaigns c ON c.id = r.campaign_id
WHERE r.campaign_id = $1
ORDER BY r.line;

-- name: materialise_due
-- Running campaigns with recipients not yet message + job whose mail is due (or due within
-- $1 seconds: a send_at campaign is materialised shortly before it starts), and how many of
-- their jobs are ready to claim now, counted up to $2 (an index-only walk of
-- jobs_ready_campaign, bounded).
SELECT c.id, c.unmaterialised,
       (SELECT count(*) FROM (SELECT 1 FROM dispatcher.jobs j
                              WHERE j.campaign_id = c.id AND j.state = 'queued'
                                AND j.run_at <= now() LIMIT $2) r) AS ready
FROM dispatcher.campaigns c
WHERE c.state = 'running' AND c.unmaterialised > 0
  AND (c.send_at IS NULL OR c.send_at <= now() + make_interval(secs => $1))
ORDER BY c.id;

-- name: materialise_lock
-- One materialiser per campaign at a time (the others skip it), and none while a pause or
-- cancel is changing its state: they update this row, so they wait for our commit, and we
-- see theirs. Only a running campaign is materialised: a cancelled recipient never becomes a
-- job, and a paused campaign's recipients wait.
SELECT unmaterialised FROM dispatcher.campaigns
WHERE id = $1 AND state = 'running' AND unmaterialised > 0
FOR NO KEY UPDATE SKIP LOCKED;

-- name: materialise_chunk
-- The recipients of campaign $1 on the next $2 lines of its list (list order) move out of
-- campaign_recipients into one message and one queued job each, as the import used to write
-- them; in one transaction with the count, so a crash leaves each recipient either here or a
-- message, never both or neither.
-- Inserting jobs NOTIFYs dispatcher_jobs (trigger jobs_inserted): idle workers claim them.
-- $3: every line up to it is known to be moved already (the last chunk's end): the index walk
-- starts there instead of stepping over the entries of every recipient moved before, which
-- stay in the index until vacuum. The chunk is the range of $2 lines from the first one left
-- (fewer recipients where the list had rejected lines): an index walk of the chunk only,
-- whatever the planner knows. Picking "the next $2 lines" (ORDER BY line LIMIT $2) was planned,
-- on a table never analysed, as a sort of every recipient left: 74 ms a chunk at 200,000.
WITH first AS (
    SELECT min(line) AS line FROM dispatcher.campaign_recipients
    WHERE campaign_id = $1 AND line > $3
), moved AS (
    DELETE FROM dispatcher.campaign_recipients r
    USING first f
    WHERE r.campaign_id = $1 AND r.line >= f.line AND r.line < f.line + $2
    RETURNING r.line, r.email, r.variables
), numbered AS (
    SELECT m.*, nextval('dispatcher.message_id_seq') AS id
    FROM (SELECT * FROM moved ORDER BY line) m
), msgs AS (
    INSERT INTO dispatcher.messages (id, idempotency_key, from_addr, to_addrs, reply_to,
                                     configuration_set, tags, campaign_id, variables)
    SELECT n.id, 'campaign:' || c.id || ':' || lower(n.email), c.from_addr, ARRAY[n.email],
           c.reply_to, c.configuration_set,
           c.tags || jsonb_build_object('campaign_id', c.id::text), c.id,
           jsonb_object(c.variable_columns, (string_to_array(n.variables, E'\x1e'))[2:])
    FROM numbered n, dispatcher.campaigns c
    WHERE c.id = $1
    RETURNING id
), made AS (
    INSERT INTO dispatcher.jobs (id, state, priority, run_at, scheduled, recipients,
                                 campaign_id)
    SELECT msgs.id, 'queued', c.priority, greatest(now(), coalesce(c.send_at, now())),
           c.send_at IS NOT NULL, 1, c.id
    FROM msgs, dispatcher.campaigns c
    WHERE c.id = $1
    RETURNING 1
)
UPDATE dispatcher.campaigns
SET unmaterialised = unmaterialised - (SELECT count(*) FROM made)
WHERE id = $1
RETURNING (SELECT count(*) FROM made) AS made, (SELECT max(line) FROM moved) AS last_line;

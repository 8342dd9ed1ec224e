-- Named queries of the job queue (dispatcher.queue.repository), read by dispatcher.db.sql. A block runs from "-- name: X" to the next.

-- name: enqueue_many
-- One round trip for any number of messages. An idempotency key already stored (or repeated in
-- the batch) is not inserted again; every input row gets back its message id and whether it
-- was created by this call. Address lists arrive as array literals ('{"a@x.example"}', parsed
-- by array_in: no JSON subquery per list and row). A column the same in every row may arrive
-- as an empty array (unnest pads it with NULL): the cc, bcc, reply-to, tags and priority
-- columns read NULL as their empty value, the others are NULL anyway.
-- Ids are drawn in input order (nextval in the scan of the input), so a batch is claimed
-- first-in, first-out within a priority; ON CONFLICT keeps the first row of a key repeated in
-- the batch, and a later one comes back with a NULL id, as a key another transaction won does
-- (the caller looks both up after the statement: its snapshot does not see its own inserts).
-- No dedup sort and no second numbering pass: ~1.5 us of Postgres CPU per row less.
WITH input AS (
    SELECT t.*, nextval('dispatcher.message_id_seq') AS new_id
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::bytea[], $11::text[], $12::text[],
                $13::smallint[], $14::timestamptz[], $15::smallint[], $16::text[],
                $17::text[], $18::text[])
         WITH ORDINALITY AS t(idempotency_key, from_addr, to_list, cc_list, bcc_list,
                              reply_list, subject, text_body, html_body, raw,
                              configuration_set, tags_json, priority, send_after, recipients,
                              key_id, template_name, template_data, ord)
),
ins AS (
    INSERT INTO dispatcher.messages (id, idempotency_key, from_addr, to_addrs, cc_addrs,
                                     bcc_addrs, reply_to, subject, text_body, html_body, raw,
                                     configuration_set, tags, key_id, template_name,
                                     template_data)
    SELECT new_id, idempotency_key, from_addr, to_list::text[],
           coalesce(cc_list, '{}')::text[], coalesce(bcc_list, '{}')::text[],
           coalesce(reply_list, '{}')::text[], subject, text_body, html_body, raw,
           configuration_set, coalesce(tags_json, '{}')::jsonb, key_id, template_name,
           template_data
    FROM input
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
),
new_jobs AS (
    INSERT INTO dispatcher.jobs (id, priority, run_at, scheduled, recipients)
    SELECT n.new_id, coalesce(n.priority, 0), coalesce(n.send_after, now()),
           n.send_after IS NOT NULL, n.recipients
    FROM input n JOIN ins ON ins.id = n.new_id
)
-- The stored row of a key that was not inserted: one index probe, only for those rows (a join
-- here hashed the whole messages table for every batch).
SELECT coalesce(ins.id, (SELECT m.id FROM dispatcher.messages m
                         WHERE m.idempotency_key = i.idempotency_key)) AS id,
       ins.id IS NOT NULL AS created
FROM input i
LEFT JOIN ins ON ins.id = i.new_id
ORDER BY i.ord;

-- name: find_by_keys
SELECT idempotency_key, id FROM dispatcher.messages WHERE idempotency_key = ANY($1::text[]);

-- name: enqueue_reserve
-- The first step of a batch copied in (dispatcher.queue.enqueue): $1 message ids, drawn in
-- input order; the transaction's now() (what a column's DEFAULT now() gives in it); and for
-- each element of $2 (the batch's idempotency keys, NULL for none; or no array when it has no
-- key) the id of the message already stored under it, or NULL. One index probe per key (a
-- join could hash the whole messages table).
SELECT array(SELECT nextval('dispatcher.message_id_seq') FROM generate_series(1, $1::int)) AS ids,
       now() AS now,
       array(SELECT (SELECT m.id FROM dispatcher.messages m WHERE m.idempotency_key = k.key)
             FROM unnest($2::text[]) WITH ORDINALITY AS k(key, n)
             ORDER BY k.n) AS stored;

-- name: claim
-- Claim up to $2 due jobs for worker $1 in one statement. Every claim gets a new fencing
-- token; only the holder of the current token can launch or settle the job.
-- Lanes: mail outside campaigns is one lane and each campaign with due mail is another; each
-- lane offers its first $2 jobs and the lanes take turns (turn = place in its lane), higher
-- priority first. So transactional mail (priority 0) goes before campaigns (-10 by default),
-- and two running campaigns of one priority share the sending instead of the later one
-- waiting for the earlier one to finish. The campaigns with due mail are found by skipping
-- through the campaign index (one probe per such campaign). Only jobs of account $3.
-- Each lane's offer skips the rows another claim running now has locked (a worker keeps two
-- claims in flight, worker/intake.py; so do several workers): otherwise the second claim is
-- offered the same first rows, finds them all locked and comes back empty.
WITH RECURSIVE campaigns_due(cid) AS (
    (SELECT campaign_id FROM dispatcher.jobs
     WHERE state = 'queued' AND campaign_id IS NOT NULL AND account = $3
     ORDER BY campaign_id LIMIT 1)
    UNION ALL
    SELECT (SELECT j.campaign_id FROM dispatcher.jobs j
            WHERE j.state = 'queued' AND j.campaign_id IS NOT NULL AND j.campaign_id > d.cid
              AND j.account = $3
            ORDER BY j.campaign_id LIMIT 1)
    FROM campaigns_due d
    WHERE d.cid IS NOT NULL
), offered AS (
    SELECT p.id, p.priority, p.run_at,
           row_number() OVER (ORDER BY p.priority DESC, p.run_at, p.id) AS turn
    FROM (SELECT id, priority, run_at FROM dispatcher.jobs
          WHERE state = 'queued' AND campaign_id IS NULL AND run_at <= now() AND account = $3
          ORDER BY priority DESC, run_at, id
          LIMIT $2 FOR UPDATE SKIP LOCKED) p
    UNION ALL
    SELECT c.id, c.priority, c.run_at, c.turn
    FROM campaigns_due d
    CROSS JOIN LATERAL (
        SELECT f.id, f.priority, f.run_at,
               row_number() OVER (ORDER BY f.priority DESC, f.run_at, f.id) AS turn
        FROM (SELECT id, priority, run_at FROM dispatcher.jobs
              WHERE state = 'queued' AND campaign_id = d.cid AND run_at <= now()
                AND account = $3
              ORDER BY priority DESC, run_at, id
              LIMIT $2 FOR UPDATE SKIP LOCKED) f
    ) c
    WHERE d.cid IS NOT NULL
), picked AS (
    -- The rows are ours already (each lane's offer locked them, and a lock re-reads the row:
    -- still queued, due and of account $3): no second lock, no second look-up. In the order
    -- they are handed out: a job's place in this array is its place in the answer.
    SELECT ARRAY(SELECT id FROM offered ORDER BY priority DESC, turn, run_at, id LIMIT $2) AS ids
), token AS (
    SELECT nextval('dispatcher.lease_token_seq') AS value
), claimed AS (
    UPDATE dispatcher.jobs j
    SET state = 'claimed', lease_owner = $1, lease_token = token.value, updated_at = now()
    FROM picked, token, dispatcher.messages m
    WHERE j.id = ANY(picked.ids) AND m.id = j.id  -- (by key)
      AND j.state = 'queued'  -- (as locked: changed by nobody since)
      AND NOT EXISTS (SELECT 1 FROM dispatcher.sending_hold h WHERE h.account = $3)  -- the guard
    RETURNING array_position(picked.ids, j.id) AS place, j.id, j.lease_token, j.attempts,
              j.priority, j.run_at, m.created_at, m.from_addr, m.to_addrs, m.cc_addrs,
              m.bcc_addrs, m.reply_to, m.subject, m.text_body, m.html_body, m.raw,
              m.configuration_set, m.tags, m.campaign_id, m.variables, m.template_name,
              m.template_data
), suppressed AS (
    -- Which recipients of the jobs handed out are on the suppression list, in the same round
    -- trip (it was a statement of its own per claim): looked up by each address with A-Z
    -- lower-cased, which is its key (dispatcher.domain.address.suppression_key) for a plain
    -- address (printable ASCII, no space or angle bracket); the worker looks up any other
    -- address itself (worker/intake.py). COLLATE "C": A-Z only, whatever the database's
    -- locale (a Turkish one lower-cases I to a dotless i); translate() cost 6 us per job.
    SELECT coalesce(array_agg(s.address), '{}') AS keys
    FROM dispatcher.suppressions s
    WHERE s.address = ANY(ARRAY(
        SELECT lower(a COLLATE "C")
        FROM claimed c, unnest(c.to_addrs || c.cc_addrs || c.bcc_addrs) AS a))
)
-- (read by position, in this order: repository._claimed_jobs; the keys found on every row)
SELECT id, lease_token, attempts, priority, run_at, created_at, from_addr, to_addrs, cc_addrs,
       bcc_addrs, reply_to, subject, text_body, html_body, raw, configuration_set, tags,
       campaign_id, variables, template_name, template_data, (SELECT keys FROM suppressed)
FROM claimed
ORDER BY place;

-- name: launch
-- The point of no return: claimed -> in_flight just before the jobs are handed to SES. Jobs
-- whose lease was lost (recovered, reclaimed) are not returned and must not be sent.
-- Repeatable: a job already in flight under the same owner and token was launched by an
-- earlier run of this statement whose answer was lost (the connection was cut), so it counts
-- (updated again, which changes nothing a reader sees but updated_at).
-- The jobs are found by primary key: the state is compared as text so that the planner cannot
-- pick the jobs_leased index (its statistics say "claimed" is rare, so it would scan every job
-- the worker holds, dead index entries included, for each launch: 2-10 ms instead of 0.3).
-- Each job's token is the one at its id's place in $2, not a join with unnest($1, $2): told
-- by the owner filter that one row matches, the planner joined every job with every pair
-- (n^2 rows through the join filter: 10 us per job at 100 jobs, 50 at 400, most of a launch).
UPDATE dispatcher.jobs j
SET state = 'in_flight', updated_at = now()
WHERE j.id = ANY($1::bigint[])
  AND j.lease_token = ($2::bigint[])[array_position($1::bigint[], j.id)]
  AND j.lease_owner = $3 AND j.state::text IN ('claimed', 'in_flight')
RETURNING j.id;

-- name: settle
-- Record send results in one round trip. The fencing token makes a late result from a worker
-- that lost its lease change nothing, except that a result for a job the reaper marked
-- unknown (or requeued, for a send that did go out) is still the truth and is kept.
-- The recipients of the jobs that became sent (none was sent before: see the state filter)
-- are added to the reputation guard's counters (migration 0025) in the same statement, so they
-- are exactly as committed as the jobs; this session's shard of each row, so concurrent
-- settles of other processes do not wait for it.
WITH done AS (
UPDATE dispatcher.jobs j
SET state = CASE WHEN u.state = 'queued' THEN dispatcher.requeue_state(j.campaign_id)
                 ELSE u.state::dispatcher.job_state END,
    ses_message_id = coalesce(u.ses_message_id, j.ses_message_id),
    sent_at = CASE WHEN u.state = 'sent' THEN now() ELSE j.sent_at END,
    last_outcome = u.outcome,
    last_error = u.error,
    attempts = j.attempts + u.attempt_used,
    run_at = CASE WHEN u.state = 'queued'
                  THEN now() + make_interval(secs => u.delay) ELSE j.run_at END,
    scheduled = false,
    lease_owner = NULL,
    updated_at = now()
-- A column the same for every result may come as an empty array (unnest pads it with NULL)
-- and its value once, in $9-$13 (NULL when the array is given): most batches are all "sent",
-- no error, no delay, and an array costs the client ~0.25 us per element to encode.
FROM (SELECT v.id, v.token, coalesce(v.state, $9) AS state, v.ses_message_id,
             coalesce(v.outcome, $10) AS outcome, coalesce(v.error, $11) AS error,
             coalesce(v.attempt_used, $12) AS attempt_used, coalesce(v.delay, $13) AS delay
      FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                  $7::smallint[], $8::float8[])
           AS v(id, token, state, ses_message_id, outcome, error, attempt_used, delay)) u
WHERE j.id = ANY($1::bigint[]) AND j.id = u.id AND j.lease_token = u.token  -- by key, as launch
  AND (j.state IN ('claimed', 'in_flight', 'unknown')
       OR (j.state IN ('queued', 'held') AND u.state = 'sent'))
RETURNING j.id, j.state, j.account, j.campaign_id, j.recipients
), sums AS (
    -- One account per batch (a worker claims one account's jobs, and a claimed job keeps
    -- its account), a few campaigns at most.
    SELECT d.account, d.campaign_id, sum(d.recipients) AS n
    FROM done d WHERE d.state = 'sent'
    GROUP BY 1, 2
), by_account AS (
    INSERT INTO dispatcher.guard_account_tally AS t (bucket, account, shard, sent)
    SELECT dispatcher.minute_of(now()), s.account, dispatcher.tally_shard(), sum(s.n)
    FROM sums s
    GROUP BY s.account ORDER BY s.account  -- (rows locked in one order by every statement)
    ON CONFLICT (bucket, account, shard) DO UPDATE SET sent = t.sent + EXCLUDED.sent
), by_campaign AS (
    INSERT INTO dispatcher.guard_campaign_tally AS t (campaign_id, shard, sent)
    SELECT s.campaign_id, dispatcher.tally_shard(), sum(s.n)
    FROM sums s WHERE s.campaign_id IS NOT NULL
    GROUP BY s.campaign_id ORDER BY s.campaign_id
    ON CONFLICT (campaign_id, shard) DO UPDATE SET sent = t.sent + EXCLUDED.sent
)
SELECT id FROM done;

-- name: release
-- Give claimed jobs back untouched (no attempt used): shutdown, a paused account or sender, a
-- closed send window ($4: due later on purpose, which a drain does not wait for).
UPDATE dispatcher.jobs j
SET state = dispatcher.requeue_state(j.campaign_id), lease_owner = NULL, updated_at = now(),
    run_at = greatest(j.run_at, now() + make_interval(secs => $3)), scheduled = j.scheduled OR $4
WHERE j.id = ANY($1::bigint[]) AND j.lease_owner = $2 AND j.state::text = 'claimed'  -- by key
RETURNING j.id;

-- name: release_orphans
-- Claimed by $1 but not among the jobs it holds ($2): a claim whose answer was lost when the
-- connection was cut. They go back untouched.
UPDATE dispatcher.jobs j
SET state = dispatcher.requeue_state(j.campaign_id), lease_owner = NULL, updated_at = now()
WHERE j.lease_owner = $1 AND j.state = 'claimed' AND NOT (j.id = ANY($2::bigint[]))
RETURNING j.id;

-- name: register_worker
INSERT INTO dispatcher.workers (id, hostname, pid, lease_seconds, account)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: rate_share
-- Mark worker $1 active for $3 seconds when it has mail ($2), and count the other workers that
-- are active now: the account's rate is split among them (an idle worker takes no part, a dead
-- one's part lapses with its active_until). Only the workers of $1's account count. A worker that becomes active tells the others at
-- once (NOTIFY dispatcher_share) so they make room before its first send, not a tick later.
-- `before`: the active others ranked before $1, its turn for SendBulkEmail's one call a second.
WITH prev AS (
    SELECT active_until > now() AS was_active FROM dispatcher.workers WHERE id = $1
), me AS (
    UPDATE dispatcher.workers
    SET active_until = CASE WHEN $2 THEN now() + make_interval(secs => $3) ELSE NULL END
    WHERE id = $1
    RETURNING id
)
SELECT count(*) AS others, count(*) FILTER (WHERE id < $1) AS before,
       (SELECT count(pg_notify('dispatcher_share', ''))
        FROM prev WHERE $2 AND NOT coalesce(prev.was_active, false)) AS told,
       (SELECT count(*) FROM me) AS marked
FROM dispatcher.workers
WHERE active_until > now() AND id <> $1
  AND account = (SELECT w.account FROM dispatcher.workers w WHERE w.id = $1);

-- name: heartbeat
UPDATE dispatcher.workers SET heartbeat_at = now() WHERE id = $1 RETURNING id;

-- name: unregister_worker
DELETE FROM dispatcher.workers WHERE id = $1;

-- name: hold_session
-- Worker $1's session lock: Postgres frees it when the session ends, so when the process dies
-- every peer sees at once that it is gone. Key: ("disp", the id's first 31 bits).
SELECT pg_try_advisory_lock(1684632432, ('x' || left($1::uuid::text, 8))::bit(32)::int & 2147483647);

-- name: recover
-- Jobs held by a worker that is gone (no row), silent for longer than its lease, or whose
-- session lock is free (its process died) while its heartbeat is older than $2 seconds ($2
-- NULL: leases only): claimed ones go back to the queue as if never claimed; in-flight ones
-- were on the wire and become unknown, or are queued again when the in-doubt policy is
-- "resend" ($1 = 'queued'). A heartbeat from before the server started says nothing of the
-- lock (a restart ended every session): such a worker waits to take it again or for its lease.
WITH locks AS (
    SELECT objid FROM pg_locks
    WHERE $2::float8 IS NOT NULL AND locktype = 'advisory' AND classid = 1684632432
      AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), dead AS (
    DELETE FROM dispatcher.workers w
    WHERE heartbeat_at < now() - make_interval(secs => lease_seconds)
       OR ($2::float8 IS NOT NULL
           AND heartbeat_at < now() - make_interval(secs => $2::float8)
           AND heartbeat_at > pg_postmaster_start_time()
           AND (('x' || left(w.id::text, 8))::bit(32)::int & 2147483647)::oid
               NOT IN (SELECT objid FROM locks))
    RETURNING id
), live AS (
    SELECT id FROM dispatcher.workers
    EXCEPT SELECT id FROM dead
), lost AS (
    -- Locked first so the state read here is the one the update replaces.
    SELECT id, state FROM dispatcher.jobs
    WHERE state IN ('claimed', 'in_flight')
      AND (lease_owner IS NULL OR lease_owner NOT IN (SELECT id FROM live))
    FOR UPDATE
)
UPDATE dispatcher.jobs j
SET state = CASE WHEN lost.state = 'claimed' OR $1 = 'queued'
                 THEN dispatcher.requeue_state(j.campaign_id)
                 ELSE $1::dispatcher.job_state END,
    attempts = j.attempts
               + CASE WHEN lost.state = 'in_flight' AND $1 = 'queued' THEN 1 ELSE 0 END,
    last_outcome = CASE WHEN lost.state = 'in_flight' THEN 'in_doubt' ELSE j.last_outcome END,
    last_error = CASE WHEN lost.state = 'in_flight'
                      THEN 'worker lost while the message was being sent' ELSE j.last_error END,
    lease_owner = NULL,
    updated_at = now()
FROM lost
WHERE j.id = lost.id
RETURNING j.id, lost.state::text AS old_state, j.state::text AS new_state;

-- name: counts
SELECT state::text, count(*) AS n FROM dispatcher.jobs GROUP BY state;

-- name: pending
-- What a draining worker still waits for: active jobs, except mail scheduled by its sender for
-- later than $1 seconds from now (not waited for). Only mail of its account ($2), and the
-- recipients of running campaigns not yet materialised as jobs (dispatcher.campaigns.materialise;
-- their account is known once they are jobs, so every account's drain waits for them).
SELECT count(*) FILTER (WHERE state IN ('queued', 'claimed', 'in_flight')
                        AND NOT (scheduled AND run_at > now() + make_interval(secs => $1)))
       + (SELECT coalesce(sum(unmaterialised), 0) FROM dispatcher.campaigns
          WHERE state = 'running' AND unmaterialised > 0
            AND (send_at IS NULL OR send_at <= now() + make_interval(secs => $1)))
           AS waiting,
       count(*) FILTER (WHERE state = 'queued' AND scheduled
                        AND run_at > now() + make_interval(secs => $1)) AS scheduled_later,
       min(run_at) FILTER (WHERE state = 'queued') AS next_run_at
FROM dispatcher.jobs
WHERE state IN ('queued', 'claimed', 'in_flight') AND account = $2;

-- name: held
-- Mail waiting out a sending error a person must fix, or all queued mail while the guard holds
-- all sending; a draining worker stops on it (exit 4). Only mail of its account ($1).
WITH hold AS (SELECT reason FROM dispatcher.sending_hold WHERE account = $1)
SELECT count(*) + CASE WHEN EXISTS (SELECT 1 FROM hold)  -- (and the recipients to materialise)
                       THEN (SELECT coalesce(sum(unmaterialised), 0) FROM dispatcher.campaigns
                             WHERE state = 'running') ELSE 0 END AS n,
       coalesce((SELECT reason FROM hold),
                (array_agg(last_error ORDER BY updated_at DESC))[1]) AS reason
FROM dispatcher.jobs
WHERE state = 'queued' AND account = $1
  AND (EXISTS (SELECT 1 FROM hold)
       OR (run_at > now() AND last_outcome IN ('config_error', 'account_paused')));

-- name: workers
SELECT id, hostname, pid, started_at, heartbeat_at FROM dispatcher.workers ORDER BY started_at;

-- name: list_unknown
SELECT j.id, j.updated_at, j.last_error, m.from_addr, m.to_addrs, m.subject
FROM dispatcher.jobs j JOIN dispatcher.messages m USING (id)
WHERE j.state = 'unknown'
ORDER BY j.id
LIMIT $1;

-- name: resolve_unknown
-- A person decided what happened to in-doubt mail: resend it, or record it as sent or failed.
-- Mail resolved as sent counts for the reputation guard (as settle's, migration 0025).
WITH done AS (
UPDATE dispatcher.jobs j
SET state = $2::dispatcher.job_state,
    run_at = now(),
    last_error = CASE WHEN $2 = 'queued' THEN j.last_error ELSE 'resolved by operator' END,
    -- Sent mail has a sent_at (retention ages it by that): here, when it was resolved.
    sent_at = CASE WHEN $2 = 'sent' THEN coalesce(j.sent_at, now()) ELSE j.sent_at END,
    updated_at = now()
WHERE j.state = 'unknown' AND ($1::bigint[] IS NULL OR j.id = ANY($1::bigint[]))
RETURNING j.id, j.state, j.sent_at, j.account, j.campaign_id, j.recipients
), by_account AS (
    INSERT INTO dispatcher.guard_account_tally AS t (bucket, account, shard, sent)
    SELECT dispatcher.minute_of(d.sent_at), d.account, dispatcher.tally_shard(),
           sum(d.recipients)
    FROM done d WHERE d.state = 'sent'
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (bucket, account, shard) DO UPDATE SET sent = t.sent + EXCLUDED.sent
), by_campaign AS (
    INSERT INTO dispatcher.guard_campaign_tally AS t (campaign_id, shard, sent)
    SELECT d.campaign_id, dispatcher.tally_shard(), sum(d.recipients)
    FROM done d WHERE d.state = 'sent' AND d.campaign_id IS NOT NULL
    GROUP BY d.campaign_id ORDER BY d.campaign_id
    ON CONFLICT (campaign_id, shard) DO UPDATE SET sent = t.sent + EXCLUDED.sent
)
SELECT id FROM done;

-- name: cancel
UPDATE dispatcher.jobs SET state = 'cancelled', updated_at = now(), lease_owner = NULL
WHERE id = ANY($1::bigint[]) AND state IN ('queued', 'unknown')
RETURNING id;

-- name: get_message
SELECT j.id, j.state::text, j.attempts, j.priority, j.run_at, j.sent_at, j.ses_message_id,
       j.last_outcome, j.last_error, m.idempotency_key, m.from_addr, m.to_addrs, m.cc_addrs,
       m.bcc_addrs, m.subject, m.created_at
FROM dispatcher.jobs j JOIN dispatcher.messages m USING (id)
WHERE j.id = $1;

-- name: suppressed_among
-- Which of these (lower-cased) addresses must never be mailed again.
SELECT address FROM dispatcher.suppressions WHERE address = ANY($1::text[]);

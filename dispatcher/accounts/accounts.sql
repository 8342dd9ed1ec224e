-- The accounts and routes the daemon writes from its config (migration 0021,
-- dispatcher.accounts.store), and what `status` shows of each account.

-- name: lock
-- One writer at a time (two daemons starting together); released at commit.
SELECT pg_advisory_xact_lock(1684632432, 21);

-- name: current
SELECT coalesce((SELECT array_agg(name ORDER BY position) FROM dispatcher.accounts), '{}') AS names,
       coalesce((SELECT jsonb_agg(jsonb_build_array(from_domains, campaigns, key_names, tags,
                                                    account, fallback) ORDER BY position)
                 FROM dispatcher.routes), '[]') AS routes;

-- name: put_accounts
-- The accounts $1 in order (the first is the default); a paused mark of a kept one stays.
WITH gone AS (
    DELETE FROM dispatcher.accounts WHERE NOT (name = ANY ($1::text[]))
)
INSERT INTO dispatcher.accounts (name, position)
SELECT n, o - 1 FROM unnest($1::text[]) WITH ORDINALITY AS t(n, o)
ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position;

-- name: put_quota_rows
INSERT INTO dispatcher.send_quota (account) SELECT unnest($1::text[])
ON CONFLICT (account) DO NOTHING;

-- name: clear_routes
DELETE FROM dispatcher.routes;

-- name: put_route
INSERT INTO dispatcher.routes (position, from_domains, campaigns, key_names, tags, account,
                               fallback)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: trigger_enabled
SELECT tgenabled <> 'D' FROM pg_trigger
WHERE tgrelid = 'dispatcher.jobs'::regclass AND tgname = 'jobs_route';

-- name: enable_trigger
ALTER TABLE dispatcher.jobs ENABLE TRIGGER jobs_route;

-- name: disable_trigger
ALTER TABLE dispatcher.jobs DISABLE TRIGGER jobs_route;

-- name: reroute
-- Mail waiting to be sent goes where the rules now say (they changed, or its account is gone).
UPDATE dispatcher.jobs j SET account = r.account, fallback = r.fallback
FROM dispatcher.jobs src CROSS JOIN LATERAL dispatcher.route_of(src.id) r
WHERE j.id = src.id AND src.state IN ('queued', 'held')
  AND (j.account, j.fallback) IS DISTINCT FROM (r.account, r.fallback);

-- name: reroute_gone
-- Only the mail of accounts no longer configured.
UPDATE dispatcher.jobs j SET account = r.account, fallback = r.fallback
FROM dispatcher.jobs src CROSS JOIN LATERAL dispatcher.route_of(src.id) r
WHERE j.id = src.id AND src.state IN ('queued', 'held') AND NOT (src.account = ANY ($1::text[]));

-- name: mark_paused
-- SES paused or suspended account $1 ($2: why; NULL: it sends again). While paused, its
-- waiting mail that a route lets fall back moves to the fallback account.
WITH marked AS (
    UPDATE dispatcher.accounts SET paused_at = CASE WHEN $2::text IS NULL THEN NULL
                                                   ELSE coalesce(paused_at, now()) END,
                                   paused_reason = $2
    WHERE name = $1
    RETURNING paused_at
), moved AS (
    UPDATE dispatcher.jobs j SET account = j.fallback, fallback = NULL
    WHERE $2::text IS NOT NULL AND j.account = $1 AND j.fallback IS NOT NULL
      AND j.state = 'queued'
    RETURNING j.id
)
SELECT (SELECT count(*) FROM moved) AS moved, pg_notify('dispatcher_jobs', '') AS told;

-- name: overview
-- Each account: its quota reading, its waiting mail, its live workers, the pause SES set and
-- the reputation guard's hold of its sending.
SELECT a.name, a.position, a.paused_at, a.paused_reason,
       (SELECT h.reason FROM dispatcher.sending_hold h WHERE h.account = a.name) AS held_reason,
       q.max_send_rate, q.max_24_hour_send, q.sent_last_24_hours,
       extract(epoch FROM now() - q.read_at)::float8 AS reading_age,
       (SELECT count(*) FROM dispatcher.jobs j
        WHERE j.account = a.name AND j.state = 'queued') AS queued,
       (SELECT count(*) FROM dispatcher.workers w
        WHERE w.account = a.name
          AND w.heartbeat_at >= now() - make_interval(secs => w.lease_seconds)) AS workers
FROM dispatcher.accounts a
LEFT JOIN dispatcher.send_quota q ON q.account = a.name
ORDER BY a.position;

-- name: guard_counts
-- The reputation guard's counts per account over the last $1 seconds: recipients sent, hard
-- bounces, complaints, from its per-minute counters (migration 0025; the window starts at its
-- first minute). Feedback tied to no job (account '') counts for the default.
WITH tally AS (
    SELECT CASE WHEN t.account = ''
                THEN (SELECT a.name FROM dispatcher.accounts a ORDER BY a.position LIMIT 1)
                ELSE t.account END AS account,
           sum(t.sent) AS sent, sum(t.bounced) AS bounced, sum(t.complained) AS complained
    FROM dispatcher.guard_account_tally t
    WHERE t.bucket >= dispatcher.minute_of(now() - make_interval(secs => $1))
    GROUP BY 1
)
SELECT a.name, coalesce(t.sent, 0)::bigint AS sent, coalesce(t.bounced, 0)::bigint AS bounced,
       coalesce(t.complained, 0)::bigint AS complained
FROM dispatcher.accounts a
LEFT JOIN tally t ON t.account = a.name
ORDER BY a.position;

-- name: campaigns_on
-- Which of the campaigns $2 have mail waiting on account $1.
SELECT c.id FROM unnest($2::bigint[]) AS c(id)
WHERE EXISTS (SELECT 1 FROM dispatcher.jobs j
              WHERE j.campaign_id = c.id AND j.account = $1 AND j.state = 'queued');

-- name: hold
-- The guard holds all sending of account $1 ($2: why); true if it was not held already.
INSERT INTO dispatcher.sending_hold (account, reason) VALUES ($1, $2)
ON CONFLICT (account) DO NOTHING
RETURNING true;

-- What /metrics reads from Postgres at scrape time (dispatcher/obs/metrics.py). Each query
-- says what it costs: a scrape must stay cheap at a million rows.

-- name: active_states
-- The states mail moves through, exactly, each from its partial index (jobs_ready_plain,
-- jobs_ready_campaign, jobs_leased, jobs_unknown): the cost follows the backlog, not the table.
-- Held mail is counted per campaign not yet ended (jobs_campaign), where it lives. The
-- *_campaign columns are the campaign lane's part (the dashboard shows both lanes).
SELECT q.queued_message + q.queued_campaign AS queued, q.queued_campaign,
       l.claimed, l.claimed_campaign, l.in_flight, l.in_flight_campaign,
       u.unknown, u.unknown_campaign, h.held
FROM (SELECT
        (SELECT count(*) FROM dispatcher.jobs WHERE state = 'queued' AND campaign_id IS NULL)
            AS queued_message,
        (SELECT count(*) FROM dispatcher.jobs WHERE state = 'queued' AND campaign_id IS NOT NULL)
        -- and the recipients of running campaigns not yet materialised as jobs
        + (SELECT coalesce(sum(unmaterialised), 0) FROM dispatcher.campaigns
           WHERE state = 'running') AS queued_campaign) q,
     (SELECT count(*) FILTER (WHERE state = 'claimed') AS claimed,
             count(*) FILTER (WHERE state = 'claimed' AND campaign_id IS NOT NULL)
                AS claimed_campaign,
             count(*) FILTER (WHERE state = 'in_flight') AS in_flight,
             count(*) FILTER (WHERE state = 'in_flight' AND campaign_id IS NOT NULL)
                AS in_flight_campaign
      FROM dispatcher.jobs WHERE state IN ('claimed', 'in_flight')) l,
     (SELECT count(*) AS unknown, count(*) FILTER (WHERE campaign_id IS NOT NULL)
                AS unknown_campaign
      FROM dispatcher.jobs WHERE state = 'unknown') u,
     (SELECT coalesce(sum((SELECT count(*) FROM dispatcher.jobs j
                           WHERE j.campaign_id = c.id AND j.state = 'held')
                          + CASE WHEN c.state <> 'running' THEN c.unmaterialised ELSE 0 END),
                      0)::bigint AS held
      FROM dispatcher.campaigns c WHERE c.state IN ('draft', 'running', 'paused')) h;

-- name: campaign_progress
-- Running and paused campaigns: their recipients and their mail by state (an index-only walk
-- of jobs_campaign over those campaigns' jobs).
-- Recipients not yet materialised count in the state their job would have.
SELECT c.id, c.name, c.state::text AS campaign_state, c.recipients, c.pause_reason,
       j.state::text AS state, count(j.id) AS n
FROM dispatcher.campaigns c
LEFT JOIN dispatcher.jobs j ON j.campaign_id = c.id
WHERE c.state IN ('running', 'paused')
GROUP BY c.id, c.name, c.state, c.recipients, c.pause_reason, j.state
UNION ALL
SELECT c.id, c.name, c.state::text, c.recipients, c.pause_reason,
       dispatcher.unmaterialised_state(c.state)::text, c.unmaterialised
FROM dispatcher.campaigns c
WHERE c.state IN ('running', 'paused') AND c.unmaterialised > 0
ORDER BY 1;

-- name: feedback_kinds
-- Recipients with an SES event of each kind (bounces of any type) in the last $1 seconds,
-- from the reputation guard's per-minute counters (migration 0025; the window starts at the
-- start of its first minute, as the guard's): a row per minute, where counting the events
-- walked every one of the window (86 M deliveries a day at 1,000/s) at each scrape.
WITH w AS (
    SELECT coalesce(sum(t.delivered), 0) AS delivery, coalesce(sum(t.bounced_any), 0) AS bounce,
           coalesce(sum(t.complained), 0) AS complaint
    FROM dispatcher.guard_account_tally t
    WHERE t.bucket >= dispatcher.minute_of(now() - make_interval(secs => $1))
)
SELECT k.kind, k.n::bigint AS n
FROM w, LATERAL (VALUES ('delivery', w.delivery), ('bounce', w.bounce),
                        ('complaint', w.complaint)) AS k(kind, n);

-- name: workers_by_host
-- Live worker processes per host (the workers table has one row per running process).
SELECT hostname, count(*) AS n FROM dispatcher.workers
WHERE heartbeat_at >= now() - make_interval(secs => lease_seconds)
GROUP BY hostname;

-- name: webhook_backlog
-- Webhook events not delivered yet (nor given up) per endpoint, with the oldest one's age: a
-- walk of the partial index webhook_deliveries_due, so the cost follows the backlog. The
-- endpoint is shown by its URL without query or credentials (bounded: the configured ones).
SELECT e.id, regexp_replace(split_part(e.url, '?', 1), '//[^/@]*@', '//') AS endpoint,
       count(d.id) AS backlog,
       coalesce(extract(epoch FROM now() - min(d.created_at)), 0)::float8 AS oldest_age
FROM dispatcher.webhook_endpoints e
LEFT JOIN dispatcher.webhook_deliveries d ON d.endpoint_id = e.id AND d.state = 'pending'
GROUP BY e.id
ORDER BY e.id;

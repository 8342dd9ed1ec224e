-- Named queries of the webhook sender (dispatcher.webhooks.store), read by dispatcher.db.sql.
-- The outbox is written by the triggers of migration 0014; these read and settle it.

-- name: endpoints_sync
-- The configured endpoints ($1: [{"url", "events"}]) subscribe to their events; one that is no
-- longer configured subscribes to nothing (its undelivered events stay, and go out if it is
-- configured again). Returns every endpoint with whether this call unsubscribed it.
WITH wanted AS (
    SELECT w ->> 'url' AS url, ARRAY(SELECT jsonb_array_elements_text(w -> 'events')) AS events
    FROM jsonb_array_elements($1::jsonb) AS w
), upserted AS (
    INSERT INTO dispatcher.webhook_endpoints (url, events)
    SELECT url, events FROM wanted ORDER BY url
    ON CONFLICT (url) DO UPDATE SET events = EXCLUDED.events, synced_at = now()
    RETURNING id, url, false AS dropped
), dropped AS (
    UPDATE dispatcher.webhook_endpoints
    SET events = '{}', synced_at = now()
    WHERE url NOT IN (SELECT url FROM wanted) AND events <> '{}'
    RETURNING id, url, true AS dropped
)
SELECT id, url, dropped FROM upserted
UNION ALL
SELECT id, url, dropped FROM dropped;

-- name: order_late
-- SES events get their place in their message's order (see migration 0014, webhook_order_seq)
-- once their send is recorded (so after `sent`), the earlier events of the same SES message are
-- tied to it (or 15 minutes passed, as for events_link_late) and the message's newest waiting
-- one is $1 seconds old (SNS may bring a Complaint before its Delivery): by when they happened.
WITH ready AS (
    SELECT d.id, coalesce((d.data ->> 'occurred_at')::timestamptz, d.created_at) AS occurred,
           CASE d.type WHEN 'complained' THEN 1 ELSE 0 END AS after
    FROM dispatcher.webhook_deliveries d
    LEFT JOIN dispatcher.jobs j ON j.id = d.message_id
    WHERE d.seq IS NULL
      AND (j.state IS NULL OR j.state NOT IN ('claimed', 'in_flight'))
      AND NOT EXISTS (SELECT 1 FROM dispatcher.webhook_deliveries y  -- a message's together
                      WHERE y.seq IS NULL AND y.message_id = d.message_id
                        AND y.created_at > now() - make_interval(secs => $1))
      AND NOT EXISTS (SELECT 1 FROM dispatcher.events u
                      WHERE u.ses_message_id = d.data ->> 'ses_message_id'
                        AND u.message_id IS NULL
                        AND u.received_at > now() - interval '15 minutes')
    ORDER BY d.id
    LIMIT 1000
    FOR UPDATE OF d SKIP LOCKED
), numbered AS (
    SELECT r.id, nextval('dispatcher.webhook_order_seq') AS seq
    FROM (SELECT id FROM ready ORDER BY occurred, after, id) r
)
UPDATE dispatcher.webhook_deliveries d
SET seq = n.seq
FROM numbered n
WHERE d.id = n.id
RETURNING d.id;

-- name: claim
-- Up to $2 due events of endpoint $1, each the first undelivered one of its message (event n+1
-- of a message waits until n is delivered or given up), leased for $3 seconds. SKIP LOCKED:
-- several processes and hosts share the work. `attempts` (now counting this one) fences the
-- result: a late answer for an attempt that was taken over changes nothing.
WITH due AS (
    SELECT d.id
    FROM dispatcher.webhook_deliveries d
    WHERE d.state = 'pending' AND d.endpoint_id = $1 AND d.next_at <= now()
      AND d.seq IS NOT NULL
      AND (d.lease_until IS NULL OR d.lease_until <= now())
      AND NOT EXISTS (
          SELECT 1 FROM dispatcher.webhook_deliveries p
          WHERE p.state = 'pending' AND p.endpoint_id = d.endpoint_id
            AND p.message_id = d.message_id AND p.seq < d.seq)
    ORDER BY d.next_at, d.seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE dispatcher.webhook_deliveries d
SET attempts = d.attempts + 1, lease_until = now() + make_interval(secs => $3)
FROM due
WHERE d.id = due.id
RETURNING d.id, d.type, d.created_at, d.message_id, d.data, d.attempts;

-- name: settle
-- Results of POSTs, one statement: delivered, pending again after a delay, or given up.
UPDATE dispatcher.webhook_deliveries d
SET state = u.state,
    next_at = CASE WHEN u.state = 'pending' THEN now() + make_interval(secs => u.delay)
                   ELSE d.next_at END,
    lease_until = NULL,
    last_error = u.error,
    done_at = CASE WHEN u.state = 'pending' THEN NULL ELSE now() END
FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::float8[], $5::text[])
     AS u(id, attempts, state, delay, error)
WHERE d.id = u.id AND d.attempts = u.attempts AND d.state = 'pending'
RETURNING d.id;

-- name: release
-- POSTs cut short by a shutdown: due again at once (the receiver may have seen them: at least
-- once, same event id).
UPDATE dispatcher.webhook_deliveries d
SET lease_until = NULL, next_at = now()
FROM unnest($1::bigint[], $2::integer[]) AS u(id, attempts)
WHERE d.id = u.id AND d.attempts = u.attempts AND d.state = 'pending';

-- name: wake
-- Endpoint $1 answers again: its events waiting out a backoff are due now, not at their next
-- try (which could be retry_max away).
UPDATE dispatcher.webhook_deliveries
SET next_at = now()
WHERE endpoint_id = $1 AND state = 'pending' AND next_at > now()
  AND (lease_until IS NULL OR lease_until <= now());

-- name: prune
-- Delivered and given-up events older than $1 seconds, at most $2 per call.
DELETE FROM dispatcher.webhook_deliveries
WHERE id IN (SELECT id FROM dispatcher.webhook_deliveries
             WHERE state <> 'pending' AND done_at < now() - make_interval(secs => $1)
             LIMIT $2);

-- name: status
-- Per endpoint: its subscription, the backlog (events not yet delivered), the oldest of them,
-- and what happened lately.
SELECT e.id, e.url, e.events, e.synced_at,
       count(d.id) FILTER (WHERE d.state = 'pending') AS backlog,
       min(d.created_at) FILTER (WHERE d.state = 'pending') AS oldest_pending,
       count(d.id) FILTER (WHERE d.state = 'delivered') AS delivered,
       count(d.id) FILTER (WHERE d.state = 'given_up') AS given_up,
       (array_agg(d.last_error ORDER BY d.id DESC)
            FILTER (WHERE d.state = 'pending' AND d.last_error IS NOT NULL))[1] AS last_error
FROM dispatcher.webhook_endpoints e
LEFT JOIN dispatcher.webhook_deliveries d ON d.endpoint_id = e.id
GROUP BY e.id
ORDER BY e.id;

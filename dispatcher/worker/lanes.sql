-- Provider lanes (migration 0020, dispatcher.worker.lane_store). "Today" is the UTC calendar
-- day on Postgres's clock, the one clock every process and host shares.

-- name: lane_open_day
INSERT INTO dispatcher.lane_days (account, provider, day)
VALUES ($1, $2, (now() AT TIME ZONE 'UTC')::date)
ON CONFLICT (account, provider, day) DO NOTHING;

-- name: lane_lock_day
-- Today's row of a lane, locked: takes of its daily cap queue here, so none overshoots.
SELECT day, taken FROM dispatcher.lane_days
WHERE account = $1 AND provider = $2 AND day = (now() AT TIME ZONE 'UTC')::date
FOR UPDATE;

-- name: lane_add_taken
UPDATE dispatcher.lane_days SET taken = greatest(0, taken + $4)
WHERE account = $1 AND provider = $2 AND day = $3;

-- name: lane_add_sent
-- Recipients admitted through each lane ($2 providers, $3 counts) since the last flush.
INSERT INTO dispatcher.lane_days AS d (account, provider, day, sent)
SELECT $1, u.provider, (now() AT TIME ZONE 'UTC')::date, u.n
FROM unnest($2::text[], $3::bigint[]) AS u(provider, n)
ON CONFLICT (account, provider, day) DO UPDATE SET sent = d.sent + excluded.sent;

-- name: lane_today
SELECT provider, taken, sent FROM dispatcher.lane_days
WHERE account = $1 AND day = (now() AT TIME ZONE 'UTC')::date;

-- name: mx_cached
SELECT domain, provider FROM dispatcher.mx_cache WHERE domain = ANY($1::text[]) AND expires_at > now();

-- name: mx_put
INSERT INTO dispatcher.mx_cache AS c (domain, provider, mx, expires_at)
SELECT u.domain, u.provider, string_to_array(u.mx, ' '), now() + make_interval(secs => u.ttl)
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) AS u(domain, provider, mx, ttl)
ON CONFLICT (domain) DO UPDATE
SET provider = excluded.provider, mx = excluded.mx, looked_up_at = now(),
    expires_at = excluded.expires_at;

-- name: mx_all
SELECT domain, provider FROM dispatcher.mx_cache WHERE expires_at > now();

-- name: soft_feedback
-- Recipients of DeliveryDelay events and soft (transient) bounces in the last $1 seconds, by
-- recipient domain; with the database's time, the clock the back-offs are kept on.
SELECT extract(epoch FROM now())::float8 AS now, x.domain, count(*) AS n
FROM (
    SELECT split_part(r.address, '@', 2) AS domain
    FROM dispatcher.recipient_events r
    WHERE r.kind = 'bounce' AND r.bounce_type = 'Transient'
      AND r.occurred_at > now() - make_interval(secs => $1)
    UNION ALL
    SELECT split_part(lower(d ->> 'address'), '@', 2)
    FROM dispatcher.events e, jsonb_array_elements(e.parsed -> 'recipients') d
    WHERE e.kind = 'delivery_delay' AND e.received_at > now() - make_interval(secs => $1)
) x
GROUP BY x.domain;

-- name: db_now
SELECT extract(epoch FROM now())::float8;

-- name: lane_backoffs
SELECT provider, reason, extract(epoch FROM since)::float8 AS since,
       extract(epoch FROM last_burst)::float8 AS last_burst
FROM dispatcher.lane_backoffs WHERE account = $1;

-- name: lane_backoff_put
INSERT INTO dispatcher.lane_backoffs AS b (account, provider, reason, since, last_burst)
VALUES ($1, $2, $3, to_timestamp($4), to_timestamp($5))
ON CONFLICT (account, provider) DO UPDATE
SET reason = excluded.reason, last_burst = excluded.last_burst;

-- name: lane_backoff_clear
DELETE FROM dispatcher.lane_backoffs WHERE account = $1 AND provider = $2;

-- name: waiting_by_domain
-- Recipients of mail not sent yet (queued or claimed), by recipient domain, for `status`.
SELECT substring(lower(a) FROM '@([^@>]*)>?$') AS domain, count(*) AS n
FROM dispatcher.jobs j
JOIN dispatcher.messages m ON m.id = j.id
CROSS JOIN LATERAL unnest(m.to_addrs || m.cc_addrs || m.bcc_addrs) AS a
WHERE j.state IN ('queued', 'claimed')
GROUP BY 1;

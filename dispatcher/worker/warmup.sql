-- The warm-up's days (migration 0018, dispatcher.worker.warmup_store). "Today" is the UTC
-- calendar day on Postgres's clock, the one clock every process and host shares. Each SES
-- account has its own ramp (migration 0021): $account is its name.

-- name: warmup_open_day
INSERT INTO dispatcher.warmup_days (account, day) VALUES ($1, (now() AT TIME ZONE 'UTC')::date)
ON CONFLICT (account, day) DO NOTHING;

-- name: warmup_day
-- Today's row of account $1, with the sending day number (1 + the earlier days that sent and
-- were not held) and the first sending day.
SELECT t.today, coalesce(w.taken, 0) AS taken, w.held_reason,
       (SELECT 1 + count(*) FROM dispatcher.warmup_days p
        WHERE p.account = $1 AND p.day < t.today AND p.taken > 0 AND p.held_reason IS NULL)
           AS day_no,
       (SELECT min(p.day) FROM dispatcher.warmup_days p WHERE p.account = $1 AND p.taken > 0)
           AS first_day
FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS today) t
LEFT JOIN dispatcher.warmup_days w ON w.account = $1 AND w.day = t.today;

-- name: warmup_lock_day
SELECT day FROM dispatcher.warmup_days
WHERE account = $1 AND day = (now() AT TIME ZONE 'UTC')::date FOR UPDATE;

-- name: warmup_add
UPDATE dispatcher.warmup_days SET taken = greatest(0, taken + $2) WHERE day = $1 AND account = $3;

-- name: warmup_hold
-- A spike: today does not advance the ramp. True only for the first hold of the day.
UPDATE dispatcher.warmup_days SET held_reason = $1, held_at = now()
WHERE account = $2 AND day = (now() AT TIME ZONE 'UTC')::date AND held_reason IS NULL
RETURNING day;

-- name: warmup_days_held
SELECT count(*) FROM dispatcher.warmup_days WHERE held_reason IS NOT NULL AND account = $1;

-- What the dashboard reads besides /metrics' shared facts (dispatcher/obs/ui/handlers.py).

-- name: recent_failures
-- Mail that failed in the last $1 seconds by outcome, with the latest error text: a range of
-- the partial index jobs_finished (state, updated_at), so the cost follows recent failures.
SELECT coalesce(last_outcome, 'unknown') AS kind, count(*) AS n, max(updated_at) AS last_at,
       (array_agg(last_error ORDER BY updated_at DESC))[1] AS example
FROM dispatcher.jobs
WHERE state = 'failed' AND updated_at > now() - make_interval(secs => $1)
GROUP BY 1
ORDER BY last_at DESC
LIMIT 20;

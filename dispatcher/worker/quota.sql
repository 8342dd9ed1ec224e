-- The shared daily quota (migration 0009): one reader of GetSendQuota, everyone's sends counted.
-- One reading per SES account (migration 0021): $account below is the account's name.

-- name: quota_sync
-- Record what worker $1 sent per epoch ($2 epochs, $3 recipients), and read the published
-- reading with the recipients every other worker sent since it was begun (a data-modifying
-- CTE runs whether or not the query reads it; ours are excluded from the sum anyway); $4:
-- the account.
WITH mine AS (
    INSERT INTO dispatcher.quota_spend (owner, epoch, sent, account)
    SELECT $1, e, s, $4 FROM unnest($2::bigint[], $3::double precision[]) AS t(e, s)
    ON CONFLICT (owner, epoch) DO UPDATE SET sent = EXCLUDED.sent
)
SELECT q.epoch, q.polling_epoch, q.max_24_hour_send, q.max_send_rate, q.sent_last_24_hours,
       extract(epoch FROM now() - q.read_at)::float8 AS age, q.leader,
       (SELECT coalesce(sum(sp.sent), 0)::float8 FROM dispatcher.quota_spend sp
        WHERE sp.epoch >= q.epoch AND sp.owner <> $1 AND sp.account = q.account) AS others_sent
FROM dispatcher.send_quota q
WHERE q.account = $4;

-- name: quota_begin
-- The leader $1 is about to read GetSendQuota: from now on workers count into the next epoch
-- (told at once on dispatcher_quota; each one answers with a quota_spend row for that epoch).
WITH begun AS (
    UPDATE dispatcher.send_quota SET polling_epoch = epoch + 1, leader = $1
    WHERE account = $2
    RETURNING polling_epoch
)
SELECT polling_epoch, pg_notify('dispatcher_quota', polling_epoch::text) FROM begun;

-- name: quota_unmoved
-- Live workers of account $2 (heartbeat within their lease) not counting into epoch $1 yet.
SELECT count(*) FROM dispatcher.workers w
WHERE w.heartbeat_at >= now() - make_interval(secs => w.lease_seconds) AND w.account = $2
  AND NOT EXISTS (
      SELECT 1 FROM dispatcher.quota_spend sp WHERE sp.owner = w.id AND sp.epoch = $1
  );

-- name: quota_publish
-- The reading for epoch $2 arrived: publish it (unless a newer one already was) and forget the
-- sends it includes (those counted into earlier epochs), and the pending sends ($6 = the
-- pending epoch) of workers that are gone: a dead worker's sends on the wire reached SES long
-- before this reading, or never will.
WITH published AS (
    UPDATE dispatcher.send_quota
    SET epoch = $2, max_24_hour_send = $3, max_send_rate = $4, sent_last_24_hours = $5,
        read_at = now(), leader = $1
    WHERE epoch < $2 AND account = $7
    RETURNING epoch
), pruned AS (
    DELETE FROM dispatcher.quota_spend sp
    WHERE sp.account = $7
      AND (sp.epoch < (SELECT epoch FROM published)
           OR (sp.epoch = $6
               AND NOT EXISTS (SELECT 1 FROM dispatcher.workers w WHERE w.id = sp.owner)))
    RETURNING 1
)
SELECT (SELECT count(*) FROM published) AS published, (SELECT count(*) FROM pruned) AS pruned;

-- name: quota_published
-- The reading published within the last $1 seconds, if any: what a starting worker takes over
-- instead of asking SES (GetSendQuota is answered once a second for the whole account).
SELECT max_24_hour_send, max_send_rate, sent_last_24_hours FROM dispatcher.send_quota
WHERE max_24_hour_send IS NOT NULL AND read_at >= now() - make_interval(secs => $1)
  AND account = $2;

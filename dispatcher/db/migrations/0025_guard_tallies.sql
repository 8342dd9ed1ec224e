-- Issue 19 (the guard's reads grew with volume): the reputation guard's numbers are kept as mail
-- is sent and as feedback arrives, so a check costs O(buckets) instead of a scan of every job
-- sent in the window (86 M rows at 1,000/s for a day, every 2 s in every process).
-- Written in the transaction that changes what they count: the settle that marks jobs sent,
-- resolve_unknown (an operator's "sent"), message_undelivered (sent -> failed), the processing
-- of an event and the late linking of tagless events (dispatcher.feedback). Retention does not
-- touch them: pruned mail was still sent, and its campaign's totals stay (campaign_pruned keeps
-- the report's per-state numbers).
-- Rows are sharded (dispatcher.tally_shard: the backend's pid modulo 16) so concurrent
-- settles of several processes do not queue on one row; the guard folds the shards of buckets
-- older than two minutes into shard 0 and deletes buckets older than it can ask for.

-- Per account and minute: recipients sent, hard bounces, complaints; and deliveries and
-- bounces of any type, which the metrics' feedback counts read (dispatcher/obs/metrics.sql).
-- account '': feedback tied to no job (it counts for the default account, whichever that is
-- when it is read).
CREATE TABLE dispatcher.guard_account_tally (
    bucket timestamptz NOT NULL,  -- the minute (dispatcher.minute_of) it happened in
    account text NOT NULL,
    shard smallint NOT NULL,
    sent bigint NOT NULL DEFAULT 0,
    bounced bigint NOT NULL DEFAULT 0,
    complained bigint NOT NULL DEFAULT 0,
    delivered bigint NOT NULL DEFAULT 0,
    bounced_any bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, account, shard)
) WITH (fillfactor = 70);
-- The rows still to fold (few: the last minutes').
CREATE INDEX guard_account_tally_unfolded ON dispatcher.guard_account_tally (bucket)
    WHERE shard <> 0;

-- Per campaign, over its life: recipients sent, deliveries, hard and all bounces, complaints.
CREATE TABLE dispatcher.guard_campaign_tally (
    campaign_id bigint NOT NULL,
    shard smallint NOT NULL,
    sent bigint NOT NULL DEFAULT 0,
    delivered bigint NOT NULL DEFAULT 0,
    bounced bigint NOT NULL DEFAULT 0,
    bounced_any bigint NOT NULL DEFAULT 0,
    complained bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, shard)
) WITH (fillfactor = 70);

-- The minute a time is in, whatever the session's time zone. STABLE (as extract() on a
-- timestamptz is), so that Postgres inlines it: a SQL function it cannot inline costs ~0.1 ms
-- of executor start-up in every statement that calls it.
CREATE FUNCTION dispatcher.minute_of(t timestamptz) RETURNS timestamptz
    LANGUAGE sql STABLE
    AS $$
SELECT to_timestamp(floor(extract(epoch FROM t) / 60) * 60)
$$;

-- The counter row this session adds to: concurrent sessions mostly hit different rows.
CREATE FUNCTION dispatcher.tally_shard() RETURNS smallint
    LANGUAGE sql STABLE
    AS $$
SELECT (pg_backend_pid() % 16)::smallint
$$;

-- Backfill: the numbers the guard read from the rows until now.
INSERT INTO dispatcher.guard_account_tally (bucket, account, shard, sent, bounced, complained,
                                            delivered, bounced_any)
SELECT bucket, account, 0, coalesce(sum(sent), 0), coalesce(sum(bounced), 0),
       coalesce(sum(complained), 0), coalesce(sum(delivered), 0), coalesce(sum(bounced_any), 0)
FROM (SELECT dispatcher.minute_of(j.sent_at) AS bucket, j.account,
             sum(j.recipients)::bigint AS sent, 0::bigint AS bounced, 0::bigint AS complained,
             0::bigint AS delivered, 0::bigint AS bounced_any
      FROM dispatcher.jobs j
      WHERE j.state = 'sent' AND j.sent_at IS NOT NULL
      GROUP BY 1, 2
      UNION ALL
      SELECT dispatcher.minute_of(re.occurred_at), coalesce(j.account, ''), 0,
             count(*) FILTER (WHERE re.kind = 'bounce' AND re.bounce_type = 'Permanent'),
             count(*) FILTER (WHERE re.kind = 'complaint'),
             count(*) FILTER (WHERE re.kind = 'delivery'),
             count(*) FILTER (WHERE re.kind = 'bounce')
      FROM dispatcher.recipient_events re
      JOIN dispatcher.events e ON e.id = re.event_id
      LEFT JOIN dispatcher.jobs j ON j.id = e.message_id
      WHERE re.kind IN ('bounce', 'complaint', 'delivery')
      GROUP BY 1, 2) x
GROUP BY 1, 2;

INSERT INTO dispatcher.guard_campaign_tally (campaign_id, shard, sent, delivered, bounced,
                                             bounced_any, complained)
SELECT campaign_id, 0, coalesce(sum(sent), 0), coalesce(sum(delivered), 0),
       coalesce(sum(bounced), 0), coalesce(sum(bounced_any), 0), coalesce(sum(complained), 0)
FROM (SELECT j.campaign_id, sum(j.recipients)::bigint AS sent, 0::bigint AS delivered,
             0::bigint AS bounced, 0::bigint AS bounced_any, 0::bigint AS complained
      FROM dispatcher.jobs j
      WHERE j.state = 'sent' AND j.campaign_id IS NOT NULL
      GROUP BY 1
      UNION ALL
      SELECT mf.campaign_id, 0,
             count(*) FILTER (WHERE re.kind = 'delivery'),
             count(*) FILTER (WHERE re.kind = 'bounce' AND re.bounce_type = 'Permanent'),
             count(*) FILTER (WHERE re.kind = 'bounce'),
             count(*) FILTER (WHERE re.kind = 'complaint')
      FROM dispatcher.message_feedback mf
      JOIN dispatcher.events e ON e.message_id = mf.message_id
      JOIN dispatcher.recipient_events re ON re.event_id = e.id
      WHERE mf.campaign_id IS NOT NULL
      GROUP BY 1
      UNION ALL
      SELECT campaign_id, sum(recipients) FILTER (WHERE state = 'sent'), sum(delivered),
             sum(bounced), sum(bounced_any), sum(complained)
      FROM dispatcher.campaign_pruned
      GROUP BY 1) x
GROUP BY 1;

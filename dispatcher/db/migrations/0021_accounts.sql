-- Issue 18 item 4: several SES accounts and regions. Every job names the account that sends it
-- (decided here, at insert, whichever way the mail enters); each account has its own rate share,
-- quota reading and leader, all in this one database. Existing rows are account 'default',
-- the name of the [ses] section's one account.

-- The configured accounts (the daemon writes them at start, dispatcher.accounts.store); the
-- one at position 0 sends what no route matches. paused_at: SES paused or suspended it (a
-- route's fallback account takes its mail meanwhile).
CREATE TABLE dispatcher.accounts (
    name text PRIMARY KEY,
    position int NOT NULL,
    paused_at timestamptz,
    paused_reason text
);
INSERT INTO dispatcher.accounts (name, position) VALUES ('default', 0);

-- The [[routes]] rules in order; an empty array is no condition. tags: "name=value".
CREATE TABLE dispatcher.routes (
    position int PRIMARY KEY,
    from_domains text[] NOT NULL DEFAULT '{}',
    campaigns text[] NOT NULL DEFAULT '{}',
    key_names text[] NOT NULL DEFAULT '{}',
    tags text[] NOT NULL DEFAULT '{}',
    account text NOT NULL,
    fallback text
);

-- The account that sends the job, and the one it may go to while that one is paused.
ALTER TABLE dispatcher.jobs ADD COLUMN account text NOT NULL DEFAULT 'default';
ALTER TABLE dispatcher.jobs ADD COLUMN fallback text;
ALTER TABLE dispatcher.workers ADD COLUMN account text NOT NULL DEFAULT 'default';

-- A worker claims only its account's mail: the ready indexes lead with the account, so the
-- claim (and its skip through the due campaigns) reads only that account's part.
DROP INDEX dispatcher.jobs_ready_plain;
CREATE INDEX jobs_ready_plain ON dispatcher.jobs (account, priority DESC, run_at, id)
    WHERE state = 'queued' AND campaign_id IS NULL;
DROP INDEX dispatcher.jobs_ready_campaign;
CREATE INDEX jobs_ready_campaign ON dispatcher.jobs (account, campaign_id, priority DESC, run_at, id)
    WHERE state = 'queued' AND campaign_id IS NOT NULL;

-- One quota reading per account (was one row, id 1); a worker's sends count for its account.
ALTER TABLE dispatcher.send_quota ADD COLUMN account text NOT NULL DEFAULT 'default';
ALTER TABLE dispatcher.send_quota DROP CONSTRAINT send_quota_pkey;
ALTER TABLE dispatcher.send_quota DROP CONSTRAINT send_quota_id_check;
ALTER TABLE dispatcher.send_quota DROP COLUMN id;
ALTER TABLE dispatcher.send_quota ADD PRIMARY KEY (account);
ALTER TABLE dispatcher.quota_spend ADD COLUMN account text NOT NULL DEFAULT 'default';

-- The guard's hold (`guard.account_action = "all"`) is per account: one row per held account.
ALTER TABLE dispatcher.sending_hold ADD COLUMN account text NOT NULL DEFAULT 'default';
ALTER TABLE dispatcher.sending_hold DROP CONSTRAINT sending_hold_pkey;
ALTER TABLE dispatcher.sending_hold DROP COLUMN singleton;
ALTER TABLE dispatcher.sending_hold ADD PRIMARY KEY (account);

-- Each account ramps up on its own: a new account (or region) starts at day 1.
ALTER TABLE dispatcher.warmup_days ADD COLUMN account text NOT NULL DEFAULT 'default';
ALTER TABLE dispatcher.warmup_days DROP CONSTRAINT warmup_days_pkey;
ALTER TABLE dispatcher.warmup_days ADD PRIMARY KEY (account, day);

-- Which account sends message $1, and its fallback: the first route whose conditions all hold
-- (dispatcher.accounts.routing is the same in Python), else the default account. A routed
-- account that is paused now gives way to the route's fallback at once. One statement (the
-- trigger runs it for every job inserted while routing is on; plpgsql keeps its plan).
CREATE FUNCTION dispatcher.route_of(message_id bigint, OUT account text, OUT fallback text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
SELECT CASE WHEN p.paused THEN r.fallback
            ELSE coalesce(r.account,
                          (SELECT a.name FROM dispatcher.accounts a ORDER BY a.position LIMIT 1))
       END,
       CASE WHEN p.paused THEN NULL ELSE r.fallback END
INTO route_of.account, route_of.fallback
FROM dispatcher.messages msg
CROSS JOIN LATERAL (
    SELECT lower(substring(msg.from_addr FROM '@([^@<>\s"]+)>?\s*$')) AS domain
) f
LEFT JOIN dispatcher.api_keys k ON k.id = msg.key_id
LEFT JOIN dispatcher.campaigns c ON c.id = msg.campaign_id
LEFT JOIN LATERAL (
    SELECT r.account, r.fallback FROM dispatcher.routes r
    WHERE (r.from_domains = '{}' OR EXISTS (
              SELECT 1 FROM unnest(r.from_domains) d
              WHERE d = f.domain OR (d LIKE '*.%' AND f.domain LIKE '%' || substr(d, 2))))
      AND (r.campaigns = '{}' OR c.id::text = ANY (r.campaigns) OR c.name = ANY (r.campaigns))
      AND (r.key_names = '{}' OR k.name = ANY (r.key_names))
      AND (r.tags = '{}' OR EXISTS (
              SELECT 1 FROM unnest(r.tags) t
              WHERE msg.tags ->> split_part(t, '=', 1) = substr(t, strpos(t, '=') + 1)))
    ORDER BY r.position
    LIMIT 1
) r ON true
LEFT JOIN LATERAL (
    SELECT true AS paused FROM dispatcher.accounts a
    WHERE r.fallback IS NOT NULL AND a.name = r.account AND a.paused_at IS NOT NULL
) p ON true
WHERE msg.id = route_of.message_id;
END
$$;

CREATE FUNCTION dispatcher.route_job() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT r.account, r.fallback INTO NEW.account, NEW.fallback
    FROM dispatcher.route_of(NEW.id) r;
    RETURN NEW;
END
$$;

-- Disabled while there is nothing to decide (one account named 'default', no routes): the
-- column's default is then the answer, and enqueueing costs nothing more than before. The
-- daemon enables it when it writes accounts or routes that need it.
CREATE TRIGGER jobs_route BEFORE INSERT ON dispatcher.jobs
    FOR EACH ROW EXECUTE FUNCTION dispatcher.route_job();
ALTER TABLE dispatcher.jobs DISABLE TRIGGER jobs_route;

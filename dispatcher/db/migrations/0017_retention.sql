-- Issue 17 item 5: retention. Finished mail loses its content after a while and its rows later
-- (dispatcher.retention). Pruning deletes in small batches found through indexes, so at a
-- million messages a day it stays cheap without partitioning the queue's tables (README,
-- "Retention", gives the numbers).

-- Pruning empties and deletes about a day of rows a day: vacuumed at 2 % dead rather than
-- the default 20 %, the space is reused within a day or two instead of piling up for weeks.
ALTER TABLE dispatcher.messages SET (autovacuum_vacuum_scale_factor = 0.02,
                                     autovacuum_analyze_scale_factor = 0.02);

-- When a message's bodies, raw MIME and campaign variables were removed (NULL: still there).
ALTER TABLE dispatcher.messages ADD COLUMN content_pruned_at timestamptz;

-- Finished jobs by age, oldest first at the head of an index: sent ones through jobs_sent_at
-- (aged by sent_at), failed and cancelled ones through this one (aged by updated_at, which
-- changes only together with state, itself in other indexes: no update that was HOT stops
-- being HOT). Sent mail, most of it, gets no second index entry on the settle path.
CREATE INDEX jobs_finished ON dispatcher.jobs (state, updated_at)
    WHERE state IN ('failed', 'cancelled');

-- Sent mail resolved from in doubt before this migration has no sent_at: its resolution time.
UPDATE dispatcher.jobs SET sent_at = updated_at WHERE state = 'sent' AND sent_at IS NULL;

-- Events tied to no message (and so to no row that could take them along), by age.
CREATE INDEX events_untied_age ON dispatcher.events (received_at) WHERE message_id IS NULL;

-- What a campaign's pruned rows counted: its status, report and guard add these to the rows
-- still there, so a campaign's totals survive the pruning of its mail.
CREATE TABLE dispatcher.campaign_pruned (
    campaign_id bigint NOT NULL REFERENCES dispatcher.campaigns (id) ON DELETE CASCADE,
    state dispatcher.job_state NOT NULL,
    outcome text NOT NULL DEFAULT '',  -- the job's last_outcome ('' for none)
    messages bigint NOT NULL DEFAULT 0,
    recipients bigint NOT NULL DEFAULT 0,
    delivered bigint NOT NULL DEFAULT 0,
    bounced bigint NOT NULL DEFAULT 0,  -- permanent (hard) bounces
    bounced_any bigint NOT NULL DEFAULT 0,
    complained bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, state, outcome)
);

-- Up to when the content of finished mail in a state was pruned: the next run starts there
-- instead of walking past every row pruned before.
CREATE TABLE dispatcher.retention_marks (
    state dispatcher.job_state PRIMARY KEY,
    content_done_until timestamptz NOT NULL
);

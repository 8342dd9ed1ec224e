-- The durable queue: content written once (messages), a narrow hot table (jobs), live workers.
CREATE SCHEMA IF NOT EXISTS dispatcher;

CREATE TYPE dispatcher.job_state AS ENUM
    ('queued', 'claimed', 'in_flight', 'sent', 'failed', 'unknown', 'cancelled');

CREATE SEQUENCE dispatcher.message_id_seq;

-- Written once at enqueue, never updated: keeps the hot table narrow.
CREATE TABLE dispatcher.messages (
    id                bigint PRIMARY KEY DEFAULT nextval('dispatcher.message_id_seq'),
    idempotency_key   text UNIQUE,
    from_addr         text NOT NULL,
    to_addrs          text[] NOT NULL DEFAULT '{}',
    cc_addrs          text[] NOT NULL DEFAULT '{}',
    bcc_addrs         text[] NOT NULL DEFAULT '{}',
    reply_to          text[] NOT NULL DEFAULT '{}',
    subject           text NOT NULL DEFAULT '',
    text_body         text,
    html_body         text,
    raw               bytea,
    configuration_set text,
    tags              jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- One row per message, updated on every state change. Only the two partial indexes below
-- touch it, so most updates (lease token, outcome, timestamps) stay HOT.
CREATE TABLE dispatcher.jobs (
    id             bigint PRIMARY KEY REFERENCES dispatcher.messages (id) ON DELETE CASCADE,
    state          dispatcher.job_state NOT NULL DEFAULT 'queued',
    priority       smallint NOT NULL DEFAULT 0,
    run_at         timestamptz NOT NULL DEFAULT now(),
    recipients     smallint NOT NULL,
    attempts       smallint NOT NULL DEFAULT 0,   -- attempts used up by real failures
    scheduled      boolean NOT NULL DEFAULT false, -- run_at was set by the sender (send_after)
    lease_owner    uuid,
    lease_token    bigint,                         -- fencing token: new on every claim
    updated_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    ses_message_id text,
    last_outcome   text,
    last_error     text
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

CREATE INDEX jobs_ready ON dispatcher.jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_leased ON dispatcher.jobs (lease_owner) WHERE state IN ('claimed', 'in_flight');
CREATE INDEX jobs_unknown ON dispatcher.jobs (id) WHERE state = 'unknown';

CREATE SEQUENCE dispatcher.lease_token_seq;

-- Live dispatcher processes; a job leased by a worker whose heartbeat is older than its
-- lease is recovered by any other worker.
CREATE TABLE dispatcher.workers (
    id            uuid PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    lease_seconds real NOT NULL
);

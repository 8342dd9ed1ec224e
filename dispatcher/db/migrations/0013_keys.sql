-- Issue 16: the keys applications use at the doors (SMTP AUTH, HTTP Basic, AWS Signature V4).
-- A key's secret is never stored: secret_sha256 checks a password-style login, and the SES-
-- compatible endpoint re-derives the secret from the master key outside the database
-- (dispatcher.doors.keys). A key is revoked, never deleted: every message records which key
-- queued it.
CREATE TABLE dispatcher.api_keys (
    id text PRIMARY KEY,
    name text NOT NULL,
    secret_sha256 bytea NOT NULL,
    senders text[] NOT NULL DEFAULT '{}',  -- patterns like *@shop.example; empty: any sender
    max_priority smallint,                 -- NULL: any priority
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

ALTER TABLE dispatcher.messages ADD COLUMN key_id text REFERENCES dispatcher.api_keys (id);

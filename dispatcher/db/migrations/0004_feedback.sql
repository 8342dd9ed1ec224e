-- The feedback loop: every SES event received through SNS, kept raw and parsed (deduplicated
-- by SNS MessageId), the recipients each one names, and the delivery/bounce/complaint state
-- per message. An event is recorded first (the HTTP answer waits only for that) and processed
-- after: processed_at is set in the same transaction as its effects, so it happens once.
CREATE TABLE dispatcher.events (
    id             bigserial PRIMARY KEY,
    sns_message_id text NOT NULL UNIQUE,
    topic_arn      text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    kind           text NOT NULL,  -- bounce, complaint, delivery, other, malformed
    event_type     text,           -- as SES wrote it (Bounce, Send, ...)
    ses_message_id text,
    message_id     bigint,         -- ours (the dispatcher_id tag); no FK: messages are pruned
    occurred_at    timestamptz,
    raw            jsonb NOT NULL, -- the SNS body as received
    parsed         jsonb,          -- null when the SES event could not be read
    processed_at   timestamptz
);
CREATE INDEX events_unprocessed ON dispatcher.events (id) WHERE processed_at IS NULL;
CREATE INDEX events_message ON dispatcher.events (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX events_ses_message ON dispatcher.events (ses_message_id);

-- One row per recipient an event names (bouncedRecipients / complainedRecipients / delivered).
CREATE TABLE dispatcher.recipient_events (
    event_id       bigint NOT NULL REFERENCES dispatcher.events (id) ON DELETE CASCADE,
    address        text NOT NULL,  -- lower-cased
    kind           text NOT NULL,
    bounce_type    text,
    bounce_subtype text,
    status         text,
    diagnostic     text,
    occurred_at    timestamptz NOT NULL,
    PRIMARY KEY (event_id, address)
);
CREATE INDEX recipient_events_address ON dispatcher.recipient_events (address, occurred_at);

-- What became of each message after SES accepted it: recipients delivered, bounced, complained.
CREATE TABLE dispatcher.message_feedback (
    message_id    bigint PRIMARY KEY,
    campaign_id   bigint,
    delivered     integer NOT NULL DEFAULT 0,
    bounced       integer NOT NULL DEFAULT 0,
    complained    integer NOT NULL DEFAULT 0,
    last_event_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_feedback_campaign ON dispatcher.message_feedback (campaign_id)
    WHERE campaign_id IS NOT NULL;

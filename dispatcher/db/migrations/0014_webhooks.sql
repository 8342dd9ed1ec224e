-- Webhooks out (README "Webhooks"): the endpoints the daemons POST to, and an outbox of events
-- per endpoint that triggers write in the transaction of the change itself, so every way in
-- (Python, the SQL function dispatcher.enqueue, the CLI, campaigns, later doors) and every state
-- change is covered, and an event exists if and only if its change committed. The triggers are
-- per statement with transition tables (one call for a 10,000-row statement) and return at once
-- while no endpoint subscribes to what they would write.

-- Synced from `[[webhooks]]` when a daemon starts; the secret stays in the config, never here.
CREATE TABLE dispatcher.webhook_endpoints (
    id        serial PRIMARY KEY,
    url       text NOT NULL UNIQUE,
    events    text[] NOT NULL DEFAULT '{}',  -- subscribed; empty once no longer configured
    synced_at timestamptz NOT NULL DEFAULT now()
);

-- Order of the events of one message (per endpoint), taken when the event is written. SES's
-- events are written without one (null) and placed by the sender loop (webhooks.sql
-- order_late): after the record of their send (SES can answer the send's event before the
-- settle commits), after earlier events of the same SES message that are not tied to it yet
-- (tagless identity notifications, tied by feedback.sql events_link_late), and by when they
-- happened rather than when they arrived (SNS does not keep SES's order).
CREATE SEQUENCE dispatcher.webhook_order_seq;

CREATE TABLE dispatcher.webhook_deliveries (
    id          bigserial PRIMARY KEY,  -- the event id receivers see; the same on every retry
    endpoint_id integer NOT NULL REFERENCES dispatcher.webhook_endpoints (id) ON DELETE CASCADE,
    type        text NOT NULL,
    message_id  bigint,                 -- null for events about no one message (unsubscribed)
    created_at  timestamptz NOT NULL DEFAULT now(),
    data        jsonb NOT NULL,
    seq         bigint DEFAULT nextval('dispatcher.webhook_order_seq'),
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'given_up')),
    attempts    integer NOT NULL DEFAULT 0,  -- POSTs begun; the fencing token of their result
    next_at     timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,                 -- a POST is under way until then
    last_error  text,
    done_at     timestamptz
);
CREATE INDEX webhook_deliveries_due ON dispatcher.webhook_deliveries (endpoint_id, next_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_chain
    ON dispatcher.webhook_deliveries (endpoint_id, message_id, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_unordered ON dispatcher.webhook_deliveries (id)
    WHERE seq IS NULL;
CREATE INDEX webhook_deliveries_done ON dispatcher.webhook_deliveries (done_at)
    WHERE state <> 'pending';

-- A time as receivers read it: UTC, ISO 8601, whatever the session's TimeZone.
CREATE FUNCTION dispatcher.webhook_time(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- What every event about a message carries (null fields when the message was pruned).
CREATE FUNCTION dispatcher.webhook_message(campaign_id bigint, idempotency_key text,
                                           from_addr text, to_addrs text[], cc_addrs text[],
                                           bcc_addrs text[], subject text, tags jsonb)
    RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT jsonb_build_object('campaign_id', campaign_id, 'idempotency_key', idempotency_key,
                              'from', from_addr, 'to', to_jsonb(coalesce(to_addrs, '{}')),
                              'cc', to_jsonb(coalesce(cc_addrs, '{}')),
                              'bcc', to_jsonb(coalesce(bcc_addrs, '{}')), 'subject', subject,
                              'tags', coalesce(tags, '{}'))
$$;

-- queued: a message entered the queue (any door; campaign recipients included).
CREATE FUNCTION dispatcher.webhook_jobs_inserted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM dispatcher.webhook_endpoints WHERE 'queued' = ANY (events)) THEN
        RETURN NULL;  -- nobody listens: the hot path pays one look at a tiny table
    END IF;
    INSERT INTO dispatcher.webhook_deliveries (endpoint_id, type, message_id, data)
    SELECT e.id, 'queued', j.id,
           dispatcher.webhook_message(m.campaign_id, m.idempotency_key, m.from_addr, m.to_addrs,
                                      m.cc_addrs, m.bcc_addrs, m.subject, m.tags)
           || jsonb_build_object('priority', j.priority,
                                 'send_after', CASE WHEN j.scheduled
                                                    THEN dispatcher.webhook_time(j.run_at) END)
    FROM new_jobs j
    CROSS JOIN dispatcher.webhook_endpoints e
    LEFT JOIN dispatcher.messages m ON m.id = j.id
    WHERE 'queued' = ANY (e.events)
    ORDER BY j.id, e.id;
    RETURN NULL;
END
$$;

-- sent, failed, in_doubt (state unknown), cancelled: the job entered that state.
CREATE FUNCTION dispatcher.webhook_jobs_updated() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM dispatcher.webhook_endpoints
                   WHERE events && '{sent,failed,in_doubt,cancelled}'::text[]) THEN
        RETURN NULL;
    END IF;
    INSERT INTO dispatcher.webhook_deliveries (endpoint_id, type, message_id, data)
    SELECT e.id, c.type, c.id,
           dispatcher.webhook_message(m.campaign_id, m.idempotency_key, m.from_addr, m.to_addrs,
                                      m.cc_addrs, m.bcc_addrs, m.subject, m.tags)
           || jsonb_build_object('ses_message_id', c.ses_message_id, 'attempts', c.attempts,
                                 'outcome', c.last_outcome, 'error', c.last_error,
                                 'sent_at', dispatcher.webhook_time(c.sent_at))
    FROM (SELECT n.*, CASE n.state WHEN 'unknown' THEN 'in_doubt' ELSE n.state::text END AS type
          FROM new_jobs n JOIN old_jobs o ON o.id = n.id
          WHERE n.state IS DISTINCT FROM o.state
            AND n.state IN ('sent', 'failed', 'unknown', 'cancelled')) c
    JOIN dispatcher.webhook_endpoints e ON c.type = ANY (e.events)
    LEFT JOIN dispatcher.messages m ON m.id = c.id
    ORDER BY c.id, e.id;
    RETURN NULL;
END
$$;

-- delivered, bounced, complained, delayed: an SES event of a message was processed, or tied to
-- its message later (feedback.sql events_link_late).
CREATE FUNCTION dispatcher.webhook_events_updated() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM dispatcher.webhook_endpoints
                   WHERE events && '{delivered,bounced,complained,delayed}'::text[]) THEN
        RETURN NULL;
    END IF;
    INSERT INTO dispatcher.webhook_deliveries (endpoint_id, type, message_id, data, seq)
    SELECT e.id, c.type, c.message_id,
           dispatcher.webhook_message(m.campaign_id, m.idempotency_key, m.from_addr, m.to_addrs,
                                      m.cc_addrs, m.bcc_addrs, m.subject, m.tags)
           || jsonb_build_object('ses_message_id', c.ses_message_id,
                                 'event_type', c.event_type,
                                 'occurred_at', dispatcher.webhook_time(c.occurred_at),
                                 'recipients', coalesce(c.parsed -> 'recipients', '[]'),
                                 'bounce_type', c.parsed -> 'bounce_type',
                                 'bounce_subtype', c.parsed -> 'bounce_subtype',
                                 'complaint_type', c.parsed -> 'complaint_type',
                                 'detail', c.parsed -> 'detail'),
           NULL  -- placed by the sender loop (see webhook_order_seq)
    FROM (SELECT n.*, CASE n.kind WHEN 'delivery' THEN 'delivered' WHEN 'bounce' THEN 'bounced'
                                  WHEN 'complaint' THEN 'complained' ELSE 'delayed' END AS type
          FROM new_events n JOIN old_events o ON o.id = n.id
          WHERE n.message_id IS NOT NULL AND n.processed_at IS NOT NULL
            AND (o.processed_at IS NULL OR o.message_id IS NULL)
            AND n.kind IN ('delivery', 'bounce', 'complaint', 'delivery_delay')) c
    JOIN dispatcher.webhook_endpoints e ON c.type = ANY (e.events)
    LEFT JOIN dispatcher.messages m ON m.id = c.message_id
    ORDER BY coalesce(c.occurred_at, c.received_at), c.id, e.id;
    RETURN NULL;
END
$$;

-- unsubscribed: an address was suppressed for a reason that says so (`suppression add --reason
-- unsubscribed`, or a later unsubscribe door). Not about one message: no order to keep.
CREATE FUNCTION dispatcher.webhook_suppressions_inserted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM dispatcher.webhook_endpoints
                   WHERE 'unsubscribed' = ANY (events)) THEN
        RETURN NULL;
    END IF;
    INSERT INTO dispatcher.webhook_deliveries (endpoint_id, type, message_id, data)
    SELECT e.id, 'unsubscribed', NULL,
           jsonb_build_object('address', s.address, 'reason', s.reason,
                              'suppressed_at', dispatcher.webhook_time(s.created_at))
    FROM new_suppressions s
    CROSS JOIN dispatcher.webhook_endpoints e
    WHERE 'unsubscribed' = ANY (e.events) AND s.reason ~* 'unsubscri'
    ORDER BY s.address, e.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_jobs_inserted AFTER INSERT ON dispatcher.jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION dispatcher.webhook_jobs_inserted();
CREATE TRIGGER webhook_jobs_updated AFTER UPDATE ON dispatcher.jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION dispatcher.webhook_jobs_updated();
CREATE TRIGGER webhook_events_updated AFTER UPDATE ON dispatcher.events
    REFERENCING OLD TABLE AS old_events NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION dispatcher.webhook_events_updated();
CREATE TRIGGER webhook_suppressions_inserted AFTER INSERT ON dispatcher.suppressions
    REFERENCING NEW TABLE AS new_suppressions
    FOR EACH STATEMENT EXECUTE FUNCTION dispatcher.webhook_suppressions_inserted();

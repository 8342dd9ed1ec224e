-- Campaigns: a template and a recipient list. Each recipient is a message (its variables kept,
-- its content rendered at send time) with a job that waits in state 'held' until the campaign
-- runs; pausing moves the campaign's waiting jobs back to 'held' in one statement.
ALTER TYPE dispatcher.job_state ADD VALUE IF NOT EXISTS 'held';

CREATE TYPE dispatcher.campaign_state AS ENUM
    ('draft', 'running', 'paused', 'cancelled', 'finished');

CREATE TABLE dispatcher.campaigns (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL,
    state             dispatcher.campaign_state NOT NULL DEFAULT 'draft',
    from_addr         text NOT NULL,
    reply_to          text[] NOT NULL DEFAULT '{}',
    configuration_set text,
    tags              jsonb NOT NULL DEFAULT '{}'::jsonb,
    subject           text NOT NULL,
    html              text NOT NULL,
    text_body         text,
    unsubscribe_url   text,
    send_at           timestamptz,
    priority          smallint NOT NULL DEFAULT -10,  -- below transactional mail (0)
    recipients        integer NOT NULL DEFAULT 0,
    pause_reason      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE dispatcher.messages
    ADD COLUMN campaign_id bigint REFERENCES dispatcher.campaigns (id) ON DELETE CASCADE,
    ADD COLUMN variables   jsonb;

ALTER TABLE dispatcher.jobs ADD COLUMN campaign_id bigint;
CREATE INDEX jobs_campaign ON dispatcher.jobs (campaign_id, state) WHERE campaign_id IS NOT NULL;

-- Addresses never to be mailed again (hard bounces, complaints, by hand). Filled by the
-- feedback loop; campaigns skip these at import.
CREATE TABLE dispatcher.suppressions (
    address    text PRIMARY KEY,  -- lower-cased
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The state a job goes back to when it is requeued (retry, release, recovery): campaign mail
-- of a campaign that is not running goes back to 'held' (or 'cancelled'), so a send that was
-- in flight while its campaign was paused cannot slip back into the queue.
CREATE FUNCTION dispatcher.requeue_state(campaign bigint) RETURNS dispatcher.job_state
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s dispatcher.campaign_state;
BEGIN
    IF campaign IS NULL THEN
        RETURN 'queued';
    END IF;
    SELECT state INTO s FROM dispatcher.campaigns WHERE id = campaign;
    IF s IN ('draft', 'paused') THEN
        RETURN 'held';
    ELSIF s = 'cancelled' THEN
        RETURN 'cancelled';
    END IF;
    RETURN 'queued';
END
$$;

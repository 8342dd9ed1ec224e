-- Issue 19 item 5: a campaign's list is stored compactly at import (one narrow row per
-- recipient, COPY in binary) and becomes message + job rows only as the campaign is sent
-- (dispatcher.campaigns.materialise), a chunk per transaction that moves the rows out of this
-- table: a recipient is either here or a message, never both, never neither.
-- No foreign key: its per-row check would cost the import more than the row itself; campaigns
-- are never deleted, and the rows of one are removed with it by the materialiser or retention.
CREATE TABLE dispatcher.campaign_recipients (
    campaign_id bigint NOT NULL,
    line integer NOT NULL,  -- the list's line: the order, and what the import reports
    email text NOT NULL,  -- normalized (recipients.py); lower(email) is its dedupe key
    -- The values of campaigns.variable_columns in that order, each after a U+001E (a record
    -- separator: recipients.py refuses it in a field). Text, not text[] or jsonb: COPY takes
    -- text several times faster, and it is read once, when the recipient becomes a message.
    variables text NOT NULL,
    PRIMARY KEY (campaign_id, line)
);

-- The list's variable columns (the names of campaign_recipients.variables), and how many of
-- its recipients are still in campaign_recipients (not yet message + job).
ALTER TABLE dispatcher.campaigns ADD COLUMN variable_columns text[] NOT NULL DEFAULT '{}';
ALTER TABLE dispatcher.campaigns ADD COLUMN unmaterialised integer NOT NULL DEFAULT 0;

-- The state a recipient not yet materialised is counted in (status, report, metrics): the
-- state its job would have in a campaign in this state.
CREATE FUNCTION dispatcher.unmaterialised_state(campaign dispatcher.campaign_state)
RETURNS dispatcher.job_state
    LANGUAGE sql IMMUTABLE
    AS $$
SELECT CASE campaign
           WHEN 'running' THEN 'queued'::dispatcher.job_state
           WHEN 'cancelled' THEN 'cancelled'::dispatcher.job_state
           ELSE 'held'::dispatcher.job_state
       END
$$;

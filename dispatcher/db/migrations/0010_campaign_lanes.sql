-- Campaigns take turns: the claim reads the due mail outside campaigns and each campaign's due
-- mail separately (one lane each), so one index per kind of lane replaces the single one.
CREATE INDEX jobs_ready_plain ON dispatcher.jobs (priority DESC, run_at, id)
    WHERE state = 'queued' AND campaign_id IS NULL;
CREATE INDEX jobs_ready_campaign ON dispatcher.jobs (campaign_id, priority DESC, run_at, id)
    WHERE state = 'queued' AND campaign_id IS NOT NULL;
DROP INDEX dispatcher.jobs_ready;

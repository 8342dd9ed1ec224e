-- Issue 19: the claim's campaign lane offer takes a campaign's first queued jobs in the order
-- (priority DESC, run_at, id). jobs_ready_campaign (0021) keeps that order; jobs_campaign, the
-- other index the planner may pick for `campaign_id = x AND state = 'queued'`, did not, and
-- with statistics that do not know the campaign's rows yet (a table never analysed, or
-- analysed before the campaign's recipients became jobs; in a big table, one campaign's rows
-- guessed from the average) it was picked: the offer then read and sorted every queued job of
-- the campaign (26,000 ready at 3,000/s: 8-18 ms a claim of 100 instead of ~1). With the order
-- in jobs_campaign too, either index stops at the claim's limit. Its leading (campaign_id,
-- state) still serve the per-campaign counts by state.
DROP INDEX dispatcher.jobs_campaign;
CREATE INDEX jobs_campaign ON dispatcher.jobs (campaign_id, state, priority DESC, run_at, id)
    WHERE campaign_id IS NOT NULL;

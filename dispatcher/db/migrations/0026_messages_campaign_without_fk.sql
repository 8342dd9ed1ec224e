-- Issue 19: the 3,000/s campaign. The foreign key messages.campaign_id -> campaigns.id made
-- every recipient the materialiser turns into a message lock the campaign row again (FOR KEY
-- SHARE, a row trigger per message) in the transaction that already holds that row locked:
-- half of a chunk's Postgres time (26-45 us a recipient with it, 12-20 without, chunks of
-- 4,500 at 100,000 recipients). Nothing needs it for integrity: the materialiser is the only
-- writer of messages.campaign_id, and it copies the id from the campaign row it holds locked;
-- campaigns are never deleted (its ON DELETE CASCADE never ran). campaign_recipients (0022)
-- and jobs (0023) have no foreign key to campaigns for the same reason.
ALTER TABLE dispatcher.messages DROP CONSTRAINT messages_campaign_id_fkey;

-- The reputation guard's rolling counts: recipients sent in a window, hard bounces and
-- complaints in a window, and the feedback of one campaign.
CREATE INDEX jobs_sent_at ON dispatcher.jobs (sent_at) WHERE state = 'sent';
CREATE INDEX recipient_events_kind_time ON dispatcher.recipient_events (kind, occurred_at);
-- Events whose dispatcher_id tag is missing are tied to our message by SES's MessageId.
CREATE INDEX jobs_ses_message ON dispatcher.jobs (ses_message_id) WHERE ses_message_id IS NOT NULL;

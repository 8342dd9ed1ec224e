-- Events not tied to one of our messages yet (identity notifications carry no tag; their send's
-- SES MessageId may be recorded after them): the guard's every round looks at the recent ones
-- (feedback.sql events_link_late) through this index instead of reading the whole table.
CREATE INDEX events_unlinked ON dispatcher.events (received_at)
    WHERE message_id IS NULL AND ses_message_id IS NOT NULL;

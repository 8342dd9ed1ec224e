-- How a campaign's mail is made: rendered here per recipient and sent with SendEmail
-- ('render'), or sent with SendBulkEmail from an SES template, 50 recipients a call
-- ('ses_template'; the subject/html/text are then SES template syntax).
ALTER TABLE dispatcher.campaigns
    ADD COLUMN mode text NOT NULL DEFAULT 'render' CHECK (mode IN ('render', 'ses_template'));

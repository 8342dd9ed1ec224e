-- Issue 16 item 4: a message the SES-compatible endpoint took with Template content keeps the
-- SES template's name and its TemplateData; SES renders it when the dispatcher sends (the
-- template lives in the SES account, as for the application that called SendEmail).
ALTER TABLE dispatcher.messages
    ADD COLUMN template_name text,
    ADD COLUMN template_data text;

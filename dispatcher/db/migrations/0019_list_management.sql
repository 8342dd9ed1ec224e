-- Issue 18 item 6: SES v2 list management. A campaign may name a contact list (and a topic in
-- it) kept in SES: every send carries ListManagementOptions, and SES adds its own unsubscribe
-- headers and honours the contact's preferences. NULL: the dispatcher's own unsubscribe.
ALTER TABLE dispatcher.campaigns ADD COLUMN contact_list text;
ALTER TABLE dispatcher.campaigns ADD COLUMN contact_topic text;

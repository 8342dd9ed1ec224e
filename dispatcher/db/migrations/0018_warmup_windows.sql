-- Issue 18 items 2 and 3: warm-up and send windows.

-- Warm-up (dispatcher.pacing.warmup): one row per UTC calendar day on which the warm-up gave
-- out sending room. `taken` is the recipients granted to processes that day (what they may
-- send, taken in chunks under the row's lock, so all processes and hosts together stop at the
-- day's cap); the earliest row is the first sending day. The sending day number is 1 + the
-- earlier days that sent and were not held: a day held for a bounce or complaint spike
-- (`held_reason`) does not advance the ramp.
CREATE TABLE dispatcher.warmup_days (
    day date PRIMARY KEY,
    taken double precision NOT NULL DEFAULT 0,
    held_reason text,
    held_at timestamptz
);

-- Send windows (dispatcher.campaigns.windows): hours and weekdays a campaign's recipients may
-- receive its mail, in the campaign's time zone or each recipient's own (a column of the list,
-- kept with the recipient's variables). NULL: no window, nothing changes for the campaign.
ALTER TABLE dispatcher.campaigns ADD COLUMN send_window text;
ALTER TABLE dispatcher.campaigns ADD COLUMN window_timezone text;
ALTER TABLE dispatcher.campaigns ADD COLUMN timezone_column text;

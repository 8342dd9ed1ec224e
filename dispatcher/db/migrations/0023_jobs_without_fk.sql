-- Issue 19 item 6: enqueue at least as fast as pgqueuer. The foreign key jobs.id ->
-- messages.id cost ~3.5 us of Postgres CPU per enqueued row (a row trigger, queued per row and
-- an index probe of messages at the end of the statement), a fifth of the whole insert.
-- Nothing needs it for integrity: a job row is only ever written by the same statement or
-- transaction that writes its message (enqueue_many, enqueue/enqueue_raw, the campaign
-- materialiser), and the one place that deletes messages, retention's prune_rows, now deletes
-- their jobs itself (it relied on ON DELETE CASCADE). campaign_recipients (0022) has no foreign
-- key for the same reason.
ALTER TABLE dispatcher.jobs DROP CONSTRAINT jobs_id_fkey;

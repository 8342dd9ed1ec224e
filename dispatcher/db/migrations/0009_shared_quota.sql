-- One daily quota for every process and host on the account. One process at a time (the holder
-- of an advisory lock) reads GetSendQuota and publishes the reading here; every process counts
-- what it sent since a reading was begun in quota_spend, and admits mail against
-- reading + everyone's sends since, so N processes cannot each spend the same room.
CREATE TABLE dispatcher.send_quota (
    id                 int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    epoch              bigint NOT NULL DEFAULT 0,  -- the reading published last
    polling_epoch      bigint NOT NULL DEFAULT 0,  -- a reading being taken (> epoch while so)
    max_24_hour_send   double precision,
    max_send_rate      double precision,
    sent_last_24_hours double precision,
    read_at            timestamptz,
    leader             uuid
);
INSERT INTO dispatcher.send_quota (id) VALUES (1);

-- Recipients a worker sent while counting into `epoch` (it moves to the next epoch when it sees
-- a reading begun). Kept after the worker ends: its sends count until a reading includes them.
CREATE TABLE dispatcher.quota_spend (
    owner uuid NOT NULL,
    epoch bigint NOT NULL,
    sent  double precision NOT NULL,
    PRIMARY KEY (owner, epoch)
);

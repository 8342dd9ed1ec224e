-- Issue 18 item 1: mailbox-provider lanes (dispatcher.pacing.lanes, dispatcher.worker.lane_store).
-- `account` keys every row: 'default' until several SES accounts land (issue 18 item 4).

-- Each provider lane's UTC day: `taken` is the daily cap's room given out to processes (taken
-- in chunks under the row's lock, so all processes and hosts together stop at the cap), `sent`
-- the recipients admitted through the lane (every lane, capped or not, for `status`).
CREATE TABLE dispatcher.lane_days (
    account text NOT NULL DEFAULT 'default',
    provider text NOT NULL,
    day date NOT NULL,
    taken double precision NOT NULL DEFAULT 0,
    sent bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account, provider, day)
);

-- A lane slowed for a burst of DeliveryDelay events and soft bounces from its provider; the row
-- goes once the provider has been quiet for lanes.backoff_quiet seconds.
CREATE TABLE dispatcher.lane_backoffs (
    account text NOT NULL DEFAULT 'default',
    provider text NOT NULL,
    reason text NOT NULL,
    since timestamptz NOT NULL,
    last_burst timestamptz NOT NULL,
    PRIMARY KEY (account, provider)
);

-- The provider of a recipient domain by its MX hosts, looked up off the send path and shared
-- by every process and host until `expires_at`.
CREATE TABLE dispatcher.mx_cache (
    domain text PRIMARY KEY,
    provider text NOT NULL,
    mx text[] NOT NULL,
    looked_up_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- The back-off check counts recent soft feedback without reading the whole event tables.
CREATE INDEX recipient_events_soft ON dispatcher.recipient_events (occurred_at)
    WHERE kind = 'bounce' AND bounce_type = 'Transient';
CREATE INDEX events_delays ON dispatcher.events (received_at) WHERE kind = 'delivery_delay';

-- Subscriptions: events wait in an outbox, written in the transaction that
-- records them, until they are fanned out to the deliveries of the
-- subscriptions they match; deliveries are sent in order per subscription
-- and channel, retried until received, and kept as a history.
CREATE TABLE event_outbox (
    event_id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);
CREATE INDEX event_outbox_seq ON event_outbox (seq);

-- A webhook signing key per subscription, sealed with the master key; kept
-- apart from the subscription document so no answer can carry it.
CREATE TABLE subscription_secrets (
    subscription_id TEXT PRIMARY KEY,
    sealed TEXT NOT NULL
);

CREATE TABLE subscription_deliveries (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    subscription_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    event_id TEXT NOT NULL,
    category TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    -- Milliseconds since the Unix epoch.
    next_attempt_at BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    delivered_at TEXT,
    last_error TEXT
);
-- The head of each subscription's queue, and its history newest first.
CREATE INDEX subscription_deliveries_queue ON subscription_deliveries (subscription_id, channel, state, seq);
CREATE INDEX subscription_deliveries_due ON subscription_deliveries (state, next_attempt_at);
CREATE UNIQUE INDEX subscription_deliveries_once ON subscription_deliveries (subscription_id, channel, event_id);

CREATE TABLE subscription_attempts (
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at TEXT NOT NULL,
    succeeded BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

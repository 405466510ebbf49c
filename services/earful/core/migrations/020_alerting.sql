-- Alerting's state: the current state of every alert, notification groups and their schedule,
-- what each receiver was last told (the notification log entries that stop re-sends after a
-- restart), every notification's outcome, silences and acknowledgements. Owned by the alerting
-- service; storage's GET /v1/alerts reads notification_log.

-- The latest state per fingerprint (one alert identity); a newer episode replaces an older one.
CREATE TABLE alert_state (
    fingerprint  text        PRIMARY KEY,
    alert_id     text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('firing', 'resolved')),
    group_key    text        NOT NULL,
    receivers    text[]      NOT NULL,
    labels       jsonb       NOT NULL,
    event        jsonb       NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX alert_state_group_idx ON alert_state (group_key);
CREATE INDEX alert_state_firing_idx ON alert_state (updated_at) WHERE status = 'firing';

-- Notification groups and when each is due to be flushed (group_wait, group_interval).
CREATE TABLE alert_groups (
    group_key      text        PRIMARY KEY,
    route          text        NOT NULL,
    next_flush_at  timestamptz,
    last_flush_at  timestamptz,
    created_at     timestamptz NOT NULL
);
CREATE INDEX alert_groups_due_idx ON alert_groups (next_flush_at) WHERE next_flush_at IS NOT NULL;

-- Per (group, receiver): the alert ids the receiver was told are firing, and when.
CREATE TABLE alert_nflog (
    group_key  text        NOT NULL,
    receiver   text        NOT NULL,
    announced  text[]      NOT NULL,
    seq        bigint      NOT NULL,
    sent_at    timestamptz NOT NULL,
    PRIMARY KEY (group_key, receiver)
);

-- Append-only: one row per notification and its final outcome.
CREATE TABLE notification_log (
    id             bigserial   PRIMARY KEY,
    group_key      text        NOT NULL,
    receiver       text        NOT NULL,
    receiver_kind  text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('firing', 'resolved')),
    alert_ids      text[]      NOT NULL,
    fingerprints   text[]      NOT NULL,
    attempts       integer     NOT NULL,
    outcome        text        NOT NULL CHECK (outcome IN ('delivered', 'failed', 'dead_lettered')),
    http_status    integer,
    error          text,
    sent_at        timestamptz NOT NULL
);
CREATE INDEX notification_log_alert_ids_idx ON notification_log USING gin (alert_ids);
CREATE INDEX notification_log_group_idx ON notification_log (group_key, receiver, sent_at DESC);
CREATE INDEX notification_log_sent_at_idx ON notification_log (sent_at DESC);

-- Silences: alerts whose labels match every matcher are not notified between starts_at and ends_at.
CREATE TABLE silences (
    id          uuid        PRIMARY KEY,
    matchers    jsonb       NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_by  text        NOT NULL,
    comment     text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX silences_ends_at_idx ON silences (ends_at);

-- Acknowledgements: an acknowledged alert (episode) is not re-notified until it resolves.
CREATE TABLE alert_acks (
    alert_id     text        PRIMARY KEY,
    fingerprint  text        NOT NULL,
    acked_by     text        NOT NULL,
    comment      text        NOT NULL,
    acked_at     timestamptz NOT NULL
);

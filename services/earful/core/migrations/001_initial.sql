-- Mentions, rollups and alerts. Forward-only: later changes go in new files.
CREATE TABLE mentions (
    mention_id        uuid        NOT NULL,
    source            text        NOT NULL,
    source_id         text        NOT NULL,
    url               text,
    author_id         text,
    author_handle     text,
    author_name       text,
    author_followers  bigint,
    text              text        NOT NULL,
    declared_lang     text,
    lang              text        NOT NULL,
    lang_confidence   real        NOT NULL,
    created_at        timestamptz NOT NULL,
    received_at       timestamptz NOT NULL,
    enriched_at       timestamptz NOT NULL,
    stored_at         timestamptz NOT NULL DEFAULT now(),
    in_reply_to       text,
    reposted_from     text,
    likes             bigint      NOT NULL DEFAULT 0,
    reposts           bigint      NOT NULL DEFAULT 0,
    replies           bigint      NOT NULL DEFAULT 0,
    sentiment         text,
    sentiment_score   real        NOT NULL DEFAULT 0,
    sentiment_reason  text,
    watchlist_ids     text[]      NOT NULL,
    entities          jsonb       NOT NULL,
    risks             jsonb       NOT NULL,
    matches           jsonb       NOT NULL,
    models            jsonb       NOT NULL,
    CONSTRAINT mentions_source_key UNIQUE (source, source_id)
);
CREATE INDEX mentions_created_at_idx ON mentions (created_at DESC);
CREATE INDEX mentions_watchlists_idx ON mentions USING gin (watchlist_ids);

-- Per watchlist × minute × sentiment counts, incremented only for rows actually inserted.
CREATE TABLE mention_rollups_minute (
    watchlist_id  text        NOT NULL,
    minute        timestamptz NOT NULL,
    sentiment     text        NOT NULL,
    mentions      bigint      NOT NULL,
    PRIMARY KEY (watchlist_id, minute, sentiment)
);

-- One row per alert state change (firing, resolved).
CREATE TABLE alerts (
    alert_id            text        NOT NULL,
    status              text        NOT NULL,
    fingerprint         text        NOT NULL,
    rule                text        NOT NULL,
    watchlist_id        text        NOT NULL,
    severity            text        NOT NULL,
    labels              jsonb       NOT NULL,
    summary             text        NOT NULL,
    observed            double precision NOT NULL,
    baseline            double precision NOT NULL,
    score               double precision NOT NULL,
    bucket_seconds      integer     NOT NULL,
    starts_at           timestamptz NOT NULL,
    ends_at             timestamptz,
    detected_at         timestamptz NOT NULL,
    first_received_at   timestamptz,
    sample_mention_ids  text[]      NOT NULL,
    stored_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, status)
);
CREATE INDEX alerts_detected_at_idx ON alerts (detected_at DESC);

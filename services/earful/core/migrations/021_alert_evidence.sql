-- The evidence behind alerts, kept where a restarted alerting service finds it (earful.alerting.evidence_store).

-- Each watchlist's recent posts (the lateness window and the longest rule window, by event time, at most a few
-- thousand per watchlist): an alert that fires right after a restart is explained by the posts seen before it.
-- `post` is the compact form of earful.alerting.explain.Post. Pruned by the alerting service every minute.
CREATE TABLE alert_evidence_posts (
    watchlist_id  text        NOT NULL,
    mention_id    text        NOT NULL,
    created_at    timestamptz NOT NULL,
    post          jsonb       NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (watchlist_id, mention_id)
);
CREATE INDEX alert_evidence_posts_recent_idx ON alert_evidence_posts (watchlist_id, created_at DESC);

-- Each watchlist's term history: per event-time hour, how many posts contained each term (the background
-- the window's distinctive terms are measured against). Rows are added to (counts summed), never replaced;
-- closed hours lose their terms seen once (`compacted`).
CREATE TABLE alert_term_history (
    watchlist_id  text        NOT NULL,
    hour          timestamptz NOT NULL,
    posts         integer     NOT NULL,
    terms         jsonb       NOT NULL,
    compacted     boolean     NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (watchlist_id, hour)
);

-- What each alert episode was told with when it fired (explanation, severity, summary with its claims), by
-- alert id: alert_state keeps only the latest event of a fingerprint, and a resolved event has no explanation.
-- Forgotten a week after the alert stopped firing, like alert_state.
CREATE TABLE alert_evidence (
    alert_id      text        PRIMARY KEY,
    fingerprint   text        NOT NULL,
    watchlist_id  text        NOT NULL,
    rule          text        NOT NULL,
    summary       text        NOT NULL,
    explanation   jsonb       NOT NULL,
    severity      jsonb,
    recorded_at   timestamptz NOT NULL
);
CREATE INDEX alert_evidence_fingerprint_idx ON alert_evidence (fingerprint, recorded_at DESC);

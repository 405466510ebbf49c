-- Customer questions and their first brand reply, erasure records, alert v2 fields.

-- A mention tagged customer_question, per watchlist it matched (not written by one of that
-- watchlist's own handles). first_reply_at: the earliest reply to it from one of the
-- watchlist's handles (null while open).
CREATE TABLE questions (
    watchlist_id    text        NOT NULL,
    source          text        NOT NULL,
    source_id       text        NOT NULL,
    created_at      timestamptz NOT NULL,
    mention_id      uuid        NOT NULL,
    first_reply_at  timestamptz,
    PRIMARY KEY (watchlist_id, source, source_id)
);
CREATE INDEX questions_watchlist_created_idx ON questions (watchlist_id, created_at);

-- Replies written by a watchlist's own handles (which handles are the brand's is decided when
-- the reply is stored, from the watchlists of that moment).
CREATE TABLE brand_replies (
    watchlist_id  text        NOT NULL,
    source        text        NOT NULL,
    in_reply_to   text        NOT NULL,
    source_id     text        NOT NULL,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (watchlist_id, source, in_reply_to, source_id)
);

-- Every erasure of an author's data. The author is kept only as SHA-256 hashes of
-- "<source>\0<lower-case handle or id>" (the handle and account id asked for or found), so a
-- re-delivered old mention of theirs can be refused without keeping who they were.
CREATE TABLE erasures (
    id               bigserial   PRIMARY KEY,
    source           text        NOT NULL,
    author_hashes    text[]      NOT NULL,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    requested_via    text        NOT NULL,
    mentions_erased  bigint      NOT NULL
);

ALTER TABLE alerts ADD COLUMN annotations jsonb NOT NULL DEFAULT '{}';
ALTER TABLE alerts ADD COLUMN group_key text;
ALTER TABLE alerts ADD COLUMN explanation jsonb;
CREATE INDEX alerts_watchlist_detected_idx ON alerts (watchlist_id, detected_at);

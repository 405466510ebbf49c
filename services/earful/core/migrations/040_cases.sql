-- Cases: a customer question or complaint that needs an answer, per watchlist, with an owner, a
-- state, a priority and an SLA deadline (earful.storage.cases). The writer opens one in the
-- transaction that stores the mention and answers it when a reply from one of the watchlist's
-- handles arrives; people change it through the API. Every change bumps `version` and adds a row
-- to `case_events`, the outbox of earful.cases.v1 (published_at null until the broker
-- acknowledged the record).
CREATE TABLE cases (
    case_id                text        PRIMARY KEY,  -- <watchlist_id>:<source>:<source_id>
    watchlist_id           text        NOT NULL,
    source                 text        NOT NULL,
    source_id              text        NOT NULL,
    mention_id             uuid        NOT NULL,
    kind                   text        NOT NULL CHECK (kind IN ('question', 'complaint')),
    thread_id              text,                     -- the source_id of the conversation's root (or in_reply_to)
    author_handle          text,
    author_followers       bigint,
    sentiment              text,                     -- the mention's label when the case opened
    sentiment_score        real        NOT NULL DEFAULT 0,
    risk_tags              text[]      NOT NULL DEFAULT '{}',
    state                  text        NOT NULL CHECK (state IN ('open', 'assigned', 'answered', 'dismissed', 'escalated')),
    owner                  text,
    -- priority = priority_base (reach, negativity, risk) + the waiting points at the last change;
    -- the inbox adds the waiting points of the moment it is read (docs/care.md).
    priority               int         NOT NULL CHECK (priority BETWEEN 0 AND 100),
    priority_base          int         NOT NULL CHECK (priority_base BETWEEN 0 AND 100),
    priority_reasons       jsonb       NOT NULL DEFAULT '[]',  -- a list of strings, as on the topic
    sla_s                  integer,                  -- the watchlist's response SLA when the case opened
    opened_at              timestamptz NOT NULL,     -- the question's created_at
    deadline_at            timestamptz,              -- null without an SLA
    warn_at                timestamptz,
    answered_at            timestamptz,              -- the answer in force (cleared when reopened)
    answered_by_source_id  text,
    first_reply_at         timestamptz,              -- the first answer ever: response-time KPIs
    reason                 text,                     -- why it was last dismissed or escalated
    stored_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at             timestamptz NOT NULL,
    version                integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    CHECK ((state = 'answered') = (answered_at IS NOT NULL))
);
CREATE INDEX cases_active_idx ON cases (watchlist_id, opened_at) WHERE state IN ('open', 'assigned', 'escalated');
CREATE INDEX cases_watchlist_opened_idx ON cases (watchlist_id, opened_at);
CREATE INDEX cases_mention_key_idx ON cases (source, source_id);

-- The outbox: one row per change of a case, the whole event as published (schemas/case_event.avsc).
CREATE TABLE case_events (
    id                bigserial   PRIMARY KEY,
    event_id          text        NOT NULL UNIQUE,  -- <case_id>:<version>
    case_id           text        NOT NULL REFERENCES cases (case_id) ON DELETE CASCADE,
    version           integer     NOT NULL,
    event             text        NOT NULL CHECK (event IN ('opened', 'assigned', 'answered', 'dismissed', 'escalated',
                                                            'reopened')),
    state             text        NOT NULL,
    owner             text,
    priority          integer     NOT NULL,
    priority_reasons  text[]      NOT NULL,
    watchlist_id      text        NOT NULL,
    source            text        NOT NULL,
    source_id         text        NOT NULL,
    mention_id        uuid        NOT NULL,
    thread_id         text,
    author_handle     text,
    opened_at         timestamptz NOT NULL,
    deadline_at       timestamptz,
    warn_at           timestamptz,
    answered_at       timestamptz,
    occurred_at       timestamptz NOT NULL,
    actor             text,
    reason            text,
    published_at      timestamptz
);
CREATE INDEX case_events_unpublished_idx ON case_events (id) WHERE published_at IS NULL;
CREATE INDEX case_events_case_idx ON case_events (case_id, version);

-- Round-robin owners: how many cases each watchlist has handed out (EARFUL_CARE_AGENTS).
CREATE TABLE care_rotation (
    watchlist_id  text    PRIMARY KEY,
    assigned      bigint  NOT NULL DEFAULT 0
);

-- A case lives as long as its mention: when retention or an erasure deletes the mention's key, the
-- case (and its events, by the foreign key) goes with it, so an erased author's handle does not
-- stay behind in the inbox or the outbox. A trigger rather than a foreign key, so the key table
-- can still be truncated (benchmarks) and one statement deletes a whole day's cases at once.
CREATE FUNCTION earful_cases_follow_mention_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM cases c USING gone g WHERE c.source = g.source AND c.source_id = g.source_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER cases_follow_mention_keys AFTER DELETE ON mention_keys
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION earful_cases_follow_mention_keys();

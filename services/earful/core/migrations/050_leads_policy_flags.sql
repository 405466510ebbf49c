-- Sales leads and staff policy flags (earful.storage.leads, earful.storage.policy_flags), written by
-- the writer in the transaction that stores the mentions, published afterwards through outboxes
-- (earful.storage.table_outbox).

-- One lead per (watchlist, source, author, period); lead_id is derived from those four, so every
-- writer names the same lead. The author's profile is the latest the lead's mentions reported.
CREATE TABLE leads (
    lead_id           uuid        PRIMARY KEY,
    watchlist_id      text        NOT NULL,
    source            text        NOT NULL,
    author_key        text        NOT NULL,  -- lower(handle), or 'id:' || account id
    period_start      timestamptz NOT NULL,
    period_end        timestamptz NOT NULL,
    author_id         text,
    author_handle     text,
    author_name       text,
    author_followers  bigint,
    profile_url       text,
    mentions          integer     NOT NULL DEFAULT 0,
    first_mention_at  timestamptz NOT NULL,
    last_mention_at   timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX leads_first_mention_idx ON leads (first_mention_at DESC, lead_id DESC);
CREATE INDEX leads_watchlist_idx ON leads (watchlist_id, first_mention_at DESC);
CREATE INDEX leads_author_idx ON leads (source, author_key);

-- The purchase-intent mentions of a lead: one row per mention, so a re-delivered mention adds nothing.
CREATE TABLE lead_mentions (
    lead_id         uuid        NOT NULL REFERENCES leads (lead_id) ON DELETE CASCADE,
    mention_id      uuid        NOT NULL,
    source_id       text        NOT NULL,
    url             text,
    created_at      timestamptz NOT NULL,
    text            text        NOT NULL,
    evidence        text        NOT NULL,  -- the purchase_intent tag's evidence
    evidence_start  integer     NOT NULL,
    evidence_end    integer     NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (lead_id, mention_id)
);
CREATE INDEX lead_mentions_mention_idx ON lead_mentions (mention_id);

-- The outbox of earful.leads.v1 and of the CRM webhook: one row per change of a lead, the record
-- as published (times as RFC 3339 text). published_at / delivered_at stay null until the broker /
-- the webhook acknowledged it.
CREATE TABLE lead_events (
    id            bigserial   PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE,  -- derived from the lead and the mention that made the change
    lead_id       uuid        NOT NULL REFERENCES leads (lead_id) ON DELETE CASCADE,
    event         text        NOT NULL CHECK (event IN ('created', 'evidence_added')),
    record        jsonb       NOT NULL,
    created_at    timestamptz NOT NULL,
    published_at  timestamptz,
    delivered_at  timestamptz
);
CREATE INDEX lead_events_lead_idx ON lead_events (lead_id);
CREATE INDEX lead_events_unpublished_idx ON lead_events (id) WHERE published_at IS NULL;
CREATE INDEX lead_events_undelivered_idx ON lead_events (id) WHERE delivered_at IS NULL;

-- Staff posts that break a rule of the policy file: one row per (mention, rule); also the outbox
-- of earful.policy_flags.v1.
CREATE TABLE policy_flags (
    id                   bigserial   PRIMARY KEY,
    flag_id              uuid        NOT NULL UNIQUE,  -- derived from the rule and the mention
    rule_id              text        NOT NULL,
    kind                 text        NOT NULL CHECK (kind IN ('confidential', 'missing_disclosure', 'legal')),
    severity             text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    description          text,
    mention_id           uuid        NOT NULL,
    source               text        NOT NULL,
    source_id            text        NOT NULL,
    url                  text,
    mention_created_at   timestamptz NOT NULL,
    author_id            text,
    author_handle        text        NOT NULL,
    author_name          text,
    staff_watchlist_ids  text[]      NOT NULL,
    watchlist_ids        text[]      NOT NULL,
    text                 text        NOT NULL,
    evidence             jsonb       NOT NULL,  -- [{text, start, end, term}]
    detected_at          timestamptz NOT NULL,
    published_at         timestamptz,
    UNIQUE (mention_id, rule_id)
);
CREATE INDEX policy_flags_created_idx ON policy_flags (mention_created_at DESC, id DESC);
CREATE INDEX policy_flags_author_idx ON policy_flags (source, lower(author_handle));
CREATE INDEX policy_flags_staff_idx ON policy_flags USING gin (staff_watchlist_ids);
CREATE INDEX policy_flags_unpublished_idx ON policy_flags (id) WHERE published_at IS NULL;

-- Leads and flags copy their author's words and profile: when a mention goes (an erasure deletes
-- the author's mentions), its flags and lead evidence go with it, a lead left without evidence
-- goes whole, and a remaining lead's events that showed the mention go too. Retention drops whole
-- partitions (no DELETE) and ages leads and flags out itself (earful.storage.retention).
CREATE FUNCTION earful_forget_mention_signals() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
BEGIN
    DELETE FROM policy_flags WHERE mention_id = OLD.mention_id;
    SELECT array_agg(lead_id) INTO ids FROM lead_mentions WHERE mention_id = OLD.mention_id;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    DELETE FROM lead_events
    WHERE lead_id = ANY (ids)
      AND jsonb_path_exists(record, '$.evidence[*] ? (@.mention_id == $m)', jsonb_build_object('m', OLD.mention_id::text));
    DELETE FROM lead_mentions WHERE mention_id = OLD.mention_id;
    UPDATE leads SET mentions = mentions - 1, updated_at = clock_timestamp() WHERE lead_id = ANY (ids);
    DELETE FROM leads WHERE lead_id = ANY (ids) AND mentions <= 0;
    RETURN NULL;
END $$;
CREATE TRIGGER mentions_forget_signals AFTER DELETE ON mentions
    FOR EACH ROW EXECUTE FUNCTION earful_forget_mention_signals();

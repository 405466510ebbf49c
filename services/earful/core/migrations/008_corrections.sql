-- Corrections: people correcting (or confirming) a stored mention's sentiment, entities or
-- risk/intent tags. Append-only audit trail: every correction is a row that stays; a later row for
-- the same (mention, field) supersedes the earlier one (the largest id is in force). The
-- correction is applied to the mention and its rollups in the same transaction that inserts it
-- (earful.storage.corrections), then published to earful.corrections.v1 through the outbox column
-- published_at (null until the broker acknowledged it; the storage service retries).

-- A correction names its mention by mention_id. Until now nothing looked a mention up by id alone
-- (the created_at index leads with the partition key), so each daily partition gets a small index
-- on it: a lookup probes one index per partition instead of scanning every row.
CREATE INDEX mentions_mention_id_idx ON mentions (mention_id);

CREATE TABLE corrections (
    id                  bigserial   PRIMARY KEY,
    mention_id          uuid        NOT NULL,
    -- The mention's key (mention_keys) and partition, so the row is updated without a search.
    source              text        NOT NULL,
    source_id           text        NOT NULL,
    mention_created_at  timestamptz NOT NULL,
    watchlist_ids       text[]      NOT NULL,  -- the mention's watchlists (per-watchlist agreement)
    lang                text        NOT NULL,  -- the mention's language (for the topic and the export)
    field               text        NOT NULL CHECK (field IN ('sentiment', 'entities', 'risks')),
    -- JSON values, normalised so equal means equal: sentiment a label (null: the model gave none),
    -- risks a sorted list of distinct tags, entities a list of {text, type, start, end} sorted by
    -- (start, end, type).
    model_value         jsonb       NOT NULL,  -- what the model said, before any correction
    previous_value      jsonb       NOT NULL,  -- what the mention held just before this correction
    value               jsonb       NOT NULL,  -- the corrected value now in force
    agrees              boolean     NOT NULL,  -- value = model_value: a confirmation
    model_version       text        NOT NULL,  -- the mention's models.sentiment / models.ner / models.risk
    supersedes          bigint,                -- the correction of this (mention, field) it replaced
    corrected_by        text        NOT NULL,  -- who says so: the `by` given, else the principal
    principal           text        NOT NULL,  -- who was authenticated: api-key:<hash prefix>, api, cli:<user>
    note                text,
    idempotency_key     text,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at        timestamptz            -- outbox: null until on earful.corrections.v1
);

CREATE INDEX corrections_mention_idx ON corrections (mention_id, field, id);
CREATE INDEX corrections_watchlists_idx ON corrections USING gin (watchlist_ids);
CREATE INDEX corrections_created_idx ON corrections (created_at, id);
CREATE INDEX corrections_unpublished_idx ON corrections (id) WHERE published_at IS NULL;
-- A retried request (same Idempotency-Key from the same principal) finds what the first one stored.
CREATE UNIQUE INDEX corrections_idempotency_idx ON corrections (principal, idempotency_key, field)
    WHERE idempotency_key IS NOT NULL;

-- Append-only, enforced: a correction's content never changes once written; only the outbox marks
-- it published. Rows go only with their mention (erasure, retention).
CREATE FUNCTION earful_corrections_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF to_jsonb(NEW) - 'published_at' IS DISTINCT FROM to_jsonb(OLD) - 'published_at' THEN
        RAISE EXCEPTION 'corrections are append-only: only published_at may change (correction %)', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER corrections_append_only BEFORE UPDATE ON corrections
    FOR EACH ROW EXECUTE FUNCTION earful_corrections_append_only();

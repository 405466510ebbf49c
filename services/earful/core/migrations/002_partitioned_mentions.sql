-- Mentions partitioned by day of created_at, raw v2 fields, full-text search per language.
--
-- Uniqueness: PostgreSQL only enforces a unique constraint on a partitioned table when it
-- includes the partition key, so `mentions` is unique on (source, source_id, created_at) and the
-- global guarantee "one row per (source, source_id)" comes from `mention_keys`, a small
-- unpartitioned table with that primary key. The writer inserts a mention only when it inserted
-- its key in the same statement. Cost: one extra narrow row and B-tree entry per mention, and
-- retention deletes the keys of a partition before dropping it.
--
-- Existing (version 001) rows are moved into the new table.

-- ISO 639-1 code → PostgreSQL text-search configuration (stemming and stop words of that
-- language); languages without one use 'simple' (lower-cased words, no stemming).
CREATE FUNCTION earful_text_search_config(lang text) RETURNS regconfig
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (CASE lang
        WHEN 'ar' THEN 'pg_catalog.arabic'     WHEN 'hy' THEN 'pg_catalog.armenian'
        WHEN 'eu' THEN 'pg_catalog.basque'     WHEN 'ca' THEN 'pg_catalog.catalan'
        WHEN 'da' THEN 'pg_catalog.danish'     WHEN 'nl' THEN 'pg_catalog.dutch'
        WHEN 'en' THEN 'pg_catalog.english'    WHEN 'fi' THEN 'pg_catalog.finnish'
        WHEN 'fr' THEN 'pg_catalog.french'     WHEN 'de' THEN 'pg_catalog.german'
        WHEN 'el' THEN 'pg_catalog.greek'      WHEN 'hi' THEN 'pg_catalog.hindi'
        WHEN 'hu' THEN 'pg_catalog.hungarian'  WHEN 'id' THEN 'pg_catalog.indonesian'
        WHEN 'ga' THEN 'pg_catalog.irish'      WHEN 'it' THEN 'pg_catalog.italian'
        WHEN 'lt' THEN 'pg_catalog.lithuanian' WHEN 'ne' THEN 'pg_catalog.nepali'
        WHEN 'no' THEN 'pg_catalog.norwegian'  WHEN 'nb' THEN 'pg_catalog.norwegian'
        WHEN 'nn' THEN 'pg_catalog.norwegian'  WHEN 'pt' THEN 'pg_catalog.portuguese'
        WHEN 'ro' THEN 'pg_catalog.romanian'   WHEN 'ru' THEN 'pg_catalog.russian'
        WHEN 'sr' THEN 'pg_catalog.serbian'    WHEN 'es' THEN 'pg_catalog.spanish'
        WHEN 'sv' THEN 'pg_catalog.swedish'    WHEN 'ta' THEN 'pg_catalog.tamil'
        WHEN 'tr' THEN 'pg_catalog.turkish'    WHEN 'yi' THEN 'pg_catalog.yiddish'
        ELSE 'pg_catalog.simple' END)::regconfig
$$;

ALTER TABLE mentions RENAME TO mentions_v1;
ALTER TABLE mentions_v1 RENAME CONSTRAINT mentions_source_key TO mentions_v1_source_key;
ALTER INDEX mentions_created_at_idx RENAME TO mentions_v1_created_at_idx;
ALTER INDEX mentions_watchlists_idx RENAME TO mentions_v1_watchlists_idx;

CREATE TABLE mentions (
    mention_id              uuid        NOT NULL,
    source                  text        NOT NULL,
    source_id               text        NOT NULL,
    url                     text,
    author_id               text,
    author_handle           text,
    author_name             text,
    author_followers        bigint,
    text                    text        NOT NULL,
    title                   text,
    country                 text,
    connector               text        NOT NULL DEFAULT 'unknown',
    content_type            text        NOT NULL DEFAULT 'unknown',
    declared_lang           text,
    lang                    text        NOT NULL,
    lang_confidence         real        NOT NULL,
    created_at              timestamptz NOT NULL,
    received_at             timestamptz NOT NULL,
    fetched_at              timestamptz,
    enriched_at             timestamptz NOT NULL,
    stored_at               timestamptz NOT NULL DEFAULT now(),
    in_reply_to             text,
    reposted_from           text,
    likes                   bigint      NOT NULL DEFAULT 0,
    reposts                 bigint      NOT NULL DEFAULT 0,
    replies                 bigint      NOT NULL DEFAULT 0,
    engagement_observed_at  timestamptz,
    sentiment               text,
    sentiment_score         real        NOT NULL DEFAULT 0,
    sentiment_reason        text,
    sentiment_probabilities jsonb,
    watchlist_ids           text[]      NOT NULL,
    entities                jsonb       NOT NULL,
    risks                   jsonb       NOT NULL,
    matches                 jsonb       NOT NULL,
    models                  jsonb       NOT NULL,
    -- Filter keys for one GIN index: 'w:<watchlist id>', 'e:<entity text, lower case>', 'r:<risk tag>'.
    facets                  text[]      NOT NULL,
    tsv                     tsvector    GENERATED ALWAYS AS (to_tsvector(earful_text_search_config(lang), text)) STORED,
    CONSTRAINT mentions_source_key UNIQUE (source, source_id, created_at)
) PARTITION BY RANGE (created_at);

CREATE INDEX mentions_created_idx ON mentions (created_at, mention_id);
CREATE INDEX mentions_reach_idx ON mentions ((coalesce(author_followers, 0)), mention_id);
CREATE INDEX mentions_facets_idx ON mentions USING gin (facets);
CREATE INDEX mentions_tsv_idx ON mentions USING gin (tsv);

-- One row per (source, source_id) ever stored (and not expired or erased): the global unique key,
-- the partition (created_at) the row lives in, and the newest engagement observation applied.
CREATE TABLE mention_keys (
    source       text        NOT NULL,
    source_id    text        NOT NULL,
    created_at   timestamptz NOT NULL,
    observed_at  timestamptz NOT NULL,
    PRIMARY KEY (source, source_id)
) WITH (fillfactor = 90);

-- Creates the daily partitions (mentions_YYYYMMDD, UTC days) that do not exist yet; returns how
-- many it created. CREATE TABLE + ATTACH PARTITION takes only a SHARE UPDATE EXCLUSIVE lock on
-- `mentions`, so reads and writes go on meanwhile.
CREATE FUNCTION earful_ensure_mention_partitions(days date[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    part text;
    lo timestamptz;
    hi timestamptz;
    created integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('earful_mention_partitions'));
    FOR d IN SELECT DISTINCT x FROM unnest(days) AS x WHERE x IS NOT NULL ORDER BY 1 LOOP
        part := 'mentions_' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
        lo := d::timestamp AT TIME ZONE 'UTC';
        hi := (d + 1)::timestamp AT TIME ZONE 'UTC';
        EXECUTE format('CREATE TABLE %I (LIKE mentions INCLUDING DEFAULTS INCLUDING GENERATED)', part);
        -- A matching CHECK lets ATTACH skip its validation scan.
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (created_at >= %L AND created_at < %L)',
                       part, part || '_range', lo, hi);
        EXECUTE format('ALTER TABLE mentions ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_range');
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

SELECT earful_ensure_mention_partitions(
    ARRAY(SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM mentions_v1));

INSERT INTO mentions (
    mention_id, source, source_id, url, author_id, author_handle, author_name, author_followers, text, declared_lang,
    lang, lang_confidence, created_at, received_at, enriched_at, stored_at, in_reply_to, reposted_from, likes, reposts,
    replies, sentiment, sentiment_score, sentiment_reason, watchlist_ids, entities, risks, matches, models, facets)
SELECT
    mention_id, source, source_id, url, author_id, author_handle, author_name, author_followers, text, declared_lang,
    lang, lang_confidence, created_at, received_at, enriched_at, stored_at, in_reply_to, reposted_from, likes, reposts,
    replies, sentiment, sentiment_score, sentiment_reason, watchlist_ids, entities, risks, matches, models,
    ARRAY(SELECT 'w:' || w FROM unnest(watchlist_ids) AS w)
    || ARRAY(SELECT DISTINCT 'e:' || lower(e ->> 'text') FROM jsonb_array_elements(entities) AS e)
    || ARRAY(SELECT DISTINCT 'r:' || (r ->> 'tag') FROM jsonb_array_elements(risks) AS r)
FROM mentions_v1;

INSERT INTO mention_keys (source, source_id, created_at, observed_at)
SELECT source, source_id, created_at, received_at FROM mentions_v1;

DROP TABLE mentions_v1;

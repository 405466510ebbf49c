-- Rollups: counts the API reads instead of scanning mentions. The writer increments them for the
-- rows it actually inserted, in the same transaction; erasure decrements them. Buckets are UTC.
--
-- Volume per watchlist × bucket × sentiment × source × language, at three granularities so a
-- series or a share of voice over months reads days, not minutes. A mention that matched no
-- watchlist counts under '(none)'; sentiment null counts as 'unknown'.

DROP TABLE mention_rollups_minute;  -- version 001 had watchlist × minute × sentiment only; rebuilt below

CREATE TABLE mention_rollups_minute (
    watchlist_id  text        NOT NULL,
    bucket        timestamptz NOT NULL,
    sentiment     text        NOT NULL,
    source        text        NOT NULL,
    lang          text        NOT NULL,
    mentions      bigint      NOT NULL,
    PRIMARY KEY (watchlist_id, bucket, sentiment, source, lang)
) WITH (fillfactor = 80);

CREATE TABLE mention_rollups_hour (LIKE mention_rollups_minute INCLUDING ALL) WITH (fillfactor = 80);
CREATE TABLE mention_rollups_day (LIKE mention_rollups_minute INCLUDING ALL) WITH (fillfactor = 80);

-- Distinct mentions per UTC day (a mention of two watchlists counts once here).
CREATE TABLE mention_totals_day (
    bucket    timestamptz PRIMARY KEY,
    mentions  bigint      NOT NULL
);

-- Mentions per watchlist × UTC day × entity (type, lower-case text); a mention naming the same
-- entity twice counts once. entity_text keeps one original spelling for display.
CREATE TABLE entity_rollups_day (
    watchlist_id  text        NOT NULL,
    bucket        timestamptz NOT NULL,
    entity_type   text        NOT NULL,
    entity_key    text        NOT NULL,
    entity_text   text        NOT NULL,
    mentions      bigint      NOT NULL,
    PRIMARY KEY (watchlist_id, bucket, entity_type, entity_key)
) WITH (fillfactor = 80);

-- Mentions per watchlist × UTC day × author (author_key = lower-case handle, else 'id:' + id),
-- with the positive/negative counts and the largest follower count seen (reach).
CREATE TABLE author_rollups_day (
    watchlist_id   text        NOT NULL,
    bucket         timestamptz NOT NULL,
    source         text        NOT NULL,
    author_key     text        NOT NULL,
    author_handle  text,
    author_name    text,
    mentions       bigint      NOT NULL,
    positive       bigint      NOT NULL,
    negative       bigint      NOT NULL,
    reach          bigint      NOT NULL,
    PRIMARY KEY (watchlist_id, bucket, source, author_key)
) WITH (fillfactor = 80);

-- The same counts recomputed from `mentions` (used to rebuild rollups, and by tests to check the
-- incremental ones).
CREATE VIEW mention_watchlist_rows AS
SELECT w.watchlist_id, m.mention_id, m.source, m.created_at, m.lang, coalesce(m.sentiment, 'unknown') AS sentiment,
       m.entities, m.author_id, m.author_handle, m.author_name, m.author_followers
FROM mentions m
CROSS JOIN LATERAL unnest(CASE WHEN cardinality(m.watchlist_ids) = 0 THEN ARRAY['(none)']
                               ELSE m.watchlist_ids END) AS w(watchlist_id);

CREATE VIEW mention_rollups_recount AS
SELECT 'minute'::text AS granularity, watchlist_id, date_trunc('minute', created_at, 'UTC') AS bucket, sentiment, source,
       lang, count(*) AS mentions
FROM mention_watchlist_rows GROUP BY 2, 3, 4, 5, 6
UNION ALL
SELECT 'hour', watchlist_id, date_trunc('hour', created_at, 'UTC'), sentiment, source, lang, count(*)
FROM mention_watchlist_rows GROUP BY 2, 3, 4, 5, 6
UNION ALL
SELECT 'day', watchlist_id, date_trunc('day', created_at, 'UTC'), sentiment, source, lang, count(*)
FROM mention_watchlist_rows GROUP BY 2, 3, 4, 5, 6;

CREATE VIEW mention_totals_recount AS
SELECT date_trunc('day', created_at, 'UTC') AS bucket, count(*) AS mentions FROM mentions GROUP BY 1;

CREATE VIEW entity_rollups_recount AS
SELECT watchlist_id, bucket, entity_type, entity_key, min(entity_text) AS entity_text, count(*) AS mentions
FROM (
    SELECT DISTINCT ON (r.watchlist_id, r.mention_id, e ->> 'type', lower(e ->> 'text'))
           r.watchlist_id, r.mention_id, date_trunc('day', r.created_at, 'UTC') AS bucket, e ->> 'type' AS entity_type,
           lower(e ->> 'text') AS entity_key, e ->> 'text' AS entity_text
    FROM mention_watchlist_rows r, jsonb_array_elements(r.entities) AS e
    WHERE r.watchlist_id <> '(none)'
) d
GROUP BY 1, 2, 3, 4;

CREATE VIEW author_rollups_recount AS
SELECT watchlist_id, date_trunc('day', created_at, 'UTC') AS bucket, source,
       coalesce(lower(author_handle), 'id:' || author_id) AS author_key,
       max(author_handle) AS author_handle, max(author_name) AS author_name, count(*) AS mentions,
       count(*) FILTER (WHERE sentiment = 'positive') AS positive,
       count(*) FILTER (WHERE sentiment = 'negative') AS negative,
       coalesce(max(author_followers), 0) AS reach
FROM mention_watchlist_rows
WHERE watchlist_id <> '(none)' AND (author_handle IS NOT NULL OR author_id IS NOT NULL)
GROUP BY 1, 2, 3, 4;

-- Rebuilds every rollup from `mentions` (after an upgrade, or a bulk load).
CREATE FUNCTION earful_rebuild_rollups() RETURNS void LANGUAGE sql AS $$
    TRUNCATE mention_rollups_minute, mention_rollups_hour, mention_rollups_day, mention_totals_day,
             entity_rollups_day, author_rollups_day;
    INSERT INTO mention_rollups_minute SELECT watchlist_id, bucket, sentiment, source, lang, mentions
        FROM mention_rollups_recount WHERE granularity = 'minute';
    INSERT INTO mention_rollups_hour SELECT watchlist_id, bucket, sentiment, source, lang, mentions
        FROM mention_rollups_recount WHERE granularity = 'hour';
    INSERT INTO mention_rollups_day SELECT watchlist_id, bucket, sentiment, source, lang, mentions
        FROM mention_rollups_recount WHERE granularity = 'day';
    INSERT INTO mention_totals_day SELECT bucket, mentions FROM mention_totals_recount;
    INSERT INTO entity_rollups_day SELECT * FROM entity_rollups_recount;
    INSERT INTO author_rollups_day SELECT * FROM author_rollups_recount;
$$;

SELECT earful_rebuild_rollups();

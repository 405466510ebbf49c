-- Top authors, entities and advocates without aggregating every author of a period.
--
-- Measured at 5 million mentions: the largest watchlist has ~420,000 distinct authors over 90 days,
-- and summing author_rollups_day for them took ~1.1 s. The totals below are upper bounds of any
-- period's count (all the watchlist's days, minus what retention and erasure removed), kept with
-- an index by count: the API walks candidates in descending total, sums each one's period from the
-- daily rows (now keyed author-first, so that is one short index range per candidate), and stops as
-- soon as the last place of the top list is at least the next candidate's total.
ALTER TABLE author_rollups_day DROP CONSTRAINT author_rollups_day_pkey,
    ADD PRIMARY KEY (watchlist_id, source, author_key, bucket);
ALTER TABLE entity_rollups_day DROP CONSTRAINT entity_rollups_day_pkey,
    ADD PRIMARY KEY (watchlist_id, entity_type, entity_key, bucket);

CREATE TABLE author_totals (
    watchlist_id  text   NOT NULL,
    source        text   NOT NULL,
    author_key    text   NOT NULL,
    mentions      bigint NOT NULL,
    positive      bigint NOT NULL,
    negative      bigint NOT NULL,
    reach         bigint NOT NULL,  -- the largest follower count seen
    PRIMARY KEY (watchlist_id, source, author_key)
);
CREATE INDEX author_totals_mentions_idx ON author_totals (watchlist_id, mentions DESC);
CREATE INDEX author_totals_reach_idx ON author_totals (watchlist_id, reach DESC) WHERE positive > 0;

CREATE TABLE entity_totals (
    watchlist_id  text   NOT NULL,
    entity_type   text   NOT NULL,
    entity_key    text   NOT NULL,
    mentions      bigint NOT NULL,
    PRIMARY KEY (watchlist_id, entity_type, entity_key)
);
CREATE INDEX entity_totals_mentions_idx ON entity_totals (watchlist_id, mentions DESC);

CREATE VIEW author_totals_recount AS
SELECT watchlist_id, source, author_key, sum(mentions) AS mentions, sum(positive) AS positive,
       sum(negative) AS negative, max(reach) AS reach
FROM author_rollups_recount GROUP BY 1, 2, 3;

CREATE VIEW entity_totals_recount AS
SELECT watchlist_id, entity_type, entity_key, sum(mentions) AS mentions FROM entity_rollups_recount GROUP BY 1, 2, 3;

INSERT INTO author_totals
SELECT watchlist_id, source, author_key, sum(mentions), sum(positive), sum(negative), max(reach)
FROM author_rollups_day GROUP BY 1, 2, 3;
INSERT INTO entity_totals
SELECT watchlist_id, entity_type, entity_key, sum(mentions) FROM entity_rollups_day GROUP BY 1, 2, 3;

CREATE OR REPLACE FUNCTION earful_rebuild_rollups() RETURNS void LANGUAGE sql AS $$
    TRUNCATE mention_rollups_minute, mention_rollups_hour, mention_rollups_day, mention_totals_day,
             entity_rollups_day, author_rollups_day, watchlist_rollups_minute, watchlist_rollups_hour,
             watchlist_rollups_day, author_totals, entity_totals;
    INSERT INTO mention_rollups_minute SELECT watchlist_id, bucket, sentiment, source, lang, mentions
        FROM mention_rollups_recount WHERE granularity = 'minute';
    INSERT INTO mention_rollups_hour SELECT watchlist_id, bucket, sentiment, source, lang, mentions
        FROM mention_rollups_recount WHERE granularity = 'hour';
    INSERT INTO mention_rollups_day SELECT watchlist_id, bucket, sentiment, source, lang, mentions
        FROM mention_rollups_recount WHERE granularity = 'day';
    INSERT INTO watchlist_rollups_minute SELECT bucket, watchlist_id, sentiment, sum(mentions)
        FROM mention_rollups_minute GROUP BY 1, 2, 3;
    INSERT INTO watchlist_rollups_hour SELECT bucket, watchlist_id, sentiment, sum(mentions)
        FROM mention_rollups_hour GROUP BY 1, 2, 3;
    INSERT INTO watchlist_rollups_day SELECT bucket, watchlist_id, sentiment, sum(mentions)
        FROM mention_rollups_day GROUP BY 1, 2, 3;
    INSERT INTO mention_totals_day SELECT bucket, mentions FROM mention_totals_recount;
    INSERT INTO entity_rollups_day SELECT * FROM entity_rollups_recount;
    INSERT INTO author_rollups_day SELECT * FROM author_rollups_recount;
    INSERT INTO author_totals SELECT watchlist_id, source, author_key, sum(mentions), sum(positive), sum(negative),
        max(reach) FROM author_rollups_day GROUP BY 1, 2, 3;
    INSERT INTO entity_totals SELECT watchlist_id, entity_type, entity_key, sum(mentions)
        FROM entity_rollups_day GROUP BY 1, 2, 3;
$$;

-- Volume per bucket × watchlist × sentiment, bucket first: what share of voice reads. Comparing
-- all watchlists over 90 days from mention_rollups_day meant aggregating ~250,000 rows (source and
-- language multiply them) and the ragged ends scanned the hour and minute tables by time without an
-- index: ~1 s at 5 million mentions. These hold a few rows per bucket and are read by bucket range.
CREATE TABLE watchlist_rollups_minute (
    bucket        timestamptz NOT NULL,
    watchlist_id  text        NOT NULL,
    sentiment     text        NOT NULL,
    mentions      bigint      NOT NULL,
    PRIMARY KEY (bucket, watchlist_id, sentiment)
) WITH (fillfactor = 80);
CREATE TABLE watchlist_rollups_hour (LIKE watchlist_rollups_minute INCLUDING ALL) WITH (fillfactor = 80);
CREATE TABLE watchlist_rollups_day (LIKE watchlist_rollups_minute INCLUDING ALL) WITH (fillfactor = 80);

INSERT INTO watchlist_rollups_minute
SELECT bucket, watchlist_id, sentiment, sum(mentions) FROM mention_rollups_minute GROUP BY 1, 2, 3;
INSERT INTO watchlist_rollups_hour
SELECT bucket, watchlist_id, sentiment, sum(mentions) FROM mention_rollups_hour GROUP BY 1, 2, 3;
INSERT INTO watchlist_rollups_day
SELECT bucket, watchlist_id, sentiment, sum(mentions) FROM mention_rollups_day GROUP BY 1, 2, 3;

CREATE OR REPLACE FUNCTION earful_rebuild_rollups() RETURNS void LANGUAGE sql AS $$
    TRUNCATE mention_rollups_minute, mention_rollups_hour, mention_rollups_day, mention_totals_day,
             entity_rollups_day, author_rollups_day, watchlist_rollups_minute, watchlist_rollups_hour,
             watchlist_rollups_day;
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
$$;

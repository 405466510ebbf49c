-- Risk and intent tags per bucket × watchlist: what the dashboard's tag chart reads. It counted them
-- from the watchlist's tagged mentions of both periods through the facet index, a scan that grows
-- with the period (a 30-day overview of a large brand read tens of thousands of rows). A mention
-- counts once per distinct tag, for each of its watchlists but those it is owned for, as the other
-- rollups (migration 045); mentions without a watchlist are not counted (no chart shows '(none)').
CREATE TABLE tag_rollups_minute (
    watchlist_id  text        NOT NULL,
    bucket        timestamptz NOT NULL,
    tag           text        NOT NULL,
    mentions      bigint      NOT NULL,
    PRIMARY KEY (watchlist_id, bucket, tag)
) WITH (fillfactor = 80);
CREATE TABLE tag_rollups_hour (LIKE tag_rollups_minute INCLUDING ALL) WITH (fillfactor = 80);
CREATE TABLE tag_rollups_day (LIKE tag_rollups_minute INCLUDING ALL) WITH (fillfactor = 80);

CREATE VIEW mention_tag_rows AS
SELECT DISTINCT w.watchlist_id, m.mention_id, m.created_at, x ->> 'tag' AS tag
FROM mentions m
CROSS JOIN LATERAL unnest(m.watchlist_ids) AS w(watchlist_id)
CROSS JOIN LATERAL jsonb_array_elements(m.risks) AS x
WHERE w.watchlist_id <> ALL (m.owned_watchlist_ids) AND x ->> 'tag' IS NOT NULL;

CREATE VIEW tag_rollups_recount AS
SELECT 'minute'::text AS granularity, watchlist_id, date_trunc('minute', created_at, 'UTC') AS bucket, tag,
       count(*) AS mentions
FROM mention_tag_rows GROUP BY 2, 3, 4
UNION ALL
SELECT 'hour', watchlist_id, date_trunc('hour', created_at, 'UTC'), tag, count(*) FROM mention_tag_rows GROUP BY 2, 3, 4
UNION ALL
SELECT 'day', watchlist_id, date_trunc('day', created_at, 'UTC'), tag, count(*) FROM mention_tag_rows GROUP BY 2, 3, 4;

CREATE OR REPLACE FUNCTION earful_rebuild_tag_rollups() RETURNS void LANGUAGE sql AS $$
    TRUNCATE tag_rollups_minute, tag_rollups_hour, tag_rollups_day;
    INSERT INTO tag_rollups_minute SELECT watchlist_id, bucket, tag, mentions FROM tag_rollups_recount
        WHERE granularity = 'minute';
    INSERT INTO tag_rollups_hour SELECT watchlist_id, date_trunc('hour', bucket, 'UTC'), tag, sum(mentions)
        FROM tag_rollups_minute GROUP BY 1, 2, 3;
    INSERT INTO tag_rollups_day SELECT watchlist_id, date_trunc('day', bucket, 'UTC'), tag, sum(mentions)
        FROM tag_rollups_hour GROUP BY 1, 2, 3;
$$;

-- earful_rebuild_rollups() rebuilds these too: the rebuild of the other rollups (migration 006's)
-- keeps its body under another name, and the function of that name now runs both.
ALTER FUNCTION earful_rebuild_rollups() RENAME TO earful_rebuild_count_rollups;
CREATE FUNCTION earful_rebuild_rollups() RETURNS void LANGUAGE sql AS $$
    SELECT earful_rebuild_count_rollups();
    SELECT earful_rebuild_tag_rollups();
$$;

SELECT earful_rebuild_tag_rollups();

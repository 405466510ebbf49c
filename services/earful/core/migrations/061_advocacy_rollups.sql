-- Advocates from the author rollups: what each author's positive posts gathered (likes, reposts,
-- replies, engagement velocity) per watchlist × UTC day, so ranking advocates no longer scans the
-- watchlist's positive and negative mentions of two periods (over a 30-day period of a large brand,
-- ~60,000 rows read and aggregated per request: 0.3-1.6 s at 5 million mentions).
--
-- Engagement keeps changing after a post is stored; the writer applies the change of each
-- re-observed positive post to its author-day (the new values minus the old ones, in the statement
-- that updates the post), and a correction, a re-enrichment or a back-fill moves a post's engagement
-- with its sentiment and watchlists (earful.storage.contributions). A recount from `mentions` agrees.
--
-- Their best posts: the most amplified positive posts of a period, read from the few days that can
-- hold them. Reading every post of the advocates shown took up to ~0.7 s over 30 days of a large
-- brand (a prolific author writes thousands of posts a month); each author-day now keeps an upper
-- bound of its best positive post's amplification (`pos_best`, the largest seen: a maximum is not
-- decremented when a post's velocity falls or it leaves, like `reach`), and the API reads an
-- author's days from the highest bound down until no unread day can beat the posts found
-- (earful.storage.api.entities.best_posts_of), through the index by author below.

-- A post's engagement velocity: engagement (likes, reposts, replies) per hour from posting to when
-- the counts were observed, at least one hour; rounded to 6 decimals so sums and differences of it
-- are exact (numeric), whatever order they are applied in.
CREATE FUNCTION earful_velocity(likes bigint, reposts bigint, replies bigint, observed_at timestamptz,
                                created_at timestamptz) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT round(((likes + reposts + replies)::float8
                  / greatest(extract(epoch FROM observed_at - created_at)::float8 / 3600.0, 1.0))::numeric, 6)
$$;

ALTER TABLE author_rollups_day
    ADD COLUMN author_id    text,                        -- as author_handle: the latest seen
    ADD COLUMN connector    text,                        -- how the author's posts came (feeds are outlets)
    ADD COLUMN pos_likes    bigint  NOT NULL DEFAULT 0,  -- of the day's positive posts
    ADD COLUMN pos_reposts  bigint  NOT NULL DEFAULT 0,
    ADD COLUMN pos_replies  bigint  NOT NULL DEFAULT 0,
    ADD COLUMN pos_velocity numeric NOT NULL DEFAULT 0,
    ADD COLUMN pos_best     numeric;                     -- null: no positive post counted yet

-- The advocates' ranking reads a watchlist's author-days with a positive or negative post, by day.
CREATE INDEX author_rollups_day_opinion_idx ON author_rollups_day (watchlist_id, bucket)
    WHERE positive > 0 OR negative > 0;

CREATE OR REPLACE VIEW mention_watchlist_rows AS
SELECT w.watchlist_id, m.mention_id, m.source, m.created_at, m.lang, coalesce(m.sentiment, 'unknown') AS sentiment,
       m.entities, m.author_id, m.author_handle, m.author_name, m.author_followers, m.connector, m.likes, m.reposts,
       m.replies, earful_velocity(m.likes, m.reposts, m.replies, coalesce(m.engagement_observed_at, m.received_at),
                                  m.created_at) AS velocity
FROM mentions m
CROSS JOIN LATERAL unnest(CASE WHEN cardinality(m.watchlist_ids) = 0 THEN ARRAY['(none)']
                               ELSE m.watchlist_ids END) AS w(watchlist_id)
WHERE w.watchlist_id <> ALL (m.owned_watchlist_ids);

CREATE OR REPLACE VIEW author_rollups_recount AS
SELECT watchlist_id, date_trunc('day', created_at, 'UTC') AS bucket, source,
       coalesce(lower(author_handle), 'id:' || author_id) AS author_key,
       max(author_handle) AS author_handle, max(author_name) AS author_name, count(*) AS mentions,
       count(*) FILTER (WHERE sentiment = 'positive') AS positive,
       count(*) FILTER (WHERE sentiment = 'negative') AS negative,
       coalesce(max(author_followers), 0) AS reach,
       max(author_id) AS author_id, max(connector) AS connector,
       coalesce(sum(likes) FILTER (WHERE sentiment = 'positive'), 0)::bigint AS pos_likes,
       coalesce(sum(reposts) FILTER (WHERE sentiment = 'positive'), 0)::bigint AS pos_reposts,
       coalesce(sum(replies) FILTER (WHERE sentiment = 'positive'), 0)::bigint AS pos_replies,
       coalesce(sum(velocity) FILTER (WHERE sentiment = 'positive'), 0) AS pos_velocity,
       max(reposts + replies + velocity) FILTER (WHERE sentiment = 'positive') AS pos_best
FROM mention_watchlist_rows
WHERE watchlist_id <> '(none)' AND (author_handle IS NOT NULL OR author_id IS NOT NULL)
GROUP BY 1, 2, 3, 4;

-- The stored author-days with a positive or negative post take their figures from a recount of
-- those days (earful_rebuild_rollups() now copies the new columns too: they follow the view's order).
UPDATE author_rollups_day t
SET author_id = r.author_id, connector = r.connector, pos_likes = r.pos_likes, pos_reposts = r.pos_reposts,
    pos_replies = r.pos_replies, pos_velocity = r.pos_velocity, pos_best = r.pos_best
FROM author_rollups_recount r
WHERE (t.positive > 0 OR t.negative > 0) AND r.watchlist_id = t.watchlist_id AND r.bucket = t.bucket
  AND r.source = t.source AND r.author_key = t.author_key;

-- A mention by its author (source, then the key the author rollups use: lower-case handle, else
-- 'id:' + account id): how an author's posts of a day are read. Building it reads every partition
-- once and holds writes to `mentions` meanwhile (about a minute per 5 million mentions on 2 cores).
CREATE INDEX mentions_author_idx ON mentions (source, (coalesce(lower(author_handle), 'id:' || author_id)), created_at);

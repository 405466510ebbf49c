-- The advocates' best posts: their most amplified positive posts of a period, read from the few
-- days that can hold them. Over 30 days of a large brand, reading every post of the advocates
-- shown took up to ~0.7 s at 5 million mentions (a prolific author writes thousands of posts a
-- month); now each author-day keeps an upper bound of its best positive post's amplification
-- (`pos_best`, the largest seen: a maximum is not decremented when a post's velocity falls or
-- it leaves, like `reach`), and the API reads an author's days from the highest bound down until
-- no unread day can beat the posts found (earful.storage.api.entities.best_posts_of).
ALTER TABLE author_rollups_day ADD COLUMN pos_best numeric;  -- null: no positive post counted yet

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

UPDATE author_rollups_day t SET pos_best = r.pos_best
FROM author_rollups_recount r
WHERE t.positive > 0 AND r.watchlist_id = t.watchlist_id AND r.bucket = t.bucket AND r.source = t.source
  AND r.author_key = t.author_key;

-- A mention by its author (source, then the key the author rollups use: lower-case handle, else
-- 'id:' + account id): how an author's posts of a day are read. Building it reads every partition
-- once and holds writes to `mentions` meanwhile (about a minute per 5 million mentions on 2 cores).
CREATE INDEX mentions_author_idx ON mentions (source, (coalesce(lower(author_handle), 'id:' || author_id)), created_at);

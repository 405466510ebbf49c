-- Owned and earned (earful.watchlists.owned): the watchlists for which a mention is owned, i.e.
-- written by one of the brand's own accounts (its `handles`, staff, EARFUL_OWNED_HANDLES). The
-- writer decides it when it stores the mention, from the watchlists of that moment, and never
-- changes it. An owned mention stays stored, in `watchlist_ids` and its filters, and still answers
-- questions (brand_replies); it is left out of that watchlist's rollups: volume, share of voice,
-- authors and entities. Mentions stored before this migration are earned for every watchlist, as
-- they were counted.
ALTER TABLE mentions ADD COLUMN owned_watchlist_ids text[] NOT NULL DEFAULT '{}';

-- The recount follows the same rule, so rollups and a recount from `mentions` still agree (and
-- earful_rebuild_rollups() rebuilds them under it).
CREATE OR REPLACE VIEW mention_watchlist_rows AS
SELECT w.watchlist_id, m.mention_id, m.source, m.created_at, m.lang, coalesce(m.sentiment, 'unknown') AS sentiment,
       m.entities, m.author_id, m.author_handle, m.author_name, m.author_followers
FROM mentions m
CROSS JOIN LATERAL unnest(CASE WHEN cardinality(m.watchlist_ids) = 0 THEN ARRAY['(none)']
                               ELSE m.watchlist_ids END) AS w(watchlist_id)
WHERE w.watchlist_id <> ALL (m.owned_watchlist_ids);

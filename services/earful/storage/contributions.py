"""Moving a stored mention's counts when its stored values change, so every rollup stays exact.

The writer counts a mention once, when it inserts it (writer._INSERT_MENTIONS): for each of its
watchlists but those it is owned for ('(none)' when it has none) in the volume rollups (minute,
hour, day × sentiment × source × language), the watchlist rollups (share of voice), the entity
rollups and totals (once per distinct type and lower-case text), the author rollups and totals
(mentions, positive, negative, reach), the tag rollups (once per distinct risk or intent tag); and, when it is a customer question, once per watchlist in
`questions`. Three things change a stored mention afterwards: a person's correction
(corrections.py), a re-enrichment with newer models (reprocess.py) and a watchlist applied to
history (backfill.py). Each describes the mention before and after as a `Contribution`, and
`move_contributions` subtracts the old one and adds the new one, in the caller's transaction: the
rollups then hold what a recount from `mentions` gives (migration 003's *_recount views, under
045's owned rule), as if the mention had arrived with its new values.

Set-based, like the writer: the batch's old (-1) and new (+1) contributions go to a temporary
table, and one statement applies the net change per rollup row (rows that net to nothing are not
touched), a second deletes the rows brought to zero (the recount has no row for them), and a third
recomputes `reach` (a maximum, which cannot be decremented) of the author-days that lost a
mention, from the stored mentions of those days. `author_totals.reach` stays what it is documented
to be, an upper bound (as after retention). `mention_totals_day` never changes: a mention stays
one mention.

The caller holds the erasure lock shared and the mentions' rows locked (so neither an erasure nor a
correction interleaves), and has already written the new values to `mentions` (the reach recount
reads them).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from earful.storage.writer import QUESTIONS_LOCK, BrandHandles, author_upserts, tag_rollup

QUESTION_TAG = "customer_question"
_MOVES = "earful_contribution_moves"
_COLUMNS = ("sign", "mention_id", "source", "created_at", "lang", "sentiment", "watchlist_ids", "owned_watchlist_ids",
            "entities", "author_handle", "author_id", "author_name", "author_followers", "tags", "connector", "likes",
            "reposts", "replies", "engagement_observed_at")
_CREATE = (f"CREATE TEMP TABLE IF NOT EXISTS {_MOVES} (sign integer, mention_id uuid, source text, created_at timestamptz,"
           " lang text, sentiment text, watchlist_ids text[], owned_watchlist_ids text[], entities jsonb,"
           " author_handle text, author_id text, author_name text, author_followers bigint, tags text[], connector text,"
           " likes bigint, reposts bigint, replies bigint, engagement_observed_at timestamptz) ON COMMIT DELETE ROWS")


@dataclass(frozen=True)
class Contribution:
    """What one stored mention counts for: the fields of `mentions` the rollups and questions read."""

    mention_id: uuid.UUID
    source: str
    source_id: str
    created_at: datetime
    lang: str
    sentiment: str | None
    watchlist_ids: tuple[str, ...]
    owned_watchlist_ids: tuple[str, ...] = ()
    entities: tuple[tuple[str, str], ...] = ()  # (type, text) of each entity, in stored order
    question: bool = False  # tagged customer_question (risks)
    tags: tuple[str, ...] = ()  # its distinct risk and intent tags, sorted (the tag rollups)
    author_handle: str | None = None
    author_id: str | None = None
    author_name: str | None = field(default=None, compare=False)
    author_followers: int | None = field(default=None, compare=False)
    # The post's engagement, which its author-day counts when it is positive (advocates).
    connector: str | None = field(default=None, compare=False)
    likes: int = field(default=0, compare=False)
    reposts: int = field(default=0, compare=False)
    replies: int = field(default=0, compare=False)
    engagement_observed_at: datetime | None = field(default=None, compare=False)  # when absent: received_at

    @classmethod
    def of(cls, row: Mapping[str, Any], **changes: Any) -> Contribution:
        """From a `mentions` row (entities and risks as jsonb text or decoded), with `changes` applied:
        each a column's new value (watchlist_ids, owned_watchlist_ids, lang, sentiment, entities, risks)."""
        values = {**{k: row[k] for k in row.keys()}, **changes}
        return cls(
            mention_id=values["mention_id"], source=values["source"], source_id=values["source_id"],
            created_at=values["created_at"], lang=values["lang"], sentiment=values["sentiment"],
            watchlist_ids=tuple(values["watchlist_ids"]), owned_watchlist_ids=tuple(values.get("owned_watchlist_ids") or ()),
            entities=entity_keys(_decoded(values["entities"])), question=is_question(_decoded(values["risks"])),
            tags=tag_names(_decoded(values["risks"])),
            author_handle=values.get("author_handle"), author_id=values.get("author_id"),
            author_name=values.get("author_name"), author_followers=values.get("author_followers"),
            connector=values.get("connector"), likes=values["likes"], reposts=values["reposts"], replies=values["replies"],
            engagement_observed_at=values.get("engagement_observed_at") or values["received_at"])

    def counted_in(self) -> tuple[str, ...]:
        """The rollup watchlists this mention counts in: its watchlists but the owned ones, '(none)' for none."""
        if not self.watchlist_ids:
            return ("(none)",)
        return tuple(w for w in self.watchlist_ids if w not in self.owned_watchlist_ids)

    def rollup_key(self) -> tuple[Any, ...]:
        """Everything the rollups read: equal keys, equal counts (a mention counted nowhere, owned by
        every watchlist it has, has nothing to move)."""
        counted = frozenset(self.counted_in())
        if not counted:
            return ()
        return (counted, self.lang, self.sentiment or "unknown", frozenset((t, x.lower()) for t, x in self.entities),
                self.tags)

    def question_watchlists(self) -> frozenset[str]:
        """The watchlists a customer question is filed under (owned or not, as the writer does)."""
        return frozenset(self.watchlist_ids) if self.question else frozenset()


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def entity_keys(entities: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    """(type, text) of each entity."""
    return tuple((str(e["type"]), str(e["text"])) for e in entities)


def is_question(risks: Iterable[Any]) -> bool:
    """Whether the risk tags (stored {tag, ...} entries or tag strings) hold customer_question."""
    return any((r["tag"] if isinstance(r, Mapping) else r) == QUESTION_TAG for r in risks)


def tag_names(risks: Iterable[Any]) -> tuple[str, ...]:
    """The distinct tags of stored risk entries ({tag, ...}) or tag strings, sorted."""
    tags = ((r.get("tag") if isinstance(r, Mapping) else r) for r in risks)
    return tuple(sorted({t for t in tags if isinstance(t, str)}))


def move_rows(moves: Iterable[tuple[Contribution, Contribution]]) -> list[tuple[Any, ...]]:
    """The temporary table's rows: each old contribution with sign -1 and its new one with +1, for the
    moves that change a count (pure)."""
    out = []
    for old, new in moves:
        if old.rollup_key() == new.rollup_key():
            continue
        for sign, c in ((-1, old), (1, new)):
            out.append((sign, c.mention_id, c.source, c.created_at, c.lang, c.sentiment or "unknown",
                        list(c.watchlist_ids), list(c.owned_watchlist_ids),
                        json.dumps([{"type": t, "text": x} for t, x in c.entities], ensure_ascii=False),
                        c.author_handle, c.author_id, c.author_name, c.author_followers, list(c.tags), c.connector,
                        c.likes, c.reposts, c.replies, c.engagement_observed_at))
    return out


def question_changes(old: Contribution, new: Contribution) -> tuple[list[str], list[str]]:
    """(watchlists whose question row goes, watchlists that get one), sorted (pure)."""
    before, after = old.question_watchlists(), new.question_watchlists()
    return sorted(before - after), sorted(after - before)


# --- the statements -----------------------------------------------------------------------------------

_DELTAS = f"""
p AS (
    SELECT w.watchlist_id, m.* FROM {_MOVES} m
    CROSS JOIN LATERAL unnest(CASE WHEN cardinality(m.watchlist_ids) = 0 THEN ARRAY['(none)']
                                   ELSE m.watchlist_ids END) AS w(watchlist_id)
    WHERE w.watchlist_id <> ALL (m.owned_watchlist_ids)
), v AS (
    SELECT watchlist_id, date_trunc('minute', created_at, 'UTC') AS bucket, sentiment, source, lang, sum(sign)::bigint AS n
    FROM p GROUP BY 1, 2, 3, 4, 5 HAVING sum(sign) <> 0
), e AS (
    SELECT watchlist_id, bucket, entity_type, entity_key,
           coalesce(min(entity_text) FILTER (WHERE sign > 0), min(entity_text)) AS entity_text, sum(sign)::bigint AS n
    FROM (
        SELECT DISTINCT ON (p.watchlist_id, p.mention_id, p.sign, x ->> 'type', lower(x ->> 'text'))
               p.watchlist_id, p.sign, date_trunc('day', p.created_at, 'UTC') AS bucket, x ->> 'type' AS entity_type,
               lower(x ->> 'text') AS entity_key, x ->> 'text' AS entity_text
        FROM p, jsonb_array_elements(p.entities) AS x
        WHERE p.watchlist_id <> '(none)'
    ) d
    GROUP BY 1, 2, 3, 4 HAVING sum(sign) <> 0
), a AS (
    SELECT watchlist_id, date_trunc('day', created_at, 'UTC') AS bucket, source,
           coalesce(lower(author_handle), 'id:' || author_id) AS author_key,
           max(author_handle) FILTER (WHERE sign > 0) AS author_handle,
           max(author_name) FILTER (WHERE sign > 0) AS author_name, sum(sign)::bigint AS n,
           coalesce(sum(sign) FILTER (WHERE sentiment = 'positive'), 0)::bigint AS positive,
           coalesce(sum(sign) FILTER (WHERE sentiment = 'negative'), 0)::bigint AS negative,
           coalesce(max(author_followers) FILTER (WHERE sign > 0), 0)::bigint AS reach,
           max(author_id) FILTER (WHERE sign > 0) AS author_id, max(connector) FILTER (WHERE sign > 0) AS connector,
           coalesce(sum(sign * likes) FILTER (WHERE sentiment = 'positive'), 0)::bigint AS likes,
           coalesce(sum(sign * reposts) FILTER (WHERE sentiment = 'positive'), 0)::bigint AS reposts,
           coalesce(sum(sign * replies) FILTER (WHERE sentiment = 'positive'), 0)::bigint AS replies,
           coalesce(sum(sign * earful_velocity(likes, reposts, replies, engagement_observed_at, created_at)) FILTER (WHERE sentiment = 'positive'), 0) AS velocity,
           max(reposts + replies + earful_velocity(likes, reposts, replies, engagement_observed_at, created_at))
               FILTER (WHERE sign > 0 AND sentiment = 'positive') AS best
    FROM p
    WHERE watchlist_id <> '(none)' AND (author_handle IS NOT NULL OR author_id IS NOT NULL)
    GROUP BY 1, 2, 3, 4
    HAVING sum(sign) <> 0 OR coalesce(sum(sign) FILTER (WHERE sentiment = 'positive'), 0) <> 0
        OR coalesce(sum(sign) FILTER (WHERE sentiment = 'negative'), 0) <> 0
), g AS (  -- the tag rollups' net change per minute (created_at: the minute)
    SELECT watchlist_id, date_trunc('minute', created_at, 'UTC') AS created_at, tag, sum(sign)::bigint AS n
    FROM p CROSS JOIN LATERAL unnest(p.tags) AS x(tag)
    WHERE watchlist_id <> '(none)' GROUP BY 1, 2, 3 HAVING sum(sign) <> 0
)"""


def _volume(table: str, unit: str) -> str:
    bucket = "bucket" if unit == "minute" else f"date_trunc('{unit}', bucket, 'UTC')"
    return f"""
    INSERT INTO {table} AS t (watchlist_id, bucket, sentiment, source, lang, mentions)
    SELECT watchlist_id, {bucket}, sentiment, source, lang, sum(n) FROM v GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (watchlist_id, bucket, sentiment, source, lang) DO UPDATE SET mentions = t.mentions + EXCLUDED.mentions"""


def _watchlist(unit: str) -> str:
    bucket = "bucket" if unit == "minute" else f"date_trunc('{unit}', bucket, 'UTC')"
    return f"""
    INSERT INTO watchlist_rollups_{unit} AS t (bucket, watchlist_id, sentiment, mentions)
    SELECT {bucket}, watchlist_id, sentiment, sum(n) FROM v GROUP BY 1, 2, 3 HAVING sum(n) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (bucket, watchlist_id, sentiment) DO UPDATE SET mentions = t.mentions + EXCLUDED.mentions"""


# The net change of every rollup row the moves touch, in the writer's key order (so a concurrent
# batch of the writer waits rather than deadlocks).
_ADJUST = f"""
WITH {_DELTAS},
r_minute AS ({_volume("mention_rollups_minute", "minute")}
), r_hour AS ({_volume("mention_rollups_hour", "hour")}
), r_day AS ({_volume("mention_rollups_day", "day")}
), w_minute AS ({_watchlist("minute")}
), w_hour AS ({_watchlist("hour")}
), w_day AS ({_watchlist("day")}
), r_entity AS (
    INSERT INTO entity_rollups_day AS t (watchlist_id, bucket, entity_type, entity_key, entity_text, mentions)
    SELECT watchlist_id, bucket, entity_type, entity_key, entity_text, n FROM e ORDER BY 1, 3, 4, 2
    ON CONFLICT (watchlist_id, entity_type, entity_key, bucket) DO UPDATE SET mentions = t.mentions + EXCLUDED.mentions
), t_entity AS (
    INSERT INTO entity_totals AS t (watchlist_id, entity_type, entity_key, mentions)
    SELECT watchlist_id, entity_type, entity_key, sum(n) FROM e GROUP BY 1, 2, 3 HAVING sum(n) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (watchlist_id, entity_type, entity_key) DO UPDATE SET mentions = t.mentions + EXCLUDED.mentions
), g_minute AS ({tag_rollup("minute", "g", "sum(n)")}
), g_hour AS ({tag_rollup("hour", "g", "sum(n)")}
), g_day AS ({tag_rollup("day", "g", "sum(n)")}
), {author_upserts("a")}
)
SELECT (SELECT count(*) FROM v) AS volume_rows, (SELECT count(*) FROM e) AS entity_rows, (SELECT count(*) FROM a) AS author_rows
"""


def _prune_volume(table: str, unit: str, keys: tuple[str, ...]) -> str:
    bucket = "v.bucket" if unit == "minute" else f"date_trunc('{unit}', v.bucket, 'UTC')"
    match = " AND ".join(f"t.{k} = v.{k}" for k in keys)
    return f"DELETE FROM {table} t USING v WHERE t.bucket = {bucket} AND {match} AND t.mentions <= 0"


def _prune_tags(unit: str) -> str:
    return (f"kg_{unit} AS (DELETE FROM tag_rollups_{unit} t USING g WHERE t.watchlist_id = g.watchlist_id AND t.tag = g.tag"
            f" AND t.bucket = date_trunc('{unit}', g.created_at, 'UTC') AND t.mentions <= 0")


# The rows the adjustment brought to zero go (a second statement: the first one's changes are not
# visible to itself).
_PRUNE = f"""
WITH {_DELTAS},
k_minute AS ({_prune_volume("mention_rollups_minute", "minute", ("watchlist_id", "sentiment", "source", "lang"))}
), k_hour AS ({_prune_volume("mention_rollups_hour", "hour", ("watchlist_id", "sentiment", "source", "lang"))}
), k_day AS ({_prune_volume("mention_rollups_day", "day", ("watchlist_id", "sentiment", "source", "lang"))}
), kw_minute AS ({_prune_volume("watchlist_rollups_minute", "minute", ("watchlist_id", "sentiment"))}
), kw_hour AS ({_prune_volume("watchlist_rollups_hour", "hour", ("watchlist_id", "sentiment"))}
), kw_day AS ({_prune_volume("watchlist_rollups_day", "day", ("watchlist_id", "sentiment"))}
), k_entity AS (
    DELETE FROM entity_rollups_day t USING e WHERE t.watchlist_id = e.watchlist_id AND t.entity_type = e.entity_type
      AND t.entity_key = e.entity_key AND t.bucket = e.bucket AND t.mentions <= 0
), k_entity_total AS (
    DELETE FROM entity_totals t USING e WHERE t.watchlist_id = e.watchlist_id AND t.entity_type = e.entity_type
      AND t.entity_key = e.entity_key AND t.mentions <= 0
), {_prune_tags("minute")}), {_prune_tags("hour")}), {_prune_tags("day")}
), k_author AS (
    DELETE FROM author_rollups_day t USING a WHERE t.watchlist_id = a.watchlist_id AND t.source = a.source
      AND t.author_key = a.author_key AND t.bucket = a.bucket AND t.mentions <= 0
), k_author_total AS (
    DELETE FROM author_totals t USING a WHERE t.watchlist_id = a.watchlist_id AND t.source = a.source
      AND t.author_key = a.author_key AND t.mentions <= 0
)
SELECT 1
"""

# The reach of each author-day that lost a mention and still has some: the largest follower count
# among its mentions, as the recount says (author_rollups_recount). $1/$2 bound the days, so only
# their partitions are read.
_REACH = f"""
WITH {_DELTAS},
lost AS (  -- the author-days some mention left (a mention that only changed its sentiment stays in its day)
    SELECT DISTINCT watchlist_id, bucket, source, author_key FROM (
        SELECT watchlist_id, date_trunc('day', created_at, 'UTC') AS bucket, source,
               coalesce(lower(author_handle), 'id:' || author_id) AS author_key, mention_id
        FROM p WHERE watchlist_id <> '(none)' AND (author_handle IS NOT NULL OR author_id IS NOT NULL)
        GROUP BY 1, 2, 3, 4, 5 HAVING sum(sign) < 0
    ) left_day
),
recounted AS (
    SELECT l.watchlist_id, l.bucket, l.source, l.author_key, coalesce(max(m.author_followers), 0) AS reach
    FROM lost l
    JOIN mentions m ON m.created_at >= $1 AND m.created_at < $2
     AND m.created_at >= l.bucket AND m.created_at < l.bucket + interval '1 day' AND m.source = l.source
     AND coalesce(lower(m.author_handle), 'id:' || m.author_id) = l.author_key
     AND l.watchlist_id = ANY (m.watchlist_ids) AND l.watchlist_id <> ALL (m.owned_watchlist_ids)
    GROUP BY 1, 2, 3, 4
)
UPDATE author_rollups_day t SET reach = r.reach
FROM recounted r
WHERE t.watchlist_id = r.watchlist_id AND t.bucket = r.bucket AND t.source = r.source AND t.author_key = r.author_key
  AND t.reach <> r.reach
"""

_QUESTIONS_REMOVED = "DELETE FROM questions WHERE source = $1 AND source_id = $2 AND watchlist_id = ANY ($3::text[])"
# As the writer files a new question (writer._QUESTIONS): per watchlist, unless a brand handle of
# that watchlist wrote it, with the earliest brand reply already stored.
_QUESTIONS_ADDED = """
INSERT INTO questions (watchlist_id, source, source_id, created_at, mention_id, first_reply_at)
SELECT w.watchlist_id, $2, $3, $4, $5,
       (SELECT min(r.created_at) FROM brand_replies r
        WHERE r.watchlist_id = w.watchlist_id AND r.source = $2 AND r.in_reply_to = $3)
FROM unnest($1::text[]) AS w(watchlist_id)
WHERE NOT EXISTS (SELECT 1 FROM unnest($6::text[], $7::text[]) AS b(handle, watchlist_id)
                  WHERE b.watchlist_id = w.watchlist_id AND b.handle = lower($8::text))
ON CONFLICT DO NOTHING
"""


def _day(ts: datetime) -> datetime:
    ts = ts.astimezone(timezone.utc)
    return datetime(ts.year, ts.month, ts.day, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Moved:
    """What `move_contributions` changed."""

    mentions: int = 0  # mentions whose counts moved
    questions_removed: int = 0
    questions_added: int = 0


async def move_contributions(conn: asyncpg.Connection, moves: Sequence[tuple[Contribution, Contribution]],
                             brands: BrandHandles = BrandHandles()) -> Moved:
    """Subtract each old contribution and add its new one, in every rollup and in `questions`
    (inside the caller's transaction; see the module docstring for what the caller holds).
    A move whose old and new contributions count the same changes nothing."""
    rows = move_rows(moves)
    if rows:
        await conn.execute(_CREATE)
        await conn.copy_records_to_table(_MOVES, records=rows, columns=_COLUMNS)
        await conn.fetchrow(_ADJUST)
        await conn.execute(_PRUNE)
        lo = min(_day(r[3]) for r in rows)
        hi = max(_day(r[3]) for r in rows) + timedelta(days=1)
        await conn.execute(_REACH, lo, hi)
        await conn.execute(f"DELETE FROM {_MOVES}")  # a second call in the same transaction starts empty
    removed = added = 0
    changes = [(old, new, *question_changes(old, new)) for old, new in moves]
    if any(gone or come for _, _, gone, come in changes):
        await conn.execute("SELECT pg_advisory_xact_lock($1)", QUESTIONS_LOCK)  # after the rollups, as the writer
        handles, wids = list(brands.handles), list(brands.watchlist_ids)
        for old, new, gone, come in changes:
            if gone:
                status = await conn.execute(_QUESTIONS_REMOVED, old.source, old.source_id, gone)
                removed += int(status.split()[-1])
            if come:
                status = await conn.execute(_QUESTIONS_ADDED, come, new.source, new.source_id, new.created_at,
                                            new.mention_id, handles, wids, new.author_handle)
                added += int(status.split()[-1])
    return Moved(len(rows) // 2, removed, added)

"""Writing batches to PostgreSQL, idempotently.

Rows are COPYed into a temporary staging table and moved by one statement:
``INSERT INTO mention_keys … ON CONFLICT DO NOTHING RETURNING`` decides which mentions are new
(the global unique key on (source, source_id); see migration 002), ``INSERT INTO mentions``
takes exactly those, and every rollup, question and brand reply is incremented from the
RETURNING rows only, in the same transaction. A replayed or re-delivered mention therefore
changes nothing, and the rollups always agree with the mentions table. A later observation of a
stored mention (newer ``engagement.observed_at``) updates its engagement counts and nothing else.

Owned and earned: a mention written by one of a brand's own accounts (earful.watchlists.owned) is
owned for that watchlist. The writer decides it once, from the watchlists in force, and stores it
(``owned_watchlist_ids``); the rollups of those watchlists leave the mention out, and so does the
recount (migration 045), while questions and brand replies see it as before.

Before the transaction the daily partitions the batch needs are created if missing. Inside it,
a shared advisory lock orders the batch with erasures (which take it exclusively), so a mention
of an erased author that is re-delivered later is refused rather than resurrected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import asyncpg

from earful.core.erased_authors import author_hash  # how an erased author is remembered, as the erasure topic names it
from earful.storage.cases import CareBook, sync_cases
from earful.watchlists.owned import OwnedHandles

ERASURE_LOCK = 0x6561726676  # "earfv": writers share it, an erasure holds it alone

MENTION_COLUMNS = (
    "mention_id", "source", "source_id", "url", "author_id", "author_handle", "author_name", "author_followers",
    "text", "title", "country", "connector", "content_type", "declared_lang", "lang", "lang_confidence", "created_at",
    "received_at", "fetched_at", "enriched_at", "in_reply_to", "reposted_from", "likes", "reposts", "replies",
    "engagement_observed_at", "sentiment", "sentiment_score", "sentiment_reason", "sentiment_probabilities",
    "watchlist_ids", "entities", "risks", "matches", "models", "facets",
)
ALERT_COLUMNS = (
    "alert_id", "status", "fingerprint", "rule", "watchlist_id", "severity", "labels", "summary", "observed",
    "baseline", "score", "bucket_seconds", "starts_at", "ends_at", "detected_at", "first_received_at",
    "sample_mention_ids", "annotations", "group_key", "explanation",
)
_JSON_ALERT_COLUMNS = frozenset({"labels", "annotations", "explanation"})
_JSON_MENTION_COLUMNS = frozenset({"sentiment_probabilities", "entities", "risks", "matches", "models"})

#: What the writer adds to a record's row when it stores it: the watchlists for which the mention is
#: owned (earful.watchlists.owned), decided from the watchlists in force then.
WRITTEN_COLUMNS = (*MENTION_COLUMNS, "owned_watchlist_ids")

_I = {name: i for i, name in enumerate(MENTION_COLUMNS)}
_SOURCE, _AUTHOR_ID, _AUTHOR_HANDLE, _CREATED_AT = _I["source"], _I["author_id"], _I["author_handle"], _I["created_at"]
_WATCHLIST_IDS = _I["watchlist_ids"]

_COLS = ", ".join(WRITTEN_COLUMNS)
_L_COLS = ", ".join(f"l.{c}" for c in WRITTEN_COLUMNS)
_STAGING = "earful_mentions_staging"
_CONVERSATION = "earful_conversation_rows"
_CREATE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} ON COMMIT DELETE ROWS AS SELECT {_COLS} FROM mentions WITH NO DATA;"
    f" CREATE TEMP TABLE IF NOT EXISTS {_CONVERSATION} ON COMMIT DELETE ROWS AS SELECT mention_id, source, source_id,"
    " created_at, lang, sentiment, watchlist_ids, entities, author_id, author_handle, author_name, author_followers,"
    " in_reply_to, facets, owned_watchlist_ids FROM mentions WITH NO DATA"
)
QUESTIONS_LOCK = 0x6561726677  # "earfw": one writer at a time links questions and replies


def _volume_rollup(table: str, unit: str) -> str:
    return f"""
INSERT INTO {table} AS t (watchlist_id, bucket, sentiment, source, lang, mentions)
SELECT watchlist_id, date_trunc('{unit}', created_at, 'UTC'), sentiment, source, lang, count(*)
FROM per_watchlist GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (watchlist_id, bucket, sentiment, source, lang) DO UPDATE SET mentions = t.mentions + EXCLUDED.mentions"""


def _watchlist_rollup(unit: str) -> str:
    return f"""
INSERT INTO watchlist_rollups_{unit} AS t (bucket, watchlist_id, sentiment, mentions)
SELECT date_trunc('{unit}', created_at, 'UTC'), watchlist_id, sentiment, count(*)
FROM per_watchlist GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (bucket, watchlist_id, sentiment) DO UPDATE SET mentions = t.mentions + EXCLUDED.mentions"""


def velocity_of(row: str = "") -> str:
    """A post's engagement velocity as the rollups store it (migration 061's earful_velocity), from
    the columns of `row` (a table alias, or none)."""
    p = f"{row}." if row else ""
    return (f"earful_velocity({p}likes, {p}reposts, {p}replies, coalesce({p}engagement_observed_at, {p}received_at),"
            f" {p}created_at)")


def tag_rollup(unit: str, rows: str, count: str) -> str:
    """Add `count` per (watchlist_id, bucket, tag) of CTE `rows` (watchlist_id, created_at, tag, ...)
    to tag_rollups_{unit}: the writer adds one per tagged mention, the contribution moves signed deltas."""
    return f"""
INSERT INTO tag_rollups_{unit} AS t (watchlist_id, bucket, tag, mentions)
SELECT watchlist_id, date_trunc('{unit}', created_at, 'UTC'), tag, {count}
FROM {rows} GROUP BY 1, 2, 3 HAVING {count} <> 0 ORDER BY 1, 2, 3
ON CONFLICT (watchlist_id, bucket, tag) DO UPDATE SET mentions = t.mentions + EXCLUDED.mentions"""


def author_upserts(rows: str) -> str:
    """The `r_author` and `t_author` CTEs: the per-day and total author rollups incremented by the
    rows of CTE `rows` (watchlist_id, bucket, source, author_key, author_handle, author_name, n,
    positive, negative, reach, author_id, connector, and the positive posts' likes, reposts,
    replies, velocity and best amplification), one per key; the writer adds, the contribution moves
    add signed deltas. `pos_best` only grows: an upper bound, as `reach`."""
    return f"""r_author AS (
    INSERT INTO author_rollups_day AS t (watchlist_id, bucket, source, author_key, author_handle, author_name, mentions,
                                         positive, negative, reach, author_id, connector, pos_likes, pos_reposts,
                                         pos_replies, pos_velocity, pos_best)
    SELECT watchlist_id, bucket, source, author_key, author_handle, author_name, n, positive, negative, reach,
           author_id, connector, likes, reposts, replies, velocity, best
    FROM {rows} ORDER BY 1, 3, 4, 2
    ON CONFLICT (watchlist_id, source, author_key, bucket) DO UPDATE SET
        mentions = t.mentions + EXCLUDED.mentions, positive = t.positive + EXCLUDED.positive,
        negative = t.negative + EXCLUDED.negative, reach = greatest(t.reach, EXCLUDED.reach),
        author_handle = coalesce(EXCLUDED.author_handle, t.author_handle),
        author_name = coalesce(EXCLUDED.author_name, t.author_name),
        author_id = coalesce(EXCLUDED.author_id, t.author_id), connector = coalesce(EXCLUDED.connector, t.connector),
        pos_likes = t.pos_likes + EXCLUDED.pos_likes, pos_reposts = t.pos_reposts + EXCLUDED.pos_reposts,
        pos_replies = t.pos_replies + EXCLUDED.pos_replies, pos_velocity = t.pos_velocity + EXCLUDED.pos_velocity,
        pos_best = greatest(t.pos_best, EXCLUDED.pos_best)
), t_author AS (
    INSERT INTO author_totals AS t (watchlist_id, source, author_key, mentions, positive, negative, reach)
    SELECT watchlist_id, source, author_key, sum(n), sum(positive), sum(negative), max(reach)
    FROM {rows} GROUP BY 1, 2, 3 HAVING sum(n) <> 0 OR sum(positive) <> 0 OR sum(negative) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (watchlist_id, source, author_key) DO UPDATE SET
        mentions = t.mentions + EXCLUDED.mentions, positive = t.positive + EXCLUDED.positive,
        negative = t.negative + EXCLUDED.negative, reach = greatest(t.reach, EXCLUDED.reach)"""


_INSERT_MENTIONS = f"""
WITH latest AS (
    SELECT DISTINCT ON (source, source_id) * FROM {_STAGING}
    ORDER BY source, source_id, coalesce(engagement_observed_at, received_at) DESC
), new_keys AS (
    INSERT INTO mention_keys (source, source_id, created_at, observed_at)
    SELECT source, source_id, created_at, coalesce(engagement_observed_at, received_at) FROM latest
    ORDER BY source, source_id
    ON CONFLICT (source, source_id) DO NOTHING
    RETURNING source, source_id
), inserted AS (
    INSERT INTO mentions ({_COLS})
    SELECT {_L_COLS} FROM latest l JOIN new_keys k ON k.source = l.source AND k.source_id = l.source_id
    RETURNING mention_id, source, source_id, created_at, lang, coalesce(sentiment, 'unknown') AS sentiment,
              watchlist_ids, entities, author_id, author_handle, author_name, author_followers, in_reply_to, facets,
              owned_watchlist_ids, risks, connector,
              CASE WHEN sentiment = 'positive' THEN likes ELSE 0 END AS pos_likes,
              CASE WHEN sentiment = 'positive' THEN reposts ELSE 0 END AS pos_reposts,
              CASE WHEN sentiment = 'positive' THEN replies ELSE 0 END AS pos_replies,
              CASE WHEN sentiment = 'positive' THEN {velocity_of()} ELSE 0 END AS pos_velocity,
              CASE WHEN sentiment = 'positive' THEN reposts + replies + {velocity_of()} END AS pos_amplification
), observed AS (
    UPDATE mention_keys k SET observed_at = coalesce(l.engagement_observed_at, l.received_at)
    FROM latest l
    WHERE k.source = l.source AND k.source_id = l.source_id
      AND coalesce(l.engagement_observed_at, l.received_at) > k.observed_at
    RETURNING k.source, k.source_id, k.created_at, l.likes, l.reposts, l.replies, l.engagement_observed_at
), engaged_before AS (  -- the re-observed positive posts as stored (this statement's updates are not visible here)
    SELECT m.source, m.source_id, m.created_at, m.likes, m.reposts, m.replies, {velocity_of("m")} AS velocity
    FROM mentions m JOIN observed o ON m.source = o.source AND m.source_id = o.source_id AND m.created_at = o.created_at
    WHERE m.sentiment = 'positive'
), engagement AS (
    UPDATE mentions m
    SET likes = o.likes, reposts = o.reposts, replies = o.replies, engagement_observed_at = o.engagement_observed_at
    FROM observed o
    WHERE m.source = o.source AND m.source_id = o.source_id AND m.created_at = o.created_at
    RETURNING m.source, m.source_id, m.created_at, m.watchlist_ids, m.owned_watchlist_ids, m.author_handle, m.author_id,
              m.likes, m.reposts, m.replies, {velocity_of("m")} AS velocity
), engagement_moves AS (  -- what each re-observed positive post adds to its author-days (new minus old)
    SELECT w.watchlist_id, date_trunc('day', e.created_at, 'UTC') AS bucket, e.source,
           coalesce(lower(e.author_handle), 'id:' || e.author_id) AS author_key, NULL::text AS author_handle,
           NULL::text AS author_name, 0::bigint AS n, 0::bigint AS positive, 0::bigint AS negative, 0::bigint AS reach,
           NULL::text AS author_id, NULL::text AS connector, e.likes - b.likes AS likes, e.reposts - b.reposts AS reposts,
           e.replies - b.replies AS replies, e.velocity - b.velocity AS velocity, e.reposts + e.replies + e.velocity AS best
    FROM engagement e JOIN engaged_before b ON b.source = e.source AND b.source_id = e.source_id AND b.created_at = e.created_at
    CROSS JOIN LATERAL unnest(e.watchlist_ids) AS w(watchlist_id)
    WHERE w.watchlist_id <> ALL (e.owned_watchlist_ids) AND (e.author_handle IS NOT NULL OR e.author_id IS NOT NULL)
      AND (e.likes, e.reposts, e.replies, e.velocity) IS DISTINCT FROM (b.likes, b.reposts, b.replies, b.velocity)
), per_watchlist AS (
    -- Every rollup below counts a mention for each of its watchlists but those it is owned for
    -- (the recount view mention_watchlist_rows applies the same rule; see migration 045).
    SELECT w.watchlist_id, i.* FROM inserted i
    CROSS JOIN LATERAL unnest(CASE WHEN cardinality(i.watchlist_ids) = 0 THEN ARRAY['(none)']
                                   ELSE i.watchlist_ids END) AS w(watchlist_id)
    WHERE w.watchlist_id <> ALL (i.owned_watchlist_ids)
), r_minute AS ({_volume_rollup("mention_rollups_minute", "minute")}
), r_hour AS ({_volume_rollup("mention_rollups_hour", "hour")}
), r_day AS ({_volume_rollup("mention_rollups_day", "day")}
), w_minute AS ({_watchlist_rollup("minute")}
), w_hour AS ({_watchlist_rollup("hour")}
), w_day AS ({_watchlist_rollup("day")}
), t_rows AS (  -- each distinct risk or intent tag of a mention, once per named watchlist it counts in
    SELECT DISTINCT p.watchlist_id, p.mention_id, p.created_at, x ->> 'tag' AS tag
    FROM per_watchlist p, jsonb_array_elements(p.risks) AS x
    WHERE p.watchlist_id <> '(none)' AND x ->> 'tag' IS NOT NULL
), g_minute AS ({tag_rollup("minute", "t_rows", "count(*)")}
), g_hour AS ({tag_rollup("hour", "t_rows", "count(*)")}
), g_day AS ({tag_rollup("day", "t_rows", "count(*)")}
), r_total AS (
    INSERT INTO mention_totals_day AS t (bucket, mentions)
    SELECT date_trunc('day', created_at, 'UTC'), count(*) FROM inserted GROUP BY 1 ORDER BY 1
    ON CONFLICT (bucket) DO UPDATE SET mentions = t.mentions + EXCLUDED.mentions
), e_rows AS (
    SELECT watchlist_id, bucket, entity_type, entity_key, min(entity_text) AS entity_text, count(*) AS n
    FROM (
        SELECT DISTINCT ON (p.watchlist_id, p.mention_id, e ->> 'type', lower(e ->> 'text'))
               p.watchlist_id, p.mention_id, date_trunc('day', p.created_at, 'UTC') AS bucket,
               e ->> 'type' AS entity_type, lower(e ->> 'text') AS entity_key, e ->> 'text' AS entity_text
        FROM per_watchlist p, jsonb_array_elements(p.entities) AS e
        WHERE p.watchlist_id <> '(none)'
    ) d
    GROUP BY 1, 2, 3, 4
), r_entity AS (
    INSERT INTO entity_rollups_day AS t (watchlist_id, bucket, entity_type, entity_key, entity_text, mentions)
    SELECT watchlist_id, bucket, entity_type, entity_key, entity_text, n FROM e_rows ORDER BY 1, 3, 4, 2
    ON CONFLICT (watchlist_id, entity_type, entity_key, bucket) DO UPDATE SET mentions = t.mentions + EXCLUDED.mentions
), t_entity AS (
    INSERT INTO entity_totals AS t (watchlist_id, entity_type, entity_key, mentions)
    SELECT watchlist_id, entity_type, entity_key, sum(n) FROM e_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (watchlist_id, entity_type, entity_key) DO UPDATE SET mentions = t.mentions + EXCLUDED.mentions
), a_new AS (
    SELECT watchlist_id, date_trunc('day', created_at, 'UTC') AS bucket, source,
           coalesce(lower(author_handle), 'id:' || author_id) AS author_key, max(author_handle) AS author_handle,
           max(author_name) AS author_name, count(*) AS n, count(*) FILTER (WHERE sentiment = 'positive') AS positive,
           count(*) FILTER (WHERE sentiment = 'negative') AS negative, coalesce(max(author_followers), 0) AS reach,
           max(author_id) AS author_id, max(connector) AS connector, sum(pos_likes) AS likes,
           sum(pos_reposts) AS reposts, sum(pos_replies) AS replies, sum(pos_velocity) AS velocity,
           max(pos_amplification) AS best
    FROM per_watchlist
    WHERE watchlist_id <> '(none)' AND (author_handle IS NOT NULL OR author_id IS NOT NULL)
    GROUP BY 1, 2, 3, 4
), a_rows AS (  -- one row per author-day: an upsert may not touch a row twice
    SELECT watchlist_id, bucket, source, author_key, max(author_handle) AS author_handle, max(author_name) AS author_name,
           sum(n)::bigint AS n, sum(positive)::bigint AS positive, sum(negative)::bigint AS negative,
           max(reach) AS reach, max(author_id) AS author_id, max(connector) AS connector, sum(likes)::bigint AS likes,
           sum(reposts)::bigint AS reposts, sum(replies)::bigint AS replies, sum(velocity) AS velocity, max(best) AS best
    FROM (SELECT * FROM a_new UNION ALL SELECT * FROM engagement_moves) x
    GROUP BY 1, 2, 3, 4
), {author_upserts("a_rows")}
), conversation AS (
    INSERT INTO {_CONVERSATION}
    SELECT mention_id, source, source_id, created_at, lang, sentiment, watchlist_ids, entities, author_id, author_handle,
           author_name, author_followers, in_reply_to, facets, owned_watchlist_ids FROM inserted
    WHERE in_reply_to IS NOT NULL
       OR (facets && ARRAY['r:customer_question', 'r:complaint'] AND cardinality(watchlist_ids) > 0)  -- cases.py
)
SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM observed) AS updated
"""

# Questions and brand replies, from the conversation rows of the statement above. It runs under a
# lock held to the commit, so of two concurrent batches, one with a question and one with the
# brand's reply to it, the later one always sees the other's rows. $1/$2 as above.
_QUESTIONS = f"""
WITH brand AS (
    SELECT h AS handle, w AS watchlist_id FROM unnest($1::text[], $2::text[]) AS b(h, w)
), per_watchlist AS (
    SELECT w.watchlist_id, i.* FROM {_CONVERSATION} i CROSS JOIN LATERAL unnest(i.watchlist_ids) AS w(watchlist_id)
), replies_new AS (
    INSERT INTO brand_replies (watchlist_id, source, in_reply_to, source_id, created_at)
    SELECT b.watchlist_id, i.source, i.in_reply_to, i.source_id, i.created_at
    FROM {_CONVERSATION} i JOIN brand b ON b.handle = lower(i.author_handle)
    WHERE i.in_reply_to IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING watchlist_id, source, in_reply_to, created_at
), questions_new AS (
    INSERT INTO questions (watchlist_id, source, source_id, created_at, mention_id, first_reply_at)
    SELECT p.watchlist_id, p.source, p.source_id, p.created_at, p.mention_id,
           (SELECT min(x.created_at) FROM (
                SELECT r.created_at FROM brand_replies r
                WHERE r.watchlist_id = p.watchlist_id AND r.source = p.source AND r.in_reply_to = p.source_id
                UNION ALL
                SELECT n.created_at FROM replies_new n
                WHERE n.watchlist_id = p.watchlist_id AND n.source = p.source AND n.in_reply_to = p.source_id) x)
    FROM per_watchlist p
    WHERE 'r:customer_question' = ANY(p.facets)
      AND NOT EXISTS (SELECT 1 FROM brand b WHERE b.watchlist_id = p.watchlist_id AND b.handle = lower(p.author_handle))
    ON CONFLICT DO NOTHING
), answered AS (
    UPDATE questions q SET first_reply_at = n.first_at
    FROM (SELECT watchlist_id, source, in_reply_to, min(created_at) AS first_at FROM replies_new GROUP BY 1, 2, 3) n
    WHERE q.watchlist_id = n.watchlist_id AND q.source = n.source AND q.source_id = n.in_reply_to
      AND (q.first_reply_at IS NULL OR q.first_reply_at > n.first_at)
)
SELECT 1
"""

_ALERT_PLACEHOLDERS = ", ".join(f"${i}" for i in range(1, len(ALERT_COLUMNS) + 1))
_INSERT_ALERT = (
    f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) VALUES ({_ALERT_PLACEHOLDERS}) "
    "ON CONFLICT (alert_id, status) DO NOTHING"
)
_NO_PARTITION = re.compile(r"no partition of relation", re.I)


def _json(value: Any) -> str:
    """JSON text for a jsonb column; timestamps as ISO 8601 UTC."""
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def facets(watchlist_ids: Iterable[str], entities: Iterable[dict[str, Any]], risks: Iterable[dict[str, Any]]) -> list[str]:
    """The filter keys of a mention for its GIN index: w:<watchlist>, e:<entity, lower case>, r:<risk tag>."""
    keys = [f"w:{w}" for w in watchlist_ids]
    keys += dict.fromkeys(f"e:{e['text'].lower()}" for e in entities)
    keys += dict.fromkeys(f"r:{r['tag']}" for r in risks)
    return keys


def mention_row(enriched: dict[str, Any]) -> tuple[Any, ...]:
    """EnrichedMention record → a row of MENTION_COLUMNS (pure)."""
    m = enriched["mention"]
    author, engagement = m["author"], m["engagement"]
    lang, sentiment = enriched["language"], enriched["sentiment"]
    probabilities = sentiment.get("probabilities")
    return (
        m["mention_id"], m["source"], m["source_id"], m["url"], author["id"], author["handle"], author["display_name"],
        author["followers"], m["text"], m.get("title"), m.get("country"), m.get("connector", "unknown"),
        m.get("content_type", "unknown"), m["lang"], lang["code"], lang["confidence"], m["created_at"],
        m["received_at"], m.get("fetched_at"), enriched["enriched_at"], m["in_reply_to"], m["reposted_from"],
        engagement["likes"], engagement["reposts"], engagement["replies"], engagement.get("observed_at"),
        sentiment["label"], sentiment["score"], sentiment["reason"],
        None if probabilities is None else _json(probabilities),
        list(enriched["watchlist_ids"]), _json(enriched["entities"]), _json(enriched["risks"]),
        _json(enriched["matches"]), _json(enriched["models"]),
        facets(enriched["watchlist_ids"], enriched["entities"], enriched["risks"]),
    )


def with_owned(row: Sequence[Any], owned: OwnedHandles) -> tuple[Any, ...]:
    """A row of MENTION_COLUMNS → a row of WRITTEN_COLUMNS: the watchlists it is owned for appended (pure)."""
    return (*row, owned.owned_ids(row[_WATCHLIST_IDS], row[_SOURCE], row[_AUTHOR_HANDLE], row[_AUTHOR_ID]))


def alert_row(alert: dict[str, Any]) -> tuple[Any, ...]:
    """AlertEvent record → a row of ALERT_COLUMNS (pure)."""
    return tuple(_json(alert[c]) if c in _JSON_ALERT_COLUMNS else alert[c] for c in ALERT_COLUMNS)


def utc_day(ts: datetime) -> date:
    return ts.astimezone(timezone.utc).date()


def retention_horizon(retention_days: int | None, now: datetime | None = None) -> datetime | None:
    """The oldest `created_at` the writer keeps, `retention_days` before now; None keeps everything."""
    if retention_days is None:
        return None
    return (now or datetime.now(timezone.utc)) - timedelta(days=retention_days)


def expired(row: Sequence[Any], horizon: datetime | None) -> bool:
    """Is this mention row older than the retention horizon? The writer drops it (and counts it)."""
    return horizon is not None and row[_CREATED_AT] < horizon


def nul_columns(row: Sequence[Any]) -> list[str]:
    """The columns of a mention row that hold a NUL character, for which PostgreSQL refuses the row
    (text cannot hold one, jsonb neither as \\u0000), so the consumer dead-letters it. Ingest refuses
    NUL in every field; only records produced before it did can have one."""
    return [name for name, value in zip(MENTION_COLUMNS, row)
            if _has_nul(json.loads(value) if name in _JSON_MENTION_COLUMNS and value is not None else value)]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


@dataclass(frozen=True)
class BrandHandles:
    """Which lower-case handles belong to which watchlist (a reply from one answers its questions)."""

    handles: tuple[str, ...] = ()
    watchlist_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, watchlists: Iterable[Any]) -> BrandHandles:
        pairs = sorted({(h.lower(), w.id) for w in watchlists for h in w.handles})
        return cls(tuple(h for h, _ in pairs), tuple(w for _, w in pairs))


@dataclass
class WriterState:
    """What a writer remembers between batches: partitions known to exist, the erasures seen."""

    partitions: set[date] = field(default_factory=set)
    partitions_loaded: bool = False
    erasure_mark: int = -1
    erased: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteResult:
    mentions_inserted: int
    mentions_duplicate: int
    alerts: int
    mentions_updated: int = 0  # later engagement observations applied to stored mentions
    mentions_erased: int = 0  # refused: their author's data was erased after they were written
    mentions_expired: int = 0  # refused: older than the retention period


async def ensure_partitions(conn: asyncpg.Connection, days: Iterable[date], state: WriterState) -> int:
    """Create the daily partitions of `days` that are missing; returns how many were created."""
    if not state.partitions_loaded:
        state.partitions = await existing_partitions(conn)
        state.partitions_loaded = True
    missing = sorted(set(days) - state.partitions)
    if not missing:
        return 0
    created = int(await conn.fetchval("SELECT earful_ensure_mention_partitions($1::date[])", missing))
    state.partitions.update(missing)
    return created


async def existing_partitions(conn: asyncpg.Connection) -> set[date]:
    """The UTC days that have a mentions partition."""
    names = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'mentions'::regclass"
    )
    out = set()
    for row in names:
        m = re.fullmatch(r"mentions_(\d{4})(\d{2})(\d{2})", row["relname"])
        if m:
            out.add(date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
    return out


async def _refresh_erasures(conn: asyncpg.Connection, state: WriterState) -> None:
    mark = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM erasures"))
    if mark != state.erasure_mark:
        rows = await conn.fetch("SELECT h, max(requested_at) AS at FROM erasures, unnest(author_hashes) AS h GROUP BY 1")
        state.erased = {r["h"]: r["at"] for r in rows}
        state.erasure_mark = mark


def _erased(row: Sequence[Any], erased: dict[str, datetime]) -> bool:
    """Was this mention's author erased after the mention was written?"""
    for author in (row[_AUTHOR_HANDLE], row[_AUTHOR_ID]):
        if author:
            at = erased.get(author_hash(row[_SOURCE], author))
            if at is not None and row[_CREATED_AT] <= at:
                return True
    return False


async def write_batch(
    conn: asyncpg.Connection,
    mentions: Sequence[tuple[Any, ...]],
    alerts: Sequence[tuple[Any, ...]],
    *,
    brands: BrandHandles = BrandHandles(),
    owned: OwnedHandles = OwnedHandles(),
    care: CareBook | None = None,
    state: WriterState | None = None,
    retention_days: int | None = None,
    now: datetime | None = None,
) -> WriteResult:
    """Write one batch in one transaction; see the module docstring for what that means. `mentions`
    are rows of MENTION_COLUMNS; `owned` decides which of their watchlists each one is owned for."""
    state = state if state is not None else WriterState()
    dropped = 0
    horizon = retention_horizon(retention_days, now)
    if horizon is not None and mentions:
        kept = [r for r in mentions if not expired(r, horizon)]
        dropped, mentions = len(mentions) - len(kept), kept
    mentions = [with_owned(r, owned) for r in mentions]
    for attempt in (1, 2):
        if mentions:
            await ensure_partitions(conn, {utc_day(r[_CREATED_AT]) for r in mentions}, state)
        try:
            return await _write(conn, mentions, alerts, brands, state, dropped, care)
        except asyncpg.CheckViolationError as exc:
            # A partition this writer believed in was dropped meanwhile (retention): recreate it.
            if attempt == 2 or not _NO_PARTITION.search(str(exc)):
                raise
            state.partitions_loaded = False
    raise AssertionError("unreachable")


async def _write(conn: asyncpg.Connection, mentions: Sequence[tuple[Any, ...]], alerts: Sequence[tuple[Any, ...]],
                 brands: BrandHandles, state: WriterState, expired: int, care: CareBook | None = None) -> WriteResult:
    inserted = updated = erased = 0
    async with conn.transaction():
        if mentions:
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", ERASURE_LOCK)
            await _refresh_erasures(conn, state)
            if state.erased:
                kept = [r for r in mentions if not _erased(r, state.erased)]
                erased, mentions = len(mentions) - len(kept), kept
        if mentions:
            await conn.execute(_CREATE_STAGING)
            await conn.copy_records_to_table(_STAGING, records=mentions, columns=WRITTEN_COLUMNS)
            handles, wids = list(brands.handles), list(brands.watchlist_ids)
            row = await conn.fetchrow(_INSERT_MENTIONS)
            inserted, updated = int(row["inserted"]), int(row["updated"])
            if inserted:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", QUESTIONS_LOCK)
                await conn.execute(_QUESTIONS, handles, wids)
                await sync_cases(conn, _CONVERSATION, handles, wids, care)  # cases open and answer with the stream
        if alerts:
            await conn.executemany(_INSERT_ALERT, alerts)
        if mentions:
            from earful.storage.signals import record_signals  # imported here: signals imports this module

            await record_signals(conn, mentions)  # sales leads and staff policy flags, idempotent per mention
    return WriteResult(inserted, len(mentions) - inserted, len(alerts), updated, erased, expired)

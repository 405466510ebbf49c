"""Erasing an author's data (privacy requests): `DELETE /v1/authors/{source}/{author}` and
`earful storage erase`.

One transaction removes the author's mentions from every partition and their keys, takes them
out of every rollup (decrementing the counts they contributed, deleting the author's own rows),
drops their customer questions and brand replies (recomputing the first reply of questions they
answered) and the corrections of their mentions, and scrubs their posts from alert explanations. The erasure itself is recorded with
the author kept only as hashes, so a re-delivered old mention of theirs is refused by the writer
(see writer.py), and is published to `earful.erasures.v1` once committed (erasure_outbox.py), so
downstream copies can be erased too. It holds the erasure lock exclusively, so no batch can slip a mention of the
author in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from earful.core.errors import ValidationError
from earful.storage.writer import ERASURE_LOCK, author_hash

_ERASED = "earful_erased"
ERASURES_CHANNEL = "earful_erasures"  # PostgreSQL NOTIFY channel: an erasure committed, publish it

_DELETE_MENTIONS = f"""
WITH gone AS (
    DELETE FROM mentions WHERE source = $1 AND (lower(author_handle) = lower($2) OR author_id = $2)
    RETURNING mention_id, source, source_id, created_at, lang, coalesce(sentiment, 'unknown') AS sentiment,
              watchlist_ids, entities, author_id, author_handle, owned_watchlist_ids, risks
)
INSERT INTO {_ERASED} SELECT * FROM gone
"""

_PER_WATCHLIST = f"""
SELECT w.watchlist_id, e.* FROM {_ERASED} e
CROSS JOIN LATERAL unnest(CASE WHEN cardinality(e.watchlist_ids) = 0 THEN ARRAY['(none)']
                               ELSE e.watchlist_ids END) AS w(watchlist_id)
WHERE w.watchlist_id <> ALL (e.owned_watchlist_ids)  -- owned mentions were never counted there (writer.py)
"""


def _decrement(table: str, keys: str, delta_sql: str) -> list[str]:
    """Subtract the erased counts from `table` (matched on `keys`), then drop rows that reached 0."""
    match = " AND ".join(f"t.{k} = d.{k}" for k in keys.split(", "))
    return [
        f"WITH d AS ({delta_sql}) UPDATE {table} t SET mentions = t.mentions - d.n FROM d WHERE {match}",
        f"WITH d AS ({delta_sql}) DELETE FROM {table} t USING d WHERE {match} AND t.mentions <= 0",
    ]


def _volume(unit: str) -> str:
    return (f"WITH p AS ({_PER_WATCHLIST}) SELECT watchlist_id, date_trunc('{unit}', created_at, 'UTC') AS bucket, "
            "sentiment, source, lang, count(*) AS n FROM p GROUP BY 1, 2, 3, 4, 5")


_STATEMENTS = [
    *_decrement("mention_rollups_minute", "watchlist_id, bucket, sentiment, source, lang", _volume("minute")),
    *_decrement("mention_rollups_hour", "watchlist_id, bucket, sentiment, source, lang", _volume("hour")),
    *_decrement("mention_rollups_day", "watchlist_id, bucket, sentiment, source, lang", _volume("day")),
    *(_decrement(f"watchlist_rollups_{unit}", "bucket, watchlist_id, sentiment",
                 f"WITH p AS ({_PER_WATCHLIST}) SELECT date_trunc('{unit}', created_at, 'UTC') AS bucket, watchlist_id,"
                 " sentiment, count(*) AS n FROM p GROUP BY 1, 2, 3")[i]
      for unit in ("minute", "hour", "day") for i in (0, 1)),
    *(_decrement(f"tag_rollups_{unit}", "watchlist_id, bucket, tag",
                 f"WITH p AS ({_PER_WATCHLIST}) SELECT watchlist_id, date_trunc('{unit}', created_at, 'UTC') AS bucket,"
                 " tag, count(*) AS n FROM (SELECT DISTINCT p.watchlist_id, p.mention_id, p.created_at, x ->> 'tag' AS tag"
                 " FROM p, jsonb_array_elements(p.risks) AS x WHERE p.watchlist_id <> '(none)' AND x ->> 'tag' IS NOT NULL) d"
                 " GROUP BY 1, 2, 3")[i]
      for unit in ("minute", "hour", "day") for i in (0, 1)),
    *_decrement("mention_totals_day", "bucket",
                f"SELECT date_trunc('day', created_at, 'UTC') AS bucket, count(*) AS n FROM {_ERASED} GROUP BY 1"),
    *_decrement(
        "entity_rollups_day", "watchlist_id, bucket, entity_type, entity_key",
        f"WITH p AS ({_PER_WATCHLIST}) SELECT watchlist_id, bucket, entity_type, entity_key, count(*) AS n FROM ("
        " SELECT DISTINCT p.watchlist_id, p.mention_id, date_trunc('day', p.created_at, 'UTC') AS bucket,"
        " x ->> 'type' AS entity_type, lower(x ->> 'text') AS entity_key"
        " FROM p, jsonb_array_elements(p.entities) AS x WHERE p.watchlist_id <> '(none)') d GROUP BY 1, 2, 3, 4"),
    *_decrement(
        "entity_totals", "watchlist_id, entity_type, entity_key",
        f"WITH p AS ({_PER_WATCHLIST}) SELECT watchlist_id, entity_type, entity_key, count(*) AS n FROM ("
        " SELECT DISTINCT p.watchlist_id, p.mention_id, x ->> 'type' AS entity_type, lower(x ->> 'text') AS entity_key"
        " FROM p, jsonb_array_elements(p.entities) AS x WHERE p.watchlist_id <> '(none)') d GROUP BY 1, 2, 3"),
    (f"DELETE FROM author_totals a USING (SELECT DISTINCT source, coalesce(lower(author_handle), 'id:' || author_id)"
    f" AS author_key FROM {_ERASED}) e WHERE a.source = e.source AND a.author_key = e.author_key"),
    "DELETE FROM author_totals WHERE source = $1 AND author_key IN (lower($2), 'id:' || $2)",
    # The author's own rows go whole (their reach is a maximum, it cannot be decremented).
    (f"DELETE FROM author_rollups_day a USING (SELECT DISTINCT source, coalesce(lower(author_handle), 'id:' || author_id)"
    f" AS author_key FROM {_ERASED}) e WHERE a.source = e.source AND a.author_key = e.author_key"),
    "DELETE FROM author_rollups_day WHERE source = $1 AND author_key IN (lower($2), 'id:' || $2)",
    f"DELETE FROM questions q USING {_ERASED} e WHERE q.source = e.source AND q.source_id = e.source_id",
    # Corrections hold spans of the author's text (entities) and notes about their post.
    f"DELETE FROM corrections c USING {_ERASED} e WHERE c.mention_id = e.mention_id",
    f"""WITH gone AS (
        DELETE FROM brand_replies r USING {_ERASED} e WHERE r.source = e.source AND r.source_id = e.source_id
        RETURNING r.watchlist_id, r.source, r.in_reply_to
    )
    UPDATE questions q SET first_reply_at = (
        SELECT min(r.created_at) FROM brand_replies r
        WHERE r.watchlist_id = q.watchlist_id AND r.source = q.source AND r.in_reply_to = q.source_id
          AND NOT EXISTS (SELECT 1 FROM {_ERASED} e WHERE e.source = r.source AND e.source_id = r.source_id))
    FROM (SELECT DISTINCT * FROM gone) g
    WHERE q.watchlist_id = g.watchlist_id AND q.source = g.source AND q.source_id = g.in_reply_to""",
    f"DELETE FROM mention_keys k USING {_ERASED} e WHERE k.source = e.source AND k.source_id = e.source_id",
    # Alerts: the erased mentions leave the samples, the author's posts leave the explanations.
    f"""UPDATE alerts SET sample_mention_ids = ARRAY(
        SELECT x FROM unnest(sample_mention_ids) AS x WHERE x NOT IN (SELECT mention_id::text FROM {_ERASED}))
    WHERE sample_mention_ids && ARRAY(SELECT mention_id::text FROM {_ERASED})""",
    f"""UPDATE alerts SET explanation = jsonb_set(explanation, '{{top_posts}}', coalesce((
        SELECT jsonb_agg(p) FROM jsonb_array_elements(explanation -> 'top_posts') AS p
        WHERE NOT ((p ->> 'source' = $1 AND lower(p ->> 'author_handle') = lower($2))
                   OR p ->> 'mention_id' IN (SELECT mention_id::text FROM {_ERASED}))), '[]'::jsonb))
    WHERE jsonb_typeof(explanation -> 'top_posts') = 'array' AND EXISTS (
        SELECT 1 FROM jsonb_array_elements(explanation -> 'top_posts') AS p
        WHERE (p ->> 'source' = $1 AND lower(p ->> 'author_handle') = lower($2))
           OR p ->> 'mention_id' IN (SELECT mention_id::text FROM {_ERASED}))""",
]


@dataclass(frozen=True)
class Erasure:
    erasure_id: int
    source: str
    mentions_erased: int
    requested_at: datetime


def check_author(source: str, author: str) -> tuple[str, str]:
    """Normalise and validate the request (a blank or absurd author would erase nothing useful)."""
    source, author = source.strip(), author.strip().removeprefix("@")
    if not source or len(source) > 32:
        raise ValidationError("source must be 1 to 32 characters")
    if not author or len(author) > 256:
        raise ValidationError("author must be a handle or account id of 1 to 256 characters")
    return source, author


async def erase_author(conn: asyncpg.Connection, source: str, author: str, *, via: str) -> Erasure:
    """Erase every mention by `author` (handle, case-insensitive, or account id) at `source`."""
    source, author = check_author(source, author)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ERASURE_LOCK)
        await conn.execute(
            f"CREATE TEMP TABLE {_ERASED} (mention_id uuid, source text, source_id text, created_at timestamptz,"
            " lang text, sentiment text, watchlist_ids text[], entities jsonb, author_id text, author_handle text,"
            " owned_watchlist_ids text[], risks jsonb)"
            " ON COMMIT DROP"
        )
        await conn.execute(_DELETE_MENTIONS, source, author)
        erased = int(await conn.fetchval(f"SELECT count(*) FROM {_ERASED}"))
        for sql in _STATEMENTS:
            if "$1" in sql:
                await conn.execute(sql, source, author)
            else:
                await conn.execute(sql)
        identities = {author.lower()}
        for row in await conn.fetch(f"SELECT DISTINCT author_handle, author_id FROM {_ERASED}"):
            identities.update(v.lower() for v in (row["author_handle"], row["author_id"]) if v)
        hashes = sorted(author_hash(source, i) for i in identities)
        row = await conn.fetchrow(
            "INSERT INTO erasures (source, author_hashes, requested_via, mentions_erased, author_key)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id, requested_at", source, hashes, via, erased,
            author_hash(source, author))
        # Wakes the storage service's erasure outbox when this commits (wherever the erasure ran).
        await conn.execute(f"NOTIFY {ERASURES_CHANNEL}")
    return Erasure(int(row["id"]), source, erased, row["requested_at"])

"""Writing batches to PostgreSQL, idempotently.

Rows are COPYed into a temporary staging table and moved with
``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING``; the minute rollups are incremented from
the RETURNING rows only, in the same transaction. A replayed or re-delivered mention therefore
changes nothing, and the rollups always agree with the mentions table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

MENTION_COLUMNS = (
    "mention_id", "source", "source_id", "url", "author_id", "author_handle", "author_name", "author_followers",
    "text", "declared_lang", "lang", "lang_confidence", "created_at", "received_at", "enriched_at", "in_reply_to",
    "reposted_from", "likes", "reposts", "replies", "sentiment", "sentiment_score", "sentiment_reason",
    "watchlist_ids", "entities", "risks", "matches", "models",
)
ALERT_COLUMNS = (
    "alert_id", "status", "fingerprint", "rule", "watchlist_id", "severity", "labels", "summary", "observed",
    "baseline", "score", "bucket_seconds", "starts_at", "ends_at", "detected_at", "first_received_at",
    "sample_mention_ids",
)

_COLS = ", ".join(MENTION_COLUMNS)
_INSERT_MENTIONS = f"""
WITH inserted AS (
    INSERT INTO mentions ({_COLS})
    SELECT {_COLS} FROM earful_mentions_staging
    ON CONFLICT (source, source_id) DO NOTHING
    RETURNING watchlist_ids, created_at, sentiment
), rolled AS (
    INSERT INTO mention_rollups_minute (watchlist_id, minute, sentiment, mentions)
    SELECT w.watchlist_id, date_trunc('minute', i.created_at), coalesce(i.sentiment, 'unknown'), count(*)
    FROM inserted i
    CROSS JOIN LATERAL unnest(CASE WHEN cardinality(i.watchlist_ids) = 0 THEN ARRAY['(none)']
                                   ELSE i.watchlist_ids END) AS w(watchlist_id)
    GROUP BY 1, 2, 3
    ON CONFLICT (watchlist_id, minute, sentiment)
    DO UPDATE SET mentions = mention_rollups_minute.mentions + EXCLUDED.mentions
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted) AS inserted
"""
_ALERT_PLACEHOLDERS = ", ".join(f"${i}" for i in range(1, len(ALERT_COLUMNS) + 1))
_INSERT_ALERT = (
    f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) VALUES ({_ALERT_PLACEHOLDERS}) "
    "ON CONFLICT (alert_id, status) DO NOTHING"
)


def mention_row(enriched: dict[str, Any]) -> tuple[Any, ...]:
    """EnrichedMention record → a row of MENTION_COLUMNS (pure)."""
    m = enriched["mention"]
    author, engagement = m["author"], m["engagement"]
    lang, sentiment = enriched["language"], enriched["sentiment"]
    return (
        m["mention_id"], m["source"], m["source_id"], m["url"], author["id"], author["handle"], author["display_name"],
        author["followers"], m["text"], m["lang"], lang["code"], lang["confidence"], m["created_at"], m["received_at"],
        enriched["enriched_at"], m["in_reply_to"], m["reposted_from"], engagement["likes"], engagement["reposts"],
        engagement["replies"], sentiment["label"], sentiment["score"], sentiment["reason"], list(enriched["watchlist_ids"]),
        json.dumps(enriched["entities"], ensure_ascii=False), json.dumps(enriched["risks"], ensure_ascii=False),
        json.dumps(enriched["matches"]), json.dumps(enriched["models"]),
    )


def alert_row(alert: dict[str, Any]) -> tuple[Any, ...]:
    """AlertEvent record → a row of ALERT_COLUMNS (pure)."""
    return tuple(json.dumps(alert[c]) if c == "labels" else alert[c] for c in ALERT_COLUMNS)


@dataclass(frozen=True)
class WriteResult:
    mentions_inserted: int
    mentions_duplicate: int
    alerts: int


async def write_batch(conn: asyncpg.Connection, mentions: list[tuple[Any, ...]], alerts: list[tuple[Any, ...]]) -> WriteResult:
    """Write one batch in one transaction; returns how many mention rows were new."""
    inserted = 0
    async with conn.transaction():
        if mentions:
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS earful_mentions_staging "
                "(LIKE mentions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            await conn.copy_records_to_table("earful_mentions_staging", records=mentions, columns=MENTION_COLUMNS)
            inserted = int(await conn.fetchval(_INSERT_MENTIONS))
        if alerts:
            await conn.executemany(_INSERT_ALERT, alerts)
    return WriteResult(inserted, len(mentions) - inserted, len(alerts))

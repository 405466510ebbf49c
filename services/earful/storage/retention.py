"""Partition maintenance: daily partitions created ahead of time, old ones dropped (retention).

A mention lives in the partition of its UTC publication day (`mentions_YYYYMMDD`). The storage
service creates the partitions of yesterday, today and the next few days at start-up and every
hour, so writes normally never wait for DDL (the writer still creates a missing one for a late or
back-filled mention). `earful storage retention` drops every partition whose whole day is older
than the retention period, deletes the rollups, questions, alerts and corrections of those days, and
the mention keys of the dropped rows. The writer refuses mentions older than the same period, so a
dropped day is never refilled by a replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import asyncpg

from earful.storage.writer import WriterState, ensure_partitions, existing_partitions

log = logging.getLogger(__name__)

# Day-bucketed tables and the column that says how old a row is.
_AGED_TABLES = (
    ("mention_rollups_minute", "bucket"), ("mention_rollups_hour", "bucket"), ("mention_rollups_day", "bucket"),
    ("watchlist_rollups_minute", "bucket"), ("watchlist_rollups_hour", "bucket"), ("watchlist_rollups_day", "bucket"),
    ("tag_rollups_minute", "bucket"), ("tag_rollups_hour", "bucket"), ("tag_rollups_day", "bucket"),
    ("mention_totals_day", "bucket"), ("entity_rollups_day", "bucket"), ("author_rollups_day", "bucket"),
    ("questions", "created_at"), ("brand_replies", "created_at"), ("alerts", "detected_at"),
    ("corrections", "mention_created_at"),  # a correction lives as long as its mention
    ("leads", "last_mention_at"), ("policy_flags", "mention_created_at"),  # leads go with their evidence and events
)


_TOTALS_EXPIRY = (
    """WITH d AS (SELECT watchlist_id, source, author_key, sum(mentions) AS m, sum(positive) AS p, sum(negative) AS n
                  FROM author_rollups_day WHERE bucket < $1 GROUP BY 1, 2, 3)
       UPDATE author_totals t SET mentions = t.mentions - d.m, positive = t.positive - d.p, negative = t.negative - d.n
       FROM d WHERE t.watchlist_id = d.watchlist_id AND t.source = d.source AND t.author_key = d.author_key""",
    """WITH d AS (SELECT watchlist_id, entity_type, entity_key, sum(mentions) AS m
                  FROM entity_rollups_day WHERE bucket < $1 GROUP BY 1, 2, 3)
       UPDATE entity_totals t SET mentions = t.mentions - d.m
       FROM d WHERE t.watchlist_id = d.watchlist_id AND t.entity_type = d.entity_type AND t.entity_key = d.entity_key""",
    "DELETE FROM author_totals WHERE mentions <= 0 AND $1::timestamptz IS NOT NULL",
    "DELETE FROM entity_totals WHERE mentions <= 0 AND $1::timestamptz IS NOT NULL",
)


@dataclass
class RetentionResult:
    cutoff: date  # every day before this one is gone
    partitions_dropped: list[str] = field(default_factory=list)
    mentions_dropped: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)


def retention_cutoff(retention_days: int, now: datetime) -> date:
    """The first UTC day kept: days wholly older than `retention_days` before `now` go."""
    return (now.astimezone(timezone.utc) - timedelta(days=retention_days)).date()


async def create_partitions_ahead(conn: asyncpg.Connection, days_ahead: int, now: datetime | None = None,
                                  state: WriterState | None = None) -> int:
    """Create the partitions of yesterday through `days_ahead` days from today; returns how many were new."""
    today = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).date()
    days = {today + timedelta(days=i) for i in range(-1, days_ahead + 1)}
    return await ensure_partitions(conn, days, state or WriterState())


async def apply_retention(conn: asyncpg.Connection, retention_days: int, *, now: datetime | None = None,
                          dry_run: bool = False, progress: Callable[[str], None] = lambda m: None,
                          lock_timeout_s: float = 5.0) -> RetentionResult:
    """Drop what is older than `retention_days`; with `dry_run`, only report what would go."""
    cutoff = retention_cutoff(retention_days, now or datetime.now(timezone.utc))
    cutoff_ts = datetime.combine(cutoff, time(0), tzinfo=timezone.utc)
    result = RetentionResult(cutoff)
    old = sorted(d for d in await existing_partitions(conn) if d < cutoff)
    for day in old:
        name = f"mentions_{day:%Y%m%d}"
        rows = int(await conn.fetchval(f'SELECT count(*) FROM "{name}"'))
        if dry_run:
            progress(f"would drop {name} ({rows} mentions)")
        else:
            async with conn.transaction():
                # Wait briefly for the lock; a long query in the way makes this run fail, not stall the API.
                await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
                await conn.execute(
                    f'DELETE FROM mention_keys k USING "{name}" m'
                    " WHERE k.source = m.source AND k.source_id = m.source_id AND k.created_at = m.created_at")
                await conn.execute(f'ALTER TABLE mentions DETACH PARTITION "{name}"')
                await conn.execute(f'DROP TABLE "{name}"')
            progress(f"dropped {name} ({rows} mentions)")
        result.partitions_dropped.append(name)
        result.mentions_dropped += rows
    if not dry_run:
        # The expiring days leave the all-time totals in the same transaction that deletes them
        # (decrements commute with the writer's increments, and the writer never adds to a day
        # this old), so the totals stay exact upper bounds even if this run is interrupted.
        async with conn.transaction():
            for sql in _TOTALS_EXPIRY:
                await conn.execute(sql, cutoff_ts)
            for table in ("author_rollups_day", "entity_rollups_day"):
                status = await conn.execute(f"DELETE FROM {table} WHERE bucket < $1", cutoff_ts)
                result.rows_deleted[table] = int(status.split()[-1])
    for table, column in _AGED_TABLES:
        if table in result.rows_deleted:
            continue
        if dry_run:
            n = int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {column} < $1", cutoff_ts))
        else:
            status = await conn.execute(f"DELETE FROM {table} WHERE {column} < $1", cutoff_ts)
            n = int(status.split()[-1])
        result.rows_deleted[table] = n
        if n:
            progress(f"{'would delete' if dry_run else 'deleted'} {n} rows of {table} before {cutoff}")
    return result

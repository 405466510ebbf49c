"""`storage`: idempotent batch writes of enriched mentions into PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from benchmarks.common import ENRICH_BATCH, POSTGRES_DATA_DIR, Context, Result, median, raw_records, sample_mentions, say

NAME = "storage"
KEYS = ("storage_write_per_s", "storage_rewrite_per_s", "storage_write_concurrency")
DESCRIPTION = "idempotent batch writes of enriched mentions into PostgreSQL"

STORAGE_SOURCE_MENTIONS = 1_000
STORAGE_ROWS = 20_000
STORAGE_RUNS = 3


def storage_rows(ctx: Context) -> list[tuple[Any, ...]]:
    """20,000 distinct mention rows: 1,000 sample mentions enriched for real, source_id varied."""
    from earful.core.mention import mention_id
    from earful.storage.writer import mention_row

    now = datetime.now(timezone.utc)
    processor = ctx.processor()
    records = raw_records(sample_mentions(STORAGE_SOURCE_MENTIONS), now)
    enriched: list[dict[str, Any]] = []
    for i in range(0, len(records), ENRICH_BATCH):
        enriched += processor.enrich(records[i:i + ENRICH_BATCH], now)
    rows = []
    for copy in range(STORAGE_ROWS // len(enriched)):
        for e in enriched:
            m = e["mention"]
            source_id = f"{m['source_id']}-bench{copy:02d}"
            varied = dict(e, mention=dict(m, source_id=source_id, mention_id=mention_id(m["source"], source_id)))
            rows.append(mention_row(varied))
    return rows


async def _storage_runs(url: str, rows: list[tuple[Any, ...]]) -> tuple[list[float], list[float], str, int]:
    import asyncpg

    from earful.core.migrate import migrate
    from earful.core.settings import Settings
    from earful.storage.writer import BrandHandles, WriterState, write_batch
    from earful.watchlists import WatchlistSet

    settings = Settings()
    concurrency = settings.storage_write_concurrency
    brands = BrandHandles.of(WatchlistSet.from_file(settings.watchlists_dir).watchlists.values())
    state = WriterState()
    conn = await asyncpg.connect(url)
    writers = [await asyncpg.connect(url) for _ in range(concurrency)]
    try:
        applied = await migrate(conn)
        version = str(await conn.fetchval("SHOW server_version")).split()[0]
        say(f"  PostgreSQL {version}; migrations applied: {', '.join(applied) or 'none'}; "
            f"{concurrency} concurrent writer transactions (EARFUL_STORAGE_WRITE_CONCURRENCY), as the service uses")
        size = settings.storage_batch_size  # as the service batches (EARFUL_STORAGE_BATCH_SIZE)
        batches = [rows[i:i + size] for i in range(0, len(rows), size)]

        async def write_all(field: str) -> int:
            """Each writer connection takes the next batch as soon as it is free (as the service does)."""
            queue = list(reversed(batches))
            total = 0

            async def worker(writer: Any) -> None:
                nonlocal total
                while queue:
                    result = await write_batch(writer, queue.pop(), [], brands=brands, state=state)
                    total += getattr(result, field)

            await asyncio.gather(*(worker(w) for w in writers))
            return total

        writes, rewrites = [], []
        for attempt in range(STORAGE_RUNS):
            await conn.execute("TRUNCATE mentions, mention_keys, mention_rollups_minute, mention_rollups_hour,"
                               " mention_rollups_day, mention_totals_day, entity_rollups_day, author_rollups_day,"
                               " watchlist_rollups_minute, watchlist_rollups_hour, watchlist_rollups_day, tag_rollups_minute,"
                               " tag_rollups_hour, tag_rollups_day,"
                               " author_totals, entity_totals, questions, brand_replies")
            started = time.perf_counter()
            inserted = await write_all("mentions_inserted")
            elapsed = time.perf_counter() - started
            if inserted != len(rows):
                raise RuntimeError(f"run {attempt + 1}: {inserted} of {len(rows)} rows inserted into an empty table")
            writes.append(inserted / elapsed)
            started = time.perf_counter()
            duplicates = await write_all("mentions_duplicate")
            re_elapsed = time.perf_counter() - started
            if duplicates != len(rows):
                raise RuntimeError(f"run {attempt + 1}: re-write found {duplicates} of {len(rows)} duplicates")
            rewrites.append(duplicates / re_elapsed)
            say(f"  run {attempt + 1}/{STORAGE_RUNS}: {inserted} new rows in {elapsed:.2f}s = {writes[-1]:,.0f}/s; "
                f"same rows again (all duplicates) in {re_elapsed:.2f}s = {rewrites[-1]:,.0f}/s")
        counted = await conn.fetchval("SELECT count(*) FROM mentions")
        if counted != len(rows):
            raise RuntimeError(f"{counted} rows in mentions after the runs, expected {len(rows)}")
        return writes, rewrites, version, concurrency
    finally:
        for w in writers:
            await w.close()
        await conn.close()


def run(ctx: Context) -> Result:
    from earful_dev.bench import postgres_database

    name = f"earful_bench_{uuid.uuid4().hex[:10]}"

    async def measure() -> tuple[list[float], list[float], str, int]:
        async with postgres_database(name, POSTGRES_DATA_DIR, log=lambda m: say(f"  {m}")) as url:
            rows = storage_rows(ctx)
            say(f"  {len(rows)} rows from {STORAGE_SOURCE_MENTIONS} enriched sample mentions")
            return await _storage_runs(url, rows)

    writes, rewrites, version, concurrency = asyncio.run(measure())
    ctx.extra_versions["postgresql"] = version
    return Result({"storage_write_per_s": round(median(writes), 1), "storage_rewrite_per_s": round(median(rewrites), 1),
                   "storage_write_concurrency": concurrency},
                  {"storage_write_per_s": len(writes), "storage_rewrite_per_s": len(rewrites)})

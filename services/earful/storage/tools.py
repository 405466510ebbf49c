"""`earful storage retention|erase`: the storage maintenance commands (`storage seed` is in earful-dev)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import asyncpg

from earful.core.errors import StorageError
from earful.core.migrate import migrate
from earful.core.settings import Settings
from earful.storage.erasure import check_author, erase_author
from earful.storage.retention import apply_retention


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _connect(url: str) -> asyncpg.Connection:
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StorageError(f"cannot connect to PostgreSQL (EARFUL_DATABASE_URL): {exc}") from exc
    await migrate(conn)
    return conn


async def _retention(args: argparse.Namespace, settings: Settings) -> int:
    days = settings.storage_retention_days if args.days is None else args.days
    if days <= 0:
        _say("retention is off (EARFUL_STORAGE_RETENTION_DAYS=0): nothing to drop")
        return 0
    conn = await _connect(settings.database_url.get_secret_value())
    try:
        result = await apply_retention(conn, days, dry_run=args.dry_run, progress=_say)
    finally:
        await conn.close()
    print(json.dumps({"cutoff": result.cutoff.isoformat(), "dry_run": args.dry_run,
                      "partitions_dropped": result.partitions_dropped, "mentions_dropped": result.mentions_dropped,
                      "rows_deleted": result.rows_deleted}))
    return 0


async def _erase(args: argparse.Namespace, settings: Settings) -> int:
    source, author = check_author(args.source, args.author)
    conn = await _connect(settings.database_url.get_secret_value())
    try:
        if not args.yes:
            n = await conn.fetchval(
                "SELECT count(*) FROM mentions WHERE source = $1 AND (lower(author_handle) = lower($2) OR author_id = $2)",
                source, author)
            _say(f"{n} mentions by {author!r} at {source} would be erased; run again with --yes to erase them")
            return 2
        result = await erase_author(conn, source, author, via="cli")
    finally:
        await conn.close()
    print(json.dumps({"erasure_id": result.erasure_id, "source": result.source,
                      "mentions_erased": result.mentions_erased, "requested_at": result.requested_at.isoformat()}))
    return 0


def run_tool(args: argparse.Namespace, settings: Settings) -> int:
    action = {"retention": _retention, "erase": _erase}[args.storage_command]
    return asyncio.run(action(args, settings))

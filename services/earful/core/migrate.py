"""Forward-only schema migrations, applied at start-up (and by `earful migrate`).

Files ``migrations/NNN_name.sql`` run in order, each in its own transaction, under an advisory
lock so several storage replicas starting together apply each file once. An applied file whose
content changed is refused: history is never rewritten.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from pathlib import Path

import asyncpg

from earful.core.errors import StorageError

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x6561726675  # "earfu"
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration file, in order.

    Versions are allocated in ranges per owner (storage 002-019, alerting 020-029), so gaps are
    normal; the first must be 001 and no version may repeat. A version below one already applied
    (another range's newer file) is still applied: ranges touch independent tables.
    """
    out = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise StorageError(f"migration file {path.name} must be named NNN_name.sql")
        out.append((int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    out.sort(key=lambda f: f[0])
    if out and out[0][0] != 1:
        raise StorageError(f"migration {out[0][0]:03d}_{out[0][1]} out of sequence: expected 001")
    for (previous, _, _), (version, name, _) in itertools.pairwise(out):
        if version == previous:
            raise StorageError(f"migration {version:03d}_{name} repeats version {version:03d}")
    return out


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    applied_now = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
        for version, name, sql in migration_files(directory):
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if version in done:
                if done[version] != checksum:
                    raise StorageError(f"migration {version:03d}_{name} was changed after it was applied; add a new migration instead")
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                                   version, name, checksum)
            applied_now.append(f"{version:03d}_{name}")
            log.info("applied migration", extra={"migration": f"{version:03d}_{name}"})
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now

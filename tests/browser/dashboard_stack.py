"""A storage service over a month-old seeded data set, for the dashboard's integration and browser
tests: the data ends 35 days ago (as the bundled sample does a month after it was made), one
watchlist is a competitor, and one mention's text is hostile markup."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from earful_dev.seed import seed
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env

UTC = timezone.utc
END = (datetime.now(UTC) - timedelta(days=35)).replace(minute=17, second=0, microsecond=0)
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> & "quotes" <b>bold</b>'
READ_KEY, WRITE_KEY = "dash-reader-secret", "dash-writer-secret"
KEYS = f"reader:read:{READ_KEY},writer:read+write:{WRITE_KEY}"


async def seed_month_old(pg_url: str, folder: Path) -> dict[str, Any]:
    """Seed 3 days ending at END, make the last watchlist a competitor, put HOSTILE into the text
    of the newest mention of the most mentioned watchlist; returns what the tests need."""
    wl_file = folder / "watchlists.yaml"
    await seed(pg_url, mentions=3000, days=3, watchlists=4, seed_value=11, end=END, watchlists_out=wl_file,
               progress=lambda m: None)
    doc = yaml.safe_load(wl_file.read_text(encoding="utf-8"))
    doc["watchlists"][-1]["kind"] = "competitor"
    wl_file.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    conn = await asyncpg.connect(pg_url)
    try:
        top = await conn.fetchval("SELECT watchlist_id FROM mention_rollups_day WHERE watchlist_id <> '(none)'"
                                  " GROUP BY 1 ORDER BY sum(mentions) DESC LIMIT 1")
        newest = await conn.fetchrow("SELECT mention_id, created_at FROM mentions WHERE $1 = ANY(watchlist_ids)"
                                     " ORDER BY created_at DESC LIMIT 1", top)
        await conn.execute("UPDATE mentions SET text = $2 WHERE mention_id = $1", newest["mention_id"], HOSTILE)
        last_minute = await conn.fetchval("SELECT max(bucket) FROM mention_rollups_minute WHERE watchlist_id = $1", top)
    finally:
        await conn.close()
    return {"watchlists_file": wl_file, "watchlist": top, "competitor": doc["watchlists"][-1]["id"],
            "brands": [w["id"] for w in doc["watchlists"]], "hostile_id": str(newest["mention_id"]),
            "newest": last_minute + timedelta(minutes=1)}


@contextmanager
def storage_service(base_env: dict[str, str], pg_url: str, watchlists_file: Path, log_dir: Path,
                    keys: str | None = KEYS) -> Iterator[ServiceProcess]:
    """A real storage process over `pg_url` (API keys `keys`, or none)."""
    port = free_port()
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_WATCHLISTS_DIR": str(watchlists_file),
           "EARFUL_API_QUERY_TIMEOUT_S": "30"}
    if keys:
        env["EARFUL_API_KEYS"] = keys
    svc = ServiceProcess("storage", port, service_env(env, "storage", port), log_dir / "storage.log")
    svc.start()
    try:
        svc.wait_ready(90)
    except Exception:
        svc.stop()
        raise
    try:
        yield svc
    finally:
        code = svc.stop()
        assert code == 0, svc.log_tail()

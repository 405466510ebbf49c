"""A PostgreSQL outage pauses the storage writer: no crash loop, no loss, no duplicates.

Uses the embedded PostgreSQL server, the only one a test may stop and restart.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest

from earful.core.topics import ENRICHED
from earful_dev.stack.broker import free_port
from earful_dev.stack.postgres import embedded_available, start_embedded
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.dates import recent_like
from tests.support import codecs, enriched_record, eventually, produce, raw_record, scraped

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not embedded_available(), reason="embedded PostgreSQL package not installed"),
]


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM mentions"))
    finally:
        await conn.close()


def _batch(settings, prefix: str, n: int) -> list[tuple[bytes, bytes]]:
    codec = codecs(settings).for_topic(ENRICHED)
    start = recent_like(datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc))  # storage drops what retention would
    out = []
    for i in range(n):
        raw = raw_record(f"{prefix}{i}", f"Acme Air {prefix} {i}", start + timedelta(seconds=i))
        out.append((raw["mention_id"].encode(), codec.encode(enriched_record(raw, ["acme-air"]))))
    return out


async def test_writer_waits_out_a_database_outage(base_env, settings, tmp_path) -> None:
    data_dir = tmp_path / "pg"
    pg = await start_embedded(data_dir, "earful_outage", log=lambda m: None)
    port = free_port()
    env = {**base_env, "EARFUL_DATABASE_URL": pg.url}
    svc = ServiceProcess("storage", port, service_env(env, "storage", port), tmp_path / "storage.log")
    try:
        svc.start()
        svc.wait_ready(60)
        await produce(settings, ENRICHED, _batch(settings, "before", 20))
        assert await eventually(lambda: _is(pg.url, 20), timeout_s=60), svc.log_tail()

        await pg.stop()
        await produce(settings, ENRICHED, _batch(settings, "during", 30))
        # The writer meets the outage, backs off and tries the same batch again.
        assert await eventually(lambda: scraped(svc.url + "/metrics", "earful_storage_write_retries_total") >= 2,
                                timeout_s=60), svc.log_tail()
        assert svc.alive(), svc.log_tail()
        assert httpx.get(svc.url + "/readyz", timeout=10).status_code == 503
        assert httpx.get(svc.url + "/healthz").status_code == 200

        pg = await start_embedded(data_dir, "earful_outage", log=lambda m: None)
        assert pg.url.split("@")[1] == env["EARFUL_DATABASE_URL"].split("@")[1], "restart must reuse the port"
        assert await eventually(lambda: _is(pg.url, 50), timeout_s=90), svc.log_tail()
        metrics = httpx.get(svc.url + "/metrics").text
        assert "earful_storage_write_retries_total" in metrics
        assert 'earful_errors_total{kind="storage_error",service="storage"}' in metrics
    finally:
        assert svc.stop() == 0, svc.log_tail()
        await pg.stop()


async def _is(url: str, n: int) -> bool:
    try:
        return await _count(url) == n
    except (OSError, asyncpg.PostgresError):
        return False

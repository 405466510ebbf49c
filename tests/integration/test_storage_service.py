"""Storage as a real process against the real broker and PostgreSQL: idempotent, rollups exact, DLQ."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest

from earful.core.topics import ALERTS, DLQ, ENRICHED
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.dates import recent_like
from tests.support import codecs, consume_all, enriched_record, eventually, produce, raw_record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def storage_env(base_env: dict[str, str], pg_url: str) -> dict[str, str]:
    return {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_STORAGE_BATCH_SIZE": "7"}


def start_storage(env: dict[str, str], log_dir) -> ServiceProcess:
    port = free_port()
    svc = ServiceProcess("storage", port, service_env(env, "storage", port), log_dir / "storage.log")
    svc.start()
    svc.wait_ready(60)
    return svc


async def count(pg_url: str, sql: str) -> int:
    conn = await asyncpg.connect(pg_url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_writes_each_mention_once_and_survives_replay(storage_env, pg_url, settings, tmp_path) -> None:
    c = codecs(settings)
    start = recent_like(datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc))  # storage drops what retention would
    raws = [raw_record(f"s{i}", f"Acme Air mention {i}", start + timedelta(seconds=7 * i)) for i in range(60)]
    enriched = [enriched_record(r, ["acme-air"] if i % 3 else [], "negative" if i % 2 else "positive")
                for i, r in enumerate(raws)]
    items = [(e["mention"]["mention_id"].encode(), c.for_topic(ENRICHED).encode(e)) for e in enriched]
    duplicates = items[:10]  # at-least-once delivery: the same records again
    await produce(settings, ENRICHED, items + duplicates + [(b"bad", b"\xc3\x01garbage!")])
    svc = start_storage(storage_env, tmp_path)
    try:
        assert await eventually(lambda: _is(pg_url, "SELECT count(*) FROM mentions", 60)), svc.log_tail()
        # Rollups count each inserted row once per watchlist ('(none)' for unmatched).
        assert await count(pg_url, "SELECT sum(mentions) FROM mention_rollups_minute") == 60
        assert await count(pg_url, "SELECT sum(mentions) FROM mention_rollups_minute WHERE watchlist_id='(none)'") == 20
        dead = await consume_all(settings, DLQ, expect=1)
        assert c.for_topic(DLQ).decode(dead[0].value)["error_kind"] == "decode_error"

        api = httpx.get(svc.url + "/v1/mentions", params={"watchlist": "acme-air", "limit": 5}).json()
        assert len(api["mentions"]) == 5 and all("acme-air" in m["watchlist_ids"] for m in api["mentions"])
        assert httpx.get(svc.url + "/v1/mentions", params={"limit": 0}).status_code == 422
        assert httpx.get(svc.url + "/v1/mentions", params={"watchlist": "x'; drop table mentions;--"}).status_code == 422
    finally:
        assert svc.stop() == 0, svc.log_tail()

    # The same 60 records delivered again (a producer retry, a replay): nothing changes.
    await produce(settings, ENRICHED, items)
    svc = start_storage(storage_env, tmp_path)
    try:
        assert await eventually(lambda: _lag_zero(svc), timeout_s=45), svc.log_tail()
        assert _metric(svc, 'earful_storage_rows_total{outcome="duplicate",table="mentions"}') == 60
        assert await count(pg_url, "SELECT count(*) FROM mentions") == 60
        assert await count(pg_url, "SELECT sum(mentions) FROM mention_rollups_minute") == 60
    finally:
        assert svc.stop() == 0, svc.log_tail()


async def test_alerts_are_stored_once(storage_env, pg_url, settings, tmp_path) -> None:
    c = codecs(settings).for_topic(ALERTS)
    now = datetime.now(timezone.utc)
    alert = {"schema_version": 1, "alert_id": "fp1-1", "fingerprint": "fp1", "status": "firing", "rule": "volume_spike",
             "watchlist_id": "acme-air", "severity": "critical", "labels": {"watchlist": "acme-air"}, "summary": "spike",
             "observed": 30.0, "baseline": 2.0, "score": 20.0, "bucket_seconds": 10, "starts_at": now, "ends_at": None,
             "detected_at": now, "sample_mention_ids": ["a"], "first_received_at": now}
    await produce(settings, ALERTS, [(b"fp1", c.encode(alert))] * 3)
    svc = start_storage(storage_env, tmp_path)
    try:
        assert await eventually(lambda: _is(pg_url, "SELECT count(*) FROM alerts", 1))
        body = httpx.get(svc.url + "/v1/alerts").json()
        assert body["alerts"][0]["alert_id"] == "fp1-1" and body["alerts"][0]["labels"] == {"watchlist": "acme-air"}
    finally:
        svc.stop()


async def _is(pg_url: str, sql: str, expected: int) -> bool:
    return await count(pg_url, sql) == expected


def _metric(svc: ServiceProcess, line_prefix: str) -> float:
    for line in httpx.get(svc.url + "/metrics").text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.split()[-1])
    return 0.0


async def _lag_zero(svc: ServiceProcess) -> bool:
    """The restarted writer has seen exactly the 60 re-sent records (committed offsets held)."""
    return _metric(svc, 'earful_storage_rows_total{outcome="duplicate",table="mentions"}') >= 60

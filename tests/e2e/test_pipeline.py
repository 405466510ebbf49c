"""End to end: the four services as separate processes on the real broker and PostgreSQL.

POST a generated stream with a crisis (plus re-sent duplicates) → every enriched event decodes,
the webhook receiver gets the crisis alert, PostgreSQL holds exactly the distinct mentions.
Then kill -9 the storage service mid-stream, restart it, and check nothing was lost or doubled.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from earful.core.http import HttpServer
from earful.core.topics import ENRICHED
from earful.replay import replay
from earful.webhook_receiver import WebhookReceiver
from earful_dev.sample.generator import generate
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import Pipeline, ServiceProcess, service_env
from tests.dates import recent_like
from tests.support import codecs, committed_to_end, consume_all, eventually

pytestmark = pytest.mark.e2e
# A Monday 09:00 UTC at least two days ago (ingest refuses mentions older than the retention period).
START = recent_like(datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc))


@pytest.fixture(scope="module")
async def stack(base_env, pg_url, tmp_path_factory):
    receiver = WebhookReceiver()
    port = free_port()
    server = HttpServer(receiver.app(), "127.0.0.1", port)
    await server.start()
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_WEBHOOK_URLS": f"http://127.0.0.1:{port}/alerts",
           "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}  # the local receiver: allowed explicitly
    log_dir = tmp_path_factory.mktemp("logs")
    pipeline = Pipeline(env, log_dir, prefer_default_ports=False)
    await asyncio.to_thread(pipeline.start, 120)
    yield pipeline, receiver, env, log_dir
    codes = await asyncio.to_thread(pipeline.stop)
    await server.stop()
    assert all(code == 0 for code in codes.values()), codes


async def stored(pg_url: str, sql: str = "SELECT count(*) FROM mentions") -> int:
    conn = await asyncpg.connect(pg_url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_crisis_is_alerted_and_every_mention_stored_once(stack, pg_url, settings) -> None:
    pipeline, receiver, _, _ = stack
    lines, meta = generate(seed=11, start=START, hours=1.0,
                           crisis_at_hours=0.75, crisis_minutes=6.0, rate_scale=0.5)
    stats = await replay(lines, pipeline["ingest"].url, speed=300.0)
    again = await replay(lines[: len(lines) // 10], pipeline["ingest"].url)  # sources re-send: duplicates
    assert stats.rejected == 0 and again.rejected == 0
    distinct = set(stats.mention_ids)
    assert len(distinct) == len(lines) == meta["count"]

    async def done() -> bool:
        return await stored(pg_url) == len(distinct) and bool(receiver.alerts_with("firing"))

    assert await eventually(done, timeout_s=120), [s.log_tail() for s in pipeline.services.values()]
    firing = [a for a, _ in receiver.alerts_with("firing")]
    # One crisis: its watchlist's rules (volume, risk, negative share) may each fire once, in one group.
    assert {a["labels"]["watchlist"] for a in firing} == {meta["crisis"]["watchlist_id"]}, firing
    assert len({a["fingerprint"] for a in firing}) == len(firing), firing
    assert {a["labels"]["rule"] for a in firing} >= {"volume_spike"}, firing
    assert all(a["labels"]["alertname"] == a["labels"]["rule"] for a in firing), firing
    # The alert says what happened: the crisis is a data breach, the posts carry legal/privacy tags.
    assert any("(legal/privacy, " in a["annotations"]["summary"] for a in firing), [a["annotations"] for a in firing]
    # Every mention counted once per watchlist, but for the watchlists whose own account wrote it (owned).
    assert await stored(pg_url, "SELECT sum(mentions) FROM mention_rollups_minute WHERE watchlist_id <> '(none)'") == \
        await stored(pg_url, "SELECT count(*) FROM mention_watchlist_rows WHERE watchlist_id <> '(none)'")
    assert await stored(pg_url, "SELECT count(*) FROM mention_watchlist_rows") < \
        await stored(pg_url, "SELECT sum(greatest(cardinality(watchlist_ids), 1)) FROM mentions")  # the sample's care replies

    assert again.duplicates == len(lines) // 10  # exact re-deliveries stop at ingest
    enriched = await consume_all(settings, ENRICHED, expect=len(distinct))
    codec = codecs(settings).for_topic(ENRICHED)
    assert {codec.decode(m.value)["mention"]["mention_id"] for m in enriched} == distinct


async def test_storage_killed_mid_stream_loses_and_duplicates_nothing(stack, pg_url, settings) -> None:
    pipeline, _, env, log_dir = stack
    before = await stored(pg_url)
    lines, _ = generate(seed=12, start=START + timedelta(days=1), hours=1.0,
                        crisis_at_hours=None, rate_scale=1.0)
    sending = asyncio.create_task(replay(lines, pipeline["ingest"].url, speed=0.0, batch_size=20))
    assert await eventually(lambda: _more_than(pg_url, before + 50), timeout_s=60)
    pipeline["storage"].kill9()
    assert pipeline["storage"].process.returncode == -9
    stats = await sending
    port = free_port()
    restarted = ServiceProcess("storage", port, service_env(env, "storage", port), log_dir / "storage-restarted.log")
    pipeline.services["storage"] = restarted
    await asyncio.to_thread(restarted.start)
    await asyncio.to_thread(restarted.wait_ready, 60)
    expected = before + len(set(stats.mention_ids))
    assert await eventually(lambda: _equals(pg_url, expected), timeout_s=120), restarted.log_tail()
    # Once storage has committed every enriched record, any re-delivered batch has landed; it must not add rows.
    assert await eventually(lambda: committed_to_end(settings, "earful-storage", ENRICHED), timeout_s=60), \
        restarted.log_tail()
    assert await stored(pg_url) == expected
    assert await stored(pg_url, "SELECT count(*) FROM (SELECT source, source_id FROM mentions GROUP BY 1, 2) d") == expected
    assert await stored(pg_url, "SELECT sum(mentions) FROM mention_rollups_minute") == \
        await stored(pg_url, "SELECT count(*) FROM mention_watchlist_rows")


async def _more_than(pg_url: str, n: int) -> bool:
    return await stored(pg_url) > n


async def _equals(pg_url: str, n: int) -> bool:
    return await stored(pg_url) == n

"""A source's connector stops, with alerting as a real process on the test broker and PostgreSQL:
a `source_outage` alert fires, acme-air's `volume_drop` (its mentions came mostly from that
source) says which source is degraded and is inhibited, so the webhook never hears of it; the
source recovers and both resolve."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from earful.core.topics import ENRICHED
from earful.webhook_receiver import WebhookReceiver
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.support import codecs, enriched_record, eventually, produce, raw_record, webhook_receiver

pytestmark = pytest.mark.integration

WATCHLIST = """id: acme-air
name: Acme Air
kind: topic
query: '"Acme Air"'
alert_rules:
  - {rule: volume_drop, severity: warning, thresholds: {window_s: 30, min_expected: 20}}
"""


@pytest.fixture(scope="module")
async def receiver():
    async with webhook_receiver() as rec:
        yield rec


@pytest.fixture(scope="module")
def alerting(base_env: dict[str, str], pg_url: str, receiver: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory):
    folder: Path = tmp_path_factory.mktemp("watchlists")
    (folder / "acme-air.yaml").write_text(WATCHLIST, encoding="utf-8")
    port = free_port()
    env = service_env(base_env, "alerting", port)
    env.update({"EARFUL_WEBHOOK_URLS": receiver.url, "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
                "EARFUL_DATABASE_URL": pg_url, "EARFUL_WATCHLISTS_DIR": str(folder),
                "EARFUL_ALERT_SOURCE_WINDOW_S": "30", "EARFUL_ALERT_SOURCE_HISTORY_S": "600",
                "EARFUL_ALERT_GROUP_INTERVAL_S": "1"})
    svc = ServiceProcess("alerting", port, env, tmp_path_factory.mktemp("logs") / "alerting.log")
    svc.start()
    svc.wait_ready(90)
    yield svc
    assert svc.stop() == 0, svc.log_tail()


def _mention(n: int, source: str, at: datetime) -> dict[str, Any]:
    raw = raw_record(f"{source}-{n}", "Acme Air as usual", at, source=source)
    raw["received_at"] = at + timedelta(milliseconds=300)  # ingest received it at once: no lag
    return enriched_record(raw, ["acme-air"], "neutral")


async def _alerts(url: str, status: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{url}/v1/alerts", params={"status": status})
        resp.raise_for_status()
        body = resp.json()
        return body["alerts"] if isinstance(body, dict) else body


async def test_a_source_outage_fires_inhibits_the_drop_and_recovery_resolves_both(
        alerting: ServiceProcess, receiver: WebhookReceiver, settings) -> None:
    codec = codecs(settings).for_topic(ENRICHED)
    now = datetime.now(timezone.utc)
    items = []
    # Ten minutes of history: twitter delivers 2 a second, mastodon one every 10 s; twitter's connector
    # stopped a minute ago, mastodon goes on.
    for k in range(int(540 / 0.5)):
        at = now - timedelta(seconds=600) + timedelta(seconds=0.5 * k)
        items.append(_mention(k, "twitter", at))
    for k in range(60):
        items.append(_mention(k, "mastodon", now - timedelta(seconds=600) + timedelta(seconds=10 * k)))
    items.sort(key=lambda r: r["mention"]["created_at"])
    await produce(settings, ENRICHED, [(r["mention"]["mention_id"].encode(), codec.encode(r)) for r in items])

    firing: dict[str, dict] = {}

    async def outage_and_drop() -> bool:  # judged on one listing: the two need not stay firing together for long
        firing.clear()
        firing.update({a["labels"]["rule"]: a for a in await _alerts(alerting.url, "firing")})
        return {"source_outage", "volume_drop"} <= set(firing)

    assert await eventually(outage_and_drop, timeout_s=90), alerting.log_tail()
    outage, drop = firing["source_outage"], firing["volume_drop"]
    assert outage["labels"]["source"] == "twitter"
    assert drop["labels"]["watchlist"] == "acme-air" and drop["annotations"]["degraded_sources"] == "twitter"
    assert drop["inhibited_by"] == "inhibited:rule=source_outage", drop

    async def outage_notified() -> bool:
        return any(a["labels"]["rule"] == "source_outage" for a, _ in receiver.alerts_with("firing"))

    assert await eventually(outage_notified, timeout_s=30), alerting.log_tail()

    # Twitter delivers again, 2 a second as before, in real time: the drop resolves, then the outage.
    async def recovered() -> bool:
        resolved = {a["labels"]["rule"] for a in await _alerts(alerting.url, "resolved")}
        return {"source_outage", "volume_drop"} <= resolved

    n = 10_000
    deadline = asyncio.get_running_loop().time() + 120
    while asyncio.get_running_loop().time() < deadline and not await recovered():
        at = datetime.now(timezone.utc)
        batch = [_mention(n + k, "twitter", at + timedelta(milliseconds=500 * k)) for k in range(2)]
        batch.append(_mention(n, "mastodon", at))
        n += 2
        await produce(settings, ENRICHED, [(r["mention"]["mention_id"].encode(), codec.encode(r)) for r in batch])
        await asyncio.sleep(1.0)
    assert await recovered(), alerting.log_tail()
    assert await eventually(lambda: _resolved_notified(receiver), timeout_s=30), alerting.log_tail()
    # The drop was muted from start to end: the webhook never heard of it.
    told = [a for r in receiver.alerts for a in r.alerts]
    assert all(a["labels"]["rule"] != "volume_drop" for a in told), told


async def _resolved_notified(receiver: WebhookReceiver) -> bool:
    return any(a["labels"]["rule"] == "source_outage" for a, _ in receiver.alerts_with("resolved"))

"""Alerting as a real process: a spike of enriched mentions → alert event → signed webhook."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from earful.core.topics import ALERTS, ENRICHED
from earful.webhook_receiver import WebhookReceiver
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.support import codecs, consume_all, enriched_record, eventually, produce, raw_record, webhook_receiver

pytestmark = pytest.mark.integration
SECRET = "test-secret"


@pytest.fixture(scope="module")
async def receiver():
    async with webhook_receiver(SECRET) as rec:
        yield rec


@pytest.fixture(scope="module")
def alerting(base_env: dict[str, str], pg_url: str, receiver: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    env = service_env(base_env, "alerting", port)
    env.update({"EARFUL_WEBHOOK_URLS": receiver.url, "EARFUL_WEBHOOK_SECRET": SECRET,
                "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "EARFUL_DATABASE_URL": pg_url})
    svc = ServiceProcess("alerting", port, env, tmp_path_factory.mktemp("logs") / "alerting.log")
    svc.start()
    svc.wait_ready(90)
    yield svc
    assert svc.stop() == 0, svc.log_tail()


async def test_spike_fires_one_signed_alert(alerting: ServiceProcess, receiver: WebhookReceiver, settings) -> None:
    c = codecs(settings).for_topic(ENRICHED)
    start = datetime.now(timezone.utc) - timedelta(minutes=15)
    items = []
    for i in range(40):  # baseline: one mention every 20 s for ~13 minutes, for two watchlists
        raw = raw_record(f"base{i}", "Acme Air and Globex as usual", start + timedelta(seconds=20 * i))
        items.append((raw["mention_id"].encode(), c.encode(enriched_record(raw, ["acme-air", "globex"], "neutral"))))
    spike_at = start + timedelta(seconds=20 * 40 + 5)
    for i in range(25):  # spike for acme-air only: 25 mentions within one 10 s bucket
        raw = raw_record(f"spike{i}", "Acme Air leaked my data", spike_at + timedelta(milliseconds=100 * i))
        items.append((raw["mention_id"].encode(), c.encode(enriched_record(raw, ["acme-air"]))))
    await produce(settings, ENRICHED, items)

    async def fired() -> bool:
        return bool(receiver.alerts_with("firing"))

    assert await eventually(fired, timeout_s=60), alerting.log_tail()
    firing = receiver.alerts_with("firing")
    assert len(firing) == 1, firing  # globex had no spike; acme-air fires once
    alert = firing[0][0]
    event = alert["earful"]
    assert alert["labels"]["watchlist"] == "acme-air" and alert["labels"]["rule"] == "volume_spike"
    assert event["observed"] >= 3 and event["baseline"] < 2  # the floor comes from the baseline (0.05 a bucket)
    assert event["sample_mention_ids"] and event["first_received_at"]
    notification = receiver.alerts[0].payload
    # The receiver accepted it only after its Standard Webhooks signature verified (within 5 minutes).
    headers = receiver.alerts[0].headers
    assert headers["webhook-id"] == headers["x-earful-idempotency-key"] == receiver.alerts[0].idempotency_key
    assert headers["webhook-signature"].startswith("v1,") and headers["webhook-timestamp"] == headers["x-earful-timestamp"]
    assert headers["x-earful-signature"].startswith("v1=")  # the deprecated scheme, still sent
    assert notification["version"] == "4" and notification["status"] == "firing"
    assert notification["groupKey"] == "watchlist=acme-air" and notification["truncatedAlerts"] == 0

    events = await consume_all(settings, ALERTS, expect=1)
    decoded = codecs(settings).for_topic(ALERTS).decode(events[0].value)
    assert decoded["alert_id"] == event["alert_id"] and events[0].key.decode() == decoded["fingerprint"]
    assert decoded["group_key"] == "watchlist=acme-air"
    explanation = decoded["explanation"]  # the evidence as it stood when the alert fired
    assert explanation["top_posts"] and explanation["sources"] == {"twitter": int(decoded["observed"])}
    assert explanation["sentiment"] == {"negative": int(decoded["observed"])}
    leaked = next(t for t in explanation["top_terms"] if t["term"] == "leaked")  # distinctive against the baseline
    assert leaked["count"] == int(decoded["observed"]) == len(leaked["mention_ids"]) and leaked["score"] > 0
    assert not {"acme", "air", "acmeair"} & {t["term"] for t in explanation["top_terms"]}  # never the brand's own name
    # The baseline before the window, not the spike. Delivery is at-least-once: a baseline post re-delivered
    # after the group's first rebalance (offsets not yet committed) counts again, a few at most.
    assert 0 < explanation["history_posts"] <= 40 + 5 and decoded["severity_assessment"]["factors"]
    assert decoded["labels"]["alertname"] == "volume_spike" == alert["labels"]["alertname"]
    assert alert["annotations"]["summary"] == decoded["summary"] == event["summary"]
    cause = explanation["cause"]  # no tag on the posts: the cause is the most distinctive term
    assert cause["kind"] == "term" and cause["phrase"] in ("leaked", "data")
    assert decoded["summary"].startswith(f"Acme Air: \u201c{cause['phrase']}\u201d ({int(decoded['observed'])} of ")

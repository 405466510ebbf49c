"""The alerting Faust app: three small agents.

1. ``fan_out``: enriched mentions → one record per matched watchlist on the internal
   ``earful.alerting.by-watchlist.v1`` topic, keyed by watchlist id, so each watchlist's state
   lives in exactly one partition (and one worker).
2. ``detect``: runs the detector on every record; state sits in a changelogged Faust table, so a
   restart resumes where it left off; decisions become AlertEvents on ``earful.alerts.v1``.
3. ``deliver``: every alert event → webhooks; a receiver that keeps failing → DLQ.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from datetime import datetime, timezone
from typing import Any

import faust
import httpx

from earful.alerting.delivery import WebhookSender
from earful.alerting.detector import Decision, DetectorConfig, new_state, observe
from earful.core.errors import DeliveryError
from earful.core.faust_service import FaustDeadLetters, attach_ops_server
from earful.core.health import Health, tcp_check
from earful.core.kafka import Codecs, faust_app, millis_now
from earful.core.metrics import MESSAGES, PIPELINE_LATENCY
from earful.core.settings import Settings
from earful.core.topics import ALERTING_BY_WATCHLIST, ALERTS, ENRICHED, load_topics, partitions_for
from earful.watchlists import Watchlist
from earful.watchlists.live import live_watchlists

log = logging.getLogger(__name__)
SERVICE = "alerting"


def detector_config(settings: Settings) -> DetectorConfig:
    return DetectorConfig(
        bucket_s=settings.alert_bucket_s,
        baseline_buckets=settings.alert_baseline_buckets,
        warmup_buckets=settings.alert_warmup_buckets,
        min_count=settings.alert_min_count,
        min_ratio=settings.alert_min_ratio,
        max_p_value=settings.alert_max_p_value,
        resolve_buckets=settings.alert_resolve_buckets,
        lateness_buckets=settings.alert_lateness_buckets,
        cooldown_buckets=settings.alert_cooldown_buckets,
    )


def watchlist_config(cfg: DetectorConfig, watchlist: Watchlist | None) -> DetectorConfig | None:
    """The detector settings for one watchlist: its volume_spike rule over the service defaults;
    None when the watchlist is gone or its rules leave volume_spike out or disabled."""
    if watchlist is None:
        return None
    if not watchlist.alert_rules:
        return cfg
    rule = watchlist.rule("volume_spike")
    if rule is None:
        return None
    t = rule.thresholds
    return dataclasses.replace(
        cfg, severity=rule.severity, min_count=int(t.get("min_count", cfg.min_count)),
        min_ratio=t.get("min_ratio", cfg.min_ratio), max_p_value=t.get("max_p_value", cfg.max_p_value),
        cooldown_buckets=cfg.cooldown_buckets if rule.cooldown_s is None else math.ceil(rule.cooldown_s / cfg.bucket_s))


def alert_record(d: Decision, cfg: DetectorConfig, detected_at_ms: int) -> dict[str, Any]:
    """A detector decision → the AlertEvent Avro record."""
    def ts(ms: int | None) -> datetime | None:
        return None if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc)

    return {
        "schema_version": 2, "alert_id": d.alert_id, "fingerprint": d.fingerprint, "status": d.status,
        "rule": d.labels["rule"], "watchlist_id": d.watchlist_id, "severity": d.labels["severity"],
        "labels": d.labels, "summary": d.summary, "observed": d.observed, "baseline": d.baseline, "score": d.score,
        "bucket_seconds": cfg.bucket_s, "starts_at": ts(d.starts_at_ms), "ends_at": ts(d.ends_at_ms),
        "detected_at": ts(detected_at_ms), "sample_mention_ids": d.sample_mention_ids,
        "first_received_at": ts(d.first_received_at_ms),
    }


def webhook_payload(alert: dict[str, Any]) -> dict[str, Any]:
    """The JSON body receivers get: the alert event with RFC 3339 timestamps."""
    return {k: (v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v) for k, v in alert.items()}


def build(settings: Settings) -> Any:
    app = faust_app(settings, "earful-alerting")
    codecs = Codecs(settings)
    enriched_codec, alert_codec = codecs.for_topic(ENRICHED), codecs.for_topic(ALERTS)
    cfg = detector_config(settings)
    specs = load_topics(settings.schema_dir)
    health = Health(SERVICE)
    health.add_check("kafka", tcp_check(settings.kafka_bootstrap, 9092))
    watchlists = live_watchlists(app, settings, health, SERVICE)  # rules, handles, SLA: live from the topic
    attach_ops_server(app, settings, health, SERVICE)

    def topic(name: str) -> Any:
        return app.topic(name, key_serializer="raw", value_serializer="raw", internal=False,
                         partitions=partitions_for(specs[name], settings))

    enriched_topic, by_watchlist, alerts_topic = (topic(n) for n in (ENRICHED, ALERTING_BY_WATCHLIST, ALERTS))
    state_table = app.Table(
        "detector", partitions=partitions_for(specs[ALERTING_BY_WATCHLIST], settings),
        schema=faust.Schema(key_type=bytes, value_type=dict, key_serializer="raw", value_serializer="json"),
    )

    dead_letters = FaustDeadLetters(app, codecs, SERVICE)

    @app.agent(enriched_topic)
    async def fan_out(stream: Any) -> None:
        async for event in stream.events():
            record = await dead_letters.decode(event, enriched_codec)
            if record is None:
                continue
            live = watchlists.current()  # a deleted watchlist stops counting at once
            sends = [await by_watchlist.send(key=wid.encode(), value=event.message.value)
                     for wid in record["watchlist_ids"] if wid in live]
            await asyncio.gather(*sends)
            MESSAGES.labels(SERVICE, ENRICHED, "fanned_out" if sends else "no_watchlist").inc()

    @app.agent(by_watchlist)
    async def detect(stream: Any) -> None:
        async for event in stream.events():
            record = await dead_letters.decode(event, enriched_codec)
            if record is None:
                continue
            wid = event.message.key.decode()
            wcfg = watchlist_config(cfg, watchlists.get(wid))
            if wcfg is None:
                continue
            mention = record["mention"]
            state = state_table.get(event.message.key) or new_state()
            decisions = observe(state, wid, int(mention["created_at"].timestamp() * 1000),
                                int(mention["received_at"].timestamp() * 1000), mention["mention_id"], wcfg)
            state_table[event.message.key] = state
            now_ms = millis_now()
            for d in decisions:
                alert = alert_record(d, wcfg, now_ms)
                await (await alerts_topic.send(key=d.fingerprint.encode(), value=alert_codec.encode(alert)))
                log.warning("alert %s", d.status, extra={"watchlist": wid, "alert_id": d.alert_id, "summary": d.summary})
            PIPELINE_LATENCY.labels(SERVICE).observe(max(0.0, time.time() - mention["received_at"].timestamp()))

    client = httpx.AsyncClient(timeout=settings.webhook_timeout_s)
    sender = WebhookSender(settings.webhook_urls, settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
                           client, max_attempts=settings.webhook_max_attempts)

    @app.agent(alerts_topic)
    async def deliver(stream: Any) -> None:
        async for event in stream.events():
            alert = await dead_letters.decode(event, alert_codec)
            if alert is None:
                continue
            if not sender.urls:
                continue
            outcomes = await sender.deliver(webhook_payload(alert), f"{alert['alert_id']}:{alert['status']}")
            for o in outcomes:
                if not o.delivered:
                    await dead_letters.send_event(event, DeliveryError(f"webhook {o.url}: {o.reason} after {o.attempts} attempts"))
                else:
                    log.info("alert delivered", extra={"url": o.url, "alert_id": alert["alert_id"], "attempts": o.attempts})

    return app

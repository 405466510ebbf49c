"""The evidence behind alerts survives a restart of the alerting service: the posts and term
history seen before the restart (kept in PostgreSQL) explain an alert that fires after it, and the
API shows the evidence an alert fired with."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest

from earful.core.topics import ALERTING_BY_WATCHLIST, ENRICHED
from earful.webhook_receiver import WebhookReceiver
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.support import codecs, committed_to_end, enriched_record, eventually, produce, raw_record, webhook_receiver

pytestmark = pytest.mark.integration
BREACH = "Acme Air left passport scans exposed on an open server"


@pytest.fixture(scope="module")
async def receiver():
    async with webhook_receiver() as rec:
        yield rec


async def fetchval(pg_url: str, sql: str) -> Any:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_posts_and_history_seen_before_a_restart_explain_an_alert_after_it(
        base_env: dict[str, str], pg_url: str, receiver: WebhookReceiver, settings, tmp_path) -> None:
    port = free_port()
    env = service_env(base_env, "alerting", port)
    env.update({"EARFUL_WEBHOOK_URLS": receiver.url, "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
                "EARFUL_DATABASE_URL": pg_url})
    c = codecs(settings).for_topic(ENRICHED)
    start = datetime.now(timezone.utc) - timedelta(minutes=15)
    # The crisis in one 10-second bucket (the default): one second after a bucket's start, so the
    # precursors and the spike (4.1 s in all) are never split by a boundary and judged apart.
    spike_at = datetime.fromtimestamp((int((start + timedelta(seconds=20 * 40 + 5)).timestamp()) // 10) * 10 + 1,
                                      timezone.utc)

    def mention(sid: str, at: datetime, text: str, sentiment: str = "neutral", legal: bool = False,
                handle: str = "someone", followers: int = 10) -> tuple[bytes, bytes]:
        raw = raw_record(sid, text, at)
        raw["author"] = {**raw["author"], "handle": handle, "followers": followers}
        record = enriched_record(raw, ["acme-air"], sentiment)
        if legal:
            start_at = text.index("passport")
            record["risks"] = [{"tag": "legal_privacy", "evidence": "passport scans", "start": start_at,
                                "end": start_at + len("passport scans")}]
        return raw["mention_id"].encode(), c.encode(record)

    # Before the restart: a quiet history, then the first three posts of the crisis (too few for a spike, neutral,
    # and risk_mention waits for an hour of history: no rule fires).
    before = [mention(f"base{i}", start + timedelta(seconds=20 * i), "Acme Air flight on time as usual") for i in range(40)]
    precursors = [mention(f"first{i}", spike_at + timedelta(milliseconds=100 * i), BREACH, legal=True,
                          handle="breachwatch_kat", followers=84_213) for i in range(3)]
    first = ServiceProcess("alerting", port, env, tmp_path / "alerting-1.log")
    first.start()
    second: ServiceProcess | None = None
    try:
        first.wait_ready(90)
        await produce(settings, ENRICHED, before + precursors)

        async def persisted() -> bool:
            posts = await fetchval(pg_url, "SELECT count(*) FROM alert_evidence_posts WHERE watchlist_id = 'acme-air'")
            counted = await fetchval(pg_url, "SELECT coalesce(sum(posts), 0) FROM alert_term_history WHERE watchlist_id = 'acme-air'")
            return bool(posts == 43 and counted == 43)

        assert await eventually(persisted, timeout_s=60), first.log_tail()
        for topic in (ENRICHED, ALERTING_BY_WATCHLIST):  # nothing is re-delivered after the restart
            assert await eventually(lambda t=topic: committed_to_end(settings, "earful-alerting", t), timeout_s=60)
        assert not receiver.alerts, [r.payload for r in receiver.alerts]
        assert first.stop() == 0, first.log_tail()

        second = ServiceProcess("alerting", port, env, tmp_path / "alerting-2.log")
        second.start()
        second.wait_ready(90)
        spike = [mention(f"spike{i}", spike_at + timedelta(milliseconds=300 + 150 * i), BREACH, "negative", legal=True)
                 for i in range(25)]
        await produce(settings, ENRICHED, spike)

        async def fired() -> bool:
            return bool(receiver.alerts_with("firing"))

        assert await eventually(fired, timeout_s=60), second.log_tail()
        precursor_ids = {key.decode() for key, _ in precursors}
        for alert, _ in receiver.alerts_with("firing"):
            event = alert["earful"]
            explanation = event["explanation"]
            assert alert["labels"]["alertname"] == event["rule"]
            # the posts seen before the restart are evidence of the alert after it, and so is the history
            assert precursor_ids <= set(explanation["mention_ids"]), (event["rule"], explanation["mention_ids"])
            assert explanation["history_posts"] >= 20, explanation["history_posts"]  # restored: the 40 before, less the window
            assert "legal/privacy" in alert["annotations"]["summary"], alert["annotations"]["summary"]
            assert alert["annotations"]["summary"].endswith("started by @breachwatch_kat (84k followers)")
            assert explanation["cause"]["tag"] == "legal_privacy" and event["severity_assessment"]["level"]
            assert not {"acme", "air", "acmeair", "acme air"} & {t["term"] for t in explanation["top_terms"]}

        alert = receiver.alerts_with("firing")[0][0]
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as api:
            detail = (await api.get(f"/v1/alerts/{alert['fingerprint']}")).json()
        evidence = detail["evidence"]
        assert evidence["summary"] == alert["annotations"]["summary"] and evidence["severity_assessment"]["score"] > 0
        assert precursor_ids <= set(evidence["explanation"]["mention_ids"])
        assert evidence["explanation"]["claims"][0]["mention_ids"]
    finally:
        if second is not None:
            assert second.stop() == 0, second.log_tail()
        first.kill9()


async def test_the_evidence_tables_add_up_prune_and_keep_the_first_evidence(pg_url: str) -> None:
    from collections import Counter

    from earful.alerting.evidence_store import EvidenceStore, alert_evidence, remember
    from earful.alerting.explain import HOUR_MS, Post
    from earful.core.migrate import migrate

    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            await conn.execute("TRUNCATE alert_evidence_posts, alert_term_history, alert_evidence")
        store = EvidenceStore(pool)
        now = datetime.now(timezone.utc)
        t0 = 1_793_604_000_000

        def post(i: int, at: int) -> Post:
            return Post(f"m{i}", "twitter", None, "kat", 10, "data breach\x00", at, "en", "negative", ("data breach",))

        hour = t0 // HOUR_MS
        await store.write([("w", post(i, t0 + i * 1000)) for i in range(5)], {"w": {hour: (5, Counter({"breach": 5}))}}, now)
        await store.write([("w", post(4, t0 + 4000))], {"w": {hour: (2, Counter({"breach": 1, "refund": 2})),
                                                              hour - 30: (1, Counter({"old": 1}))}}, now)
        posts, history = await store.load(max_posts=3, history_hours=24)
        assert [p.mention_id for _, p in posts] == ["m2", "m3", "m4"] and posts[0][1].text == "data breach"  # NUL dropped
        assert [(w, h, n, c) for w, h, n, c in history] == [("w", hour, 7, Counter({"breach": 6, "refund": 2}))]  # summed
        await store.write([], {"w": {hour + 1: (1, Counter({"x": 1}))}}, now)
        await store.prune(horizon_ms=2500, max_posts=10, history_hours=24, now=now)
        assert await pool.fetchval("SELECT count(*) FROM alert_evidence_posts") == 3  # m2..m4: within 2.5 s of the newest
        assert await pool.fetchval("SELECT count(*) FROM alert_term_history") == 2  # the hour 30 h back is gone
        compacted = await pool.fetchval("SELECT terms::text FROM alert_term_history WHERE hour = to_timestamp($1)",
                                        hour * 3600)
        assert compacted == '{"breach": 6, "refund": 2}'  # a closed hour keeps terms seen twice or more

        event = {"status": "firing", "alert_id": "fp-1", "fingerprint": "fp", "watchlist_id": "w", "rule": "volume_spike",
                 "summary": "w: data breach", "explanation": {"total": 5, "claims": []},
                 "severity_assessment": {"level": "high", "score": 5.0, "factors": []}}
        assert await remember(pool, event, now)
        assert await remember(pool, {**event, "summary": "later"}, now)  # the first evidence wins
        assert not await remember(pool, {**event, "status": "resolved", "explanation": None}, now)
        kept = await alert_evidence(pool, "fp-1")
        assert kept is not None and kept["summary"] == "w: data breach" and kept["severity_assessment"]["level"] == "high"
        assert await alert_evidence(pool, "nope") is None
    finally:
        await pool.close()

"""The alerting Faust app: detect per watchlist, publish alert events, notify receivers.

1. ``fan_out``: enriched mentions → one record per watchlist on the internal
   ``earful.alerting.by-watchlist.v1`` topic, keyed by watchlist id (matched watchlists, plus the
   watchlists whose own handle wrote the mention: its replies answer customer questions), so
   each watchlist's state lives in exactly one partition (and one worker).
2. ``detect``: runs the detector on every record; state sits in a changelogged Faust table, so a
   restart resumes where it left off; a timer lets time pass for silent watchlists. Decisions
   become AlertEvents (with their explanation and group key) on ``earful.alerts.v1``.
3. ``deliver``: every alert event → PostgreSQL (alert state, notification group); the
   dispatcher flushes due groups to the receivers (see `earful.alerting.dispatch`).

Offsets of ``earful.alerts.v1`` are acknowledged only after the event is in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg
import faust
import mode
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import Counter

from earful.alerting.api import build_router
from earful.alerting.delivery import Outcome, make_client
from earful.alerting.detector import Decision, DetectorConfig, Mention, observe, tick, upgrade_state
from earful.alerting.dispatch import Dispatcher, deliverers_for, utc_now
from earful.alerting.events import alert_record, dashboard_link, event_json
from earful.alerting.explain import Evidence, post_of
from earful.alerting.notify import Alert
from earful.alerting.routing import NotifyConfig, Receiver, TargetPolicy, load_notify_config
from earful.alerting.rules import RuleDefaults
from earful.alerting.store import AlertStore
from earful.alerting.watch import RuleBook
from earful.core.errors import DeliveryError, StorageError
from earful.core.faust_service import FaustDeadLetters, attach_ops_server
from earful.core.health import Health, tcp_check
from earful.core.kafka import Codecs, faust_app, millis_now
from earful.core.metrics import ERRORS, MESSAGES, PIPELINE_LATENCY
from earful.core.settings import Settings
from earful.core.topics import ALERTING_BY_WATCHLIST, ALERTS, ENRICHED, load_topics, partitions_for
from earful.watchlists import WatchlistSource
from earful.watchlists.live import live_watchlists

log = logging.getLogger(__name__)
SERVICE = "alerting"
DECISIONS = Counter("earful_alert_decisions_total", "Alert state changes decided, by rule and status.", ["rule", "status"])


def mention_of(record: dict[str, Any], watchlist_id: str) -> Mention:
    """The detector's view of an enriched mention, for one watchlist."""
    m = record["mention"]
    engagement = m.get("engagement") or {}
    observed = engagement.get("observed_at")
    return Mention(
        mention_id=m["mention_id"], created_ms=int(m["created_at"].timestamp() * 1000),
        received_ms=int(m["received_at"].timestamp() * 1000), source=m["source"], source_id=m["source_id"],
        author_handle=(m.get("author") or {}).get("handle"), followers=(m.get("author") or {}).get("followers"),
        negative=(record.get("sentiment") or {}).get("label") == "negative",
        risks=tuple(r["tag"] for r in record.get("risks") or ()), in_reply_to=m.get("in_reply_to"),
        reposted_from=m.get("reposted_from"),
        engagement=int(engagement.get("reposts") or 0) + int(engagement.get("replies") or 0),
        observed_ms=None if observed is None else int(observed.timestamp() * 1000),
        matched=watchlist_id in record.get("watchlist_ids", ()),
    )


class Postgres(mode.Service):
    """The alerting service's PostgreSQL pool; migrations are applied when it starts."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        self.ready = asyncio.Event()

    async def on_start(self) -> None:
        from earful.core.migrate import migrate

        url = self.settings.database_url.get_secret_value()
        delay = 0.5
        while True:
            try:
                self.pool = await asyncpg.create_pool(url, min_size=1, max_size=8, command_timeout=60)
                async with self.pool.acquire() as conn:
                    applied = await migrate(conn)
                break
            except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
                if self.pool is not None:
                    await self.pool.close()
                    self.pool = None
                ERRORS.labels(SERVICE, StorageError.kind).inc()
                log.warning("PostgreSQL not reachable; retrying", extra={"error": str(exc)[:300], "delay_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if applied:
            log.info("migrations applied", extra={"migrations": applied})
        self.ready.set()

    async def on_stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()


def build(settings: Settings, watchlists: WatchlistSource | None = None) -> Any:
    """The alerting app; `watchlists` defaults to the live store that follows earful.watchlists.v1."""
    app = faust_app(settings, "earful-alerting", table_standby_replicas=0)
    codecs = Codecs(settings)
    enriched_codec, alert_codec = codecs.for_topic(ENRICHED), codecs.for_topic(ALERTS)
    cfg = DetectorConfig.from_settings(settings)
    health = Health(SERVICE)
    health.add_check("kafka", tcp_check(settings.kafka_bootstrap, 9092))
    # Rules, handles and SLAs come live from the topic: a changed watchlist applies without a restart.
    if watchlists is None:
        watchlists = live_watchlists(app, settings, health, SERVICE)
    book = RuleBook(watchlists, RuleDefaults.from_settings(settings))
    notify_cfg: NotifyConfig = load_notify_config(settings)
    # Evidence for explanations: the buckets that can still fire (the lateness window) and the trailing minute.
    evidence = Evidence(horizon_ms=(cfg.lateness_buckets + 1) * cfg.bucket_ms + settings.alert_window_s * 1000,
                        max_posts=1000)
    specs = load_topics(settings.schema_dir)
    pg = Postgres(settings)
    app.service(pg)

    async def pg_check() -> None:
        if not pg.ready.is_set() or pg.pool is None:
            raise ConnectionError("not connected yet")
        await pg.pool.fetchval("SELECT 1")

    health.add_check("postgres", pg_check)

    def topic(name: str) -> Any:
        return app.topic(name, key_serializer="raw", value_serializer="raw", internal=False,
                         partitions=partitions_for(specs[name], settings))

    enriched_topic, by_watchlist, alerts_topic = (topic(n) for n in (ENRICHED, ALERTING_BY_WATCHLIST, ALERTS))
    partitions = partitions_for(specs[ALERTING_BY_WATCHLIST], settings)
    # key_type (not only the schema) sets the key serializer recovery uses: raw keys, JSON values
    # (a value_type of dict would be taken for a Faust model and fail to decode on recovery).
    state_table = app.Table(
        "detector", partitions=partitions, use_partitioner=True,  # the timer writes too: partition = key hash
        key_type=bytes, schema=faust.Schema(key_type=bytes, key_serializer="raw", value_serializer="json"),
    )
    dead_letters = FaustDeadLetters(app, codecs, SERVICE)

    # --- delivery side: store, dispatcher, API ----------------------------------------------------
    client = make_client(settings.webhook_timeout_s, TargetPolicy(settings.webhook_allowed_networks))
    holder: dict[str, Any] = {}

    def store() -> AlertStore:
        if "store" not in holder:
            assert pg.pool is not None
            holder["store"] = AlertStore(pg.pool)
        return holder["store"]

    async def dead_letter(group_key: str, receiver: Receiver, body: bytes, outcome: Outcome) -> None:
        error = DeliveryError(f"receiver {receiver.name} ({receiver.kind}): {outcome.reason} after {outcome.attempts} attempts")
        await dead_letters.send(topic=ALERTS, partition=-1, offset=-1, key=group_key.encode(), value=body, error=error)

    def quiet_hours(alert: Alert) -> Any:
        rule = book.rule(alert.labels.get("watchlist", ""), alert.labels.get("rule", ""))
        return rule.quiet_hours if rule else None

    def dispatcher() -> Dispatcher:
        if "dispatcher" not in holder:
            holder["dispatcher"] = Dispatcher(store(), notify_cfg, deliverers_for(notify_cfg, client, settings),
                                              quiet_hours=quiet_hours, dead_letter=dead_letter,
                                              external_url=settings.alert_dashboard_url or "")
        return holder["dispatcher"]

    class _LazyStore:
        def __getattr__(self, name: str) -> Any:
            if not pg.ready.is_set():
                from fastapi import HTTPException

                raise HTTPException(status_code=503, detail="PostgreSQL not connected yet")
            return getattr(store(), name)

    def changed() -> None:
        if "dispatcher" in holder:
            asyncio.ensure_future(_reschedule_firing())

    async def _reschedule_firing() -> None:
        now = utc_now()
        await store().flush_firing_now(now)
        dispatcher().wake_at(now)

    router = build_router(_LazyStore(), notify_cfg, settings.api_key_set(), utc_now, changed)  # type: ignore[arg-type]
    attach_ops_server(app, settings, health, SERVICE, routers=[router])

    class DispatchService(mode.Service):
        async def on_start(self) -> None:
            await pg.ready.wait()
            d = dispatcher()
            recovered = await store().recover(utc_now())
            if recovered:
                log.info("rescheduled notification groups after start", extra={"groups": recovered})
            self.add_future(d.run())
            self.add_future(self._housekeeping())

        async def _housekeeping(self) -> None:
            while True:
                await asyncio.sleep(3600)
                try:
                    await store().forget(utc_now())
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("alert housekeeping failed", extra={"error": str(exc)[:300]})

        async def on_stop(self) -> None:
            if "dispatcher" in holder:
                await holder["dispatcher"].stop()
            await client.aclose()

    app.service(DispatchService)

    # --- detection --------------------------------------------------------------------------------

    async def publish(decisions: list[Decision], wid: str) -> None:
        now_ms = millis_now()
        for d in decisions:
            explanation = None
            link = dashboard_link(settings.alert_dashboard_url, wid)
            if d.status == "firing" and d.window is not None:
                explanation = evidence.explain(wid, d.window[0], d.window[1], link)
            rule_cfg = book.rule(wid, d.rule)
            record = alert_record(d, bucket_s=cfg.bucket_s, detected_at_ms=now_ms,
                                  group_key=notify_cfg.group_key(d.labels), explanation=explanation, dashboard_url=link)
            await (await alerts_topic.send(key=d.fingerprint.encode(), value=alert_codec.encode(record)))
            DECISIONS.labels(d.rule, d.status).inc()
            log.warning("alert %s", d.status, extra={"watchlist": wid, "rule": d.rule, "alert_id": d.alert_id,
                                                     "summary": d.summary, "severity": d.labels.get("severity"),
                                                     "receivers": list(rule_cfg.receivers) if rule_cfg else []})

    @app.agent(enriched_topic)
    async def fan_out(stream: Any) -> None:
        async for event in stream.events():
            record = await dead_letters.decode(event, enriched_codec)
            if record is None:
                continue
            handle = (record["mention"].get("author") or {}).get("handle")
            targets = [wid for wid in dict.fromkeys([*record["watchlist_ids"], *book.watchlists_of_handle(handle)])
                       if book.live(wid)]  # a deleted watchlist stops counting at once
            # Queued, not awaited one by one (a broker round trip per mention would cap the rate):
            # Faust flushes the producer before it commits the source offsets, so nothing is lost.
            for wid in targets:
                await by_watchlist.send(key=wid.encode(), value=event.message.value)
            MESSAGES.labels(SERVICE, ENRICHED, "fanned_out" if targets else "no_watchlist").inc()

    @app.agent(by_watchlist)
    async def detect(stream: Any) -> None:
        async for event in stream.events():
            record = await dead_letters.decode(event, enriched_codec)
            if record is None:
                continue
            wid = event.message.key.decode()
            mention = mention_of(record, wid)
            if mention.matched:
                evidence.add(wid, post_of(record))
            state = upgrade_state(state_table.get(event.message.key))
            decisions = observe(state, book.rules(wid), mention, cfg, wall_ms=millis_now())
            state_table[event.message.key] = state
            await publish(decisions, wid)
            PIPELINE_LATENCY.labels(SERVICE).observe(max(0.0, time.time() - mention.received_ms / 1000))

    partitioner = DefaultPartitioner()

    @app.timer(interval=settings.alert_tick_s)
    async def let_time_pass() -> None:
        """Time-based decisions for this worker's watchlists (silent ones resolve, questions go overdue)."""
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == ALERTING_BY_WATCHLIST}
        if not assigned:
            return
        all_partitions = list(range(partitions))
        now_ms = millis_now()
        for key in list(state_table.keys()):
            if partitioner(key, all_partitions, all_partitions) not in assigned:
                continue
            state = upgrade_state(state_table.get(key))
            decisions = tick(state, book.rules(key.decode()), cfg, now_ms)
            if decisions:
                state_table[key] = state
                await publish(decisions, key.decode())

    # --- delivery ---------------------------------------------------------------------------------

    @app.agent(alerts_topic)
    async def deliver(stream: Any) -> None:
        async for event in stream.events():
            alert = await dead_letters.decode(event, alert_codec)
            if alert is None:
                continue
            await pg.ready.wait()
            doc = event_json(alert)
            labels = doc["labels"]
            rule_cfg = book.rule(labels.get("watchlist", doc["watchlist_id"]), doc["rule"])
            receivers = notify_cfg.receivers_for(labels, rule_cfg.receivers if rule_cfg else ())
            group_key = doc.get("group_key") or notify_cfg.group_key(labels)
            route = notify_cfg.route_for(labels)
            delay = 0.5
            while True:  # the offset is acknowledged only once the alert is in PostgreSQL
                try:
                    due = await store().record(doc, group_key, receivers, route, utc_now())
                    break
                except (OSError, asyncpg.PostgresError) as exc:
                    ERRORS.labels(SERVICE, StorageError.kind).inc()
                    log.warning("cannot record alert; retrying", extra={"error": str(exc)[:300], "delay_s": delay})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            if due is not None:
                dispatcher().wake_at(due)
            MESSAGES.labels(SERVICE, ALERTS, "recorded" if due else "unchanged").inc()

    return app

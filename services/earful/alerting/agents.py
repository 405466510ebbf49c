"""The alerting stream processors (Faust agents), in the order a mention travels:

1. ``fan_out``: enriched mentions (but an erased author's, see `earful.core.erased_authors`,
   counted as ``erased_author`` and dropped) → one record per watchlist on the internal
   ``earful.alerting.by-watchlist.v1`` topic, keyed by watchlist id (matched watchlists, plus the
   watchlists whose own handle wrote the mention: its replies answer customer questions), so
   each watchlist's state lives in exactly one partition (and one worker).
2. ``detect``: runs the detector on every record; state sits in a changelogged Faust table, so a
   restart resumes where it left off; ``let_time_pass`` (a timer) lets time pass for silent
   watchlists. Decisions become AlertEvents (with their explanation and group key) on
   ``earful.alerts.v1``.
3. ``deliver``: every alert event → PostgreSQL (alert state, notification group); the
   dispatcher flushes due groups to the receivers (see `earful.alerting.notification`).

Offsets of ``earful.alerts.v1`` are acknowledged only after the event is in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any, Protocol, cast

import asyncpg
import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import Counter

from earful.alerting import SERVICE
from earful.alerting.describe import BrandCache, describe
from earful.alerting.detection import Decision, DetectorConfig, mention_of, observe, tick, upgrade_state
from earful.alerting.detection.rulebook import RuleBook
from earful.alerting.detection.source_health import SourceHealthConfig
from earful.alerting.events import alert_record, dashboard_link, event_json
from earful.alerting.evidence_store import EvidenceKeeper, remember
from earful.alerting.explain import Evidence, evidence_horizon_ms, post_of
from earful.alerting.notification.grouping import utc_now
from earful.alerting.notification.routing import NotifyConfig
from earful.alerting.notification.store import AlertStore
from earful.alerting.source_monitor import SourceMonitor
from earful.core.erased_authors import ErasedAuthors, follow_erasures
from earful.core.errors import StorageError
from earful.core.faust_service import FaustDeadLetters
from earful.core.kafka import Codecs, millis_now, send_keyed_batches
from earful.core.metrics import ERRORS, MESSAGES, PIPELINE_LATENCY
from earful.core.retry import Backoff, retry
from earful.core.settings import Settings
from earful.core.topics import ALERTING_BY_WATCHLIST, ALERTS, ENRICHED, ERASURES, TopicSpec, load_topics, partitions_for

log = logging.getLogger(__name__)

# An alert event PostgreSQL refuses (a NUL character, a value out of range; asyncpg raises ValueError, TypeError
# or OverflowError for a value it cannot encode) is poison, not an outage: retried, it would hold back every later
# event of its partition. It is dead-lettered instead.
_POISON_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.ProgramLimitExceededError,
                  ValueError, TypeError, OverflowError)

DECISIONS = Counter("earful_alert_decisions_total", "Alert state changes decided, by rule and status.", ["rule", "status"])
STATE_WRITES = Counter("earful_alert_state_writes_total", "Detector states written to the changelog (at most one per watchlist and second).")

# The detector reads by-watchlist records in batches of at most DETECT_BATCH, gathered for at most
# DETECT_WAIT_S (the most a mention waits before it is counted), and writes a changed state to the
# changelog at most once per STATE_FLUSH_S; see `AlertingAgents.detect`.
DETECT_BATCH = 500
DETECT_WAIT_S = 0.05
STATE_FLUSH_S = 1.0
# fan_out takes enriched mentions in batches of at most FAN_OUT_BATCH, gathered for at most FAN_OUT_WAIT_S.
FAN_OUT_BATCH = 500
FAN_OUT_WAIT_S = 0.01
# Decoded enriched records fan_out keeps for detect (`RecentlyDecoded`): a few seconds' worth at
# hundreds of mentions a second, a few MB.
DECODED_KEPT = 1024


class RecentlyDecoded:
    """The enriched records fan_out decoded last, by their bytes, for detect to take instead of
    decoding them again.

    A by-watchlist record carries the very bytes of its enriched mention, so where its partition
    is this worker's (always, with one worker), detect finds the record here: a mention is decoded
    once instead of once more per watchlist. Bytes are the key, so a hit is the same record a
    decode would give; the records are only read. The oldest go first once `capacity` is reached
    (a lagging detect decodes for itself)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._records: dict[bytes, dict[str, Any]] = {}

    def put(self, value: bytes, record: dict[str, Any]) -> None:
        records = self._records
        records[value] = record
        if len(records) > self.capacity:
            del records[next(iter(records))]

    def get(self, value: bytes) -> dict[str, Any] | None:
        return self._records.get(value)

    def __len__(self) -> int:
        return len(self._records)


class AlertIntake(Protocol):
    """Where `deliver` hands alert events (the service's NotificationRuntime)."""

    ready: asyncio.Event  # set once `store` can be used
    store: AlertStore | None

    def wake_at(self, due: datetime) -> None: ...


class AlertingAgents:
    """The topics, the detector's table and the agents over them, registered with the Faust app."""

    def __init__(self, app: faust.App, settings: Settings, codecs: Codecs, *, rulebook: RuleBook,
                 notify_config: NotifyConfig, dead_letters: FaustDeadLetters, notifications: AlertIntake,
                 erased: ErasedAuthors | None = None) -> None:
        """`erased` defaults to a store following earful.erasures.v1, started with the app."""
        self.app = app
        self.settings = settings
        self.rulebook = rulebook
        self.notify_config = notify_config
        self.dead_letters = dead_letters
        self.notifications = notifications
        self.detector = DetectorConfig.from_settings(settings)
        # Evidence for explanations: the buckets that can still fire (the lateness window) and the longest trailing
        # window; kept in PostgreSQL too, restored before the detector counts (earful.alerting.evidence_store).
        self.evidence = Evidence(horizon_ms=evidence_horizon_ms(self.detector.bucket_ms, self.detector.lateness_buckets,
                                                                settings), max_posts=2000)
        self.brands = BrandCache()
        self.keeper = EvidenceKeeper(self.evidence, notifications.ready,
                                     lambda: notifications.store.pool if notifications.store is not None else None)
        app.service(self.keeper)  # type: ignore[arg-type]  # Faust starts instances as well as classes
        self.enriched_codec, self.alert_codec = codecs.for_topic(ENRICHED), codecs.for_topic(ALERTS)
        self.erased = erased or follow_erasures(app, settings, codecs.for_topic(ERASURES), SERVICE)
        specs = load_topics(settings.schema_dir)
        self.enriched, self.by_watchlist, self.alerts = (_topic(app, specs, settings, n)
                                                         for n in (ENRICHED, ALERTING_BY_WATCHLIST, ALERTS))
        self.partitions = partitions_for(specs[ALERTING_BY_WATCHLIST], settings)
        self.state = detector_table(app, self.partitions)
        self._changed: dict[bytes, Any] = {}  # states counted into since the last flush, by key
        self._unflushed: list[Any] = []  # their events, held (incref) until the flush writes them
        self._flushed_at = time.monotonic()
        self.sources = SourceMonitor(self.state, SourceHealthConfig.from_settings(settings), settings.alert_source_health)
        self._partitioner = DefaultPartitioner()
        self.decoded = RecentlyDecoded(DECODED_KEPT)
        app.agent(self.enriched)(self.fan_out)
        app.agent(self.by_watchlist)(self.detect)
        app.timer(interval=settings.alert_tick_s)(self.let_time_pass)
        app.timer(interval=STATE_FLUSH_S)(self.flush_due_states)
        app.agent(self.alerts)(self.deliver)

    async def fan_out(self, stream: Any) -> None:
        """Enriched mentions → one record per live watchlist it concerns, keyed by watchlist id;
        an erased author's are dropped, so a replay does not count them again.

        Mentions are taken in batches (at most FAN_OUT_WAIT_S apart) and their records handed to
        the producer as record batches: Faust's per-record send (a channel, a future and a callback
        per record) cost more than the rest of the fan-out. A batch's offsets are released only
        once the broker has acknowledged its records."""
        await self.erased.wait_loaded()
        producer = cast(faust_aiokafka.Producer, self.app.producer)  # faust_app apps use Faust's aiokafka driver
        counted = {outcome: MESSAGES.labels(SERVICE, ENRICHED, outcome)
                   for outcome in ("erased_author", "reprocessed", "fanned_out", "no_watchlist")}
        async for events in stream.take_events(FAN_OUT_BATCH, within=FAN_OUT_WAIT_S):
            records: list[tuple[bytes | None, bytes]] = []
            for event in events:
                # take_events acks its events once this body ends, even when it raises: the extra
                # reference keeps a batch whose records never reached the broker from being committed.
                event.message.incref()
                record = await self.dead_letters.decode(event, self.enriched_codec)
                if record is None:
                    continue
                outcome = self._fan_out_one(record, event.message.value, records)
                counted[outcome].inc()
            await asyncio.gather(*await send_keyed_batches(producer._ensure_producer(), ALERTING_BY_WATCHLIST, records))
            for event in events:  # the broker has the batch's records: its offsets may be committed
                event.ack()

    def _fan_out_one(self, record: dict[str, Any], value: bytes, records: list[tuple[bytes | None, bytes]]) -> str:
        """Append one enriched mention's by-watchlist records (its own bytes, keyed by watchlist) to
        `records`; returns the outcome counted for it."""
        if self.erased.erased(record["mention"]):
            return "erased_author"
        if record.get("reprocessed_at") is not None:  # re-scored history (`earful reprocess`), not a new mention
            return "reprocessed"
        self.sources.observe(record)  # every mention counts for its source's health
        handle = (record["mention"].get("author") or {}).get("handle")
        wanted = dict.fromkeys([*record["watchlist_ids"], *self.rulebook.watchlists_of_handle(handle)])
        targets = [wid for wid in wanted if self.rulebook.live(wid)]  # a deleted watchlist stops counting at once
        if not targets:
            return "no_watchlist"
        self.decoded.put(value, record)
        records.extend((wid.encode(), value) for wid in targets)
        return "fanned_out"

    async def detect(self, stream: Any) -> None:
        """Each watchlist's mentions through the detector; its decisions published as alert events.

        The states are the table's own objects, changed in place as mentions arrive; writing one
        to the changelog is what makes it survive a restart. A state is several KB of JSON, and a
        restarted worker replays the changelog before it counts again, so a changed state is
        written at most once per `STATE_FLUSH_S` (`flush_states`), not once per mention; the
        offsets of the mentions it holds are released only after that write. A decision writes
        its watchlist's state at once, before the alert leaves.
        """
        await self.keeper.wait_restored()  # posts seen before a restart explain alerts after it
        latency = PIPELINE_LATENCY.labels(SERVICE)
        try:
            async for events in stream.take_events(DETECT_BATCH, within=DETECT_WAIT_S):
                for event in events:
                    event.message.incref()  # released by flush_states, once the state that counted it is written
                    self._unflushed.append(event)
                    record = self.decoded.get(event.message.value)
                    if record is None:
                        record = await self.dead_letters.decode(event, self.enriched_codec)
                        if record is None:
                            continue
                    key = event.message.key
                    wid = key.decode()
                    mention = mention_of(record, wid, owned=self.rulebook.owned(wid, record["mention"]))
                    if mention.matched:
                        self.evidence.add(wid, post_of(record))
                    state = self._changed.get(key)
                    if state is None:
                        state = self._changed[key] = upgrade_state(self.state.get(key))
                    decisions = observe(state, self.rulebook.rules(wid), mention, self.detector, wall_ms=millis_now())
                    if decisions:
                        self.state[key] = state
                        await self._publish(decisions, wid)
                    latency.observe(max(0.0, time.time() - mention.received_ms / 1000))
                if time.monotonic() - self._flushed_at >= STATE_FLUSH_S:
                    self.flush_states()
        finally:
            self.flush_states()  # a clean stop keeps what was counted and commits its offsets

    def flush_states(self) -> None:
        """Write every state changed since the last flush to the table, then release the offsets
        of the mentions they counted (Faust sends the changelog before it commits offsets)."""
        changed, unflushed = self._changed, self._unflushed
        self._changed, self._unflushed, self._flushed_at = {}, [], time.monotonic()
        for key, state in changed.items():
            self.state[key] = state
        for event in unflushed:
            event.ack()
        STATE_WRITES.inc(len(changed))

    async def flush_due_states(self) -> None:
        """The timer's flush, for a quiet stream (a busy one flushes between batches)."""
        if time.monotonic() - self._flushed_at >= STATE_FLUSH_S:
            self.flush_states()

    async def let_time_pass(self) -> None:
        """Time-based decisions for this worker's watchlists (silent ones resolve, questions go overdue)."""
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == ALERTING_BY_WATCHLIST}
        if not assigned:
            return
        all_partitions = list(range(self.partitions))
        now_ms = millis_now()
        for key in list(self.state.keys()):
            if key.startswith(b"~") or self._partitioner(key, all_partitions, all_partitions) not in assigned:
                continue  # "~sources" is the source monitor's, no watchlist's
            state = upgrade_state(self.state.get(key))
            decisions = tick(state, self.rulebook.rules(key.decode()), self.detector, now_ms)
            if decisions:
                self.state[key] = state
                await self._publish(decisions, key.decode())
        await self._publish(self.sources.tick(now_ms), "")  # source_outage: fires and resolves on time alone

    async def deliver(self, stream: Any) -> None:
        """Every alert event into PostgreSQL (the offset is acknowledged only once it is there)."""
        async for event in stream.events():
            alert = await self.dead_letters.decode(event, self.alert_codec)
            if alert is None:
                continue
            await self.notifications.ready.wait()
            try:
                due = await self._record(event_json(alert))
            except StorageError as exc:
                await self.dead_letters.send_event(event, exc)
                continue
            if due is not None:
                self.notifications.wake_at(due)
            MESSAGES.labels(SERVICE, ALERTS, "recorded" if due else "unchanged").inc()

    async def _record(self, doc: dict[str, Any]) -> datetime | None:
        """Record an alert event in its notification group, retrying while PostgreSQL is away;
        StorageError when PostgreSQL refuses the event itself."""
        labels = doc["labels"]
        rule_cfg = self.rulebook.rule(labels.get("watchlist", doc["watchlist_id"]), doc["rule"])
        receivers = self.notify_config.receivers_for(labels, rule_cfg.receivers if rule_cfg else ())
        group_key = doc.get("group_key") or self.notify_config.group_key(labels)
        route = self.notify_config.route_for(labels)
        store = self.notifications.store
        assert store is not None, "recorded only once the notification side is ready"

        async def attempt() -> datetime | None:
            try:
                return await store.record(doc, group_key, receivers, route, utc_now())
            except _POISON_ERRORS as exc:
                raise StorageError(f"PostgreSQL refused the alert event: {exc}") from exc

        due: datetime | None = await retry(attempt, retry_on=(OSError, asyncpg.PostgresError),
                                           backoff=Backoff(base_s=0.5, max_s=10.0), on_retry=_record_retrying)
        try:  # the evidence an alert fired with, kept past its resolution; the notification does not wait on it
            await remember(store.pool, doc, utc_now())
        except (OSError, asyncpg.PostgresError, *_POISON_ERRORS) as exc:
            ERRORS.labels(SERVICE, StorageError.kind).inc()
            log.warning("cannot keep the alert's evidence", extra={"alert_id": doc.get("alert_id"), "error": str(exc)[:300]})
        return due

    async def _publish(self, decisions: list[Decision], wid: str) -> None:
        """Decisions → AlertEvents on earful.alerts.v1 (firing ones explained by the evidence)."""
        now_ms = millis_now()
        if wid and any(d.status == "firing" for d in decisions):  # the sources judged up to now before saying which are degraded
            await self._publish(self.sources.tick(now_ms), "")
        link = dashboard_link(self.settings.alert_dashboard_url, wid)
        for d in decisions:
            described = describe(self.evidence, d, self.rulebook.source.current().get(wid), link, self.brands)
            rule_cfg = self.rulebook.rule(wid, d.rule)
            record = alert_record(d, bucket_s=self.detector.bucket_s, detected_at_ms=now_ms,
                                  group_key=self.notify_config.group_key(d.labels), dashboard_url=link,
                                  explanation=described.explanation if described else None,
                                  assessment=described.assessment if described else None,
                                  summary=described.summary if described else None)
            degraded = self.sources.degraded_for(wid) if wid and d.status == "firing" else []
            if degraded:  # fired while a source this watchlist depends on is silent or late: the counts are incomplete
                record["annotations"]["degraded_sources"] = ",".join(degraded)
            await (await self.alerts.send(key=d.fingerprint.encode(), value=self.alert_codec.encode(record)))
            DECISIONS.labels(d.rule, d.status).inc()
            log.warning("alert %s", d.status, extra={"watchlist": wid, "rule": d.rule, "alert_id": d.alert_id,
                                                     "summary": record["summary"], "severity": d.labels.get("severity"),
                                                     "receivers": list(rule_cfg.receivers) if rule_cfg else []})


def _record_retrying(exc: BaseException, delay: float) -> None:
    ERRORS.labels(SERVICE, StorageError.kind).inc()
    log.warning("cannot record alert; retrying", extra={"error": str(exc)[:300], "delay_s": round(delay, 2)})


def _topic(app: faust.App, specs: dict[str, TopicSpec], settings: Settings, name: str) -> Any:
    """A topic of raw bytes (the codecs decode), with its declared partitions."""
    return app.topic(name, key_serializer="raw", value_serializer="raw", internal=False,
                     partitions=partitions_for(specs[name], settings))


def detector_table(app: faust.App, partitions: int) -> Any:
    """The detector's state per watchlist: a changelogged table (topic earful-alerting-detector-changelog).

    key_type (not only the schema) sets the key serializer recovery uses: raw keys, JSON values
    (a value_type of dict would be taken for a Faust model and fail to decode on recovery). The
    timer writes too, so the partition is the key's hash (use_partitioner).
    """
    return app.Table(
        "detector", partitions=partitions, use_partitioner=True,
        key_type=bytes, schema=faust.Schema(key_type=bytes, key_serializer="raw", value_serializer="json"),
    )

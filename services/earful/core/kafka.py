"""Kafka client helpers: producers, consumers, the Faust app, codecs per topic and the DLQ.

All clients speak plain Kafka protocol and take their tuning from Settings, so the same code
runs against Apache Kafka, Redpanda or the local Tansu broker. Notes on the tuning:

* Consumer-group joins can take about the session timeout, so the defaults (6 s / 1 s) let a
  service consume a few seconds after start while still tolerating short stalls.
* Faust hard-codes its consumer's fetch wait to 1.5 s; a broker that answers a waiting fetch only
  at that deadline then adds up to 1.5 s per hop. `faust_app` installs a transport whose consumer
  uses ``EARFUL_KAFKA_FETCH_MAX_WAIT_MS`` instead (the only change to Faust's behaviour).
* Producers use acks=all. Idempotence is a setting: required on real clusters for ordering under
  retries, unsupported by Tansu (its InitProducerId is too old for aiokafka).
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.transport.drivers import aiokafka as faust_aiokafka

from earful.core.codec import AvroCodec, HttpSchemaRegistry, SchemaRegistry, SchemaStore
from earful.core.errors import BrokerError, EarfulError
from earful.core.metrics import CONSUMER_LAG, DEAD_LETTERS, ERRORS
from earful.core.settings import Settings
from earful.core.topics import DLQ, load_topics

log = logging.getLogger(__name__)


class Codecs:
    """The codec of every declared topic, built once per process."""

    def __init__(self, settings: Settings) -> None:
        self.store = SchemaStore(settings.schema_dir)
        self.registry: SchemaRegistry | None = (
            HttpSchemaRegistry(settings.schema_registry_url) if settings.schema_registry_url else None
        )
        self._by_topic: dict[str, AvroCodec] = {}
        for spec in load_topics(settings.schema_dir).values():
            if spec.value_schema:
                schema = self.store.current(spec.value_schema)
                self._by_topic[spec.name] = AvroCodec(schema, self.store, self.registry, f"{spec.name}-value")

    def for_topic(self, topic: str) -> AvroCodec:
        return self._by_topic[topic]


def make_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """A producer that reports success only once every in-sync replica has the record."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        linger_ms=2,
        request_timeout_ms=15000,
    )


async def start_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """`make_producer`, started; a broker that cannot be reached is a BrokerError naming it."""
    producer = make_producer(settings, client_id)
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise BrokerError(f"cannot connect a producer to {settings.kafka_bootstrap}: {exc}") from exc
    return producer


def make_consumer(settings: Settings, group_id: str, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A group consumer with manual commits (commit only after the effect is durable)."""
    kwargs: dict[str, Any] = dict(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.kafka_heartbeat_interval_s * 1000),
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        max_poll_interval_ms=300000,
    )
    kwargs.update(overrides)
    return AIOKafkaConsumer(*topics, **kwargs)


class LagReporter:
    """Exports a consumer's lag per assigned partition as ``earful_consumer_lag_records``.

    The high watermark comes with every fetch response, so after each poll this costs no request.
    Partitions the consumer no longer owns are dropped from the metric, so a rebalance never leaves
    a stale lag behind for an alert to fire on.
    """

    def __init__(self, consumer: AIOKafkaConsumer, service: str) -> None:
        self.consumer = consumer
        self.service = service
        self._reported: set[TopicPartition] = set()

    async def report(self) -> None:
        current: set[TopicPartition] = set()
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:  # nothing fetched from this partition yet
                continue
            try:
                position = await self.consumer.position(tp)
            except IllegalStateError:  # revoked while we looked
                continue
            CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(max(0, highwater - position))
            current.add(tp)
        for tp in self._reported - current:
            CONSUMER_LAG.remove(self.service, tp.topic, str(tp.partition))
        self._reported = current


def millis_now() -> int:
    return int(time.time() * 1000)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class DeadLetters:
    """Sends records a service gave up on to ``earful.dlq.v1`` with the error and original bytes."""

    def __init__(self, producer: AIOKafkaProducer, codecs: Codecs, service: str) -> None:
        self.producer = producer
        self.codec = codecs.for_topic(DLQ)
        self.service = service

    async def send(
        self, *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error: EarfulError
    ) -> None:
        """Durably record one dead letter (awaits the broker's acknowledgement)."""
        record = {
            "schema_version": 1,
            "service": self.service,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": key,
            "value": value,
            "error_kind": error.kind,
            "error_message": str(error)[:4000],
            "failed_at": utc_now(),
        }
        await self.producer.send_and_wait(DLQ, self.codec.encode(record), key=key)
        ERRORS.labels(self.service, error.kind).inc()
        DEAD_LETTERS.labels(self.service, error.kind).inc()
        log.warning(
            "dead-lettered a record",
            extra={"topic": topic, "partition": partition, "offset": offset, "error_kind": error.kind, "error": str(error)[:500]},
        )


# --- Faust ----------------------------------------------------------------------------------


def _low_latency_transport(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    """Faust's aiokafka transport with a configurable consumer fetch wait (Faust fixes 1,500 ms)."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher; set before start.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


class EarfulFaustApp(faust.App):
    """faust.App wired to Earful's Kafka settings."""

    fetch_max_wait_ms: int = 100

    def _new_transport(self) -> Any:
        transport_cls = _low_latency_transport(self.fetch_max_wait_ms)
        return transport_cls(self.conf.broker_consumer, self)


def faust_app(settings: Settings, app_id: str, **conf: Any) -> EarfulFaustApp:
    """A Faust app for one Earful service: memory tables, our topics only, our HTTP server."""
    app = EarfulFaustApp(
        app_id,
        broker=[f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap.split(",")],
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,  # topics are created by `earful topics create`
        topic_disable_leader=True,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_s,
        broker_request_timeout=max(30.0, settings.kafka_session_timeout_s * 2),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.002,
        producer_request_timeout=15.0,
        stream_wait_empty=False,
        topic_partitions=None,
        # Faust creates this directory at start even with memory tables; the working directory is
        # read-only in the containers, the temp dir is not (and tests no longer litter the cwd).
        datadir=str(Path(tempfile.gettempdir()) / f"{app_id}-data"),
        **conf,
    )
    app.fetch_max_wait_ms = settings.kafka_fetch_max_wait_ms
    # Faust's own sensors (events, commit and send latency, rebalances, table sizes) on the default
    # registry, so they appear on the service's /metrics next to Earful's.
    setup_prometheus_sensors(app, pattern="/faust/metrics", name_prefix=app_id.replace("-", "_"))
    return app

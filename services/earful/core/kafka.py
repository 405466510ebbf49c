"""Kafka client helpers: producers, consumers, the Faust app, codecs per topic and the DLQ.

All clients speak plain Kafka protocol and take their tuning from Settings, so the same code
runs against Apache Kafka, Redpanda or the local Tansu broker. Notes on the tuning:

* Consumer-group joins can take about the session timeout, so the defaults (6 s / 1 s) let a
  service consume a few seconds after start while still tolerating short stalls.
* Faust hard-codes its consumer's fetch wait to 1.5 s; a broker that answers a waiting fetch only
  at that deadline then adds up to 1.5 s per hop. `faust_app` installs a transport whose consumer
  uses ``EARFUL_KAFKA_FETCH_MAX_WAIT_MS`` instead (the only change to Faust's behaviour).
* TLS and SASL come from `kafka_security` (one place for every client, Faust's included).
* Producers use acks=all. Idempotence is a setting: required on real clusters for ordering under
  retries, unsupported by Tansu (its InitProducerId is too old for aiokafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Coroutine, Generator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, cast

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.partitioner import DefaultPartitioner
from faust.sensors import prometheus as faust_prometheus
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from earful.core.codec import AvroCodec, HttpSchemaRegistry, SchemaRegistry, SchemaStore
from earful.core.errors import BrokerError, EarfulError
from earful.core.kafka_security import client_kwargs, faust_credentials, start_client
from earful.core.metrics import CONSUMER_LAG, DEAD_LETTERS, ERRORS
from earful.core.retry import Backoff, retry
from earful.core.settings import Settings
from earful.core.topics import DLQ, load_topics

log = logging.getLogger(__name__)


class Codecs:
    """The codec of every declared topic, built once per process."""

    def __init__(self, settings: Settings) -> None:
        self.store = SchemaStore(settings.schema_dir)
        self.registry: SchemaRegistry | None = HttpSchemaRegistry.from_settings(settings)
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
        **client_kwargs(settings),
    )


async def start_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """`make_producer`, started; a broker that cannot be reached or refuses the credentials is a
    BrokerError naming it, the protocol and the reason (`kafka_security.start_client`)."""
    producer = make_producer(settings, client_id)
    await start_client(producer, settings, f"the {client_id} producer")
    return producer


def make_consumer(settings: Settings, group_id: str, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A group consumer with manual commits (commit only after the effect is durable)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": group_id,
        "client_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": int(settings.kafka_session_timeout_s * 1000),
        "heartbeat_interval_ms": int(settings.kafka_heartbeat_interval_s * 1000),
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "max_poll_interval_ms": 300000,
        **client_kwargs(settings),
    }
    kwargs.update(overrides)
    return AIOKafkaConsumer(*topics, **kwargs)


_PARTITIONER = DefaultPartitioner()  # what AIOKafkaProducer.send uses for keyed records


async def send_keyed_batches(producer: AIOKafkaProducer, topic: str,
                             records: Sequence[tuple[bytes | None, bytes]]) -> list[asyncio.Future[Any]]:
    """Hand `(key, value)` records to the producer as record batches, one or a few per partition;
    returns one future per batch, each done when the broker has acknowledged that batch.

    Records go to the partitions `producer.send` would choose (the default partitioner: murmur2 of
    the key), in their order. `producer.send` makes a future per record and resolves each through
    the event loop; per batch that bookkeeping is a small fraction, which matters at thousands of
    records a second on a service whose event loop shares the GIL with its models.
    """
    if not records:
        return []
    partitions = sorted(await producer.partitions_for(topic))
    by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
    for key, value in records:
        by_partition.setdefault(_PARTITIONER(key, partitions, partitions), []).append((key, value))
    deliveries = []
    for partition, items in by_partition.items():
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start the next
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise BrokerError(f"a record of {len(value)} bytes does not fit in a batch for {topic}")
        deliveries.append(await producer.send_batch(batch, topic, partition=partition))
    return deliveries


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


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str, timeout_s: float) -> list[TopicPartition]:
    """The partitions of `topic`, waiting up to `timeout_s` for it to exist. Asks for all topics'
    metadata, which never auto-creates one; a BrokerError naming the topic if it does not appear."""
    deadline = time.monotonic() + timeout_s
    while True:
        await consumer.topics()
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() > deadline:
            raise BrokerError(f"topic {topic} does not exist (run `earful topics create`)")
        await asyncio.sleep(0.2)


async def read_followed(consumer: AIOKafkaConsumer, topic: str, service: str, backoff: Backoff) -> list[Any]:
    """The next records of a topic a service follows from its start (waits at most a second); a
    failed read is counted, logged and retried with `backoff`."""

    def read_failed(exc: BaseException, delay: float) -> None:
        ERRORS.labels(service, BrokerError.kind).inc()
        log.warning("reading %s failed; retrying", topic,
                    extra={"service": service, "error": str(exc), "attempt": backoff.attempt})

    batches = await retry(lambda: consumer.getmany(timeout_ms=1000), retry_on=(KafkaError,),
                          backoff=backoff, on_retry=read_failed)
    return [msg for msgs in batches.values() for msg in msgs]


async def note_progress(progress: asyncio.Condition, next_offsets: dict[int, int], records: list[Any]) -> None:
    """Advance each partition's next offset past `records` and wake whoever waits on `progress`."""
    async with progress:
        for msg in records:
            next_offsets[msg.partition] = max(next_offsets.get(msg.partition, 0), msg.offset + 1)
        progress.notify_all()


async def stop_following(task: asyncio.Task[None] | None, consumer: AIOKafkaConsumer | None) -> None:
    """Cancel a follower's read loop and stop its consumer (either may be missing)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if consumer is not None:
        await consumer.stop()


def millis_now() -> int:
    return int(time.time() * 1000)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class DeadLetterProducer(Protocol):
    """What DeadLetters sends through: an AIOKafkaProducer, or a Faust app's topic (FaustDeadLetters)."""

    async def send_and_wait(self, topic: str, value: bytes, /, *, key: bytes | None = None) -> object: ...


class DeadLetters:
    """Sends records a service gave up on to ``earful.dlq.v1`` with the error and original bytes."""

    def __init__(self, producer: DeadLetterProducer, codecs: Codecs, service: str) -> None:
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

        async def _drain_messages(self, fetcher: Any) -> None:
            await drain_messages(self, fetcher)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


class _Resumed:
    """The rest of a coroutine that already ran up to its first suspension, as an awaitable: awaiting
    it hands on the future the coroutine is waiting for, then drives the coroutine to its end."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.pending
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation and errors go to the coroutine, as with `await`
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


def start_eagerly(coro: Coroutine[Any, Any, Any]) -> _Resumed | None:
    """Run `coro` up to its first suspension: None when it finished there (its exception, if any, is
    raised), else an awaitable that finishes it. Most deliveries into a stream finish without
    suspending; running them in place spares the event loop a task and its scheduling."""
    try:
        pending = coro.send(None)
    except StopIteration:
        return None
    return _Resumed(coro, pending)


DRAIN_YIELD_EVERY = 64  # records handed to the streams between two yields to the event loop


async def drain_messages(consumer: Any, fetcher: Any) -> None:
    """Faust's `Consumer._drain_messages` (faust-streaming 0.11), handing records to the streams with
    less per-record machinery.

    Faust awaits each record's delivery with `wait_first(delivery, suspend_flow.wait())`, which
    creates four tasks per record and cancels three of them; under load that is most of the event
    loop's own work, and every wake-up takes the GIL from the enrichment models. Here a delivery
    runs in place first: one that finishes without suspending (the stream's buffer has room, flow is
    not suspended) needs no task at all; one that suspends is finished under the same `wait_first`
    as in Faust, so a rebalance (suspend_flow) still interrupts it, and while flow is suspended
    records go through Faust's own path. Everything else (read offsets, gaps, commit_every, the
    yield to the loop every few records) is as in Faust.
    """
    callback = consumer.callback
    getmany = consumer.getmany
    consumer_should_stop = consumer._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    suspend_flow = consumer.suspend_flow
    get_read_offset = consumer._read_offset.__getitem__
    set_read_offset = consumer._read_offset.__setitem__
    set_flag, unset_flag = consumer.diag.set_flag, consumer.diag.unset_flag
    commit_every = consumer._commit_every
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    since_yield = 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(faust_consumer.CONSUMER_FETCHING)
            records = getmany(timeout=1.0)
            await asyncio.sleep(0)  # as in Faust: getmany may not yield on its own
            if not consumer.should_stop:
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > DRAIN_YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    read_offset = get_read_offset(tp)
                    if read_offset is None or offset >= read_offset:
                        if offset - (read_offset or 0) > 1 and read_offset and acks_enabled_for(message.topic):
                            await consumer._add_gap(tp, read_offset + 1, offset)
                        if commit_every is not None and consumer._n_acked >= commit_every:
                            consumer._n_acked = 0
                            await consumer.commit()
                        if suspend_flow.is_set():  # a rebalance is under way: exactly as Faust does it
                            await consumer.wait_first(callback(message), suspend_flow.wait())
                        elif (rest := start_eagerly(callback(message))) is not None:
                            await consumer.wait_first(rest, suspend_flow.wait())
                        set_read_offset(tp, offset)
                unset_flag(faust_consumer.CONSUMER_FETCHING)
    except consumer.consumer_stopped_errors:
        if consumer.transport.app.should_stop:
            log.info("broker stopped the consumer, shutting down")
            return
        raise
    except asyncio.CancelledError:
        if consumer.transport.app.should_stop:
            return
        raise
    finally:
        unset_flag(faust_consumer.CONSUMER_FETCHING)


class PrometheusMonitor(faust_prometheus.PrometheusMonitor):
    """Faust's Prometheus sensor with each labelled child looked up once, not for every record.

    Faust calls three of these hooks for every record; looking up a labelled child (and, for the
    stream label, normalising the stream's name with a regular expression) each time was a visible
    share of a busy worker's event loop. The exported metrics are the same. Faust removes
    partition-labelled children on a rebalance, so the cache is emptied then too."""

    def __init__(self, metrics: Any, **kwargs: Any) -> None:
        super().__init__(metrics, **kwargs)
        # Not `_children`: mode.Service keeps the child services it starts and stops there.
        self._labelled: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: Any) -> Any:
        key = (id(metric), *labels)
        child = self._labelled.get(key)
        if child is None:
            child = self._labelled[key] = metric.labels(*labels)
        return child

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        faust_prometheus.Monitor.on_message_in(self, tp, offset, message)
        m = self._metrics
        m.messages_received.inc()
        m.active_messages.inc()
        self._child(m.messages_received_per_topics, tp.topic).inc()
        self._child(m.messages_received_per_topics_partition, tp.topic, tp.partition).set(offset)

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> dict[str, Any] | None:
        state = faust_prometheus.Monitor.on_stream_event_in(self, tp, offset, stream, event)
        m = self._metrics
        m.total_events.inc()
        m.total_active_events.inc()
        events = self._labelled.get(("stream", stream))
        if events is None:
            events = self._labelled[("stream", stream)] = m.total_events_per_stream.labels(
                stream=f"stream.{self._stream_label(stream)}.events")
        events.inc()
        return state

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        faust_prometheus.Monitor.track_tp_end_offset(self, tp, offset)
        self._child(self._metrics.topic_partition_end_offset, tp.topic, tp.partition).set(offset)

    def _clear_partition_related_metrics(self) -> None:
        self._labelled.clear()
        super()._clear_partition_related_metrics()


class EarfulFaustApp(faust.App):
    """faust.App wired to Earful's Kafka settings."""

    fetch_max_wait_ms: int = 100

    def _new_transport(self) -> Any:
        transport_cls = _low_latency_transport(self.fetch_max_wait_ms)
        return transport_cls(self.conf.broker_consumer, self)


# Records an agent may hold fetched but not yet processed (Faust's default is 4,096). A worker that
# falls behind fills this buffer for every agent it runs, several KB per enriched record: at the
# default, alerting's RSS grew by tens of MiB whenever it lagged. 1,024 still covers the largest
# batch an agent takes (enrichment's EARFUL_ENRICH_BATCH_SIZE default 256, alerting's 500).
STREAM_BUFFER_RECORDS = 1024


def faust_app(settings: Settings, app_id: str, **conf: Any) -> EarfulFaustApp:
    """A Faust app for one Earful service: memory tables, our topics only, our HTTP server."""
    conf.setdefault("stream_buffer_maxsize", max(STREAM_BUFFER_RECORDS, 2 * settings.enrich_batch_size))
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
        broker_credentials=faust_credentials(settings),
        **conf,
    )
    app.fetch_max_wait_ms = settings.kafka_fetch_max_wait_ms
    # Faust's own sensors (events, commit and send latency, rebalances, table sizes) on the default
    # registry, so they appear on the service's /metrics next to Earful's.
    setup_prometheus_sensors(app, pattern="/faust/metrics", name_prefix=app_id.replace("-", "_"))
    installed = cast(faust_prometheus.PrometheusMonitor, app.monitor)  # what setup_prometheus_sensors just set
    app.monitor = PrometheusMonitor(metrics=installed._metrics)
    return app

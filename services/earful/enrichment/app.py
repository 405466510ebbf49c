"""The enrichment Faust app: raw mentions → enriched mentions, in batches through the models.

Batches come from `stream.take_events`; a batch's offsets are released for commit only after
its enriched records are acknowledged by the broker. The models run in a worker thread so the
event loop keeps heartbeating while they work; the loop gathers the next batch (Faust's
per-event work) and encodes and sends one chunk while the thread runs the models on the next.
Undecodable records, and records the models or the schema cannot handle, go to the DLQ and the
agent goes on.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import Counter, Gauge

from earful.core.codec import EmbeddingEncoder
from earful.core.errors import EncodeError, ProcessingError
from earful.core.health import Health, tcp_check
from earful.core.kafka import Codecs, faust_app, send_keyed_batches, utc_now
from earful.core.metrics import BATCH_SECONDS, MESSAGES, PIPELINE_LATENCY
from earful.core.faust_service import FaustDeadLetters, attach_ops_server
from earful.core.settings import Settings
from earful.core.topics import ENRICHED, RAW
from earful.enrichment.processor import EnrichmentProcessor
from earful.watchlists.live import live_watchlists

log = logging.getLogger(__name__)
SERVICE = "enrichment"
BATCH_SIZE = Gauge("earful_enrichment_last_batch_size", "Mentions in the most recent batch.")
MODEL_SECONDS = Counter("earful_enrichment_model_seconds",
                        "Seconds the worker thread spent running the models; its rate is the share of time the models "
                        "were busy (near 1: the worker is model-bound; well below: it waits for Kafka or Faust).")
Enriched = tuple[Any, dict[str, Any], dict[str, Any]]  # (Faust event, raw record, enriched record)
CHUNK = 64  # mentions per model call inside a batch: small enough to overlap, large enough for nlp.pipe
IN_FLIGHT = 2  # batches being processed at once: one in the models while the next is gathered


def build(settings: Settings, processor: EnrichmentProcessor | None = None) -> Any:
    """Build the Faust app with its agent; the processor (models) is loaded here, once."""
    # The models hold the GIL for most of their time; each wake-up of the event loop (Faust handles
    # every record with several short tasks) takes it from them. A longer switch interval lets the
    # loop's work wait for the models' own GIL releases (numpy) instead of interrupting them.
    sys.setswitchinterval(settings.enrich_switch_interval_s)
    app = faust_app(settings, "earful-enrichment")
    codecs = Codecs(settings)
    raw_codec, enriched_codec = codecs.for_topic(RAW), codecs.for_topic(ENRICHED)
    encoder = EmbeddingEncoder(enriched_codec, raw_codec)  # copies each raw mention's bytes into its enriched record
    health = Health(SERVICE)
    health.add_check("kafka", tcp_check(settings.kafka_bootstrap, 9092))
    watchlists = live_watchlists(app, settings, health, SERVICE)  # follows earful.watchlists.v1
    processor = processor or EnrichmentProcessor.from_settings(settings, watchlists)  # models load once per worker
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enrich-models")
    attach_ops_server(app, settings, health, SERVICE)

    raw_topic = app.topic(RAW, key_serializer="raw", value_serializer="raw", internal=False)
    dead_letters = FaustDeadLetters(app, codecs, SERVICE)

    def run_models(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """On the worker thread: the processor, timed (MODEL_SECONDS)."""
        started = time.perf_counter()
        try:
            return processor.enrich(records, utc_now())
        finally:
            MODEL_SECONDS.inc(time.perf_counter() - started)

    async def enrich_chunk(loop: asyncio.AbstractEventLoop, chunk: list[tuple[Any, dict[str, Any]]]) -> list[Enriched]:
        """(event, raw record, enriched record) triples; a model failure on the chunk is retried record
        by record, and a record that still fails is dead-lettered, so one bad mention never stops the stream."""
        try:
            enriched = await loop.run_in_executor(executor, run_models, [r for _, r in chunk])
            return [(event, record, out) for (event, record), out in zip(chunk, enriched)]
        except Exception:
            log.exception("chunk enrichment failed; retrying records one by one")
        results = []
        for event, record in chunk:
            try:
                (out,) = await loop.run_in_executor(executor, run_models, [record])
                results.append((event, record, out))
            except Exception as exc:
                await dead_letters.send_event(event, ProcessingError(f"enrichment failed: {exc!r}"))
        return results

    async def publish(results: list[Enriched]) -> tuple[list[Any], int]:
        """Encode and hand the enriched records to the app's producer; returns the delivery futures
        and how many records they carry.

        Straight to the app's Kafka producer as record batches rather than `topic.send`: the records
        are already bytes, and Faust's per-record channel and future machinery was a large share of
        the service's own cost."""
        records = []
        for event, record, out in results:
            if settings.enrich_drop_unmatched and not out["watchlist_ids"]:
                MESSAGES.labels(SERVICE, RAW, "dropped_unmatched").inc()
                continue
            try:
                records.append((event.message.key, encoder.encode(out, record, event.message.value)))
            except EncodeError as exc:  # a record the schema cannot hold: dead-letter it, keep going
                await dead_letters.send_event(event, ProcessingError(f"enriched record does not encode: {exc}"))
        return await send_keyed_batches(app.producer._ensure_producer(), ENRICHED, records), len(records)

    async def process(events: list[Any], good: list[tuple[Any, dict[str, Any]]], handed_over: asyncio.Future[None],
                      previous: asyncio.Future[None] | None) -> None:
        """One batch: models (in chunks, on the worker thread), encode, send, wait for the broker,
        then release the batch's offsets. `previous` is the prior batch's hand-over, so records leave
        in the order they came; `handed_over` is set once this batch's records are with the producer."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        deliveries: list[Any] = []
        sent = 0
        try:
            # The batch goes through the models in chunks, and the event loop encodes and sends one
            # chunk while the worker thread runs the models on the next. Every chunk is queued on the
            # worker at once, so the models go from one chunk to the next without waiting for the
            # event loop to hand them more.
            chunks = [good[i:i + CHUNK] for i in range(0, len(good), CHUNK)]
            enriching = [asyncio.ensure_future(enrich_chunk(loop, chunk)) for chunk in chunks]
            try:
                for running in enriching:
                    results = await running
                    if previous is not None:
                        await previous
                        previous = None
                    futures, count = await publish(results)
                    deliveries += futures
                    sent += count
            finally:
                for running in enriching:
                    running.cancel()  # after a failure: chunks not yet on the worker are not run
        finally:
            if not handed_over.done():
                handed_over.set_result(None)
        BATCH_SECONDS.labels(SERVICE, "models").observe(time.perf_counter() - started)
        await asyncio.gather(*deliveries)  # acknowledged by the broker ...
        for event in events:  # ... before the source offsets may be committed
            event.ack()
        now, latency = time.time(), PIPELINE_LATENCY.labels(SERVICE)
        for _, record in good:
            latency.observe(max(0.0, now - record["received_at"].timestamp()))
        MESSAGES.labels(SERVICE, RAW, "enriched").inc(sent)
        BATCH_SIZE.set(len(events))
        BATCH_SECONDS.labels(SERVICE, "batch").observe(time.perf_counter() - started)

    @app.agent(raw_topic)
    async def enrich(stream: Any) -> None:
        # Each batch is processed by its own task while the stream gathers the next one, so Faust's
        # per-event work overlaps the models. The events of a batch in flight hold one extra
        # reference, so take_events' own ack does not release their offsets: `process` acks them
        # once the broker acknowledged the enriched records. At most IN_FLIGHT batches at once.
        in_flight: list[asyncio.Task[None]] = []
        handed_over: asyncio.Future[None] | None = None
        # What is alive once the worker runs (the models' weights and vocabularies, Faust, aiokafka)
        # stays for the life of the process: frozen, it is no longer walked by every full garbage
        # collection (1-3% more mentions/s in paired runs).
        gc.freeze()
        try:
            async for events in stream.take_events(settings.enrich_batch_size, within=settings.enrich_batch_timeout_s):
                good: list[tuple[Any, dict[str, Any]]] = []
                for event in events:
                    record = await dead_letters.decode(event, raw_codec)
                    if record is not None:
                        good.append((event, record))
                if not good:
                    continue
                kept = [event for event, _ in good]
                for event in kept:
                    event.message.incref()
                while len(in_flight) >= IN_FLIGHT:
                    await in_flight.pop(0)  # raises if that batch failed: the agent restarts, nothing is acked
                previous, handed_over = handed_over, asyncio.get_running_loop().create_future()
                in_flight.append(asyncio.ensure_future(process(kept, good, handed_over, previous)))
        finally:
            # A clean stop finishes the batches in flight, so their offsets are committed on the way out.
            if in_flight:
                await asyncio.shield(asyncio.gather(*in_flight, return_exceptions=True))

    return app

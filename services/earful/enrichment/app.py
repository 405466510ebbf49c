"""The enrichment Faust app: raw mentions → enriched mentions, in batches through the models.

Batches come from `stream.take_events` (offsets are acked only after the batch's enriched
records are acknowledged by the broker). The models run in a worker thread so the event loop
keeps heartbeating while they work, and the loop encodes and sends one chunk of a batch while
the thread works on the next. Undecodable records, and records the models or the schema cannot
handle, go to the DLQ and the agent goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import Gauge

from earful.core.errors import EncodeError, ProcessingError
from earful.core.health import Health, tcp_check
from earful.core.kafka import Codecs, faust_app, utc_now
from earful.core.metrics import BATCH_SECONDS, MESSAGES, PIPELINE_LATENCY
from earful.core.faust_service import FaustDeadLetters, attach_ops_server
from earful.core.settings import Settings
from earful.core.topics import ENRICHED, RAW
from earful.enrichment.processor import EnrichmentProcessor
from earful.watchlists.live import live_watchlists

log = logging.getLogger(__name__)
SERVICE = "enrichment"
BATCH_SIZE = Gauge("earful_enrichment_last_batch_size", "Mentions in the most recent batch.")
CHUNK = 64  # mentions per model call inside a batch: small enough to overlap, large enough for nlp.pipe


def build(settings: Settings, processor: EnrichmentProcessor | None = None) -> Any:
    """Build the Faust app with its agent; the processor (models) is loaded here, once."""
    app = faust_app(settings, "earful-enrichment")
    codecs = Codecs(settings)
    raw_codec, enriched_codec = codecs.for_topic(RAW), codecs.for_topic(ENRICHED)
    health = Health(SERVICE)
    health.add_check("kafka", tcp_check(settings.kafka_bootstrap, 9092))
    watchlists = live_watchlists(app, settings, health, SERVICE)  # follows earful.watchlists.v1
    processor = processor or EnrichmentProcessor.from_settings(settings, watchlists)  # models load once per worker
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enrich-models")
    attach_ops_server(app, settings, health, SERVICE)

    raw_topic = app.topic(RAW, key_serializer="raw", value_serializer="raw", internal=False)
    enriched_topic = app.topic(ENRICHED, key_serializer="raw", value_serializer="raw", internal=False)
    dead_letters = FaustDeadLetters(app, codecs, SERVICE)

    async def enrich_chunk(loop: asyncio.AbstractEventLoop, chunk: list[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
        """(event, enriched) pairs; a model failure on the chunk is retried record by record, and a
        record that still fails is dead-lettered, so one bad mention never stops the stream."""
        try:
            enriched = await loop.run_in_executor(executor, processor.enrich, [r for _, r in chunk], utc_now())
            return [(event, out) for (event, _), out in zip(chunk, enriched)]
        except Exception:
            log.exception("chunk enrichment failed; retrying records one by one")
        pairs = []
        for event, record in chunk:
            try:
                (out,) = await loop.run_in_executor(executor, processor.enrich, [record], utc_now())
                pairs.append((event, out))
            except Exception as exc:
                await dead_letters.send_event(event, ProcessingError(f"enrichment failed: {exc!r}"))
        return pairs

    async def publish(pairs: list[tuple[Any, dict[str, Any]]]) -> list[Any]:
        """Encode and hand the enriched records to the producer; returns the delivery futures."""
        deliveries = []
        for event, out in pairs:
            if settings.enrich_drop_unmatched and not out["watchlist_ids"]:
                MESSAGES.labels(SERVICE, RAW, "dropped_unmatched").inc()
                continue
            try:
                value = enriched_codec.encode(out)
            except EncodeError as exc:  # a record the schema cannot hold: dead-letter it, keep going
                await dead_letters.send_event(event, ProcessingError(f"enriched record does not encode: {exc}"))
                continue
            deliveries.append(await enriched_topic.send(key=event.message.key, value=value))
        return deliveries

    @app.agent(raw_topic)
    async def enrich(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(settings.enrich_batch_size, within=settings.enrich_batch_timeout_s):
            started = time.perf_counter()
            good: list[tuple[Any, dict[str, Any]]] = []
            for event in events:
                record = await dead_letters.decode(event, raw_codec)
                if record is not None:
                    good.append((event, record))
            if not good:
                continue
            # The batch goes through the models in chunks, and the event loop encodes and sends one
            # chunk while the worker thread runs the models on the next (the models release the GIL
            # in their numeric kernels), instead of waiting for the whole batch and then sending.
            chunks = [good[i:i + CHUNK] for i in range(0, len(good), CHUNK)]
            running = asyncio.ensure_future(enrich_chunk(loop, chunks[0]))
            deliveries: list[Any] = []
            for k in range(len(chunks)):
                pairs = await running
                if k + 1 < len(chunks):
                    running = asyncio.ensure_future(enrich_chunk(loop, chunks[k + 1]))
                deliveries += await publish(pairs)
            BATCH_SECONDS.labels(SERVICE, "models").observe(time.perf_counter() - started)
            await asyncio.gather(*deliveries)  # acked by the broker before take_events acks the source offsets
            now = time.time()
            for _, record in good:
                PIPELINE_LATENCY.labels(SERVICE).observe(max(0.0, now - record["received_at"].timestamp()))
            MESSAGES.labels(SERVICE, RAW, "enriched").inc(len(deliveries))
            BATCH_SIZE.set(len(events))
            BATCH_SECONDS.labels(SERVICE, "batch").observe(time.perf_counter() - started)

    return app

"""The enrichment agent: raw mentions → enriched mentions, in batches through the models.

Batches come from `stream.take_events`; a batch's offsets are released for commit only after
its enriched records are acknowledged by the broker. The models run in a worker thread so the
event loop keeps heartbeating while they work; the loop gathers the next batch (Faust's
per-event work) and encodes and sends one chunk while the thread runs the models on the next.
Undecodable records, records the models or the schema cannot handle, and enriched records larger
than the producer may send, go to the DLQ and the agent goes on. Mentions by an erased author
(`earful.core.erased_authors`, fed by earful.erasures.v1) are dropped before the models, counted
as `earful_messages_total{outcome="erased_author"}` and never published.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import Counter, Gauge

from earful.core.codec import AvroCodec, EmbeddingEncoder
from earful.core.erased_authors import ErasedAuthors
from earful.core.errors import EncodeError, ProcessingError
from earful.core.faust_service import FaustDeadLetters
from earful.core.kafka import send_keyed_batches, utc_now
from earful.core.metrics import BATCH_SECONDS, MESSAGES, PIPELINE_LATENCY
from earful.core.settings import Settings
from earful.core.topics import ENRICHED, RAW
from earful.enrichment.processor import EnrichmentProcessor

log = logging.getLogger(__name__)
SERVICE = "enrichment"
BATCH_SIZE = Gauge("earful_enrichment_last_batch_size", "Mentions in the most recent batch.")
MODEL_SECONDS = Counter("earful_enrichment_model_seconds",
                        "Seconds the worker thread spent running the models; its rate is the share of time the models "
                        "were busy (near 1: the worker is model-bound; well below: it waits for Kafka or Faust).")
TEXTS_CLIPPED = Counter("earful_enrichment_texts_clipped",
                        "Mentions whose text was longer than the enrichment text limit (EARFUL_ENRICH_MAX_TEXT_CHARS):"
                        " the models, rules and watchlists read only its start; the record keeps it whole.")
Decoded = tuple[Any, dict[str, Any]]  # (Faust event, raw record)
Enriched = tuple[Any, dict[str, Any], dict[str, Any]]  # (Faust event, raw record, enriched record)
CHUNK = 64  # mentions per model call inside a batch: small enough to overlap, large enough for nlp.pipe
LETTER_OVERHEAD = 8192  # bytes a dead letter adds to the original value (fields, error message, framing)
IN_FLIGHT = 2  # batches being processed at once: one in the models while the next is gathered


@dataclass
class BatchEnricher:
    """Everything one batch goes through: the models on the worker thread, the encoder, the producer
    of the Faust app, the dead-letter topic. `consume` is the agent's body."""

    settings: Settings
    app: faust.App
    processor: EnrichmentProcessor
    executor: ThreadPoolExecutor
    raw_codec: AvroCodec
    encoder: EmbeddingEncoder  # copies each raw mention's bytes into its enriched record
    dead_letters: FaustDeadLetters
    erased: ErasedAuthors | None = None  # authors whose mentions are dropped (None: no erasure topic followed)

    async def consume(self, stream: Any) -> None:
        """Each batch is processed by its own task while the stream gathers the next one, so Faust's
        per-event work overlaps the models. The events of a batch in flight hold one extra
        reference, so take_events' own ack does not release their offsets: `process` acks them once
        the broker acknowledged the enriched records. At most IN_FLIGHT batches at once."""
        in_flight: list[asyncio.Task[None]] = []
        handed_over: asyncio.Future[None] | None = None
        # What is alive once the worker runs (the models' weights and vocabularies, Faust, aiokafka)
        # stays for the life of the process: frozen, it is no longer walked by every full garbage
        # collection (1-3% more mentions/s in paired runs).
        gc.freeze()
        settings = self.settings
        try:
            async for events in stream.take_events(settings.enrich_batch_size, within=settings.enrich_batch_timeout_s):
                good = await self.decode(events)
                if not good:
                    continue
                kept = [event for event, _ in good]
                for event in kept:
                    event.message.incref()
                while len(in_flight) >= IN_FLIGHT:
                    await in_flight.pop(0)  # raises if that batch failed: the agent restarts, nothing is acked
                previous, handed_over = handed_over, asyncio.get_running_loop().create_future()
                in_flight.append(asyncio.ensure_future(self.process(kept, good, handed_over, previous)))
        finally:
            # A clean stop finishes the batches in flight, so their offsets are committed on the way out.
            if in_flight:
                await asyncio.shield(asyncio.gather(*in_flight, return_exceptions=True))

    async def decode(self, events: list[Any]) -> list[Decoded]:
        """The batch's decodable records by authors not erased; undecodable ones are dead-lettered,
        erased authors' dropped (their offsets are released with the batch's). Counts the texts the
        models will read only the start of (TEXTS_CLIPPED)."""
        good: list[Decoded] = []
        limit = self.processor.max_text_chars
        erased = self.erased
        if erased is not None:
            await erased.wait_loaded()  # at start-up: every erasure known before the first mention is judged
        for event in events:
            record = await self.dead_letters.decode(event, self.raw_codec)
            if record is not None and erased is not None and erased.erased(record):
                MESSAGES.labels(SERVICE, RAW, "erased_author").inc()
                continue
            if record is not None:
                good.append((event, record))
                if len(record["text"]) > limit:
                    TEXTS_CLIPPED.inc()
        return good

    async def process(self, events: list[Any], good: list[Decoded], handed_over: asyncio.Future[None],
                      previous: asyncio.Future[None] | None) -> None:
        """One batch: models (in chunks, on the worker thread), encode, send, wait for the broker,
        then release the batch's offsets. `previous` is the prior batch's hand-over, so records leave
        in the order they came; `handed_over` is set once this batch's records are with the producer."""
        started = time.perf_counter()
        try:
            deliveries, sent = await self.enrich_and_send(good, previous)
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

    async def enrich_and_send(self, good: list[Decoded],
                              previous: asyncio.Future[None] | None) -> tuple[list[Any], int]:
        """The batch through the models in chunks, each chunk handed to the producer as soon as it is
        enriched (after `previous`); the delivery futures and how many records they carry.

        The event loop encodes and sends one chunk while the worker thread runs the models on the
        next. Every chunk is queued on the worker at once, so the models go from one chunk to the
        next without waiting for the event loop to hand them more."""
        deliveries: list[Any] = []
        sent = 0
        chunks = [good[i:i + CHUNK] for i in range(0, len(good), CHUNK)]
        enriching = [asyncio.ensure_future(self.enrich_chunk(chunk)) for chunk in chunks]
        try:
            for running in enriching:
                results = await running
                if previous is not None:
                    await previous
                    previous = None
                futures, count = await self.publish(results)
                deliveries += futures
                sent += count
        finally:
            for running in enriching:
                running.cancel()  # after a failure: chunks not yet on the worker are not run
            await asyncio.gather(*enriching, return_exceptions=True)
        return deliveries, sent

    def run_models(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """On the worker thread: the processor, timed (MODEL_SECONDS)."""
        started = time.perf_counter()
        try:
            return self.processor.enrich(records, utc_now())
        finally:
            MODEL_SECONDS.inc(time.perf_counter() - started)

    async def enrich_chunk(self, chunk: list[Decoded]) -> list[Enriched]:
        """(event, raw record, enriched record) triples; a model failure on the chunk is retried record
        by record, and a record that still fails is dead-lettered, so one bad mention never stops the stream."""
        loop = asyncio.get_running_loop()
        try:
            enriched = await loop.run_in_executor(self.executor, self.run_models, [r for _, r in chunk])
            return [(event, record, out) for (event, record), out in zip(chunk, enriched)]
        except Exception:
            log.exception("chunk enrichment failed; retrying records one by one")
        results = []
        for event, record in chunk:
            try:
                (out,) = await loop.run_in_executor(self.executor, self.run_models, [record])
                results.append((event, record, out))
            except Exception as exc:
                await self.dead_letters.send_event(event, ProcessingError(f"enrichment failed: {exc!r}"))
        return results

    async def publish(self, results: list[Enriched]) -> tuple[list[Any], int]:
        """Encode and hand the enriched records to the app's producer; returns the delivery futures
        and how many records they carry.

        Straight to the app's Kafka producer as record batches rather than `topic.send`: the records
        are already bytes, and Faust's per-record channel and future machinery was a large share of
        the service's own cost."""
        records = []
        limit = self.app.conf.producer_max_request_size
        for event, record, out in results:
            if self.settings.enrich_drop_unmatched and not out["watchlist_ids"]:
                MESSAGES.labels(SERVICE, RAW, "dropped_unmatched").inc()
                continue
            # The enriched topic is keyed by mention id; a raw record produced without a key gets its own.
            key = event.message.key or record["mention_id"].encode()
            try:
                value = self.encoder.encode(out, record, event.message.value)
            except EncodeError as exc:  # a record the schema cannot hold: dead-letter it, keep going
                await self.dead_letters.send_event(event, ProcessingError(f"enriched record does not encode: {exc}"))
                continue
            if len(value) > limit:  # the broker would refuse the batch, and the agent would retry it forever
                await self.dead_letter_oversized(event, len(value), limit)
                continue
            records.append((key, value))
        producer = cast(faust_aiokafka.Producer, self.app.producer)  # faust_app apps use Faust's aiokafka driver
        return await send_keyed_batches(producer._ensure_producer(), ENRICHED, records), len(records)

    async def dead_letter_oversized(self, event: Any, size: int, limit: int) -> None:
        """Dead-letter a mention whose enriched record is too large to publish. The original bytes
        go with it unless the letter would be too large as well; the letter's topic, partition and
        offset still find them."""
        msg = event.message
        keep = len(msg.value) + LETTER_OVERHEAD <= limit
        reason = f"enriched record of {size} bytes is over the producer's {limit}-byte request limit"
        if not keep:
            reason += f"; the {len(msg.value)}-byte original is not kept in this letter (too large too)"
        await self.dead_letters.send(topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key,
                                     value=msg.value if keep else None, error=ProcessingError(reason))
        MESSAGES.labels(SERVICE, msg.topic, "dead_lettered").inc()


def add_enrich_agent(app: faust.App, enricher: BatchEnricher) -> Any:
    """Subscribe `enricher` to the raw topic as the app's agent (raw bytes in: the enricher decodes)."""
    raw_topic = app.topic(RAW, key_serializer="raw", value_serializer="raw", internal=False)

    async def enrich(stream: Any) -> None:
        await enricher.consume(stream)

    return app.agent(raw_topic)(enrich)

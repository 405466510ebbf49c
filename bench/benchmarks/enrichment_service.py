"""`enrichment-service`: raw topic → enrichment process → enriched topic, on a local broker."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

from benchmarks.common import (
    ENRICH_BATCH,
    ENRICH_RECORDS,
    Context,
    Result,
    median,
    raw_records,
    sample_mentions,
    say,
    service_on_fresh_broker,
)

NAME = "enrichment-service"
KEYS = ("enrichment_service_per_s", "enrichment_service_ratio", "enrichment_service_model_busy",
        "enrichment_service_model_ms_per_mention")
DESCRIPTION = "raw → enriched through the enrichment service process on a local broker, and its share of the in-process ceiling"

SERVICE_RECORDS = 10_000  # as many as the ceiling run enriches, so both are measured over the same work
SERVICE_WARMUP_RECORDS = 256
SERVICE_RUNS = 3


async def _all_partitions(consumer: Any, topic: str) -> list[Any]:
    from aiokafka import TopicPartition

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        await consumer.topics()  # refreshes metadata
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no partitions for {topic} after 30s")


async def _read_keys(consumer: Any, wanted: set[bytes], seen: set[bytes], timeout_s: float) -> float:
    """Read until every key of `wanted` was seen; return the perf_counter time the last one was."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        for messages in batch.values():
            for msg in messages:
                if msg.key in wanted:
                    seen.add(msg.key)
        if len(seen) >= len(wanted):
            return time.perf_counter()
    raise RuntimeError(f"only {len(seen)} of {len(wanted)} enriched records readable after {timeout_s:.0f}s")


async def _model_seconds(service_url: str) -> float:
    """The enrichment service's earful_enrichment_model_seconds_total (time its worker thread ran the models)."""
    import httpx

    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(service_url + "/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("earful_enrichment_model_seconds_total"))


async def _enrichment_service_run(bootstrap: str, warmup: list[dict[str, Any]], measured: list[dict[str, Any]],
                                  service_url: str) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from earful.core.kafka import Codecs
    from earful.core.settings import Settings
    from earful.core.topics import ENRICHED, RAW

    settings = Settings(kafka_bootstrap=bootstrap)
    codecs = Codecs(settings)
    raw_codec, enriched_codec = codecs.for_topic(RAW), codecs.for_topic(ENRICHED)
    warm_items = [(r["mention_id"].encode(), raw_codec.encode(r)) for r in warmup]
    items = [(r["mention_id"].encode(), raw_codec.encode(r)) for r in measured]

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign(await _all_partitions(consumer, ENRICHED))
        await consumer.seek_to_beginning()

        # Warm-up (not timed): the service's consumer group has joined and its models have run once.
        warm_started = time.perf_counter()
        await asyncio.gather(*[await producer.send(RAW, value, key=key) for key, value in warm_items])
        await _read_keys(consumer, {k for k, _ in warm_items}, set(), timeout_s=120)
        say(f"  warm-up: {len(warm_items)} records through in {time.perf_counter() - warm_started:.2f}s (not timed)")

        wanted = {k for k, _ in items}
        seen: set[bytes] = set()
        models_before = await _model_seconds(service_url)
        started = time.perf_counter()

        async def produce() -> float:
            futures = [await producer.send(RAW, value, key=key) for key, value in items]
            await asyncio.gather(*futures)
            return time.perf_counter()

        producing = asyncio.create_task(produce())
        try:
            finished = await _read_keys(consumer, wanted, seen, timeout_s=300)
        finally:
            produced_at = await producing
        model_s = await _model_seconds(service_url) - models_before
        # Sanity check on the output: decodes and names the models that produced it.
        await consumer.seek_to_beginning()
        sample = None
        while sample is None:
            for messages in (await consumer.getmany(timeout_ms=500, max_records=1)).values():
                sample = enriched_codec.decode(messages[0].value)
        if not sample["models"].get("ner", "").startswith("spacy:"):
            raise RuntimeError(f"unexpected enriched record: {str(sample)[:300]}")
        return {"elapsed_s": finished - started, "produce_s": produced_at - started, "count": len(seen), "model_s": model_s}
    finally:
        await producer.stop()
        await consumer.stop()



def run(ctx: Context) -> Result:
    """The service's rate, and its share of the in-process ceiling measured right before each run
    (paired, so a change in the machine's load between the two affects both less)."""
    now = datetime.now(timezone.utc)
    records = raw_records(sample_mentions(SERVICE_RECORDS + SERVICE_WARMUP_RECORDS), now)
    measured, warmup = records[:SERVICE_RECORDS], records[SERVICE_RECORDS:]
    ceiling_records = raw_records(sample_mentions(ENRICH_RECORDS), now)
    processor = ctx.processor()
    rates, ratios, busy, model_ms = [], [], [], []
    for attempt in range(SERVICE_RUNS):
        started = time.perf_counter()
        for i in range(0, len(ceiling_records), ENRICH_BATCH):
            processor.enrich(ceiling_records[i:i + ENRICH_BATCH], now)
        ceiling = len(ceiling_records) / (time.perf_counter() - started)
        with service_on_fresh_broker(ctx, f"enrichment-{attempt + 1}", service="enrichment") as (svc, broker):
            say(f"  run {attempt + 1}/{SERVICE_RUNS}: ceiling {ceiling:,.1f}/s just before; warm-up with {len(warmup)} "
                f"records, then {len(measured)} timed")
            outcome = asyncio.run(_enrichment_service_run(broker.bootstrap, warmup, measured, svc.url))
        rates.append(outcome["count"] / outcome["elapsed_s"])
        ratios.append(rates[-1] / ceiling)
        busy.append(outcome["model_s"] / outcome["elapsed_s"])
        model_ms.append(1000 * outcome["model_s"] / outcome["count"])
        say(f"  {outcome['count']} enriched records readable {outcome['elapsed_s']:.2f}s after the first produce "
            f"(all produced and acked after {outcome['produce_s']:.2f}s) = {rates[-1]:,.1f}/s = {100 * ratios[-1]:.0f}% of the ceiling; "
            f"models busy {100 * busy[-1]:.0f}% of the time, {model_ms[-1]:.3f} ms a mention in the service vs "
            f"{1000 / ceiling:.3f} ms in the ceiling run")
    return Result({"enrichment_service_per_s": round(median(rates), 1),
                   "enrichment_service_ratio": round(median(ratios), 3),
                   "enrichment_service_model_busy": round(median(busy), 3),
                   "enrichment_service_model_ms_per_mention": round(median(model_ms), 3)},
                  {"enrichment_service_per_s": len(rates), "enrichment_service_ratio": len(ratios),
                   "enrichment_service_model_busy": len(busy), "enrichment_service_model_ms_per_mention": len(model_ms)})

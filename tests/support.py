"""What the tests share: the real broker and PostgreSQL plumbing, waits on conditions (never on a
clock), and the records of schemas/examples to build test records from."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fastavro
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from earful.core.http import HttpServer
from earful.core.kafka import Codecs
from earful.core.mention import mention_id
from earful.core.settings import Settings
from earful.webhook_receiver import WebhookReceiver
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


async def produce(settings: Settings, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def consume_all(settings: Settings, topic: str, expect: int, timeout_s: float = 60.0) -> list[Any]:
    """Read `topic` from the beginning (no group) until `expect` records or the timeout."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        await eventually(lambda: bool(consumer.partitions_for_topic(topic)), timeout_s=5.0, interval_s=0.1)
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 60.0, interval_s: float = 0.25) -> bool:
    """Whether `check` (plain or async) holds within `timeout_s`: the way tests wait for something to
    have happened instead of sleeping for a time that is too long on a fast machine and too short on
    a slow one. Callers assert the result, with what to show when it never held."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result or time.monotonic() >= deadline:
            return bool(result)
        await asyncio.sleep(interval_s)


def wait_until(check: Callable[[], bool], timeout_s: float = 30.0, interval_s: float = 0.1,
               message: str | Callable[[], str] = "") -> None:
    """Block until `check()` holds (for synchronous tests); AssertionError with `message` when it does
    not within `timeout_s`. A check that raises counts as not yet (the last error is chained)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while True:
        try:
            if check():
                return
        except Exception as exc:  # e.g. a connection refused while a server starts
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s} s: {message() if callable(message) else message}") from last
        time.sleep(interval_s)


def scraped(url: str, sample: str, **labels: str) -> float:
    """The value of one sample on the Prometheus endpoint at `url` (0.0 when it is not there yet)."""
    text = httpx.get(url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return 0.0


async def committed_to_end(settings: Settings, group_id: str, topic: str) -> bool:
    """Whether consumer group `group_id` has committed every record now on `topic`: all it was given
    is durably processed, and a batch it re-reads after a restart has been handled too."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster metadata
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
    finally:
        await consumer.stop()
        await admin.close()
    return bool(partitions) and all(
        max(committed[tp].offset if tp in committed else 0, 0) >= end for tp, end in ends.items())


def example(name: str) -> dict[str, Any]:
    """A record of schemas/examples, `name` being "<stem>/v<N>/<file>" (".json" optional), as the
    codecs hand it over (timestamps as aware datetimes, unions unwrapped). Tests start from these
    instead of writing records out by hand, so their records follow the schema as it changes; each
    call returns a fresh copy the test may change."""
    stem, version, file = name.removesuffix(".json").split("/")
    return copy.deepcopy(_read_example(stem, version, file))


@functools.cache
def _read_example(stem: str, version: str, file: str) -> dict[str, Any]:
    path = SCHEMAS / "examples" / stem / version / f"{file}.json"
    schema = fastavro.parse_schema(json.loads((SCHEMAS / "history" / stem / f"{version}.avsc").read_text("utf-8")))
    with path.open(encoding="utf-8") as fo:
        (record,) = list(fastavro.json_reader(fo, schema))
    return record


def raw_record(source_id: str, text: str, created_at: datetime, source: str = "twitter") -> dict[str, Any]:
    """A raw mention (the schema's first example) with a new identity, text and time, and nothing
    declared that enrichment or a watchlist query could act on: no language, country, URL,
    reply, repost or engagement."""
    return {
        **example("raw_mention/v2/01_twitter_complaint"),
        "mention_id": mention_id(source, source_id), "source": source, "source_id": source_id, "url": None,
        "author": {"id": "u1", "handle": "someone", "display_name": None, "followers": 10}, "text": text,
        "lang": None, "country": None, "created_at": created_at, "received_at": datetime.now(timezone.utc),
        "in_reply_to": None, "reposted_from": None,
        "engagement": {"likes": 0, "reposts": 0, "replies": 0, "observed_at": None},
    }


def enriched_record(raw: dict[str, Any], watchlists: list[str], sentiment: str = "negative") -> dict[str, Any]:
    """`raw` enriched (the schema's first example otherwise): English, no entities or risks, matched
    by `watchlists` at its first four characters, with the given sentiment."""
    return {
        **example("enriched_mention/v2/01_english_complaint"),
        "mention": raw, "language": {"code": "en", "confidence": 0.99}, "entities": [],
        "sentiment": {"label": sentiment, "score": -0.5 if sentiment == "negative" else 0.5, "reason": None,
                      "probabilities": None},
        "risks": [], "watchlist_ids": watchlists,
        "matches": [{"watchlist_id": w, "start": 0, "end": 4, "term": None} for w in watchlists],
        "enriched_at": datetime.now(timezone.utc),
    }


def codecs(settings: Settings) -> Codecs:
    return Codecs(settings)


@contextlib.asynccontextmanager
async def webhook_receiver(secret: str | None = None) -> AsyncIterator[WebhookReceiver]:
    """A webhook receiver serving on a free port; the URL to post alerts to is `.url`."""
    receiver = WebhookReceiver(secret=secret)
    port = free_port()
    server = HttpServer(receiver.app(), "127.0.0.1", port)
    await server.start()
    receiver.url = f"http://127.0.0.1:{port}/alerts"
    try:
        yield receiver
    finally:
        await server.stop()


@contextlib.contextmanager
def service_process(name: str, base_env: dict[str, str], log_dir: Path, ready_s: float = 90.0,
                    **env: str) -> Iterator[ServiceProcess]:
    """One service as its own process on a free port, ready; it must stop cleanly (exit 0)."""
    port = free_port()
    svc = ServiceProcess(name, port, {**service_env(base_env, name, port), **env}, log_dir / f"{name}.log")
    svc.start()
    try:
        svc.wait_ready(ready_s)
        yield svc
    finally:
        code = svc.stop()
    assert code == 0, svc.log_tail()

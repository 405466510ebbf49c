"""Helpers for integration and end-to-end tests (real broker, real PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from earful.core.http import HttpServer
from earful.core.kafka import Codecs
from earful.core.settings import Settings
from earful.core.mention import mention_id
from earful.stack.broker import free_port
from earful.stack.processes import ServiceProcess, service_env
from earful.stack.receiver import WebhookReceiver


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
        partitions = consumer.partitions_for_topic(topic) or set()
        for _ in range(50):
            if partitions:
                break
            await asyncio.sleep(0.1)
            partitions = consumer.partitions_for_topic(topic) or set()
        from aiokafka import TopicPartition

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


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0, interval_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval_s)
    return await check()


def raw_record(source_id: str, text: str, created_at: datetime, source: str = "twitter") -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {
        "schema_version": 2, "mention_id": mention_id(source, source_id), "source": source, "source_id": source_id,
        "url": None, "author": {"id": "u1", "handle": "someone", "display_name": None, "followers": 10}, "text": text,
        "lang": None, "created_at": created_at, "received_at": now, "in_reply_to": None, "reposted_from": None,
        "engagement": {"likes": 0, "reposts": 0, "replies": 0},
    }


def enriched_record(raw: dict[str, Any], watchlists: list[str], sentiment: str = "negative") -> dict[str, Any]:
    return {
        "schema_version": 2, "mention": raw, "language": {"code": "en", "confidence": 0.99}, "entities": [],
        "sentiment": {"label": sentiment, "score": -0.5 if sentiment == "negative" else 0.5, "reason": None},
        "risks": [], "watchlist_ids": watchlists,
        "matches": [{"watchlist_id": w, "start": 0, "end": 4} for w in watchlists],
        "models": {"language": "t", "ner": "t", "sentiment": "t", "risk": "t", "watchlists": "t"},
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

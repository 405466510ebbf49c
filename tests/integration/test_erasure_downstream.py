"""Erasure reaching downstream, against a real storage process, PostgreSQL and broker: an erasure
(here made by another process, as `earful storage erase` does) is published to earful.erasures.v1
by the running service, read back with a plain aiokafka consumer; a replay of the author's old
enriched records into storage stores none of them, while other authors' records still are; an
erasure committed while no storage service runs is published when one starts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from earful.core.kafka import Codecs, start_producer
from earful.core.migrate import migrate
from earful.core.settings import Settings
from earful.core.topics import ENRICHED, ERASURES
from earful.storage.erasure import erase_author
from earful.storage.erasure_outbox import ErasureOutbox
from earful.storage.writer import author_hash
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.integration.test_storage_db import enriched
from tests.support import consume_all, eventually

pytestmark = pytest.mark.integration
UTC = timezone.utc
T0 = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)


def leaver(i: int) -> dict[str, Any]:
    """The author who asks to be erased: handle LeaverX, account id 9001."""
    return enriched(f"leaver-{i}", T0 + timedelta(minutes=i), handle="LeaverX", author_id="9001", text=f"Acme Air post {i}")


def bystander(name: str) -> dict[str, Any]:
    return enriched(f"bystander-{name}", T0 + timedelta(minutes=30), handle="stays", text=f"Acme Air {name}")


async def produce(settings: Settings, records: list[dict[str, Any]]) -> None:
    codec = Codecs(settings).for_topic(ENRICHED)
    producer = await start_producer(settings, "erasure-test")
    try:
        for r in records:
            await producer.send_and_wait(ENRICHED, codec.encode(r), key=r["mention"]["mention_id"].encode())
    finally:
        await producer.stop()


async def stored_ids(pg_url: str) -> set[str]:
    conn = await asyncpg.connect(pg_url)
    try:
        return {str(r["mention_id"]) for r in await conn.fetch("SELECT mention_id FROM mentions")}
    finally:
        await conn.close()


def mid(record: dict[str, Any]) -> str:
    return str(record["mention"]["mention_id"])


@pytest.fixture(scope="module")
async def migrated(pg_url: str) -> str:
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return pg_url


def start_storage(base_env: dict[str, str], pg_url: str, log: Path) -> ServiceProcess:
    port = free_port()
    svc = ServiceProcess("storage", port, service_env({**base_env, "EARFUL_DATABASE_URL": pg_url}, "storage", port), log)
    svc.start()
    svc.wait_ready(60)
    return svc


async def test_erasure_is_published_and_a_replay_does_not_bring_the_author_back(
        settings: Settings, base_env: dict[str, str], migrated: str, tmp_path: Path) -> None:
    pg_url = migrated
    old = [leaver(i) for i in range(3)]
    await produce(settings, [*old, bystander("before")])
    svc = start_storage(base_env, pg_url, tmp_path / "storage.log")
    try:
        wanted = {mid(r) for r in [*old, bystander("before")]}
        assert await eventually(lambda: _has(pg_url, wanted), timeout_s=60), svc.log_tail()

        conn = await asyncpg.connect(pg_url)  # another process, as `earful storage erase` is
        try:
            erasure = await erase_author(conn, "twitter", "@leaverx", via="cli")
        finally:
            await conn.close()
        assert erasure.mentions_erased == 3

        records = await consume_all(settings, ERASURES, expect=1, timeout_s=30)
        assert len(records) == 1, svc.log_tail()
        message = records[0]
        assert message.key == author_hash("twitter", "leaverx").encode()
        event = Codecs(settings).for_topic(ERASURES).decode(message.value)
        assert event["erasure_id"] == erasure.erasure_id and event["source"] == "twitter"
        assert event["requested_via"] == "cli" and event["mentions_erased"] == 3
        assert set(event["author_hashes"]) == {author_hash("twitter", "leaverx"), author_hash("twitter", "9001")}
        # Milliseconds on the topic: requested_at truncated, erased_before rounded up (never earlier).
        assert event["requested_at"] <= erasure.requested_at <= event["erased_before"]
        assert event["erased_before"] - event["requested_at"] <= timedelta(milliseconds=1)
        conn = await asyncpg.connect(pg_url)
        try:
            assert await conn.fetchval("SELECT published_at IS NOT NULL FROM erasures WHERE id = $1", erasure.erasure_id)
        finally:
            await conn.close()

        # Replay of the old topic data (e.g. a consumer group reset): the author's records are
        # refused, everyone else's are stored.
        marker = bystander("after")
        await produce(settings, [*old, marker])
        assert await eventually(lambda: _has(pg_url, {mid(marker)}), timeout_s=60), svc.log_tail()
        assert not {mid(r) for r in old} & await stored_ids(pg_url)
        # A post the author writes after the erasure is new data, stored as usual.
        later = enriched("leaver-later", erasure.requested_at + timedelta(minutes=1), handle="LeaverX", author_id="9001")
        await produce(settings, [later])
        assert await eventually(lambda: _has(pg_url, {mid(later)}), timeout_s=60), svc.log_tail()
    finally:
        assert svc.stop() == 0, svc.log_tail()


async def test_an_erasure_made_without_a_broker_is_published_later(settings: Settings, migrated: str) -> None:
    """The outbox: committed first, published once a publisher runs (here in-process), once."""
    conn = await asyncpg.connect(migrated)
    try:
        erasure = await erase_author(conn, "mastodon", f"nobody-{uuid.uuid4().hex[:6]}@example.social", via="api")
        assert erasure.mentions_erased == 0
        assert await conn.fetchval("SELECT published_at IS NULL FROM erasures WHERE id = $1", erasure.erasure_id)
        every = [r["id"] for r in await conn.fetch("SELECT id FROM erasures ORDER BY id")]
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(migrated, min_size=1, max_size=3)
    producer = await start_producer(settings, "erasure-outbox-test")
    stopping = asyncio.Event()
    outbox = ErasureOutbox(pool, producer, Codecs(settings).for_topic(ERASURES), interval_s=0.5)
    task = asyncio.create_task(outbox.run(stopping))
    try:
        records = await consume_all(settings, ERASURES, expect=len(every), timeout_s=30)
        events = [Codecs(settings).for_topic(ERASURES).decode(r.value) for r in records]
        assert sorted(e["erasure_id"] for e in events) == every  # each erasure once, this one included
        assert events[-1]["source"] == "mastodon" and events[-1]["requested_via"] == "api"
        assert await outbox.publish_pending() == (0, 0)  # nothing left, nothing sent twice
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
        await producer.stop()
        await pool.close()


async def _has(pg_url: str, ids: set[str]) -> bool:
    return ids <= await stored_ids(pg_url)

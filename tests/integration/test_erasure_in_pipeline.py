"""Erasure honoured inside the pipeline, with enrichment and alerting as real processes on the test
broker: erasures are made in PostgreSQL and published by storage's own outbox (the path the storage
service runs); a replay of an erased author's older raw mentions is not enriched, and of their
enriched mentions not counted by alerting, while other authors' mentions and the author's posts
after the erasure go through. An erasure published while enrichment runs applies from then on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from earful.core.kafka import Codecs, start_producer
from earful.core.migrate import migrate
from earful.core.settings import Settings
from earful.core.topics import ENRICHED, ERASURES, RAW
from earful.storage.erasure import Erasure, erase_author
from earful.storage.erasure_outbox import ErasureOutbox
from earful_dev.stack.processes import ServiceProcess
from tests.support import consume_all, enriched_record, eventually, produce, raw_record, scraped, service_process

pytestmark = pytest.mark.integration
UTC = timezone.utc
HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


def by(source_id: str, handle: str, author_id: str, created_at: datetime = HOUR_AGO) -> dict[str, Any]:
    raw = raw_record(source_id, f"Acme Air lost my bag again ({source_id})", created_at)
    raw["author"] = {**raw["author"], "handle": handle, "id": author_id}
    return raw


async def erase_and_publish(pg_url: str, settings: Settings, source: str, author: str) -> Erasure:
    """Erase as `earful storage erase` does, then publish as the storage service's outbox does."""
    conn = await asyncpg.connect(pg_url)
    try:
        erasure = await erase_author(conn, source, author, via="cli")
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=2)
    producer = await start_producer(settings, "erasure-test")
    try:
        assert await ErasureOutbox(pool, producer, Codecs(settings).for_topic(ERASURES)).publish_pending() == (1, 0)
    finally:
        await producer.stop()
        await pool.close()
    return erasure


@pytest.fixture(scope="module")
async def first_erasure(pg_url: str, settings: Settings) -> AsyncIterator[Erasure]:
    """@LeaverY erased by handle before any service starts."""
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield await erase_and_publish(pg_url, settings, "twitter", "@LeaverY")


def metric(svc: ServiceProcess, name: str, **labels: str) -> float:
    return scraped(f"{svc.url}/metrics", name, **labels)


async def test_enrichment_drops_erased_authors(first_erasure: Erasure, pg_url: str, settings: Settings,
                                              base_env: dict[str, str], tmp_path) -> None:
    codec = Codecs(settings).for_topic(RAW)
    with service_process("enrichment", base_env, tmp_path) as svc:
        # Loaded at start-up, from the beginning of the topic.
        assert metric(svc, "earful_erased_identities", service="enrichment") >= 1
        # Published while enrichment runs: followed (here an erasure by account id).
        second = await erase_and_publish(pg_url, settings, "twitter", "777")
        assert await eventually(lambda: metric(svc, "earful_erased_identities", service="enrichment") >= 2,
                                timeout_s=30), svc.log_tail()

        erased = [by("old-y", "LeaverY", "501"), by("old-z", "zed", "777"), by("old-y-lower", "leavery", "502")]
        later = by("later-y", "LeaverY", "501", created_at=first_erasure.requested_at + timedelta(seconds=5))
        other = [by("other", "someone", "u1"), by("same-id-elsewhere", "x", "777") | {"source": "mastodon"}]
        assert second.requested_at > HOUR_AGO
        await produce(settings, RAW, [(r["mention_id"].encode(), codec.encode(r)) for r in [*erased, later, *other]])

        enriched_ids: set[str] = set()

        async def through() -> bool:
            records = await consume_all(settings, ENRICHED, expect=10_000, timeout_s=1)
            enriched_ids.update(r.key.decode() for r in records)
            return {later["mention_id"], *(r["mention_id"] for r in other)} <= enriched_ids

        assert await eventually(through, timeout_s=90), svc.log_tail()
        assert await eventually(lambda: metric(svc, "earful_messages_total", service="enrichment", topic=RAW,
                                               outcome="erased_author") == 3, timeout_s=30), svc.log_tail()
        await through()
        assert not {r["mention_id"] for r in erased} & enriched_ids


async def test_alerting_does_not_count_erased_authors(first_erasure: Erasure, pg_url: str, settings: Settings,
                                                      base_env: dict[str, str], tmp_path) -> None:
    codec = Codecs(settings).for_topic(ENRICHED)
    old = enriched_record(by("alert-old-y", "LeaverY", "501"), ["acme-air"])
    other = enriched_record(by("alert-other", "someone", "u1"), ["acme-air"])
    with service_process("alerting", base_env, tmp_path, EARFUL_DATABASE_URL=pg_url) as svc:
        await produce(settings, ENRICHED, [(r["mention"]["mention_id"].encode(), codec.encode(r)) for r in (old, other)])

        def fanned() -> float:
            return sum(metric(svc, "earful_messages_total", service="alerting", topic=ENRICHED, outcome=o)
                       for o in ("fanned_out", "no_watchlist"))

        assert await eventually(lambda: metric(svc, "earful_messages_total", service="alerting", topic=ENRICHED,
                                               outcome="erased_author") == 1 and fanned() >= 1, timeout_s=60), svc.log_tail()
        # Every record of the topic was handled: only the erased author's was left out.
        total = len(await consume_all(settings, ENRICHED, expect=10_000, timeout_s=1))
        assert await eventually(lambda: fanned() + 1 == total, timeout_s=30), (fanned(), total, svc.log_tail())

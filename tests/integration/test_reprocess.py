"""`earful reprocess` (earful.storage.reprocess) against a real PostgreSQL and broker, with the real
enrichment processor: stored mentions scored by older models are re-enriched in place, every rollup
equals a recount afterwards, a person's correction stays, erased authors are never re-scored or
published, the re-scored records reach the enriched topic with the new model versions and
`reprocessed_at`, a second run changes nothing, a job stopped mid-way (an error inside a batch, a
killed command) resumes without counting anything twice, and storage and alerting do not count a
re-scored record as a new mention."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from earful.core.db import drop_database, ensure_database, with_database
from earful.core.erased_authors import author_hash
from earful.core.kafka import Codecs, DeadLetters, make_consumer, send_keyed_batches, start_producer
from earful.core.migrate import migrate
from earful.core.settings import PACKAGE_DIR, Settings
from earful.core.topics import ENRICHED
from earful.enrichment.processor import EnrichmentProcessor
from earful.storage.consumer import StorageConsumer
from earful.storage.corrections import CorrectionRequest, apply_correction
from earful.storage.erasure import erase_author
from earful.storage.history import (
    REPROCESS_LOCK_CLASS,
    AccountsInForce,
    Selection,
    Throttle,
    decoded,
    raw_mention,
    try_lock_job,
)
from earful.storage.reprocess import Reprocessor, create_job, get_job
from earful.storage.writer import WriterState, mention_row, write_batch
from earful.watchlists import WatchlistSet
from tests.integration.test_storage_db import assert_rollups_match_recount, enriched
from tests.support import committed_to_end, consume_all, enriched_record, eventually, raw_record, scraped, service_process

pytestmark = pytest.mark.integration
UTC = timezone.utc
SERVICES = str(Path(__file__).resolve().parents[2] / "services")
WATCHLISTS = PACKAGE_DIR / "sample" / "watchlists"
T0 = (datetime.now(UTC) - timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
PERIOD = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
OLD_MODELS = {"language": "old-language@0", "ner": "old-ner@0", "sentiment": "old-sentiment@0", "risk": "old-risk@0",
              "watchlists": "old-watchlists@0"}
TABLES = ("mention_rollups_minute", "mention_rollups_hour", "mention_rollups_day", "watchlist_rollups_minute",
          "watchlist_rollups_hour", "watchlist_rollups_day", "tag_rollups_minute", "tag_rollups_hour",
          "tag_rollups_day", "mention_totals_day", "entity_rollups_day",
          "entity_totals", "author_rollups_day", "author_totals", "questions", "mentions")


def old(sid: str, minutes: float, text: str, **kw: Any) -> dict[str, Any]:
    """A mention as an older enrichment stored it: its own (wrong) fields, old model versions."""
    kw.setdefault("entities", [])
    record = enriched(sid, T0 + timedelta(minutes=minutes), text=text, **kw)
    record["models"] = dict(OLD_MODELS)
    return record


def history() -> list[dict[str, Any]]:
    return [
        old("r-complaint", 0, "Acme Air lost my bag again, worst airline ever #AcmeAir", sentiment="positive",
            handle="ann", followers=900),
        old("r-both", 1, "Globex and Acme Air were both late today #AcmeAir", sentiment="neutral", handle="bob"),
        old("r-german", 2, "Acme Air hat meinen Koffer verloren, so ein Mist", sentiment="neutral", handle="carl"),
        old("r-question", 3, "@AcmeAirHelp when does my flight to London board? #AcmeAir", sentiment="neutral",
            handle="dana"),
        old("r-owned", 4, "Acme Air lounges reopen today, welcome back #AcmeAir", sentiment="neutral",
            handle="AcmeAirHelp"),
        old("r-stale", 5, "Lovely weather for flying today", watchlists=("skyjet",), sentiment="positive", handle="erin"),
        old("r-corrected", 6, "Acme Air flight delayed two hours", sentiment="neutral", handle="fay"),
        old("r-leaver", 7, "Acme Air is fine I guess", sentiment="negative", handle="leaver"),
        old("r-erased", 8, "Acme Air is great", sentiment="negative", handle="eraseme"),
        old("r-outside", -60 * 24, "Acme Air lost my bag again #AcmeAir", sentiment="positive", handle="gus"),
    ]


@pytest.fixture(scope="module")
def processor() -> EnrichmentProcessor:
    """The enrichment service's processor (its models loaded once for the module)."""
    return EnrichmentProcessor.from_settings(Settings(), WatchlistSet.from_file(WATCHLISTS))


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    """A fresh, migrated database per test."""
    url = with_database(pg_url, f"earful_r_{uuid.uuid4().hex[:10]}")
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    await migrate(conn)
    try:
        yield conn, url
    finally:
        await conn.close()
        await drop_database(url)


async def store(conn: asyncpg.Connection, records: list[dict[str, Any]], accounts: AccountsInForce) -> None:
    result = await write_batch(conn, [mention_row(r) for r in records], [], brands=accounts.brands(),
                               owned=accounts.owned(), state=WriterState())
    assert result.mentions_inserted == len(records)
    await assert_rollups_match_recount(conn)


class Publisher:
    """Publishes to the enriched topic as the command does; `fail_on` makes the n-th call fail first."""

    def __init__(self, settings: Settings, fail_on: int | None = None) -> None:
        self.settings, self.fail_on, self.calls, self.sent = settings, fail_on, 0, 0
        self.codec = Codecs(settings).for_topic(ENRICHED)

    async def __call__(self, records: list[dict[str, Any]]) -> None:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("killed while publishing")
        producer = await start_producer(self.settings, "reprocess-test")
        try:
            sent = await send_keyed_batches(producer, ENRICHED, [(r["mention"]["mention_id"].encode(),
                                                                   self.codec.encode(r)) for r in records])
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        self.sent += len(records)


async def run(conn: asyncpg.Connection, processor: EnrichmentProcessor, publish: Publisher,
              accounts: AccountsInForce, batch_size: int = 4, job_id: int | None = None) -> asyncpg.Record:
    if job_id is None:
        job_id = (await create_job(conn, Selection(*PERIOD), requested_by="test"))["job_id"]
    assert await try_lock_job(conn, REPROCESS_LOCK_CLASS, job_id)
    worker = Reprocessor(conn, processor, publish, owned=accounts.owned, brands=accounts.brands, batch_size=batch_size)
    return await worker.run(job_id, Throttle(None))


async def snapshot(conn: asyncpg.Connection) -> dict[str, set[str]]:
    return {t: set(await conn.fetchval(f"SELECT coalesce(array_agg(x::text), '{{}}') FROM {t} x")) for t in TABLES}


async def rows_by_id(conn: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    return {r["source_id"]: decoded(r) for r in await conn.fetch("SELECT * FROM mentions")}


async def reprocessed_on_topic(settings: Settings) -> dict[str, dict[str, Any]]:
    codec = Codecs(settings).for_topic(ENRICHED)
    out = {}
    for msg in await consume_all(settings, ENRICHED, expect=100_000, timeout_s=2):
        record = codec.decode(msg.value)
        if record.get("reprocessed_at") is not None:
            out[record["mention"]["source_id"]] = record
    return out


async def test_stored_mentions_are_rescored_in_place_exactly(db: tuple[asyncpg.Connection, str], settings: Settings,
                                                              processor: EnrichmentProcessor) -> None:
    conn, _ = db
    accounts = AccountsInForce(processor.watchlists.current)
    await store(conn, history(), accounts)
    corrected = await conn.fetchval("SELECT mention_id FROM mentions WHERE source_id = 'r-corrected'")
    await apply_correction(conn, corrected, CorrectionRequest(sentiment="positive", by="jane"), principal="test")
    await erase_author(conn, "twitter", "eraseme", via="test")
    # An erasure whose deletion this mention escaped: as the writer refuses such a mention, re-scoring skips it.
    await conn.execute("INSERT INTO erasures (source, author_hashes, requested_via, mentions_erased, author_key)"
                       " VALUES ('twitter', $1, 'test', 0, $2)", [author_hash("twitter", "leaver")],
                       author_hash("twitter", "leaver"))
    before = await rows_by_id(conn)
    publish = Publisher(settings)

    job = await run(conn, processor, publish, accounts)
    assert (job["state"], job["total"], job["scanned"], job["erased"]) == ("done", 8, 8, 1)
    assert job["rescored"] == publish.sent == 7 and job["unchanged"] == 0
    await assert_rollups_match_recount(conn)  # volume, share of voice, entities, authors

    after = await rows_by_id(conn)
    expected = {r["mention"]["mention_id"]: r for r in processor.enrich([raw_mention(before[s]) for s in before], T0)}
    for sid in ("r-complaint", "r-both", "r-german", "r-question", "r-owned", "r-stale"):
        want, got = expected[str(before[sid]["mention_id"])], after[sid]
        assert (got["lang"], got["sentiment"], got["watchlist_ids"], got["entities"], got["risks"], got["matches"]) == (
            want["language"]["code"], want["sentiment"]["label"], want["watchlist_ids"], want["entities"], want["risks"],
            want["matches"]), sid
        assert got["models"] == processor.models and got["enriched_at"] > before[sid]["enriched_at"]
    assert after["r-complaint"]["sentiment"] == "negative" and after["r-german"]["lang"] == "de"
    assert after["r-both"]["watchlist_ids"] == ["acme-air", "globex"] and after["r-stale"]["watchlist_ids"] == []
    assert after["r-owned"]["owned_watchlist_ids"] == ["acme-air"]  # the writer's decision stays
    assert await conn.fetchval("SELECT count(*) FROM questions WHERE source_id = 'r-question'") == 1
    assert after["r-corrected"]["sentiment"] == "positive" and after["r-corrected"]["models"] == processor.models
    assert after["r-leaver"] == before["r-leaver"] and after["r-outside"] == before["r-outside"]
    assert "r-erased" not in after

    published = await reprocessed_on_topic(settings)
    assert set(published) == {"r-complaint", "r-both", "r-german", "r-question", "r-owned", "r-stale", "r-corrected"}
    for sid, record in published.items():
        assert record["models"] == processor.models and record["schema_version"] == 4, sid
        assert record["reprocessed_at"] == record["enriched_at"] and record["sentiment"]["label"] == after[sid]["sentiment"]
        assert record["mention"]["text"] == after[sid]["text"] and record["watchlist_ids"] == after[sid]["watchlist_ids"]

    snap = await snapshot(conn)
    again = await run(conn, processor, publish, accounts)
    assert (again["state"], again["rescored"], again["unchanged"], again["erased"]) == ("done", 0, 7, 1)
    assert publish.sent == 7 and await snapshot(conn) == snap  # the same models: nothing changes, nothing is published


async def test_an_error_mid_way_rolls_back_its_batch_and_the_job_resumes(db: tuple[asyncpg.Connection, str],
                                                                          settings: Settings,
                                                                          processor: EnrichmentProcessor) -> None:
    conn, url = db
    accounts = AccountsInForce(processor.watchlists.current)
    await store(conn, [old(f"c-{i}", i, f"Acme Air cancelled flight {i}, lost my bag, awful #AcmeAir",
                           sentiment="positive", handle=f"user{i % 3}", followers=10 * i) for i in range(10)], accounts)
    publish = Publisher(settings, fail_on=2)
    job_id = (await create_job(conn, Selection(*PERIOD)))["job_id"]
    with pytest.raises(RuntimeError, match="killed while publishing"):
        await run(conn, processor, publish, accounts, batch_size=4, job_id=job_id)
    job = await get_job(conn, job_id)
    assert (job["state"], job["scanned"], job["rescored"]) == ("running", 4, 4)  # the second batch rolled back whole
    assert await conn.fetchval("SELECT count(*) FROM mentions WHERE models ->> 'sentiment' = 'old-sentiment@0'") == 6
    await assert_rollups_match_recount(conn)
    await conn.close()  # the process dies: its session lock goes with it

    conn = await asyncpg.connect(url)
    try:
        job = await run(conn, processor, publish, accounts, batch_size=4, job_id=job_id)
        assert (job["state"], job["scanned"], job["rescored"], job["unchanged"]) == ("done", 10, 10, 0)
        assert await conn.fetchval("SELECT count(*) FROM mentions WHERE models = $1::jsonb",
                                   json.dumps(processor.models)) == 10
        await assert_rollups_match_recount(conn)
    finally:
        await conn.close()


async def test_the_command_killed_mid_way_resumes(db: tuple[asyncpg.Connection, str], settings: Settings,
                                                  base_env: dict[str, str], processor: EnrichmentProcessor,
                                                  tmp_path: Path) -> None:
    conn, url = db
    accounts = AccountsInForce(processor.watchlists.current)
    await store(conn, [old(f"k-{i}", i, f"Acme Air lost bag number {i}, terrible service #AcmeAir", sentiment="positive",
                           handle=f"k{i}") for i in range(8)], accounts)
    folder = tmp_path / "watchlists"
    shutil.copytree(WATCHLISTS, folder)
    env = {**base_env, "EARFUL_DATABASE_URL": url, "EARFUL_WATCHLISTS_DIR": str(folder), "PYTHONPATH": SERVICES}
    command = [sys.executable, "-m", "earful", "reprocess", "--from", PERIOD[0].isoformat(), "--to",
               PERIOD[1].isoformat(), "--rate", "1", "--batch", "1"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        async def started() -> bool:
            return bool(await conn.fetchval("SELECT scanned > 0 FROM reprocess_jobs"))

        assert await eventually(started, timeout_s=180), proc.stderr.read() if proc.poll() is not None else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    job = await conn.fetchrow("SELECT * FROM reprocess_jobs")
    assert job["state"] == "running" and 0 < job["scanned"] < 8
    await assert_rollups_match_recount(conn)

    done = await asyncio.to_thread(subprocess.run, [*command[:4], "--resume", str(job["job_id"]), "--no-progress"],
                                   env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert (summary["state"], summary["scanned"], summary["rescored"], summary["total"]) == ("done", 8, 8, 8)
    assert f"--resume {job['job_id']}" in done.stderr  # says how to continue if it stops again
    await assert_rollups_match_recount(conn)


async def test_storage_and_alerting_do_not_count_a_reprocessed_record(db: tuple[asyncpg.Connection, str],
                                                                      settings: Settings, base_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    conn, url = db
    codec = Codecs(settings).for_topic(ENRICHED)
    fresh = enriched_record(raw_record("s-new", "Acme Air lost my bag", T0), ["acme-air"])
    rescored = {**enriched_record(raw_record("s-rescored", "Acme Air lost my bag", T0), ["acme-air"]),
                "schema_version": 4, "reprocessed_at": datetime.now(UTC)}
    producer = await start_producer(settings, "reprocess-test")
    try:
        await asyncio.gather(*await send_keyed_batches(producer, ENRICHED, [
            (r["mention"]["mention_id"].encode(), codec.encode(r)) for r in (rescored, fresh)]))
    finally:
        await producer.stop()

    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    consumer = make_consumer(settings, "reprocess-test-storage", ENRICHED)
    dlq = await start_producer(settings, "reprocess-test-dlq")
    await consumer.start()
    worker = StorageConsumer(consumer, pool, Codecs(settings), DeadLetters(dlq, Codecs(settings), "storage"), 100, 0.2)
    task = asyncio.create_task(worker.run())
    try:
        assert await eventually(lambda: committed_to_end(settings, "reprocess-test-storage", ENRICHED), timeout_s=60)
    finally:
        worker.stopping.set()
        await task
        await consumer.stop()
        await dlq.stop()
        await pool.close()
    assert {r["source_id"] for r in await conn.fetch("SELECT source_id FROM mentions")} == {"s-new"}

    on_topic = [codec.decode(m.value) for m in await consume_all(settings, ENRICHED, expect=100_000, timeout_s=2)]
    reprocessed = sum(1 for r in on_topic if r.get("reprocessed_at") is not None)
    with service_process("alerting", base_env, tmp_path, EARFUL_DATABASE_URL=url) as svc:
        def metric(outcome: str) -> float:
            return scraped(f"{svc.url}/metrics", "earful_messages_total", service="alerting", topic=ENRICHED,
                           outcome=outcome)

        def handled() -> bool:
            return metric("reprocessed") == reprocessed and metric("fanned_out") + metric("no_watchlist") == len(
                on_topic) - reprocessed

        assert await eventually(handled, timeout_s=90), (metric("reprocessed"), reprocessed, len(on_topic), svc.log_tail())

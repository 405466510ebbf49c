"""`earful storage`: migrate, then consume enriched mentions and alerts into PostgreSQL and serve the API.

`StorageService.open` is the whole composition: the consume loop is
`earful.storage.consumer.StorageConsumer` (writing through `earful.storage.writer`), the query API
`earful.storage.api` (with corrections, `earful.storage.corrections`, published by
`earful.storage.outbox`), the watchlist CRUD API `earful.watchlists.registry`.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from earful.core.auth import KeyRing
from earful.core.db import open_pool
from earful.core.errors import StorageError
from earful.core.health import Health, tcp_check
from earful.core.http import HttpServer, RequestLimits
from earful.core.kafka import Codecs, DeadLetters, make_consumer, make_producer
from earful.core.kafka_security import start_client
from earful.core.retry import wait_or_stop
from earful.core.runtime import run_service, wait_for_shutdown
from earful.core.settings import Settings
from earful.core.topics import ALERTS, CASES, CORRECTIONS, ENRICHED, ERASURES, create_topics
from earful.storage.api import build_api, storage_auth
from earful.storage.backfill import BackfillRunner
from earful.storage.case_outbox import CaseOutbox
from earful.storage.case_webhook import start_case_webhook
from earful.storage.consumer import StorageConsumer
from earful.storage.erasure_outbox import ErasureOutbox
from earful.storage.outbox import CorrectionOutbox
from earful.storage.retention import create_partitions_ahead
from earful.storage.signals import SignalLoops, start_signals
from earful.watchlists.registry import WatchlistRegistry

if TYPE_CHECKING:
    from earful.storage.report_schedule import ReportScheduler

log = logging.getLogger("earful.storage")
MAINTENANCE_INTERVAL_S = 3600.0


class LogAssignments(ConsumerRebalanceListener):
    """Says which partitions this writer owns after each rebalance (operators ask this first)."""

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        log.info("partitions revoked", extra={"partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in revoked)})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)})


API_SERVER_SETTINGS = {
    # JIT compilation costs more than it saves on queries of a few milliseconds.
    "jit": "off",
    # Plan every execution with its values: after five runs PostgreSQL may switch a prepared
    # statement to a generic plan, which cannot tell a rare search term or watchlist from a common
    # one; measured at 5M mentions, a search went from ~20 ms to ~400-700 ms when it did.
    "plan_cache_mode": "force_custom_plan",
}


async def open_api_pool(settings: Settings) -> asyncpg.Pool:
    """The query API's pool: each statement bounded in time and planned for its own parameters."""
    return await open_pool(settings.database_url.get_secret_value(), max_size=6, migrate_first=False,
                           command_timeout=None, server_settings={
        **API_SERVER_SETTINGS, "statement_timeout": str(int(settings.api_query_timeout_s * 1000))})


async def maintain_partitions(pool: asyncpg.Pool, settings: Settings, stopping: asyncio.Event) -> None:
    """Keep the next days' partitions created (at start-up, then hourly); failures are logged and retried."""
    while not stopping.is_set():
        try:
            async with pool.acquire() as conn:
                created = await create_partitions_ahead(conn, settings.storage_partitions_ahead_days)
            if created:
                log.info("created mention partitions ahead", extra={"partitions": created})
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("could not create partitions ahead; retrying later", extra={"error": repr(exc)})
        if await wait_or_stop(stopping, MAINTENANCE_INTERVAL_S):
            return


async def start_kafka(settings: Settings, stack: AsyncExitStack) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
    """The producer (dead letters, corrections, erasures) and the consumer of enriched mentions and alerts,
    started (stopped by `stack`); one that cannot connect is a BrokerError saying why (`start_client`)."""
    producer = make_producer(settings, "earful-storage-dlq")
    consumer = make_consumer(settings, "earful-storage")
    stack.push_async_callback(producer.stop)
    stack.push_async_callback(consumer.stop)
    await start_client(producer, settings, "the storage producer")
    await start_client(consumer, settings, "the storage consumer")
    consumer.subscribe([ENRICHED, ALERTS], listener=LogAssignments())
    return producer, consumer


@dataclass
class StorageService:
    """What `earful storage` runs: the consume loop (`worker`) and the query API (`server`)."""

    settings: Settings
    health: Health
    pool: asyncpg.Pool
    worker: StorageConsumer
    server: HttpServer
    outbox: CorrectionOutbox
    erasures: ErasureOutbox | None = None  # publishes committed erasures to earful.erasures.v1
    cases: CaseOutbox | None = None  # publishes committed case events to earful.cases.v1
    reports: ReportScheduler | None = None  # delivers the weekly report (EARFUL_REPORT_SCHEDULE)
    signals: SignalLoops | None = None  # publishes sales leads and staff policy flags (and the CRM webhook)

    @classmethod
    async def open(cls, settings: Settings, stack: AsyncExitStack) -> StorageService:
        """Migrate, connect and start every part in order; `stack` closes them in reverse."""
        codecs = Codecs(settings)
        await create_topics(settings)
        # The writers, plus the outboxes: two of them hold a connection to listen on.
        pool = await open_pool(settings.database_url.get_secret_value(), max_size=settings.storage_write_concurrency + 3)
        stack.push_async_callback(pool.close)
        api_pool = await open_api_pool(settings)
        stack.push_async_callback(api_pool.close)
        health = Health("storage")
        health.add_check("kafka", tcp_check(settings.kafka_bootstrap, 9092))

        async def db_check() -> None:
            await pool.fetchval("SELECT 1")

        health.add_check("postgres", db_check)
        producer, consumer = await start_kafka(settings, stack)
        # Publishes the seed folder, serves /v1/watchlists, and is the set in force (handles, names, SLAs).
        registry = WatchlistRegistry.for_settings(settings)
        stack.push_async_callback(registry.stop)
        await registry.start()
        health.add_check("watchlists", registry.store.check)
        worker = StorageConsumer(consumer, pool, codecs, DeadLetters(producer, codecs, "storage"),
                                 settings.storage_batch_size, settings.storage_batch_timeout_s,
                                 watchlists=registry.store.current,
                                 retention_days=settings.storage_retention_days or None,
                                 write_concurrency=settings.storage_write_concurrency,
                                 owned_handles=settings.owned_handles, care_agents=settings.care_agent_map())
        limits = RequestLimits.from_settings(settings, keys_configured=bool(settings.api_key_set()))
        outbox = CorrectionOutbox(pool, producer, codecs.for_topic(CORRECTIONS))
        keys = KeyRing.from_settings(settings)
        api = build_api(api_pool, health, keys, registry.store.current, limits=limits, outbox=outbox,
                        owned_handles=settings.owned_handles)
        api.include_router(registry.router(storage_auth(api_pool, keys)))
        server = HttpServer(api, settings.http_host, settings.port_for("storage"))
        await server.start()
        stack.push_async_callback(server.stop)
        # The writer's lead and policy rules from here on (a bad EARFUL_POLICY_FILE stops the start), and their outboxes.
        signals = await start_signals(settings, stack, producer, codecs, registry.store.current)
        reports = None
        if settings.report_schedule:  # imported only when scheduled: the report's PDF library is not small
            from earful.storage.report_schedule import ReportScheduler

            reports = ReportScheduler(settings, api_pool, registry.store.current)
        # Case events to the topic and, with EARFUL_CASES_WEBHOOK_URL, to a helpdesk (on a pool of its own).
        cases = CaseOutbox(pool, producer, codecs.for_topic(CASES), webhook=await start_case_webhook(settings, stack))
        return cls(settings, health, pool, worker, server, outbox, ErasureOutbox(pool, producer, codecs.for_topic(ERASURES)),
                   cases, reports, signals)

    async def run(self) -> None:
        """Consume (and keep partitions ahead, and publish corrections left unpublished) until SIGTERM;
        the batch in hand is written and committed on the way out. A consume loop that ends on its own
        is raised."""
        self.health.started = True
        log.info("storage running", extra={"url": f"http://{self.settings.http_host}:{self.server.port}"})
        worker = self.worker
        run_task = asyncio.create_task(worker.run())
        maintenance = asyncio.create_task(maintain_partitions(self.pool, self.settings, worker.stopping))
        publishing = asyncio.create_task(self.outbox.run(worker.stopping))
        erasing = asyncio.create_task(self.erasures.run(worker.stopping) if self.erasures else asyncio.sleep(0))
        casing = asyncio.create_task(self.cases.run(worker.stopping) if self.cases else asyncio.sleep(0))
        reporting = asyncio.create_task(self.reports.run(worker.stopping) if self.reports else asyncio.sleep(0))
        signalling = asyncio.create_task(self.signals.run(worker.stopping) if self.signals else asyncio.sleep(0))
        backfilling = asyncio.create_task(BackfillRunner(  # back-fills started over the API
            self.settings, self.pool, worker.watchlists, worker.owned, worker.brands).run(worker.stopping))
        stop_task = asyncio.create_task(wait_for_shutdown())
        try:
            done, _ = await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if run_task in done:
                run_task.result()  # the consume loop died: surface why
                raise StorageError("the consume loop ended without a shutdown signal")
            log.info("shutting down", extra={"signal": stop_task.result().name})
            self.health.started = False
            worker.stopping.set()
            await run_task  # finishes the batch in hand: write, commit
        finally:
            worker.stopping.set()
            stop_task.cancel()
            if not run_task.done():  # only when leaving on an error: the batch in hand stays uncommitted
                run_task.cancel()
            await asyncio.gather(run_task, maintenance, publishing, erasing, casing, reporting, signalling, backfilling,
                                 stop_task, return_exceptions=True)


async def serve(settings: Settings) -> None:
    """Run the storage service until SIGTERM, then close every part it opened."""
    async with AsyncExitStack() as stack:
        service = await StorageService.open(settings, stack)
        await service.run()


async def migrate_only(settings: Settings) -> None:
    """Apply the migrations and stop (`earful migrate`)."""
    pool = await open_pool(settings.database_url.get_secret_value())
    await pool.close()


def main(settings: Settings) -> int:
    return run_service("storage", lambda: serve(settings))

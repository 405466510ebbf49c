"""`earful storage`: migrate, then consume enriched mentions and alerts into PostgreSQL and serve the API."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from earful.core.db import open_pool
from earful.core.errors import BrokerError, EarfulError, StorageError
from earful.core.health import Health, tcp_check
from earful.core.http import HttpServer
from earful.core.kafka import Codecs, DeadLetters, make_consumer, make_producer
from earful.core.runtime import run_service, wait_for_shutdown
from earful.core.settings import Settings
from earful.core.topics import ALERTS, ENRICHED, create_topics
from earful.storage.api import build_api
from earful.storage.consumer import StorageConsumer
from earful.storage.retention import create_partitions_ahead
from earful.watchlists.registry import WatchlistRegistry

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
        try:
            await asyncio.wait_for(stopping.wait(), MAINTENANCE_INTERVAL_S)
        except asyncio.TimeoutError:
            pass


async def serve(settings: Settings) -> None:
    codecs = Codecs(settings)
    await create_topics(settings)
    pool = await open_pool(settings.database_url.get_secret_value(), max_size=settings.storage_write_concurrency + 2)
    api_pool = await open_api_pool(settings)
    health = Health("storage")
    health.add_check("kafka", tcp_check(settings.kafka_bootstrap, 9092))

    async def db_check() -> None:
        await pool.fetchval("SELECT 1")

    health.add_check("postgres", db_check)
    producer = make_producer(settings, "earful-storage-dlq")
    consumer = make_consumer(settings, "earful-storage")
    try:
        await producer.start()
        await consumer.start()
        consumer.subscribe([ENRICHED, ALERTS], listener=LogAssignments())
    except KafkaError as exc:
        await consumer.stop()
        await producer.stop()
        raise BrokerError(f"cannot connect to Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    # Publishes the seed folder, serves /v1/watchlists, and is the set in force (handles, names, SLAs).
    registry = WatchlistRegistry.for_settings(settings)
    try:
        await registry.start()
    except EarfulError:
        await registry.stop()
        await consumer.stop()
        await producer.stop()
        await api_pool.close()
        await pool.close()
        raise
    health.add_check("watchlists", registry.store.check)
    worker = StorageConsumer(consumer, pool, codecs, DeadLetters(producer, codecs, "storage"),
                             settings.storage_batch_size, settings.storage_batch_timeout_s,
                             watchlists=registry.store.current,
                             retention_days=settings.storage_retention_days or None,
                             write_concurrency=settings.storage_write_concurrency)
    api = build_api(api_pool, health, settings.api_key_set(), registry.store.current)
    api.include_router(registry.router(settings.api_key_set()))
    server = HttpServer(api, settings.http_host, settings.port_for("storage"))
    await server.start()
    health.started = True
    log.info("storage running", extra={"url": f"http://{settings.http_host}:{server.port}"})
    run_task = asyncio.create_task(worker.run())
    maintenance = asyncio.create_task(maintain_partitions(pool, settings, worker.stopping))
    stop_task = asyncio.create_task(wait_for_shutdown())
    try:
        done, _ = await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if run_task in done:
            run_task.result()  # the consume loop died: surface why
            raise StorageError("the consume loop ended without a shutdown signal")
        log.info("shutting down", extra={"signal": stop_task.result().name})
        health.started = False
        worker.stopping.set()
        await run_task  # finishes the batch in hand: write, commit
    finally:
        stop_task.cancel()
        worker.stopping.set()
        await maintenance
        await server.stop()
        await registry.stop()
        await consumer.stop()
        await producer.stop()
        await api_pool.close()
        await pool.close()


async def migrate_only(settings: Settings) -> None:
    pool = await open_pool(settings.database_url.get_secret_value())
    await pool.close()


def main(settings: Settings) -> int:
    return run_service("storage", lambda: serve(settings))

"""The storage consumer: poll a batch, write it in one transaction, then commit its offsets.

Offsets are committed only after the transaction commits, so a crash at any point re-delivers
the batch and the idempotent write absorbs it. A PostgreSQL outage pauses the loop with backoff
(the batch is kept and retried; nothing is committed, nothing is lost). Undecodable records go
to the DLQ before the batch's offsets are committed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import Counter

from earful.core.errors import DecodeError, StorageError
from earful.core.kafka import Codecs, DeadLetters, LagReporter
from earful.core.metrics import BATCH_SECONDS, ERRORS, MESSAGES, PIPELINE_LATENCY
from earful.core.topics import ALERTS, ENRICHED
from earful.storage.writer import alert_row, mention_row, write_batch

log = logging.getLogger(__name__)
SERVICE = "storage"
ROWS = Counter("earful_storage_rows_total", "Rows written by table and outcome.", ["table", "outcome"])
DB_RETRIES = Counter("earful_storage_write_retries_total", "Batch writes retried after a database failure.")

# A row PostgreSQL refuses (bad characters, out-of-range values) is poison, not an outage.
_POISON_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.ProgramLimitExceededError)
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


class StorageConsumer:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        pool: asyncpg.Pool,
        codecs: Codecs,
        dead_letters: DeadLetters,
        batch_size: int,
        batch_timeout_s: float,
    ) -> None:
        self.consumer = consumer
        self.pool = pool
        self.codecs = codecs
        self.dead_letters = dead_letters
        self.batch_size = batch_size
        self.batch_timeout_ms = int(batch_timeout_s * 1000)
        self.stopping = asyncio.Event()
        self.lag = LagReporter(consumer, SERVICE)

    async def run(self) -> None:
        """Consume until `stopping` is set; the batch in hand is finished (or left uncommitted)."""
        while not self.stopping.is_set():
            batch = await self.consumer.getmany(timeout_ms=self.batch_timeout_ms, max_records=self.batch_size)
            if batch:
                await self.handle(batch)
            await self.lag.report()

    async def handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        mentions: list[tuple[Any, tuple[Any, ...]]] = []
        alerts: list[tuple[Any, tuple[Any, ...]]] = []
        received = []
        for tp, messages in batch.items():
            codec = self.codecs.for_topic(tp.topic)
            for msg in messages:
                try:
                    record = codec.decode(msg.value)
                except DecodeError as exc:
                    await self.dead_letters.send(topic=msg.topic, partition=msg.partition, offset=msg.offset,
                                                 key=msg.key, value=msg.value, error=exc)
                    continue
                if tp.topic == ENRICHED:
                    mentions.append((msg, mention_row(record)))
                    received.append(record["mention"]["received_at"].timestamp())
                elif tp.topic == ALERTS:
                    alerts.append((msg, alert_row(record)))
        if not await self._write_until_durable(mentions, alerts):
            return  # shutting down during an outage: leave offsets uncommitted
        try:
            await self.consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in batch.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on (e.g. a long outage outlived max_poll_interval): the new owner
            # re-reads this batch and the idempotent write absorbs it.
            ERRORS.labels(SERVICE, "commit_failed").inc()
            log.warning("offsets not committed; the batch will be re-delivered", extra={"error": repr(exc)})
        now = time.time()
        for ts in received:
            PIPELINE_LATENCY.labels(SERVICE).observe(max(0.0, now - ts))
        for tp, msgs in batch.items():
            MESSAGES.labels(SERVICE, tp.topic, "stored").inc(len(msgs))
        BATCH_SECONDS.labels(SERVICE, "batch").observe(time.perf_counter() - started)

    async def _write_until_durable(self, mentions: list[tuple[Any, Any]], alerts: list[tuple[Any, Any]]) -> bool:
        """Write the batch, retrying outages; rows PostgreSQL refuses go to the DLQ one by one."""
        delay = 0.5
        while True:
            try:
                async with self.pool.acquire() as conn:
                    try:
                        self._count(await write_batch(conn, [r for _, r in mentions], [r for _, r in alerts]))
                    except _POISON_ERRORS as exc:
                        log.warning("batch refused by PostgreSQL; writing rows one by one", extra={"error": repr(exc)})
                        await self._write_one_by_one(conn, mentions, alerts)
                return True
            except _DB_ERRORS as exc:
                ERRORS.labels(SERVICE, StorageError.kind).inc()
                DB_RETRIES.inc()
                log.error("database write failed; retrying the same batch", extra={"error": repr(exc), "delay_s": round(delay, 2)})
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay * random.uniform(0.8, 1.2))
                    return False
                except asyncio.TimeoutError:
                    delay = min(delay * 2, 30.0)

    async def _write_one_by_one(self, conn: asyncpg.Connection, mentions: list[tuple[Any, Any]],
                                alerts: list[tuple[Any, Any]]) -> None:
        items = [(msg, [row], []) for msg, row in mentions] + [(msg, [], [row]) for msg, row in alerts]
        for msg, m_rows, a_rows in items:
            try:
                self._count(await write_batch(conn, m_rows, a_rows))
            except _POISON_ERRORS as exc:
                await self.dead_letters.send(topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key,
                                             value=msg.value, error=StorageError(f"PostgreSQL refused the row: {exc}"))

    @staticmethod
    def _count(result: Any) -> None:
        ROWS.labels("mentions", "inserted").inc(result.mentions_inserted)
        ROWS.labels("mentions", "duplicate").inc(result.mentions_duplicate)
        ROWS.labels("alerts", "written").inc(result.alerts)

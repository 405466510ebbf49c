"""The storage consumer: poll a batch, write it in one transaction, then commit its offsets.

Offsets are committed only after the transaction commits, so a crash at any point re-delivers
the batch and the idempotent write absorbs it. A PostgreSQL outage pauses the loop with backoff
(the batch is kept and retried; nothing is committed, nothing is lost). Undecodable records go
to the DLQ before the batch's offsets are committed.

Two stages overlap: while one batch is being written (PostgreSQL works, this process waits),
the next one is fetched and decoded. Writes and commits stay strictly in order, one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import Counter

from earful.core.errors import DecodeError, StorageError
from earful.core.kafka import Codecs, DeadLetters, LagReporter
from earful.core.metrics import BATCH_SECONDS, ERRORS, MESSAGES, PIPELINE_LATENCY
from earful.core.retry import Backoff, retry
from earful.core.runtime import stopped_by
from earful.core.topics import ALERTS, ENRICHED
from earful.storage.cases import CareBook
from earful.storage.writer import BrandHandles, WriteResult, WriterState, alert_row, mention_row, write_batch
from earful.watchlists import WatchlistSet
from earful.watchlists.owned import OwnedHandles

log = logging.getLogger(__name__)
SERVICE = "storage"
ROWS = Counter("earful_storage_rows_total", "Rows written by table and outcome.", ["table", "outcome"])
DB_RETRIES = Counter("earful_storage_write_retries_total", "Batch writes retried after a database failure.")

# A row PostgreSQL refuses (bad characters, out-of-range values) is poison, not an outage. asyncpg's COPY
# encodes each value on the client and raises ValueError, TypeError or OverflowError for one its column's type
# cannot take (a mention id that is not a UUID, a count beyond bigint): poison too, or the batch is retried forever.
_POISON_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.ProgramLimitExceededError,
                  ValueError, TypeError, OverflowError)
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


@dataclass
class Prepared:
    """A decoded batch waiting to be written: its rows, the offsets to commit after, when it began."""

    batch: dict[TopicPartition, list[Any]]
    mentions: list[tuple[Any, tuple[Any, ...]]]
    alerts: list[tuple[Any, tuple[Any, ...]]]
    received: list[float]
    started: float


class StorageConsumer:
    """The consume loop of the storage service: batches from Kafka into PostgreSQL, then their offsets."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        pool: asyncpg.Pool,
        codecs: Codecs,
        dead_letters: DeadLetters,
        batch_size: int,
        batch_timeout_s: float,
        *,
        watchlists: Callable[[], WatchlistSet] = lambda: WatchlistSet([]),
        retention_days: int | None = None,
        write_concurrency: int = 1,
        owned_handles: tuple[str, ...] = (),
        care_agents: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.consumer = consumer
        self.pool = pool
        self.codecs = codecs
        self.dead_letters = dead_letters
        self.batch_size = batch_size
        self.batch_timeout_ms = int(batch_timeout_s * 1000)
        self.watchlists = watchlists
        self.retention_days = retention_days
        self.write_concurrency = write_concurrency
        self.state = WriterState()
        self._brands: tuple[WatchlistSet | None, BrandHandles] = (None, BrandHandles())
        self.owned_handles = owned_handles  # EARFUL_OWNED_HANDLES
        self._owned: tuple[WatchlistSet | None, OwnedHandles] = (None, OwnedHandles())
        self.care_agents = dict(care_agents or {})  # EARFUL_CARE_AGENTS
        self._care: tuple[WatchlistSet | None, CareBook] = (None, CareBook())
        self.stopping = asyncio.Event()
        self.lag = LagReporter(consumer, SERVICE)

    def brands(self) -> BrandHandles:
        """The brand handles of the current watchlists (recomputed only when the set changes)."""
        current = self.watchlists()
        if self._brands[0] is not current:
            self._brands = (current, BrandHandles.of(current.watchlists.values()))
        return self._brands[1]

    def owned(self) -> OwnedHandles:
        """The owned accounts of the current watchlists and the setting (recomputed only when the set changes)."""
        current = self.watchlists()
        if self._owned[0] is not current:
            self._owned = (current, OwnedHandles.of(current.watchlists.values(), self.owned_handles))
        return self._owned[1]

    def care(self) -> CareBook:
        """The care policies (SLA, business hours, agents) of the current watchlists (recomputed when the set changes)."""
        current = self.watchlists()
        if self._care[0] is not current:
            self._care = (current, CareBook.of(current.watchlists.values(), self.care_agents))
        return self._care[1]

    async def run(self) -> None:
        """Consume until `stopping` is set; batches in hand are finished (or left uncommitted).

        Up to `write_concurrency` batches are written at once, each in its own transaction (the
        writer is idempotent, so their order in PostgreSQL does not matter); offsets are committed
        strictly in batch order, each only after its batch and every earlier one are durable.
        """
        in_flight: deque[tuple[Prepared, asyncio.Task[bool]]] = deque()
        try:
            while not self.stopping.is_set():
                batch = await self.consumer.getmany(timeout_ms=self.batch_timeout_ms, max_records=self.batch_size)
                await self.lag.report()
                if not batch:
                    if not await self._settle(in_flight, keep=0):
                        return
                    continue
                prepared = await self.prepare(batch)  # runs while earlier batches are being written
                if not await self._settle(in_flight, keep=self.write_concurrency - 1):
                    return  # shutting down during an outage: this batch stays uncommitted too
                in_flight.append((prepared, asyncio.create_task(
                    self._write_until_durable(prepared.mentions, prepared.alerts))))
            await self._settle(in_flight, keep=0)
        finally:
            for _, task in in_flight:
                task.cancel()

    async def _settle(self, in_flight: deque[tuple[Prepared, asyncio.Task[bool]]], keep: int) -> bool:
        """Finish the oldest writes until at most `keep` remain, committing each one's offsets in
        order; False when a write gave up because the service is stopping."""
        while len(in_flight) > keep:
            prepared, task = in_flight[0]
            if not await task:
                return False
            in_flight.popleft()
            await self._commit(prepared)
        return True

    async def handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Decode, write and commit one batch (both stages, one after the other)."""
        await self.write_and_commit(await self.prepare(batch))

    async def prepare(self, batch: dict[TopicPartition, list[Any]]) -> Prepared:
        """Decode a batch into rows; undecodable records go to the DLQ."""
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
                if tp.topic == ENRICHED and record.get("reprocessed_at") is None:  # re-scored: `earful reprocess` stored it
                    mentions.append((msg, mention_row(record)))
                    received.append(record["mention"]["received_at"].timestamp())
                elif tp.topic == ALERTS:
                    alerts.append((msg, alert_row(record)))
        return Prepared(batch, mentions, alerts, received, started)

    async def write_and_commit(self, prepared: Prepared) -> bool:
        """Write the batch until it is durable, then commit its offsets; False if stopped first."""
        if not await self._write_until_durable(prepared.mentions, prepared.alerts):
            return False  # shutting down during an outage: leave offsets uncommitted
        await self._commit(prepared)
        return True

    async def _commit(self, prepared: Prepared) -> None:
        """Commit a durable batch's offsets (and count it)."""
        batch, received, started = prepared.batch, prepared.received, prepared.started
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

    async def _write(self, conn: asyncpg.Connection, mentions: list[tuple[Any, ...]],
                     alerts: list[tuple[Any, ...]]) -> WriteResult:
        return await write_batch(conn, mentions, alerts, brands=self.brands(), owned=self.owned(), state=self.state,
                                 retention_days=self.retention_days, care=self.care())

    async def _write_until_durable(self, mentions: list[tuple[Any, Any]], alerts: list[tuple[Any, Any]]) -> bool:
        """Write the batch, retrying outages; False if the service began stopping during one."""

        def failed(exc: BaseException, delay: float) -> None:
            ERRORS.labels(SERVICE, StorageError.kind).inc()
            DB_RETRIES.inc()
            log.error("database write failed; retrying the same batch", extra={"error": repr(exc), "delay_s": round(delay, 2)})

        try:
            await retry(lambda: self._write_once(mentions, alerts), retry_on=_DB_ERRORS, backoff=Backoff(0.5, 30.0),
                        stop=self.stopping, on_retry=failed)
        except asyncio.CancelledError:
            if stopped_by(self.stopping):
                return False
            raise
        return True

    async def _write_once(self, mentions: list[tuple[Any, Any]], alerts: list[tuple[Any, Any]]) -> None:
        """One attempt at the batch in one transaction; rows PostgreSQL refuses go to the DLQ one by one."""
        async with self.pool.acquire() as conn:
            try:
                self._count(await self._write(conn, [r for _, r in mentions], [r for _, r in alerts]))
            except _POISON_ERRORS as exc:
                log.warning("batch refused by PostgreSQL; writing rows one by one", extra={"error": repr(exc)})
                await self._write_one_by_one(conn, mentions, alerts)

    async def _write_one_by_one(self, conn: asyncpg.Connection, mentions: list[tuple[Any, Any]],
                                alerts: list[tuple[Any, Any]]) -> None:
        items = [(msg, [row], []) for msg, row in mentions] + [(msg, [], [row]) for msg, row in alerts]
        for msg, m_rows, a_rows in items:
            try:
                self._count(await self._write(conn, m_rows, a_rows))
            except _POISON_ERRORS as exc:
                await self.dead_letters.send(topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key,
                                             value=msg.value, error=StorageError(f"PostgreSQL refused the row: {exc}"))

    @staticmethod
    def _count(result: WriteResult) -> None:
        ROWS.labels("mentions", "inserted").inc(result.mentions_inserted)
        ROWS.labels("mentions", "duplicate").inc(result.mentions_duplicate)
        ROWS.labels("mentions", "engagement_updated").inc(result.mentions_updated)
        ROWS.labels("mentions", "refused_erased").inc(result.mentions_erased)
        ROWS.labels("mentions", "refused_expired").inc(result.mentions_expired)
        ROWS.labels("alerts", "written").inc(result.alerts)

"""Transactional outboxes: rows committed in PostgreSQL, sent afterwards, at least once, in id order.

What storage publishes about its own decisions (erasures, sales leads, policy flags) is written in
the transaction that makes the decision, to a table whose rows have a `bigserial id` and a marker
column (`published_at`, or `delivered_at` for a webhook) that stays null until the destination
acknowledged the row. A `TableOutbox` sends the unmarked rows oldest first and marks them; one
publisher per table at a time (a transaction-level advisory lock), so rows go out in id order
even with several storage replicas. It stops at the first failure, so a later row never
overtakes an earlier one, and tries again later with backoff while the destination stays away.

`run` is the loop every storage outbox shares (earful.storage.outbox_loop): it listens on a
PostgreSQL channel that the writing transaction notifies, so a row is sent within moments of its
commit, and also looks every `interval_s` in case a notification was missed. Delivery is at
least once (a row acknowledged just before a crash is sent again): every record carries a
deterministic id that consumers deduplicate by.

The destination is a `Sink`: a Kafka topic (`KafkaSink`) or anything else with `send(row)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from earful.core.codec import AvroCodec
from earful.core.errors import BrokerError, EarfulError
from earful.core.metrics import ERRORS
from earful.storage.outbox_loop import NotifiedOutbox

log = logging.getLogger(__name__)

SERVICE = "storage"
INTERVAL_S = 5.0  # how often the loop looks for rows without a notification
SEND_TIMEOUT_S = 5.0  # longest one record may wait for the broker's acknowledgement
BATCH = 100  # rows per pass


@dataclass(frozen=True)
class OutboxTable:
    """Where an outbox's rows are and how it reports on them.

    `table` has a `bigint id` (the order) and the nullable timestamp column `marker`; `lock` is
    the advisory lock key of its one publisher; `channel` the NOTIFY channel that wakes it; `what`
    names the rows in logs.
    """

    table: str
    marker: str
    lock: int
    channel: str
    what: str
    published: Counter
    unpublished: Gauge
    failures: Counter  # labelled by error kind


class Sink(Protocol):
    """A destination of outbox rows. `send` returns once the row is acknowledged and raises an
    EarfulError (its `kind` is counted) when it was not."""

    async def send(self, row: Mapping[str, Any]) -> None: ...


class KafkaSink:
    """Sends each row as the Avro record `record(row)` to `topic`, keyed by `key(row)`."""

    def __init__(self, producer: AIOKafkaProducer, codec: AvroCodec, topic: str,
                 record: Callable[[Mapping[str, Any]], dict[str, Any]], key: Callable[[Mapping[str, Any]], str],
                 *, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.producer = producer
        self.codec = codec
        self.topic = topic
        self.record = record
        self.key = key
        self.send_timeout_s = send_timeout_s

    async def send(self, row: Mapping[str, Any]) -> None:
        value = self.codec.encode(self.record(row))  # EncodeError: counted, and the row waits
        try:
            await asyncio.wait_for(self.producer.send_and_wait(self.topic, value, key=self.key(row).encode()),
                                   self.send_timeout_s)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerError(f"cannot publish to {self.topic}: {exc!r}") from exc


class TableOutbox(NotifiedOutbox):
    """Sends a table's unmarked rows to a sink: `publish_pending` for one pass, `run` (the shared
    loop of earful.storage.outbox_loop, woken by the table's channel) until stopped."""

    def __init__(self, pool: asyncpg.Pool, table: OutboxTable, sink: Sink, *, interval_s: float = INTERVAL_S,
                 batch: int = BATCH, pending: str | None = None) -> None:
        super().__init__(pool, table.failures, interval_s=interval_s)
        self.channel = table.channel
        self.what = table.what
        self.table = table
        self.sink = sink
        self.batch = batch
        t = table
        # `pending` replaces the default query of unmarked rows ($1: the batch) when the sink needs more than
        # the table's columns (joined rows): it must return the table's `id` and keep the filter and order.
        self._pending = pending or f"SELECT * FROM {t.table} WHERE {t.marker} IS NULL ORDER BY id LIMIT $1"
        self._mark = f"UPDATE {t.table} SET {t.marker} = clock_timestamp() WHERE id = ANY($1::bigint[]) AND {t.marker} IS NULL"
        self._left = f"SELECT count(*) FROM {t.table} WHERE {t.marker} IS NULL"

    async def publish_pending(self) -> tuple[int, int]:
        """One pass: send unmarked rows in id order, up to `batch`, stopping at the first failure;
        (sent, still unsent). (0, -1) while another publisher is at it."""
        t = self.table
        sent: list[int] = []
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", t.lock):
                return 0, -1
            for row in await conn.fetch(self._pending, self.batch):
                try:
                    await self.sink.send(row)
                except EarfulError as exc:
                    t.failures.labels(exc.kind).inc()
                    ERRORS.labels(SERVICE, exc.kind).inc()
                    log.warning(f"{t.what} not sent yet; they will be retried",
                                extra={"table": t.table, "id": row["id"], "error": str(exc)})
                    break
                sent.append(int(row["id"]))
            if sent:
                await conn.execute(self._mark, sent)
            left = int(await conn.fetchval(self._left))
        t.published.inc(len(sent))
        t.unpublished.set(left)
        return len(sent), left

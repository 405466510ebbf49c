"""Publishing erasures to `earful.erasures.v1` after they are committed (a transactional outbox).

An erasure is durable in PostgreSQL (table `erasures`, `published_at` null) before anything is
sent; the storage service's loop (`ErasureOutbox.run`) publishes every unpublished erasure, oldest
first, and marks it once the broker acknowledged it. The loop listens on the PostgreSQL channel
`earful_erasures`, which `erase_author` notifies in its transaction, so an erasure made through the
API or by `earful storage erase` in another process is published within moments of its commit;
it also looks every `interval_s` in case a notification was missed (a lost listening connection).
Delivery is at least once (a record acknowledged just before a crash is sent again): consumers
deduplicate by `erasure_id`. One publisher at a time (a transaction-level advisory lock), so
erasures go out in id order even with several storage replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from earful.core.codec import AvroCodec
from earful.core.errors import BrokerError, EarfulError, EncodeError
from earful.core.metrics import ERRORS
from earful.core.retry import Backoff
from earful.core.topics import ERASURES
from earful.storage.erasure import ERASURES_CHANNEL

log = logging.getLogger(__name__)

SERVICE = "storage"
_LOCK = 0x65617277  # "earw": held by the one publisher of erasures
INTERVAL_S = 5.0  # how often the loop looks for erasures without a notification
SEND_TIMEOUT_S = 5.0  # longest one record may wait for the broker's acknowledgement
BATCH = 100  # erasures per pass

PUBLISHED = Counter("earful_erasures_published_total", "Erasures published to earful.erasures.v1.")
UNPUBLISHED = Gauge("earful_erasures_unpublished",
                    "Erasures committed but not yet acknowledged on earful.erasures.v1, as of the last pass.")
FAILURES = Counter("earful_erasure_publish_failures_total", "Failed attempts to publish an erasure, by error kind.",
                   ["kind"])

_PENDING = "SELECT * FROM erasures WHERE published_at IS NULL ORDER BY id LIMIT $1"
_MARK = "UPDATE erasures SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[]) AND published_at IS NULL"


def erasure_record(row: Any) -> dict[str, Any]:
    """An `erasures` row → its earful.erasures.v1 record (pure)."""
    return {"schema_version": 1, "erasure_id": int(row["id"]), "source": row["source"], "author_key": row["author_key"],
            "author_hashes": sorted(row["author_hashes"]), "erased_before": _ceil_ms(row["requested_at"]),
            "requested_at": row["requested_at"], "requested_via": row["requested_via"],
            "mentions_erased": int(row["mentions_erased"])}


def _ceil_ms(at: datetime) -> datetime:
    """`at` rounded up to the millisecond: the topic carries milliseconds, and a mention created in
    the same millisecond after the erasure's microsecond is still erased, so downstream must erase it too."""
    extra = at.microsecond % 1000
    return at + timedelta(microseconds=1000 - extra) if extra else at


class ErasureOutbox:
    """Publishes committed erasures: `publish_pending` for one pass, `run` as the service's loop."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, codec: AvroCodec, *,
                 interval_s: float = INTERVAL_S, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.pool = pool
        self.producer = producer
        self.codec = codec
        self.interval_s = interval_s
        self.send_timeout_s = send_timeout_s

    async def publish_pending(self) -> tuple[int, int]:
        """One pass: publish unpublished erasures in id order, up to BATCH, stopping at the first
        failure; (published, still unpublished). Nothing while another publisher is at it."""
        sent: list[int] = []
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK):
                return 0, -1
            for row in await conn.fetch(_PENDING, BATCH):
                try:
                    value = self.codec.encode(erasure_record(row))
                    await asyncio.wait_for(self.producer.send_and_wait(ERASURES, value, key=row["author_key"].encode()),
                                           self.send_timeout_s)
                except (KafkaError, TimeoutError, EncodeError) as exc:
                    error = exc if isinstance(exc, EarfulError) else BrokerError(f"cannot publish to {ERASURES}: {exc!r}")
                    FAILURES.labels(error.kind).inc()
                    ERRORS.labels(SERVICE, error.kind).inc()
                    log.warning("erasure not published yet; it will be retried",
                                extra={"erasure_id": row["id"], "error": str(error)})
                    break
                sent.append(int(row["id"]))
            if sent:
                await conn.execute(_MARK, sent)
            left = int(await conn.fetchval("SELECT count(*) FROM erasures WHERE published_at IS NULL"))
        PUBLISHED.inc(len(sent))
        UNPUBLISHED.set(left)
        return len(sent), left

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish erasures as they are committed until `stopping` is set; a broker or database
        outage is waited out with backoff."""
        self._wake = asyncio.Event()
        listener: asyncpg.Connection | None = None
        backoff = Backoff(self.interval_s, 60.0)
        try:
            while not stopping.is_set():
                delay = self.interval_s
                try:
                    if listener is None:
                        listener = await self.pool.acquire()
                        await listener.add_listener(ERASURES_CHANNEL, self._notified)
                    self._wake.clear()
                    published, left = await self.publish_pending()
                    if published:
                        log.info("published erasures", extra={"published": published})
                    if left > 0 and not published:  # the broker refuses: wait longer each time
                        delay = backoff.next_delay()
                    else:
                        backoff.reset()
                        if published and left > 0:
                            delay = 0
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                    FAILURES.labels("storage_error").inc()
                    ERRORS.labels(SERVICE, "storage_error").inc()
                    log.warning("could not read unpublished erasures; retrying", extra={"error": repr(exc)})
                    await self._release(listener)
                    listener = None
                    delay = backoff.next_delay()
                if await _wait(stopping, self._wake, delay):
                    return
        finally:
            await self._release(listener)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _release(self, listener: asyncpg.Connection | None) -> None:
        """Stop listening and give the connection back to the pool."""
        if listener is not None:
            with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresError, OSError):
                await listener.remove_listener(ERASURES_CHANNEL, self._notified)
            with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresError, OSError):
                await self.pool.release(listener)


async def _wait(stopping: asyncio.Event, wake: asyncio.Event, delay: float) -> bool:
    """Wait up to `delay` for a notification or the stop; True when stopping."""
    if delay > 0 and not wake.is_set():
        waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopping.wait())}
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
    return stopping.is_set()

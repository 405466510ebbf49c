"""Publishing corrections to `earful.corrections.v1` after they are committed (a transactional outbox).

A correction is durable in PostgreSQL before anything is sent: its row has `published_at` null
until the broker acknowledged its record, then the row is marked. The request that made the
correction tries to publish it at once; whatever that leaves (broker down, a timeout, the CLI
without a broker) the storage service's loop (`run`) publishes later, oldest first, with backoff
while the broker stays away. Delivery is at least once: a record acknowledged just before a crash,
or by a send that timed out here and succeeded anyway, is published again; consumers deduplicate
by `correction_id`.

One mention's corrections go out in id order: every publisher takes a per-mention advisory lock
(try-lock: a mention another publisher holds is skipped, not waited for) and sends that mention's
unpublished corrections oldest first, so a later correction never overtakes an earlier one on the
topic (the key, the mention id, keeps them in one partition).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from earful.core.codec import AvroCodec
from earful.core.errors import BrokerError, EarfulError, EncodeError
from earful.core.metrics import ERRORS
from earful.core.retry import Backoff, wait_or_stop
from earful.core.topics import CORRECTIONS
from earful.storage.corrections import FAILURES, Correction

log = logging.getLogger(__name__)

SERVICE = "storage"
_LOCK_CLASS = 0x65617266  # "earf": first key of the per-mention publishing locks (second: hash of the mention id)
INTERVAL_S = 5.0  # how often the loop looks for corrections left unpublished
SEND_TIMEOUT_S = 5.0  # longest one record may wait for the broker's acknowledgement
BATCH = 100  # mentions per pass of the loop

PUBLISHED = Counter("earful_corrections_published_total", "Corrections published to earful.corrections.v1.")
UNPUBLISHED = Gauge("earful_corrections_unpublished",
                    "Corrections committed but not yet acknowledged on earful.corrections.v1, as of the last pass.")

_PENDING_MENTIONS = """
SELECT mention_id FROM corrections WHERE published_at IS NULL GROUP BY mention_id ORDER BY min(id) LIMIT $1
"""
_PENDING_OF = "SELECT * FROM corrections WHERE mention_id = $1 AND published_at IS NULL ORDER BY id"
_MARK = "UPDATE corrections SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[]) AND published_at IS NULL"


class CorrectionOutbox:
    """Publishes committed corrections; `publish_mention` right after a request, `run` as the retry loop."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, codec: AvroCodec, *,
                 interval_s: float = INTERVAL_S, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.pool = pool
        self.producer = producer
        self.codec = codec
        self.interval_s = interval_s
        self.send_timeout_s = send_timeout_s

    async def publish_mention(self, mention_id: uuid.UUID | str) -> list[int]:
        """Publish the mention's unpublished corrections in order; the ids published. Stops at the
        first failure (counted and logged; the rest wait for the loop). Nothing when another
        publisher holds the mention."""
        async with self.pool.acquire() as conn, conn.transaction():
            mid = str(mention_id)
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, mid):
                return []
            pending = [Correction.of(r) for r in await conn.fetch(_PENDING_OF, uuid.UUID(mid))]
            sent = await self._send(pending)
            if sent:
                await conn.execute(_MARK, sent)
        PUBLISHED.inc(len(sent))
        return sent

    async def _send(self, pending: Sequence[Correction]) -> list[int]:
        sent: list[int] = []
        for c in pending:
            try:
                value = self.codec.encode(c.to_record())
                await asyncio.wait_for(self.producer.send_and_wait(CORRECTIONS, value, key=c.mention_id.encode()),
                                       self.send_timeout_s)
            except (KafkaError, TimeoutError, EncodeError) as exc:
                error = exc if isinstance(exc, EarfulError) else BrokerError(f"cannot publish to {CORRECTIONS}: {exc!r}")
                FAILURES.labels(error.kind).inc()
                ERRORS.labels(SERVICE, error.kind).inc()
                log.warning("correction not published yet; it will be retried",
                            extra={"correction_id": c.id, "mention_id": c.mention_id, "error": str(error)})
                break
            sent.append(c.id)
        return sent

    async def publish_pending(self) -> tuple[int, int]:
        """One pass: publish what is unpublished, oldest first, up to BATCH mentions;
        (published, still unpublished)."""
        async with self.pool.acquire() as conn:
            mentions = [r["mention_id"] for r in await conn.fetch(_PENDING_MENTIONS, BATCH)]
        published = 0
        for mid in mentions:
            published += len(await self.publish_mention(mid))
        async with self.pool.acquire() as conn:
            left = int(await conn.fetchval("SELECT count(*) FROM corrections WHERE published_at IS NULL"))
        UNPUBLISHED.set(left)
        return published, left

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish what requests left unpublished until `stopping` is set; a broker or database
        outage is waited out with backoff."""
        backoff = Backoff(self.interval_s, 60.0)
        while not stopping.is_set():
            delay = self.interval_s
            try:
                published, left = await self.publish_pending()
                if published:
                    log.info("published corrections left by earlier attempts", extra={"published": published})
                if left and not published:  # the broker refuses every record: wait longer each time
                    delay = backoff.next_delay()
                else:
                    backoff.reset()
                    if published and left:  # more than one pass's worth: go on at once
                        delay = 0
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                FAILURES.labels("storage_error").inc()
                ERRORS.labels(SERVICE, "storage_error").inc()
                log.warning("could not read unpublished corrections; retrying", extra={"error": repr(exc)})
                delay = backoff.next_delay()
            if await wait_or_stop(stopping, delay):
                return

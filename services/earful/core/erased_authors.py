"""The authors whose data was erased, as the services that handle mentions honour them.

Storage erases an author and publishes the erasure on the compacted `earful.erasures.v1`
(`earful.storage.erasure_outbox`); a replay of the raw or enriched topics still holds the author's
older records until their retention ends. `ErasedAuthors` reads that topic from the beginning
without a consumer group (every process learns every erasure) and follows it, keeping for each
hashed identity the latest `erased_before`; `erased(mention)` then says whether a mention belongs
to an erased author, matched exactly as the topic's contract says (docs/api.md, Erasures): the
lower-case hex SHA-256 of `source + "\\0" + lower-case handle or account id` among the erasure's
`author_hashes`, and `created_at` at or before its `erased_before`. Enrichment drops such raw
mentions and alerting such enriched ones, so a replay is neither enriched nor counted again.

Start-up reads the topic to its end before the service handles a mention (`wait_loaded`); an
empty topic costs one metadata and one offsets request. Records that do not decode are logged and
counted, never dead-lettered: every service re-reads the topic on every start.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from earful.core.codec import AvroCodec
from earful.core.errors import BrokerError, CodecError
from earful.core.kafka import note_progress, read_followed, stop_following, topic_partitions
from earful.core.kafka_security import client_kwargs, start_client
from earful.core.metrics import ERRORS
from earful.core.retry import Backoff
from earful.core.settings import Settings
from earful.core.topics import ERASURES

log = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 30.0  # longest a service waits at start-up to read the erasure topic to its end

ERASED_IDENTITIES = Gauge("earful_erased_identities",
                          "Hashed author identities (handles, account ids) this process drops mentions of.", ["service"])
ERASURE_RECORDS = Counter("earful_erasure_records_total", "Records read from earful.erasures.v1, by outcome"
                          " (applied, rejected).", ["service", "outcome"])


def author_hash(source: str, identity: str) -> str:
    """How the erasure topic names an author: SHA-256 of "<source>\\0<lower-case handle or id>" (storage
    remembers erasures by it, too)."""
    return hashlib.sha256(f"{source}\0{identity.lower()}".encode()).hexdigest()


class ErasedAuthors:
    """Hashed author identity → latest `erased_before`, fed by `earful.erasures.v1`."""

    def __init__(self, settings: Settings, codec: AvroCodec, service: str) -> None:
        self.settings = settings
        self.codec = codec
        self.service = service
        self._until: dict[str, datetime] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._next: dict[int, int] = {}  # partition -> next offset to read
        self._progress = asyncio.Condition()
        self._loaded = asyncio.Event()
        ERASED_IDENTITIES.labels(service).set(0)

    # --- asking ------------------------------------------------------------------------------

    def erased(self, mention: Mapping[str, Any]) -> bool:
        """Is `mention` (a raw mention record: source, author, created_at) by an erased author and
        created at or before that erasure?"""
        if not self._until:
            return False
        author = mention.get("author") or {}
        for identity in (author.get("handle"), author.get("id")):
            if identity:
                until = self._until.get(author_hash(mention["source"], identity))
                if until is not None and mention["created_at"] <= until:
                    return True
        return False

    @property
    def identities(self) -> int:
        """How many hashed identities are erased."""
        return len(self._until)

    async def wait_loaded(self) -> None:
        """Return once the topic was read to its end (at once after that)."""
        if not self._loaded.is_set():
            await self._loaded.wait()

    async def check(self) -> None:
        """Readiness: loaded, and still following the topic."""
        if not self._loaded.is_set():
            raise RuntimeError("erasures not loaded yet")
        if self._task is None or self._task.done():
            raise RuntimeError("not following the erasure topic")

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, timeout_s: float = LOAD_TIMEOUT_S) -> None:
        """Read the topic up to its end, then follow it; a BrokerError when the topic does not exist
        or cannot be read to its end within `timeout_s`."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, client_id=f"earful-{self.service}-erasures",
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms, **client_kwargs(self.settings),
        )
        await start_client(consumer, self.settings, f"the {self.service} erasure consumer")
        self._consumer = consumer
        deadline = time.monotonic() + timeout_s  # the whole load, the wait for the topic included
        try:
            partitions = await topic_partitions(consumer, ERASURES, timeout_s)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
        except KafkaError as exc:
            await self.stop()
            raise BrokerError(f"cannot read {ERASURES} from {self.settings.kafka_bootstrap}: {exc}") from exc
        except BrokerError:
            await self.stop()
            raise
        self._next = {tp.partition: 0 for tp in partitions}
        self._task = asyncio.create_task(self._follow(), name=f"{self.service}-erasures")
        async with self._progress:
            while not all(self._next[tp.partition] >= ends[tp] for tp in partitions):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._task.done():
                    await self.stop()
                    raise BrokerError(f"could not read {ERASURES} to its end within {timeout_s:g}s")
                try:
                    await asyncio.wait_for(self._progress.wait(), remaining)
                except TimeoutError:
                    pass
        self._loaded.set()
        log.info("erasures loaded", extra={"service": self.service, "identities": len(self._until)})

    async def stop(self) -> None:
        await stop_following(self._task, self._consumer)
        self._task, self._consumer = None, None

    async def _follow(self) -> None:
        """Apply records as they come; read failures are retried with backoff."""
        consumer = self._consumer
        assert consumer is not None
        backoff = Backoff(1.0, 10.0)
        while True:
            records = await read_followed(consumer, ERASURES, self.service, backoff)
            self.apply(records)
            await note_progress(self._progress, self._next, records)

    def apply(self, records: list[Any]) -> None:
        """Remember each erasure's hashes with the latest `erased_before` seen for them. A null
        value (a tombstone) forgets nothing: an erasure is for good."""
        for msg in records:
            if msg.value is None:
                continue
            try:
                erasure = self.codec.decode(msg.value)
            except CodecError as exc:
                ERASURE_RECORDS.labels(self.service, "rejected").inc()
                ERRORS.labels(self.service, exc.kind).inc()
                log.error("ignored an erasure record that does not decode",
                          extra={"service": self.service, "partition": msg.partition, "offset": msg.offset,
                                 "error": str(exc)[:500]})
                continue
            until = erasure["erased_before"]
            for h in erasure["author_hashes"]:
                known = self._until.get(h)
                if known is None or until > known:
                    self._until[h] = until
            ERASURE_RECORDS.labels(self.service, "applied").inc()
        ERASED_IDENTITIES.labels(self.service).set(len(self._until))


def follow_erasures(app: Any, settings: Settings, codec: AvroCodec, service: str, health: Any = None) -> ErasedAuthors:
    """An `ErasedAuthors` started and stopped with a Faust app (and a readiness check on `health`).
    Faust starts such services once the app runs, so the agents `wait_loaded()` before they judge."""
    erased = ErasedAuthors(settings, codec, service)

    class ErasuresService(mode.Service):
        async def on_start(self) -> None:
            await erased.start()

        async def on_stop(self) -> None:
            await erased.stop()

    app.service(ErasuresService)
    if health is not None:
        health.add_check("erasures", erased.check)
    return erased

"""From normalised records to the raw topic: dedup, backpressure, acks=all, per-connector metrics.

Every connector (push API, feeds, Mastodon, Bluesky, replay) hands its records to one
`Publisher`. It drops exact re-deliveries (same post, same text and engagement counts) with a
bounded memory, keeps at most `max_in_flight` mentions waiting for the broker, and returns only
once the broker acknowledged every record. A record is remembered as seen only after its ack,
so a failed publish never hides the retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from earful.core.codec import AvroCodec
from earful.core.errors import BackpressureError, BrokerError, EncodeError
from earful.core.metrics import ERRORS
from earful.core.retry import Backoff, retry
from earful.core.topics import RAW

log = logging.getLogger(__name__)

CONNECTORS = ("push", "feed", "mastodon", "bluesky", "replay")

FETCHED = Counter("earful_ingest_fetched_total", "Items read from a source (before dedup and filters), by connector.", ["connector"])
PRODUCED = Counter("earful_ingest_produced_total", "Mentions acknowledged by the broker, by connector.", ["connector"])
DUPLICATES = Counter("earful_ingest_duplicates_total", "Exact re-deliveries dropped by dedup, by connector.", ["connector"])
CONNECTOR_ERRORS = Counter("earful_ingest_errors_total", "Connector failures by connector and kind.", ["connector", "kind"])
LAG = Gauge("earful_ingest_lag_seconds", "Publication at the source → broker ack, of the newest mention produced, by connector.",
            ["connector"])
IN_FLIGHT = Gauge("earful_ingest_in_flight", "Mentions waiting for the broker's acknowledgement.")
DEDUP_SIZE = Gauge("earful_ingest_dedup_entries", "Mention observations held in the dedup memory.")

for _name in CONNECTORS:  # every series exists from the start, so dashboards show zeros, not gaps
    for _metric in (FETCHED, PRODUCED, DUPLICATES):
        _metric.labels(_name)


def record_error(connector: str, kind: str) -> None:
    """Count one connector failure (also on the service-wide failure counter)."""
    CONNECTOR_ERRORS.labels(connector, kind).inc()
    ERRORS.labels("ingest", kind).inc()


def observation_key(record: dict[str, Any]) -> bytes:
    """What makes two records the same delivery: the post, its text and its engagement counts.

    A later observation with new counts (or an edited text) is a different key, so it passes as
    an update; the observation time itself is not part of the key (re-fetching unchanged counts
    is a re-delivery).
    """
    e = record["engagement"]
    h = hashlib.blake2b(digest_size=16)
    h.update(record["mention_id"].encode())
    h.update(b"\x1f%d\x1f%d\x1f%d\x1f" % (e["likes"], e["reposts"], e["replies"]))
    h.update(record["text"].encode("utf-8", "surrogatepass"))
    return h.digest()


class Dedup:
    """A size- and time-bounded memory of recently produced observations.

    A key is remembered for `ttl_s` after its latest delivery, and forgotten earlier once
    `max_entries` newer keys arrived after its first (oldest first). The memory is one fixed
    table allocated at start (open addressing over the 128-bit keys, about 40 bytes a key): it does
    not grow as it fills, and a long-running ingest's memory stays flat.
    """

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        n = max(1, max_entries)
        size = 1 << max(4, (2 * n - 1).bit_length())  # at least twice the entries: probes stay short
        self._mask = size - 1
        self._slots = array("q", [-1]) * size  # table slot → ring position of its key; -1: empty
        self._hi = array("Q", [0]) * n  # the ring of keys in arrival order (first 8 and last 8 bytes)
        self._lo = array("Q", [0]) * n
        self._at = array("d", [-math.inf]) * n  # each key's latest delivery; -inf: the position is free
        self._next = 0  # the ring position the next new key takes (the oldest key's, once full)
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def __contains__(self, key: bytes) -> bool:
        pos = self._find(key)
        return pos >= 0 and self._clock() - self._at[pos] < self.ttl_s

    def add(self, keys: Iterable[bytes]) -> None:
        if self.max_entries == 0:
            return
        now = self._clock()
        for key in keys:
            pos = self._find(key)
            if pos >= 0:
                self._at[pos] = now
                continue
            pos = self._next
            if self._at[pos] != -math.inf:  # full: the oldest key goes
                self._remove(self._hi[pos], self._lo[pos])
            hi, lo = int.from_bytes(key[:8], "big"), int.from_bytes(key[8:16], "big")
            self._hi[pos], self._lo[pos], self._at[pos] = hi, lo, now
            i = lo & self._mask
            while self._slots[i] != -1:
                i = (i + 1) & self._mask
            self._slots[i] = pos
            self._live += 1
            self._next = (pos + 1) % len(self._at)
        DEDUP_SIZE.set(self._live)

    def _find(self, key: bytes) -> int:
        """The ring position of `key`, or -1."""
        if self.max_entries == 0:
            return -1
        hi, lo = int.from_bytes(key[:8], "big"), int.from_bytes(key[8:16], "big")
        i = lo & self._mask
        while (pos := self._slots[i]) != -1:
            if self._lo[pos] == lo and self._hi[pos] == hi:
                return pos
            i = (i + 1) & self._mask
        return -1

    def _remove(self, hi: int, lo: int) -> None:
        """Take a key out of the table, shifting the keys probed past it back (no tombstones)."""
        mask, slots = self._mask, self._slots
        i = lo & mask
        while (pos := slots[i]) != -1 and not (self._lo[pos] == lo and self._hi[pos] == hi):
            i = (i + 1) & mask
        if pos == -1:
            return
        j = i
        while True:
            j = (j + 1) & mask
            pos = slots[j]
            if pos == -1:
                break
            home = self._lo[pos] & mask
            # the key at j may move to the hole at i unless its home lies cyclically in (i, j]
            if (i < j and not i < home <= j) or (i > j and j < home <= i):
                slots[i] = pos
                i = j
        slots[i] = -1
        self._live -= 1


@dataclass
class PublishResult:
    produced: int = 0
    duplicates: int = 0
    mention_ids: list[str] = field(default_factory=list)


class Publisher:
    """Produces raw mentions and returns only once the broker acknowledged every one of them."""

    def __init__(self, producer: AIOKafkaProducer, codec: AvroCodec, timeout_s: float = 10.0, *,
                 max_in_flight: int = 20000, dedup: Dedup | None = None) -> None:
        self.producer = producer
        self.codec = codec
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.dedup = dedup if dedup is not None else Dedup(0, 1.0)
        self._in_flight = 0
        self._capacity = asyncio.Condition()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _fresh(self, records: list[dict[str, Any]], connector: str) -> tuple[list[dict[str, Any]], list[bytes]]:
        fresh, keys, batch_keys = [], [], set()
        for r in records:
            key = observation_key(r)
            if key in self.dedup or key in batch_keys:
                continue
            batch_keys.add(key)
            fresh.append(r)
            keys.append(key)
        if len(fresh) < len(records):
            DUPLICATES.labels(connector).inc(len(records) - len(fresh))
        return fresh, keys

    async def publish(self, records: list[dict[str, Any]], connector: str = "push", *, wait: bool = False) -> PublishResult:
        """Produce `records` (dropping exact re-deliveries) and wait for every ack.

        With `wait=False` (the push API) a full in-flight window raises BackpressureError at once;
        with `wait=True` (polling and streaming connectors) the caller waits for room instead.
        Raises BrokerError when the broker does not acknowledge within the timeout.
        """
        result = PublishResult(mention_ids=[r["mention_id"] for r in records])
        fresh, keys = self._fresh(records, connector)
        result.duplicates = len(records) - len(fresh)
        if not fresh:
            return result
        try:
            payloads = [(r["mention_id"].encode(), self.codec.encode(r)) for r in fresh]
        except EncodeError:
            record_error(connector, EncodeError.kind)
            raise
        await self._acquire(len(payloads), wait, connector)
        try:
            await self._send(payloads, connector)
        finally:
            await self._release(len(payloads))
        self.dedup.add(keys)
        result.produced = len(fresh)
        PRODUCED.labels(connector).inc(len(fresh))
        newest = max(r["created_at"] for r in fresh)
        LAG.labels(connector).set(max(0.0, (datetime.now(timezone.utc) - newest).total_seconds()))
        return result

    async def publish_until_done(self, records: list[dict[str, Any]], connector: str, stop: asyncio.Event,
                                 max_backoff_s: float = 60.0) -> PublishResult:
        """`publish` for connectors: wait for room, retry broker failures with backoff until acknowledged.

        Raises asyncio.CancelledError if `stop` is set before the records are acknowledged (the
        connector then keeps its cursor where it was, so nothing is skipped).
        """
        backoff = Backoff(0.5, max_backoff_s)

        async def attempt() -> PublishResult:
            nonlocal records
            try:
                return await self.publish(records, connector, wait=True)
            except EncodeError:
                records = self._encodable(records, connector)  # drop only the record(s) that cannot be encoded
                return await self.publish(records, connector, wait=True)

        def failed(exc: BaseException, delay: float) -> None:
            log.warning("publish failed; retrying", extra={"connector": connector, "error": str(exc)[:300],
                                                            "attempt": backoff.attempt, "retry_in_s": round(delay, 2)})

        return await retry(attempt, retry_on=(BrokerError,), backoff=backoff, stop=stop, on_retry=failed)

    def _encodable(self, records: list[dict[str, Any]], connector: str) -> list[dict[str, Any]]:
        good = []
        for r in records:
            try:
                self.codec.encode(r)
            except EncodeError as exc:
                log.warning("dropped a record that does not fit the schema",
                            extra={"connector": connector, "mention_id": r.get("mention_id"), "error": str(exc)[:300]})
                continue
            good.append(r)
        return good

    async def _send(self, payloads: list[tuple[bytes, bytes]], connector: str) -> None:
        async def send_all() -> None:
            # send() itself may wait for metadata when the broker is away, so the deadline covers it too.
            futures = [await self.producer.send(RAW, value, key=key) for key, value in payloads]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), self.timeout_s)
        except (TimeoutError, KafkaError) as exc:
            record_error(connector, BrokerError.kind)
            raise BrokerError(f"broker did not acknowledge the batch: {exc!r}") from exc

    async def _acquire(self, n: int, wait: bool, connector: str) -> None:
        async with self._capacity:
            def room() -> bool:  # a batch larger than the window goes alone rather than never
                return self._in_flight == 0 or self._in_flight + n <= self.max_in_flight

            if not room():
                if not wait:
                    record_error(connector, BackpressureError.kind)
                    raise BackpressureError(f"{self._in_flight} mentions already wait for the broker (limit {self.max_in_flight})")
                await self._capacity.wait_for(room)
            self._in_flight += n
            IN_FLIGHT.set(self._in_flight)

    async def _release(self, n: int) -> None:
        async with self._capacity:
            self._in_flight -= n
            IN_FLIGHT.set(self._in_flight)
            self._capacity.notify_all()

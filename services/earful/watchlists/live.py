"""The live watchlist set every service holds, fed by the compacted topic `earful.watchlists.v1`.

`WatchlistStore` reads the topic from the beginning without a consumer group (every process
sees every watchlist), applies the last write per key (a null value deletes), and swaps in a
new immutable `WatchlistSet` after each batch of changes; `current()` is always a complete set,
so a mention is never matched against half an update. Until the topic has had any record, the
store serves its seed (the YAML folder), so a service that starts before the storage service
has published still listens for something.

Records that do not decode or do not validate (a query this version cannot compile) are logged
and counted, and the previous version of that watchlist stays in force. They are not sent to
the dead-letter topic: every service re-reads this topic on every start, and each would
dead-letter the same record again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from earful.core.codec import AvroCodec
from earful.core.errors import BrokerError, CodecError, ConfigError, ValidationError
from earful.core.kafka import Codecs, note_progress, read_followed, stop_following, topic_partitions
from earful.core.kafka_security import client_kwargs
from earful.core.metrics import ERRORS
from earful.core.retry import Backoff
from earful.core.settings import Settings
from earful.core.topics import WATCHLISTS
from earful.watchlists.files import load_partial
from earful.watchlists.matcher import WatchlistSet
from earful.watchlists.model import Watchlist, from_record

log = logging.getLogger(__name__)

LIVE = Gauge("earful_watchlists", "Watchlists in force in this process.", ["service"])
UPDATES = Counter("earful_watchlist_updates_total", "Records read from earful.watchlists.v1, by outcome"
                  " (changed, deleted, unchanged, rejected).", ["service", "outcome"])
REVISION = Gauge("earful_watchlists_revision_info",
                 "1 for the revision of the watchlist set in force (compare it across services).", ["service", "revision"])
LAST_CHANGE = Gauge("earful_watchlists_last_change_timestamp_seconds",
                    "When this process last swapped in a changed watchlist set (Unix time).", ["service"])


@dataclass(frozen=True)
class Published:
    """A watchlist as the topic holds it."""

    watchlist: Watchlist
    updated_at: datetime | None
    updated_by: str | None
    partition: int
    offset: int


@dataclass(frozen=True)
class Change:
    """One watchlist that changed: `old` None = created, `new` None = deleted."""

    watchlist_id: str
    old: Watchlist | None
    new: Watchlist | None


ChangeCallback = Callable[[list[Change], WatchlistSet], Awaitable[None] | None]


def seed_from_folder(settings: Settings, service: str) -> WatchlistSet:
    """The folder's valid watchlists. A missing folder is a ConfigError; invalid files are logged,
    not fatal (the topic is what every service applies)."""
    require_folder(settings)
    found, errors = load_partial(settings.watchlists_dir)
    for error in errors:
        log.error("watchlist seed problem: %s", error, extra={"service": service})
    return WatchlistSet([w for w, _ in found])


def require_folder(settings: Settings) -> None:
    if not settings.watchlists_dir.exists():
        raise ConfigError(f"EARFUL_WATCHLISTS_DIR={settings.watchlists_dir}: no such folder or file")


class WatchlistStore:
    """Last-write-wins view of `earful.watchlists.v1`: `current()`, `get(id)`, change callbacks."""

    def __init__(self, settings: Settings, *, seed: WatchlistSet | None = None, service: str = "earful",
                 codec: AvroCodec | None = None) -> None:
        self.settings = settings
        self.service = service
        self.codec = codec or Codecs(settings).for_topic(WATCHLISTS)
        self._seed = seed
        self._published: dict[str, Published] = {}
        self._seen: set[str] = set()  # ids with any record, tombstones included
        self._current = seed if seed is not None else WatchlistSet()
        self._callbacks: list[ChangeCallback] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._next: dict[int, int] = {}  # partition -> next offset to read
        self._progress = asyncio.Condition()
        self._caught_up = False
        self._stopping = False
        self._show(None)

    # --- reading -----------------------------------------------------------------------------

    def current(self) -> WatchlistSet:
        """The complete set in force now (immutable; the next change swaps in a new one)."""
        return self._current

    def get(self, watchlist_id: str) -> Watchlist | None:
        return self._current.get(watchlist_id)

    def published(self, watchlist_id: str) -> Published | None:
        """The topic's current value for `watchlist_id` (None: never published, or deleted)."""
        return self._published.get(watchlist_id)

    def all_published(self) -> list[Published]:
        return [self._published[k] for k in sorted(self._published)]

    def ever_published(self, watchlist_id: str) -> bool:
        """Whether the topic has (or had, until deleted) this id."""
        return watchlist_id in self._seen

    @property
    def topic_has_records(self) -> bool:
        return bool(self._seen)

    def on_change(self, callback: ChangeCallback) -> None:
        """Call `callback(changes, new_set)` after every swap (sync or async; errors are logged)."""
        self._callbacks.append(callback)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, timeout_s: float = 30.0) -> None:
        """Read the topic up to its end (raises BrokerError after `timeout_s`), then follow it."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, client_id=f"earful-{self.service}-watchlists",
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms, **client_kwargs(self.settings),
        )
        self._consumer = consumer
        try:
            await consumer.start()
            partitions = await topic_partitions(consumer, WATCHLISTS, timeout_s)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
        except KafkaError as exc:
            await consumer.stop()
            self._consumer = None
            raise BrokerError(f"cannot read {WATCHLISTS} from {self.settings.kafka_bootstrap}: {exc}") from exc
        self._next = {tp.partition: 0 for tp in partitions}
        self._task = asyncio.create_task(self._follow(), name=f"{self.service}-watchlists")
        deadline = time.monotonic() + timeout_s
        async with self._progress:
            while not all(self._next[tp.partition] >= ends[tp] for tp in partitions):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._task.done():
                    await self.stop()
                    raise BrokerError(f"could not read {WATCHLISTS} to its end within {timeout_s:g}s")
                try:
                    await asyncio.wait_for(self._progress.wait(), remaining)
                except TimeoutError:
                    pass
        self._caught_up = True
        if self.topic_has_records:
            self._swap()
        log.info("watchlists loaded", extra={"service": self.service, "watchlists": len(self._current),
                                              "revision": self._current.revision,
                                              "from": "topic" if self.topic_has_records else "seed folder"})

    async def stop(self) -> None:
        self._stopping = True
        await stop_following(self._task, self._consumer)
        self._task, self._consumer = None, None

    async def check(self) -> None:
        """Readiness: the store has read the topic to its end and is following it."""
        if not self._caught_up:
            raise RuntimeError("watchlists not loaded yet")
        if self._task is None or self._task.done():
            raise RuntimeError("not following the watchlist topic")

    async def wait_for(self, partition: int, offset: int, timeout_s: float = 10.0) -> bool:
        """Wait until the record at (partition, offset) has been applied; False on timeout."""
        deadline = time.monotonic() + timeout_s
        async with self._progress:
            while self._next.get(partition, 0) <= offset:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._progress.wait(), remaining)
                except TimeoutError:
                    return False
        return True

    async def _follow(self) -> None:
        """Apply the topic's records as they come until stopped; read failures are retried with backoff."""
        consumer = self._consumer
        assert consumer is not None
        backoff = Backoff(1.0, 10.0)
        while not self._stopping:
            records = await read_followed(consumer, WATCHLISTS, self.service, backoff)
            changes = self.apply(records) if records else []
            await note_progress(self._progress, self._next, records)
            if changes:
                await self._notify(changes)

    # --- applying records --------------------------------------------------------------------

    def apply(self, records: list[Any]) -> list[Change]:
        """Apply consumer records in order and swap in the new set; returns what changed."""
        for msg in records:
            key = msg.key.decode("utf-8", errors="replace") if msg.key is not None else None
            if key is None:
                self._reject(msg, "record without a key (the key is the watchlist id)")
                continue
            if msg.value is None:
                self._seen.add(key)
                if self._published.pop(key, None) is not None:
                    UPDATES.labels(self.service, "deleted").inc()
                else:
                    UPDATES.labels(self.service, "unchanged").inc()
                continue
            try:
                record = self.codec.decode(msg.value)
                watchlist = from_record(record)
            except (CodecError, ValidationError) as exc:
                self._reject(msg, str(exc))
                continue
            if watchlist.id != key:
                self._reject(msg, f"key {key!r} differs from the record's id {watchlist.id!r}")
                continue
            self._seen.add(key)
            previous = self._published.get(key)
            self._published[key] = Published(watchlist, record.get("updated_at"), record.get("updated_by"),
                                             msg.partition, msg.offset)
            changed = previous is None or previous.watchlist.revision != watchlist.revision
            UPDATES.labels(self.service, "changed" if changed else "unchanged").inc()
        if not self.topic_has_records or not self._caught_up:
            return []  # the seed stays in force; while catching up, `start` builds the set once at the end
        return self._swap()

    def _swap(self) -> list[Change]:
        """Build the set the topic now holds and swap it in if anything changed; what changed."""
        before = self._current
        old = before.watchlists
        new = {k: p.watchlist for k, p in self._published.items()}

        def revision(members: dict[str, Watchlist], key: str) -> str | None:
            w = members.get(key)
            return w.revision if w is not None else None

        changes = [Change(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
                   if revision(old, k) != revision(new, k)]
        if changes or before is self._seed:
            self._current = WatchlistSet(new[k] for k in sorted(new))
            self._show(before)
            LAST_CHANGE.labels(self.service).set(time.time())
            for c in changes:
                log.info("watchlist %s", "deleted" if c.new is None else "created" if c.old is None else "updated",
                         extra={"service": self.service, "watchlist": c.watchlist_id,
                                "revision": c.new.revision if c.new else None})
        return changes

    def _show(self, before: WatchlistSet | None) -> None:
        LIVE.labels(self.service).set(len(self._current))
        if before is not None and before.revision != self._current.revision:
            try:
                REVISION.remove(self.service, before.revision)
            except KeyError:
                pass
        REVISION.labels(self.service, self._current.revision).set(1)

    def _reject(self, msg: Any, reason: str) -> None:
        UPDATES.labels(self.service, "rejected").inc()
        ERRORS.labels(self.service, ValidationError.kind).inc()
        log.error("ignored a watchlist record; the previous version stays in force",
                  extra={"service": self.service, "partition": msg.partition, "offset": msg.offset, "error": reason[:500]})

    async def _notify(self, changes: list[Change]) -> None:
        for callback in self._callbacks:
            try:
                result = callback(changes, self._current)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a callback's failure must not stop the store
                log.exception("watchlist change callback failed", extra={"service": self.service})


def live_watchlists(app: Any, settings: Settings, health: Any, service: str) -> WatchlistStore:
    """A store started and stopped with a Faust app, seeded from the folder, with a readiness check.

    This is the one seam a Faust service needs: hold the returned store and call `current()`
    (or `get(id)`) whenever a mention is processed.
    """
    store = WatchlistStore(settings, seed=seed_from_folder(settings, service), service=service)

    class WatchlistsService(mode.Service):
        async def on_start(self) -> None:
            await store.start()

        async def on_stop(self) -> None:
            await store.stop()

    app.service(WatchlistsService)
    health.add_check("watchlists", store.check)
    return store

"""What re-scoring (reprocess.py) and back-filling (backfill.py) share: walking stored mentions.

A job reads the mentions it covers in keyset order, (created_at, mention_id) after its cursor
(the `mentions_created_idx` index), a batch at a time, each batch with its rows locked inside the
transaction that rewrites them and moves the job's cursor, so a crash resumes after the last
committed batch. The erasure lock is shared as the writer shares it: an erasure waits for the
batch in hand, and the batch never sees a mention an erasure has removed. A session advisory lock
per job keeps a second process from running it; it goes with the connection, so a killed job can
be resumed at once. `Throttle` holds a job to a rate (mentions per second) so the live pipeline
keeps its share of the machine, and pauses it while the live consumers fall behind (`LiveLag`);
`Progress` shows a bar on a terminal, lines otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from earful.core.erased_authors import author_hash
from earful.core.kafka import make_consumer
from earful.core.kafka_security import client_kwargs, start_client
from earful.core.settings import Settings
from earful.core.topics import ENRICHED, RAW
from earful.storage.writer import BrandHandles
from earful.watchlists import WatchlistSet
from earful.watchlists.owned import OwnedHandles

log = logging.getLogger(__name__)

#: pg_advisory_lock(class, job_id) classes: which job kind a session lock belongs to.
REPROCESS_LOCK_CLASS = 0x65617272  # "earr"
BACKFILL_LOCK_CLASS = 0x65617262  # "earb"
DEADLOCK_ATTEMPTS = 3  # a batch that deadlocks with a concurrent write is retried this often
#: The live consumers a job yields to (`LiveLag`): the groups and topics whose delay delays alerts.
LIVE_CONSUMERS = (("earful-enrichment", RAW), ("earful-alerting", ENRICHED), ("earful-storage", ENRICHED))
DEFAULT_MAX_LIVE_LAG = 1_000  # records: a few seconds of a busy pipeline, above the noise of periodic commits
STALLED_S = 60.0  # a group behind whose committed offsets have not moved for this long is not waited for

#: The stored columns a job reads (all a raw mention needs, and every enrichment field).
STORED_COLUMNS = (
    "mention_id", "source", "source_id", "url", "author_id", "author_handle", "author_name", "author_followers",
    "text", "title", "country", "connector", "content_type", "declared_lang", "lang", "lang_confidence", "created_at",
    "received_at", "fetched_at", "enriched_at", "in_reply_to", "reposted_from", "likes", "reposts", "replies",
    "engagement_observed_at", "sentiment", "sentiment_score", "sentiment_reason", "sentiment_probabilities",
    "watchlist_ids", "entities", "risks", "matches", "models", "owned_watchlist_ids",
)
_JSON = frozenset({"sentiment_probabilities", "entities", "risks", "matches", "models"})


@dataclass(frozen=True)
class Selection:
    """Which stored mentions a job covers: created in [start, end), optionally of one watchlist and one source."""

    start: datetime
    end: datetime | None = None
    watchlist_id: str | None = None
    source: str | None = None

    def where(self, first: int = 1) -> tuple[str, list[Any]]:
        """SQL conditions on `mentions` and their values, numbered from `first`."""
        parts, args = [f"created_at >= ${first}"], list[Any]([self.start])
        for sql, value in (("created_at < ${}", self.end), ("facets @> ARRAY[${}]::text[]", _facet(self.watchlist_id)),
                           ("source = ${}", self.source)):
            if value is not None:
                args.append(value)
                parts.append(sql.format(first + len(args) - 1))
        return " AND ".join(parts), args


def _facet(watchlist_id: str | None) -> str | None:
    return None if watchlist_id is None else f"w:{watchlist_id}"


@dataclass(frozen=True)
class Cursor:
    """The last mention a job finished, in keyset order; None fields: not started."""

    created_at: datetime | None = None
    mention_id: uuid.UUID | None = None

    @classmethod
    def of(cls, job: Mapping[str, Any]) -> Cursor:
        return cls(job["cursor_created_at"], job["cursor_mention_id"])


def batch_query(selection: Selection, cursor: Cursor, limit: int, columns: Sequence[str] = STORED_COLUMNS) -> tuple[str, list[Any]]:
    """The next batch after `cursor`, in keyset order, rows locked for the transaction (pure)."""
    where, args = selection.where()
    if cursor.created_at is not None:
        args += [cursor.created_at, cursor.mention_id]
        where += f" AND (created_at, mention_id) > (${len(args) - 1}, ${len(args)}::uuid)"
    args.append(limit)
    sql = (f"SELECT {', '.join(columns)} FROM mentions WHERE {where}"
           f" ORDER BY created_at, mention_id LIMIT ${len(args)} FOR UPDATE")
    return sql, args


async def count_selected(conn: asyncpg.Connection, selection: Selection) -> int:
    """How many stored mentions `selection` covers now (a job's progress total)."""
    where, args = selection.where()
    return int(await conn.fetchval(f"SELECT count(*) FROM mentions WHERE {where}", *args))


def decoded(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as a dict, its jsonb columns decoded."""
    return {k: json.loads(v) if k in _JSON and isinstance(v, str) else v for k, v in row.items()}


def raw_mention(row: Mapping[str, Any]) -> dict[str, Any]:
    """The RawMention record (schemas/raw_mention.avsc) a stored row was enriched from (pure)."""
    return {
        "schema_version": 2, "mention_id": str(row["mention_id"]), "source": row["source"],
        "source_id": row["source_id"], "url": row["url"],
        "author": {"id": row["author_id"], "handle": row["author_handle"], "display_name": row["author_name"],
                   "followers": row["author_followers"]},
        "text": row["text"], "lang": row["declared_lang"], "created_at": row["created_at"],
        "received_at": row["received_at"], "in_reply_to": row["in_reply_to"], "reposted_from": row["reposted_from"],
        "engagement": {"likes": row["likes"], "reposts": row["reposts"], "replies": row["replies"],
                       "observed_at": row["engagement_observed_at"]},
        "title": row["title"], "country": row["country"], "connector": row["connector"],
        "content_type": row["content_type"], "fetched_at": row["fetched_at"],
    }


def erased_rows(rows: Sequence[Mapping[str, Any]], erased: Mapping[str, datetime]) -> set[int]:
    """Indexes of the rows whose author was erased at or after the mention was created (pure; as the
    writer refuses them: hashes of source and lower-case handle or account id)."""
    out = set()
    for i, row in enumerate(rows):
        for identity in (row["author_handle"], row["author_id"]):
            at = erased.get(author_hash(row["source"], identity)) if identity else None
            if at is not None and row["created_at"] <= at:
                out.add(i)
    return out


async def erasures_of(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> dict[str, datetime]:
    """Hashed identity → latest erasure, for the authors of `rows` that were ever erased."""
    hashes = sorted({author_hash(r["source"], i) for r in rows for i in (r["author_handle"], r["author_id"]) if i})
    if not hashes:
        return {}
    found = await conn.fetch("SELECT h, max(requested_at) AS at FROM erasures, unnest(author_hashes) AS h"
                             " WHERE h = ANY ($1::text[]) GROUP BY 1", hashes)
    return {r["h"]: r["at"] for r in found}


async def try_lock_job(conn: asyncpg.Connection, lock_class: int, job_id: int) -> bool:
    """Take the job's session lock on `conn` (False: another process runs it)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1::int4, $2::int4)", _int4(lock_class),
                                    job_id % (1 << 31)))


async def unlock_job(conn: asyncpg.Connection, lock_class: int, job_id: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1::int4, $2::int4)", _int4(lock_class), job_id % (1 << 31))


def _int4(value: int) -> int:
    return value - (1 << 32) if value >= (1 << 31) else value


def owned_after(old_ids: Sequence[str], old_owned: Sequence[str], new_ids: Sequence[str],
                decide: Callable[[list[str]], list[str]]) -> list[str]:
    """The watchlists the mention is owned for after its watchlists changed: a kept watchlist keeps the
    writer's decision, a new one is decided now (`decide`), a dropped one goes."""
    added = [w for w in new_ids if w not in old_ids]
    decided = set(decide(added)) if added else set()
    return [w for w in new_ids if (w in old_owned if w in old_ids else w in decided)]


class Throttle:
    """At most `rate` mentions per second on average (None: no limit), and, given `lag` (the records
    the live pipeline's consumers have still to read, `LiveLag`), a pause whenever that exceeds
    `max_lag` until it is back to half of it: a job yields to live mentions instead of delaying their
    alerts. After a pause the average starts again, so the job does not rush to make up the time.
    The clock and the sleep are injected for tests; `say` tells the operator about pauses."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = asyncio.sleep, *, lag: Callable[[], Awaitable[int]] | None = None,
                 max_lag: int = DEFAULT_MAX_LIVE_LAG, poll_s: float = 2.0,
                 say: Callable[[str], None] | None = None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        if max_lag < 1:
            raise ValueError("max_lag must be at least 1")
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.lag = lag
        self.max_lag = max_lag
        self.poll_s = poll_s
        self.say = say
        self.started = clock()
        self.done = 0
        self.paused_s = 0.0  # time spent waiting for the live pipeline
        self.pauses = 0

    def delay(self, n: int) -> float:
        """Seconds to wait after `n` more mentions so the average stays at most `rate` (pure)."""
        self.done += n
        if self.rate is None:
            return 0.0
        return max(0.0, self.started + self.done / self.rate - self.clock())

    async def pace(self, n: int) -> None:
        wait = self.delay(n)
        if wait > 0:
            await self.sleep(wait)
        if self.lag is None:
            return
        behind = await self.lag()
        if behind <= self.max_lag:
            return
        began = self.clock()
        self.pauses += 1
        if self.say is not None:
            self.say(f"the live pipeline is {behind} records behind (more than {self.max_lag}): paused")
        while behind > self.max_lag // 2:
            await self.sleep(self.poll_s)
            behind = await self.lag()
        self.paused_s += self.clock() - began
        if self.say is not None:
            self.say(f"the live pipeline caught up ({behind} records behind) after {self.clock() - began:.0f} s: resumed")
        self.started, self.done = self.clock(), 0


class LiveLag:
    """How many records the live pipeline's consumers have still to read: for each (group, topic) of
    `consumers`, the end offsets less the group's committed offsets, the most of any group.

    Read-only: the committed offsets are fetched as the group's coordinator keeps them, without
    joining the group (no rebalance of the live services). A group whose committed offsets have not
    moved for `stalled_s` while behind is not counted: it is stopped or gone (a service not running,
    a group left over), and waiting for it would stop the job for nothing. A failed read counts as
    not behind, with a warning: the job's own publishing fails on a broker that is really down."""

    def __init__(self, settings: Settings, consumers: Sequence[tuple[str, str]] = LIVE_CONSUMERS,
                 stalled_s: float = STALLED_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.consumers = tuple(consumers)
        self.stalled_s = stalled_s
        self.clock = clock
        self._groups: dict[str, AIOKafkaConsumer] = {}
        self._ends: AIOKafkaConsumer | None = None
        self._seen: dict[tuple[str, str], tuple[int, float]] = {}  # (group, topic) -> (committed offsets' sum, when it last moved)
        self.last: dict[str, int] = {}  # group -> records behind at the last read (stalled groups left out)

    async def start(self) -> None:
        self._ends = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, client_id="earful-history-lag",
                                      group_id=None, enable_auto_commit=False, **client_kwargs(self.settings))
        await start_client(self._ends, self.settings, "the live-lag reader")
        for group in sorted({g for g, _ in self.consumers}):
            consumer = make_consumer(self.settings, group, client_id="earful-history-lag")
            await start_client(consumer, self.settings, f"the live-lag reader of {group}")
            self._groups[group] = consumer

    async def stop(self) -> None:
        for consumer in [*self._groups.values(), *([self._ends] if self._ends else [])]:
            await consumer.stop()
        self._groups.clear()
        self._ends = None

    async def __call__(self) -> int:
        try:
            self.last = await self._read()
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("reading the live consumers' lag failed; not pausing", extra={"error": str(exc)[:300]})
            return 0
        return max(self.last.values(), default=0)

    async def _read(self) -> dict[str, int]:
        assert self._ends is not None, "start() first"
        now = self.clock()
        behind: dict[str, int] = {}
        ends: dict[TopicPartition, int] = {}  # each topic's end offsets, read once however many groups read it
        for group, topic in self.consumers:
            partitions = self._ends.partitions_for_topic(topic)
            if partitions is None:
                await self._ends.topics()  # the topic's metadata, once
                partitions = self._ends.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            if not tps:
                continue
            if tps[0] not in ends:
                ends.update(await self._ends.end_offsets(tps))
            committed = [await self._groups[group].committed(tp) for tp in tps]
            if all(c is None for c in committed):
                continue  # the group has never read this topic
            lag = sum(max(0, ends[tp] - (c or 0)) for tp, c in zip(tps, committed, strict=True))
            position = sum(c or 0 for c in committed)
            key = (group, topic)
            before = self._seen.get(key)
            moved = now if before is None or before[0] != position else before[1]
            self._seen[key] = (position, moved)
            if lag > 0 and now - moved >= self.stalled_s:
                continue  # behind and not reading: stopped or gone
            behind[group] = max(behind.get(group, 0), lag)
        return behind


class Progress:
    """A progress bar on standard error when it is a terminal, else a line every `every_s` seconds;
    silent when disabled."""

    def __init__(self, label: str, total: int, enabled: bool = True, every_s: float = 5.0) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.every_s = every_s
        self._last = 0.0
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total or None, unit="mention", desc=label, file=sys.stderr, dynamic_ncols=True)

    def update(self, done: int, **counts: int) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            self._bar.set_postfix(refresh=False, **counts)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            print(self.line(done, **counts), file=sys.stderr, flush=True)

    def line(self, done: int, **counts: int) -> str:
        """`label: done/total (pct%) k=v ...` (pure)."""
        pct = f" ({100.0 * done / self.total:.0f}%)" if self.total else ""
        extra = "".join(f" {k}={v}" for k, v in counts.items())
        return f"{self.label}: {done}/{self.total}{pct}{extra}"

    def close(self, done: int, **counts: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            self._bar.set_postfix(refresh=True, **counts)
            self._bar.close()
        elif self.enabled:
            print(self.line(done, **counts), file=sys.stderr, flush=True)


class AccountsInForce:
    """Brand and owned accounts (writer.BrandHandles, earful.watchlists.owned) of the watchlist set in
    force and EARFUL_OWNED_HANDLES, rebuilt only when the set changes."""

    def __init__(self, watchlists: Callable[[], WatchlistSet], owned_handles: tuple[str, ...] = ()) -> None:
        self.watchlists = watchlists
        self.owned_handles = owned_handles
        self._for: WatchlistSet | None = None
        self._owned, self._brands = OwnedHandles(), BrandHandles()

    def _refresh(self) -> None:
        current = self.watchlists()
        if current is not self._for:
            members = list(current.watchlists.values())
            self._for = current
            self._owned, self._brands = OwnedHandles.of(members, self.owned_handles), BrandHandles.of(members)

    def owned(self) -> OwnedHandles:
        self._refresh()
        return self._owned

    def brands(self) -> BrandHandles:
        self._refresh()
        return self._brands

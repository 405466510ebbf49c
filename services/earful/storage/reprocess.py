"""`earful reprocess`: stored mentions re-enriched with the models in force, in place and exactly.

A job (`reprocess_jobs`, migration 055) covers the mentions created in [--from, --to), optionally
of one watchlist (stored with it) and one source. It walks them in keyset order a batch at a time
(earful.storage.history), and per batch, in one transaction:

1. locks the batch's rows (and shares the erasure lock, as the writer does);
2. leaves out the mentions of erased authors: they are never re-scored, stored or published again;
3. runs the enrichment processor over the stored raw mentions (the same code and models as the
   enrichment service: language, entities, sentiment, risk and intent tags, watchlist matches with
   the watchlists in force), keeping every field a person corrected (`corrections`) as corrected;
4. for each mention whose enrichment changed (models and provenance included): publishes it to
   `earful.mentions.enriched.v1` with `reprocessed_at` set, so downstream consumers see the new
   values and model versions while storage and alerting do not count it as a new mention; then
   writes the new values to `mentions` and moves the mention's counts in every rollup from the old
   values to the new ones (earful.storage.contributions: volume, share of voice, entities,
   authors, customer questions);
5. moves the job's cursor and counters, and commits.

So a crash or a kill loses at most the batch in hand, which the resumed job (`--resume JOB`) does
again: its rollup changes were never committed, so nothing is counted twice (its records may be
published twice: consumers of the topic already handle a mention_id twice). A re-run with the same
models finds nothing changed and writes and publishes nothing. A newly matched watchlist for which
the author is one of the brand's own accounts is owned (earful.watchlists.owned), as the writer
would decide now; a watchlist the mention kept keeps the writer's decision.

The job runs at most `--rate` mentions per second (the models share the machine with the live
pipeline) and pauses while a live consumer is more than `--max-live-lag` records behind
(earful.storage.history.LiveLag), with a progress bar or progress lines on standard error; the
summary is printed last on standard output as one JSON object.

The storage layer cannot import enrichment (tests/unit/test_layering.py): `earful.cli` builds the
processor and hands it in as an `Enricher`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import struct
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import asyncpg

from earful.core.db import connect
from earful.core.errors import StorageError, ValidationError
from earful.core.kafka import Codecs, send_keyed_batches, start_producer
from earful.core.migrate import migrate
from earful.core.settings import Settings
from earful.core.topics import ENRICHED
from earful.storage.contributions import Contribution, move_contributions
from earful.storage.correction_tools import cli_principal, parse_time
from earful.storage.history import (
    DEADLOCK_ATTEMPTS,
    DEFAULT_MAX_LIVE_LAG,
    REPROCESS_LOCK_CLASS,
    AccountsInForce,
    Cursor,
    LiveLag,
    Progress,
    Selection,
    Throttle,
    batch_query,
    count_selected,
    decoded,
    erased_rows,
    erasures_of,
    owned_after,
    raw_mention,
    try_lock_job,
)
from earful.storage.writer import ERASURE_LOCK, BrandHandles, facets
from earful.watchlists.live import WatchlistStore, seed_from_folder
from earful.watchlists.matcher import WatchlistSource
from earful.watchlists.owned import OwnedHandles

log = logging.getLogger(__name__)

DEFAULT_RATE = 100.0  # mentions per second: a modest share of one core next to the live pipeline
DEFAULT_BATCH = 100
SCHEMA_VERSION = 4  # the enriched_mention version that has `reprocessed_at`
#: The stored columns behind each field a person can correct: a correction keeps them as they are.
CORRECTED_COLUMNS = {"sentiment": ("sentiment", "sentiment_score", "sentiment_reason", "sentiment_probabilities"),
                     "entities": ("entities",), "risks": ("risks",)}
#: The enrichment columns a re-scoring writes (and compares: enriched_at and facets follow from them).
RESCORED = ("lang", "lang_confidence", "sentiment", "sentiment_score", "sentiment_reason", "sentiment_probabilities",
            "watchlist_ids", "owned_watchlist_ids", "entities", "risks", "matches", "models")
_REAL = frozenset({"lang_confidence", "sentiment_score"})  # PostgreSQL `real`: compared at its precision


class Enricher(Protocol):
    """What a job needs of the enrichment processor (earful.enrichment.processor.EnrichmentProcessor)."""

    @property
    def models(self) -> dict[str, str]: ...

    def enrich(self, mentions: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]: ...


#: Sends EnrichedMention records and returns once the broker acknowledged every one.
Publish = Callable[[list[dict[str, Any]]], Awaitable[None]]


# --- what changes (pure) --------------------------------------------------------------------------------


def rescored(row: Mapping[str, Any], enriched: Mapping[str, Any], corrected: frozenset[str],
             owned: OwnedHandles) -> dict[str, Any]:
    """The RESCORED columns of a stored mention (`row`, decoded) after re-enrichment: the processor's
    values, but a field a person corrected keeps its stored value."""
    sentiment, language = enriched["sentiment"], enriched["language"]
    new: dict[str, Any] = {
        "lang": language["code"], "lang_confidence": float(language["confidence"]),
        "sentiment": sentiment["label"], "sentiment_score": float(sentiment["score"]),
        "sentiment_reason": sentiment["reason"], "sentiment_probabilities": sentiment.get("probabilities"),
        "watchlist_ids": list(enriched["watchlist_ids"]), "entities": list(enriched["entities"]),
        "risks": list(enriched["risks"]), "matches": list(enriched["matches"]), "models": dict(enriched["models"]),
    }
    for field in corrected:
        for column in CORRECTED_COLUMNS.get(field, ()):
            new[column] = row[column]
    new["owned_watchlist_ids"] = owned_after(
        row["watchlist_ids"], row["owned_watchlist_ids"], new["watchlist_ids"],
        lambda added: owned.owned_ids(added, row["source"], row["author_handle"], row["author_id"]))
    return new


def _real(value: Any) -> Any:
    """A float as PostgreSQL's `real` keeps it."""
    return None if value is None else struct.unpack("f", struct.pack("f", float(value)))[0]


def _canonical(column: str, value: Any) -> Any:
    if column in _REAL:
        return _real(value)
    if column in ("watchlist_ids", "owned_watchlist_ids"):
        return list(value or ())
    if isinstance(value, (dict, list)):
        return json.loads(json.dumps(value, ensure_ascii=False))  # as jsonb gives it back
    return value


def changed(row: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a re-scoring changes anything stored (pure): a re-run with the same models does not."""
    return any(_canonical(c, row[c]) != _canonical(c, new[c]) for c in RESCORED)


def enriched_record(row: Mapping[str, Any], new: Mapping[str, Any], enriched: Mapping[str, Any],
                    at: datetime) -> dict[str, Any]:
    """The EnrichedMention record published for a re-scored mention: its stored raw fields, its new
    values, `enriched_at` = `reprocessed_at` = `at` (pure)."""
    return {
        "schema_version": SCHEMA_VERSION, "mention": raw_mention(row),
        "language": {"code": new["lang"], "confidence": new["lang_confidence"],
                     "script": (enriched.get("language") or {}).get("script")},
        "entities": [{"origin": "unknown", **e} for e in new["entities"]],
        "sentiment": {"label": new["sentiment"], "score": new["sentiment_score"], "reason": new["sentiment_reason"],
                      "probabilities": new["sentiment_probabilities"]},
        "risks": new["risks"], "watchlist_ids": new["watchlist_ids"], "matches": new["matches"],
        "models": new["models"], "enriched_at": at, "reprocessed_at": at,
    }


_UPDATE = """
UPDATE mentions SET lang = $4, lang_confidence = $5, sentiment = $6, sentiment_score = $7, sentiment_reason = $8,
                    sentiment_probabilities = $9::jsonb, watchlist_ids = $10, owned_watchlist_ids = $11,
                    entities = $12::jsonb, risks = $13::jsonb, matches = $14::jsonb, models = $15::jsonb, facets = $16,
                    enriched_at = $17
WHERE source = $1 AND source_id = $2 AND created_at = $3
"""


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def update_args(row: Mapping[str, Any], new: Mapping[str, Any], at: datetime) -> tuple[Any, ...]:
    """The parameters of _UPDATE for one re-scored mention (pure)."""
    return (row["source"], row["source_id"], row["created_at"], new["lang"], new["lang_confidence"], new["sentiment"],
            new["sentiment_score"], new["sentiment_reason"], _dumps(new["sentiment_probabilities"]),
            new["watchlist_ids"], new["owned_watchlist_ids"], _dumps(new["entities"]), _dumps(new["risks"]),
            _dumps(new["matches"]), _dumps(new["models"]), facets(new["watchlist_ids"], new["entities"], new["risks"]), at)


# --- the job ---------------------------------------------------------------------------------------------


def selection_of(job: Mapping[str, Any]) -> Selection:
    return Selection(job["period_from"], job["period_to"], job["watchlist_id"], job["source"])


async def create_job(conn: asyncpg.Connection, selection: Selection, *, requested_by: str | None = None) -> asyncpg.Record:
    """A new job over `selection` (its total counted now), state running."""
    if selection.end is None:
        raise ValidationError("a reprocess job needs an end (--to)")
    total = await count_selected(conn, selection)
    return await conn.fetchrow(
        "INSERT INTO reprocess_jobs (period_from, period_to, watchlist_id, source, total, requested_by)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        selection.start, selection.end, selection.watchlist_id, selection.source, total, requested_by)


async def get_job(conn: asyncpg.Connection | asyncpg.Pool, job_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM reprocess_jobs WHERE job_id = $1", job_id)


async def corrected_fields(conn: asyncpg.Connection, mention_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, frozenset[str]]:
    """Mention → the fields a person corrected (or confirmed): those keep their value."""
    if not mention_ids:
        return {}
    rows = await conn.fetch("SELECT DISTINCT mention_id, field FROM corrections WHERE mention_id = ANY ($1::uuid[])",
                            list(mention_ids))
    out: dict[uuid.UUID, set[str]] = {}
    for r in rows:
        out.setdefault(r["mention_id"], set()).add(r["field"])
    return {k: frozenset(v) for k, v in out.items()}


@dataclass(frozen=True)
class BatchDone:
    """What one committed batch did."""

    scanned: int
    rescored: int
    unchanged: int
    erased: int


_ADVANCE = """
UPDATE reprocess_jobs SET cursor_created_at = $2, cursor_mention_id = $3, scanned = scanned + $4,
                          rescored = rescored + $5, unchanged = unchanged + $6, erased = erased + $7,
                          models = coalesce($8::jsonb, models), updated_at = now()
WHERE job_id = $1
RETURNING *
"""


class Reprocessor:
    """Runs one job's batches (see the module docstring) on a connection that holds the job's lock."""

    def __init__(self, conn: asyncpg.Connection, enricher: Enricher, publish: Publish, *,
                 owned: Callable[[], OwnedHandles] = OwnedHandles, brands: Callable[[], BrandHandles] = BrandHandles,
                 batch_size: int = DEFAULT_BATCH, now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.conn = conn
        self.enricher = enricher
        self.publish = publish
        self.owned = owned
        self.brands = brands
        self.batch_size = batch_size
        self.now = now

    async def run(self, job_id: int, throttle: Throttle | None = None, progress: Progress | None = None,
                  stopping: asyncio.Event | None = None) -> asyncpg.Record:
        """Batches until the job is done (or `stopping` is set between two); the job's row at the end."""
        job = await self.conn.fetchrow("UPDATE reprocess_jobs SET state = 'running', error = NULL, finished_at = NULL,"
                                       " updated_at = now() WHERE job_id = $1 RETURNING *", job_id)
        if job is None:
            raise ValidationError(f"no reprocess job {job_id}")
        throttle = throttle or Throttle(None)
        while stopping is None or not stopping.is_set():
            done = await self.batch(job_id)
            job = await get_job(self.conn, job_id)
            assert job is not None
            if progress is not None:
                progress.update(job["scanned"], rescored=job["rescored"], unchanged=job["unchanged"], erased=job["erased"])
            if done is None:
                break
            await throttle.pace(done.scanned)
        return job

    async def batch(self, job_id: int) -> BatchDone | None:
        """One batch in one transaction; None when the job had nothing left (it is then done). A
        deadlock with a concurrent write is retried."""
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                async with self.conn.transaction():
                    return await self._batch(job_id)
            except asyncpg.DeadlockDetectedError:
                if attempt == DEADLOCK_ATTEMPTS:
                    raise
                log.info("reprocess batch retried after a deadlock", extra={"job_id": job_id, "attempt": attempt})
        raise AssertionError("unreachable")

    async def _batch(self, job_id: int) -> BatchDone | None:
        conn = self.conn
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", ERASURE_LOCK)
        job = await conn.fetchrow("SELECT * FROM reprocess_jobs WHERE job_id = $1 FOR UPDATE", job_id)
        sql, args = batch_query(selection_of(job), Cursor.of(job), self.batch_size)
        rows = [decoded(r) for r in await conn.fetch(sql, *args)]
        if not rows:
            await conn.execute("UPDATE reprocess_jobs SET state = 'done', finished_at = now(), updated_at = now()"
                               " WHERE job_id = $1", job_id)
            return None
        gone = erased_rows(rows, await erasures_of(conn, rows))
        live = [r for i, r in enumerate(rows) if i not in gone]
        corrected = await corrected_fields(conn, [r["mention_id"] for r in live])
        at = self.now()
        outputs = (await asyncio.get_running_loop().run_in_executor(
            None, self.enricher.enrich, [raw_mention(r) for r in live], at)) if live else []
        owned = self.owned()
        updates, moves, records = [], [], []
        for row, out in zip(live, outputs):
            new = rescored(row, out, corrected.get(row["mention_id"], frozenset()), owned)
            if not changed(row, new):
                continue
            updates.append(update_args(row, new, at))
            moves.append((Contribution.of(row), Contribution.of(row, **new)))
            records.append(enriched_record(row, new, out, at))
        if records:
            await self.publish(records)  # before the commit: a crash after it publishes the batch again, never loses it
        if updates:
            await conn.executemany(_UPDATE, updates)
            await move_contributions(conn, moves, self.brands())
        last = rows[-1]
        models = json.dumps(outputs[0]["models"]) if outputs else None
        await conn.execute(_ADVANCE, job_id, last["created_at"], last["mention_id"], len(rows), len(updates),
                           len(live) - len(updates), len(gone), models)
        return BatchDone(len(rows), len(updates), len(live) - len(updates), len(gone))


# --- the command -----------------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def selection_from_args(args: argparse.Namespace) -> Selection:
    """--from/--to/--watchlist/--source as a Selection (ValidationError for a missing or empty period)."""
    start, end = parse_time("--from", args.start), parse_time("--to", args.end)
    if start is None or end is None:
        raise ValidationError("give --from and --to (or --resume JOB)")
    if end <= start:
        raise ValidationError(f"--to {args.end} must be after --from {args.start}")
    return Selection(start, end, args.watchlist, args.source)


def summary(job: Mapping[str, Any]) -> dict[str, Any]:
    """The job as the command's last line prints it."""
    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")

    models = job["models"]
    return {"job_id": job["job_id"], "state": job["state"], "from": iso(job["period_from"]), "to": iso(job["period_to"]),
            "watchlist": job["watchlist_id"], "source": job["source"], "total": job["total"],
            "scanned": job["scanned"], "rescored": job["rescored"], "unchanged": job["unchanged"],
            "erased": job["erased"], "models": json.loads(models) if isinstance(models, str) else models}


def reprocess_cli(args: argparse.Namespace, settings: Settings, build_enricher: Callable[[WatchlistSource], Enricher]) -> int:
    """`earful reprocess` (options in earful.cli): 0 when the job is done."""
    if args.resume is not None and any(v is not None for v in (args.start, args.end, args.watchlist, args.source)):
        raise ValidationError("--resume continues a job with its own period and filters: give it alone")
    selection = None if args.resume is not None else selection_from_args(args)
    if args.rate is not None and args.rate <= 0:
        raise ValidationError(f"--rate {args.rate:g}: must be positive (mentions per second)")
    if args.batch < 1:
        raise ValidationError(f"--batch {args.batch}: must be at least 1")
    if args.max_live_lag < 0:
        raise ValidationError(f"--max-live-lag {args.max_live_lag}: must be 0 (do not watch) or more")
    job = asyncio.run(_reprocess(args, settings, selection, build_enricher))
    print(json.dumps(summary(job)))
    return 0 if job["state"] == "done" else 1


async def _reprocess(args: argparse.Namespace, settings: Settings, selection: Selection | None,
                     build_enricher: Callable[[WatchlistSource], Enricher]) -> asyncpg.Record:
    conn = await connect(settings.database_url.get_secret_value())
    job_id: int | None = args.resume
    try:
        await migrate(conn)
        if job_id is not None:
            job = await get_job(conn, job_id)
            if job is None:
                raise ValidationError(f"--resume {job_id}: no such reprocess job")
            if job["state"] == "done":
                _say(f"reprocess job {job_id} is already done")
                return job
        store = WatchlistStore(settings, seed=seed_from_folder(settings, "reprocess"), service="reprocess")
        await store.start()
        producer = await start_producer(settings, "earful-reprocess")
        try:
            _say("loading the enrichment models ...")
            enricher = build_enricher(store)
            if job_id is None:
                assert selection is not None
                job_id = int((await create_job(conn, selection, requested_by=cli_principal()))["job_id"])
            if not await try_lock_job(conn, REPROCESS_LOCK_CLASS, job_id):
                raise StorageError(f"reprocess job {job_id} is being run by another process")
            job = await get_job(conn, job_id)
            assert job is not None
            _say(f"reprocess job {job_id}: {job['total']} mentions from {job['period_from']:%Y-%m-%d %H:%M} to "
                 f"{job['period_to']:%Y-%m-%d %H:%M}, at most {args.rate or DEFAULT_RATE:g}/s; if it stops, "
                 f"continue it with `earful reprocess --resume {job_id}`")
            codec = Codecs(settings).for_topic(ENRICHED)

            async def publish(records: list[dict[str, Any]]) -> None:
                sent = await send_keyed_batches(producer, ENRICHED, [(r["mention"]["mention_id"].encode(), codec.encode(r))
                                                                     for r in records])
                await asyncio.gather(*sent)

            per_set = AccountsInForce(store.current, settings.owned_handles)
            worker = Reprocessor(conn, enricher, publish, owned=per_set.owned, brands=per_set.brands,
                                 batch_size=min(args.batch, max(1, int(args.rate or DEFAULT_RATE))))
            progress = Progress(f"reprocess job {job_id}", int(job["total"]), enabled=not args.no_progress)
            lag = LiveLag(settings) if args.max_live_lag else None
            if lag is not None:
                await lag.start()
            throttle = Throttle(args.rate or DEFAULT_RATE, lag=lag, max_lag=args.max_live_lag or DEFAULT_MAX_LIVE_LAG,
                                say=_say)
            try:
                job = await worker.run(job_id, throttle, progress)
            except asyncio.CancelledError:
                _say(f"\ninterrupted: continue with `earful reprocess --resume {job_id}`")
                raise
            except Exception as exc:
                await _fail(settings, job_id, exc)
                raise
            finally:
                if lag is not None:
                    await lag.stop()
            progress.close(job["scanned"], rescored=job["rescored"], unchanged=job["unchanged"], erased=job["erased"])
            if throttle.pauses:
                _say(f"paused {throttle.pauses} times for the live pipeline, {throttle.paused_s:.0f} s in all")
            return job
        finally:
            await producer.stop()
            await store.stop()
    finally:
        await conn.close()


async def _fail(settings: Settings, job_id: int, exc: BaseException) -> None:
    """Record why the job stopped (on a fresh connection: the job's may be what failed)."""
    try:
        conn = await connect(settings.database_url.get_secret_value())
        try:
            await conn.execute("UPDATE reprocess_jobs SET state = 'failed', error = $2, updated_at = now()"
                               " WHERE job_id = $1", job_id, f"{type(exc).__name__}: {exc}"[:2000])
        finally:
            await conn.close()
    except (StorageError, asyncpg.PostgresError, OSError) as again:
        log.warning("could not record the job's failure", extra={"job_id": job_id, "error": repr(again)})

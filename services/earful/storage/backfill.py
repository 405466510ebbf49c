"""A new or changed watchlist applied to stored history, exactly: `earful watchlists backfill ID
--since T` and `POST /v1/watchlists/{id}/backfill`.

A job (`backfill_jobs`, migration 055) walks every stored mention created since `since`, in keyset
order a batch at a time (earful.storage.history), and matches its stored text with the watchlist
as it is now, through the same matcher enrichment uses (earful.watchlists.matcher, the text clipped
as enrichment clips it, the query's filters seeing the stored language, source, author, country and
link). A mention that now matches gains the watchlist (watchlist_ids, matches, its filter facet); one
that no longer does loses it; either way its counts move in every rollup: volume, sentiment, share
of voice, entities, authors and customer questions (earful.storage.contributions), so a recount
from `mentions` agrees, and the backtest, which reads `watchlist_ids`, sees the history the
watchlist would have had. A newly matched mention by one of the brand's own accounts is owned
(earful.watchlists.owned), as the writer would decide now. The other watchlists' matches, the
mention's enrichment and its model provenance stay as they are.

Each batch's changes and the job's cursor commit together, so a stopped job resumes after its last
batch without counting one twice, and a job run again changes nothing. If the watchlist changes
while its job runs, the job begins its walk again with the new definition; if it is deleted, the
job fails. Mentions stored after the walk passes them were matched by enrichment with the watchlist
in force, so the walk ends when it reaches the newest mention.

Jobs started over the API are run by the storage service in the background (`BackfillRunner`, one
process per job thanks to the job's session lock; a restarted service resumes them); jobs started
from the command line run in that command and are resumed with `--resume JOB`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import asyncpg

from earful.core.db import connect
from earful.core.errors import StorageError, ValidationError
from earful.core.migrate import migrate
from earful.core.retry import wait_or_stop
from earful.core.settings import Settings
from earful.storage.contributions import Contribution, move_contributions
from earful.storage.correction_tools import cli_principal, parse_time
from earful.storage.history import (
    BACKFILL_LOCK_CLASS,
    DEADLOCK_ATTEMPTS,
    AccountsInForce,
    Cursor,
    Progress,
    Selection,
    Throttle,
    batch_query,
    count_selected,
    owned_after,
    try_lock_job,
    unlock_job,
)
from earful.storage.writer import ERASURE_LOCK, BrandHandles, facets
from earful.watchlists import Watchlist, WatchlistSet
from earful.watchlists.live import WatchlistStore, seed_from_folder
from earful.watchlists.matcher import Match
from earful.watchlists.owned import OwnedHandles
from earful.watchlists.text import clip_text

log = logging.getLogger(__name__)

DEFAULT_RATE = 1000.0  # mentions per second: matching is cheap, the rollup writes are what the live writer shares
DEFAULT_BATCH = 500
POLL_S = 1.0  # how often the storage service looks for back-fills started over the API
START_LOCK_CLASS = 0x65617273  # "ears": starts of one watchlist's back-fill, one at a time
COLUMNS = ("mention_id", "source", "source_id", "created_at", "text", "lang", "url", "country", "author_handle",
           "author_id", "author_name", "author_followers", "sentiment", "watchlist_ids", "owned_watchlist_ids",
           "entities", "risks", "matches", "connector", "likes", "reposts", "replies", "engagement_observed_at",
           "received_at")
ACTIVE = ("pending", "running")
#: Errors that say the database went away (not that the job cannot be done).
_DB_GONE = (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
            OSError)


# --- matching one stored mention (pure) ---------------------------------------------------------------




def match_stored(one: WatchlistSet, row: Mapping[str, Any], text_limit: int) -> list[Match]:
    """The watchlist's matches in a stored mention, as enrichment would find them now."""
    return one.match(clip_text(row["text"], text_limit), lang=row["lang"], source=row["source"],
                     author=row["author_handle"], country=row["country"], url=row["url"])


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def backfilled(row: Mapping[str, Any], watchlist_id: str, found: Sequence[Match],
               owned: OwnedHandles) -> dict[str, Any] | None:
    """The mention's watchlist_ids, owned_watchlist_ids and matches with `watchlist_id` applied as
    `found` says, or None when they stay as they are (pure). Other watchlists' matches keep their place."""
    ids = list(row["watchlist_ids"])
    stored = list(_decoded(row["matches"]))
    mine = [{"watchlist_id": m.watchlist_id, "start": m.start, "end": m.end, "term": m.term} for m in found]
    if (watchlist_id in ids) == bool(found) and [m for m in stored if m["watchlist_id"] == watchlist_id] == mine:
        return None
    new_ids = sorted((set(ids) - {watchlist_id}) | ({watchlist_id} if found else set()))
    matches = sorted([m for m in stored if m["watchlist_id"] != watchlist_id] + mine, key=lambda m: (m["start"], m["end"]))
    owned_ids = owned_after(ids, list(row["owned_watchlist_ids"]), new_ids,
                            lambda added: owned.owned_ids(added, row["source"], row["author_handle"], row["author_id"]))
    return {"watchlist_ids": new_ids, "owned_watchlist_ids": owned_ids, "matches": matches}


# --- jobs ------------------------------------------------------------------------------------------------


def job_json(job: Mapping[str, Any]) -> dict[str, Any]:
    """A job as the API and the command show it."""
    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")

    total, scanned = int(job["total"]), int(job["scanned"])
    return {
        "job_id": int(job["job_id"]), "watchlist_id": job["watchlist_id"], "since": iso(job["since"]),
        "state": job["state"], "revision": job["revision"], "total": total, "scanned": scanned,
        "added": int(job["added"]), "removed": int(job["removed"]), "restarts": int(job["restarts"]),
        "progress": 1.0 if job["state"] == "done" else round(min(scanned / total, 1.0), 4) if total else 0.0,
        "cursor": iso(job["cursor_created_at"]), "rate": job["rate"], "requested_via": job["requested_via"],
        "requested_by": job["requested_by"], "created_at": iso(job["created_at"]), "started_at": iso(job["started_at"]),
        "updated_at": iso(job["updated_at"]), "finished_at": iso(job["finished_at"]), "error": job["error"],
    }


async def get_backfill(conn: asyncpg.Connection | asyncpg.Pool, job_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM backfill_jobs WHERE job_id = $1", job_id)


async def latest_backfill(conn: asyncpg.Connection | asyncpg.Pool, watchlist_id: str) -> asyncpg.Record | None:
    """The watchlist's most recent back-fill."""
    return await conn.fetchrow("SELECT * FROM backfill_jobs WHERE watchlist_id = $1 ORDER BY job_id DESC LIMIT 1",
                               watchlist_id)


async def job_is_held(conn: asyncpg.Connection, job_id: int) -> bool:
    """Whether a process holds the job's session lock (runs it now)."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid"
        " AND objid = $2::bigint::oid AND objsubid = 2 AND granted)", BACKFILL_LOCK_CLASS, job_id % (1 << 31)))


@dataclass(frozen=True)
class Started:
    """What asking for a back-fill did: `job` is the new job, or (created False) the one already active."""

    job: asyncpg.Record
    created: bool


async def start_backfill(conn: asyncpg.Connection, watchlist: Watchlist, since: datetime, *, via: str,
                         requested_by: str | None = None, rate: float | None = None) -> Started:
    """A new job for `watchlist` since `since`, unless one is active (pending, or running in some process;
    an API job waiting for the storage service counts too). A command-line job left running by a
    command that stopped is marked failed and superseded. A job from the command line starts running
    here, its session lock taken on `conn`; one from the API waits for the storage service."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1::int4, hashtext($2))", START_LOCK_CLASS, watchlist.id)
        active = await conn.fetchrow("SELECT * FROM backfill_jobs WHERE watchlist_id = $1 AND state = ANY ($2::text[])"
                                     " ORDER BY job_id DESC LIMIT 1", watchlist.id, list(ACTIVE))
        if active is not None:
            if active["requested_via"] == "api" or active["state"] == "pending" or await job_is_held(conn, active["job_id"]):
                return Started(active, False)
            await conn.execute("UPDATE backfill_jobs SET state = 'failed', error = 'abandoned: its command stopped and a"
                               " new back-fill was started', updated_at = now() WHERE job_id = $1", active["job_id"])
        job_id = int(await conn.fetchval("SELECT nextval(pg_get_serial_sequence('backfill_jobs', 'job_id'))"))
        if via == "cli" and not await try_lock_job(conn, BACKFILL_LOCK_CLASS, job_id):
            raise StorageError(f"back-fill job {job_id} is locked by another process")  # a fresh id: never expected
        # The API answers at once: the storage service counts an API job's mentions when it starts it.
        total = await count_selected(conn, Selection(since)) if via == "cli" else 0
        job = await conn.fetchrow(
            "INSERT INTO backfill_jobs (job_id, watchlist_id, since, state, revision, requested_via, requested_by, rate,"
            " total, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $4 = 'running' THEN now() END)"
            " RETURNING *", job_id, watchlist.id, since, "running" if via == "cli" else "pending", watchlist.revision,
            via, requested_by, rate, total)
        return Started(job, True)


_UPDATE = """
UPDATE mentions SET watchlist_ids = $4, owned_watchlist_ids = $5, matches = $6::jsonb, facets = $7
WHERE source = $1 AND source_id = $2 AND created_at = $3
"""
_ADVANCE = """
UPDATE backfill_jobs SET cursor_created_at = $2, cursor_mention_id = $3, scanned = scanned + $4, added = added + $5,
                         removed = removed + $6, updated_at = now()
WHERE job_id = $1
RETURNING *
"""
_RESTART = """
UPDATE backfill_jobs SET revision = $2, cursor_created_at = NULL, cursor_mention_id = NULL, scanned = 0,
                         restarts = restarts + 1, total = $3, updated_at = now()
WHERE job_id = $1
RETURNING *
"""


@dataclass
class Backfiller:
    """Runs back-fill jobs on a connection that holds their locks (see the module docstring)."""

    conn: asyncpg.Connection
    watchlists: Callable[[], WatchlistSet]
    owned: Callable[[], OwnedHandles] = OwnedHandles
    brands: Callable[[], BrandHandles] = BrandHandles
    text_limit: int = 20_000
    batch_size: int = DEFAULT_BATCH
    _one: tuple[str, WatchlistSet] | None = field(default=None, init=False, repr=False)

    async def run(self, job_id: int, throttle: Throttle | None = None, progress: Progress | None = None,
                  stopping: asyncio.Event | None = None) -> asyncpg.Record:
        """Batches until the job is done or failed (or `stopping` is set between two); its row at the end."""
        job = await self.conn.fetchrow(
            "UPDATE backfill_jobs SET state = 'running', error = NULL, finished_at = NULL,"
            " started_at = coalesce(started_at, now()), updated_at = now() WHERE job_id = $1 RETURNING *", job_id)
        if job is None:
            raise ValidationError(f"no back-fill job {job_id}")
        if job["scanned"] == 0 and job["cursor_created_at"] is None:
            job = await self.conn.fetchrow("UPDATE backfill_jobs SET total = $2 WHERE job_id = $1 RETURNING *", job_id,
                                           await count_selected(self.conn, Selection(job["since"])))
        throttle = throttle or Throttle(job["rate"] or DEFAULT_RATE)
        while stopping is None or not stopping.is_set():
            watchlist = self.watchlists().get(job["watchlist_id"])
            if watchlist is None:
                return await self.fail(job_id, f"watchlist {job['watchlist_id']} is no longer in force")
            if watchlist.revision != job["revision"]:
                total = await count_selected(self.conn, Selection(job["since"]))
                job = await self.conn.fetchrow(_RESTART, job_id, watchlist.revision, total)
                log.info("watchlist changed: back-fill begins again", extra={"job_id": job_id,
                                                                            "watchlist_id": watchlist.id})
            scanned = await self.batch(job_id, watchlist)
            job = await get_backfill(self.conn, job_id)
            assert job is not None
            if progress is not None:
                progress.update(job["scanned"], added=job["added"], removed=job["removed"])
            if scanned is None:
                break
            await throttle.pace(scanned)
        return job

    async def fail(self, job_id: int, error: str) -> asyncpg.Record:
        """Mark the job failed, saying why."""
        return await self.conn.fetchrow("UPDATE backfill_jobs SET state = 'failed', error = $2, updated_at = now()"
                                        " WHERE job_id = $1 RETURNING *", job_id, error)

    def _matcher(self, watchlist: Watchlist) -> WatchlistSet:
        if self._one is None or self._one[0] != f"{watchlist.id}@{watchlist.revision}":
            self._one = (f"{watchlist.id}@{watchlist.revision}", WatchlistSet([watchlist]))
        return self._one[1]

    async def batch(self, job_id: int, watchlist: Watchlist) -> int | None:
        """One batch in one transaction: the mentions scanned, or None when none were left (the job is
        then done). A deadlock with a concurrent write is retried."""
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                async with self.conn.transaction():
                    return await self._batch(job_id, watchlist)
            except asyncpg.DeadlockDetectedError:
                if attempt == DEADLOCK_ATTEMPTS:
                    raise
                log.info("back-fill batch retried after a deadlock", extra={"job_id": job_id, "attempt": attempt})
        raise AssertionError("unreachable")

    async def _batch(self, job_id: int, watchlist: Watchlist) -> int | None:
        conn = self.conn
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", ERASURE_LOCK)
        job = await conn.fetchrow("SELECT * FROM backfill_jobs WHERE job_id = $1 FOR UPDATE", job_id)
        sql, args = batch_query(Selection(job["since"]), Cursor.of(job), self.batch_size, COLUMNS)
        rows = await conn.fetch(sql, *args)
        if not rows:
            await conn.execute("UPDATE backfill_jobs SET state = 'done', finished_at = now(), updated_at = now()"
                               " WHERE job_id = $1", job_id)
            return None
        one, owned = self._matcher(watchlist), self.owned()
        updates, moves = [], []
        added = removed = 0
        for row in rows:
            new = backfilled(row, watchlist.id, match_stored(one, row, self.text_limit), owned)
            if new is None:
                continue
            had, has = watchlist.id in row["watchlist_ids"], watchlist.id in new["watchlist_ids"]
            added, removed = added + int(has and not had), removed + int(had and not has)
            entities, risks = _decoded(row["entities"]), _decoded(row["risks"])
            updates.append((row["source"], row["source_id"], row["created_at"], new["watchlist_ids"],
                            new["owned_watchlist_ids"], json.dumps(new["matches"], ensure_ascii=False),
                            facets(new["watchlist_ids"], entities, risks)))
            moves.append((Contribution.of(row), Contribution.of(row, **new)))
        if updates:
            await conn.executemany(_UPDATE, updates)
            await move_contributions(conn, moves, self.brands())
        last = rows[-1]
        await conn.execute(_ADVANCE, job_id, last["created_at"], last["mention_id"], len(rows), added, removed)
        return len(rows)


# --- the storage service's background runner ------------------------------------------------------------


class BackfillRunner:
    """Runs the back-fills started over the API, in the storage service, one at a time, each on its own
    connection holding the job's lock (so of several storage replicas one runs it, and a job whose
    process died is taken up again). Looks for work every `poll_s` seconds."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, watchlists: Callable[[], WatchlistSet],
                 owned: Callable[[], OwnedHandles], brands: Callable[[], BrandHandles], poll_s: float = POLL_S) -> None:
        self.settings = settings
        self.pool = pool
        self.watchlists = watchlists
        self.owned = owned
        self.brands = brands
        self.poll_s = poll_s

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.run_pending(stopping)
            except Exception as exc:  # the database away, or a bug: the service goes on, the next look tries again
                log.warning("back-fill runner failed; retrying later", extra={"error": repr(exc)})
            if await wait_or_stop(stopping, self.poll_s):
                return

    async def run_pending(self, stopping: asyncio.Event | None = None) -> int:
        """Run every API job waiting or left running that no process holds; how many were run."""
        ids = [r["job_id"] for r in await self.pool.fetch(
            "SELECT job_id FROM backfill_jobs WHERE state = ANY ($1::text[]) AND requested_via = 'api' ORDER BY job_id",
            list(ACTIVE))]
        if not ids:
            return 0
        ran = 0
        conn = await connect(self.settings.database_url.get_secret_value())
        try:
            for job_id in ids:
                if stopping is not None and stopping.is_set():
                    break
                if not await try_lock_job(conn, BACKFILL_LOCK_CLASS, job_id):
                    continue
                try:
                    job = await get_backfill(conn, job_id)
                    if job is None or job["state"] not in ACTIVE:
                        continue  # finished meanwhile by the process that held it
                    worker = Backfiller(conn, self.watchlists, self.owned, self.brands,
                                        self.settings.enrichment_text_limit())
                    log.info("back-fill started", extra={"job_id": job_id, "watchlist_id": job["watchlist_id"]})
                    try:
                        job = await worker.run(job_id, stopping=stopping)
                    except _DB_GONE:
                        raise  # the job stays running: the next look resumes it
                    except Exception as exc:  # anything else would fail again: the job fails, saying why
                        log.exception("back-fill failed", extra={"job_id": job_id})
                        await worker.fail(job_id, f"{type(exc).__name__}: {exc}"[:2000])
                        continue
                    log.info("back-fill " + ("finished" if job["state"] in ("done", "failed") else "paused"),
                             extra={"job_id": job_id, "state": job["state"], "added": job["added"],
                                    "removed": job["removed"], "scanned": job["scanned"]})
                    ran += 1
                finally:
                    await unlock_job(conn, BACKFILL_LOCK_CLASS, job_id)
        finally:
            await conn.close()
        return ran


# --- the command -----------------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def backfill_cli(args: argparse.Namespace, settings: Settings) -> int:
    """`earful watchlists backfill ID --since T` (options in earful.watchlists.cli): 0 when the job is done."""
    if args.resume is None and args.since is None:
        raise ValidationError("give --since T (or --resume JOB)")
    if args.resume is not None and args.since is not None:
        raise ValidationError("--resume continues a job with its own --since: give one of them")
    if args.rate is not None and args.rate <= 0:
        raise ValidationError(f"--rate {args.rate:g}: must be positive (mentions per second)")
    since = parse_time("--since", args.since)
    if since is not None and since > datetime.now(timezone.utc):
        raise ValidationError(f"--since {args.since} is in the future")
    job = asyncio.run(_backfill(args, settings, since))
    print(json.dumps(job_json(job)))
    return 0 if job["state"] == "done" else 1


async def _backfill(args: argparse.Namespace, settings: Settings, since: datetime | None) -> asyncpg.Record:
    conn = await connect(settings.database_url.get_secret_value())
    try:
        await migrate(conn)
        store = WatchlistStore(settings, seed=seed_from_folder(settings, "backfill"), service="backfill")
        await store.start()
        try:
            if args.resume is not None:
                job = await get_backfill(conn, args.resume)
                if job is None or job["watchlist_id"] != args.id:
                    raise ValidationError(f"--resume {args.resume}: no back-fill job of watchlist {args.id}")
                if job["state"] == "done":
                    _say(f"back-fill job {args.resume} is already done")
                    return job
                if not await try_lock_job(conn, BACKFILL_LOCK_CLASS, args.resume):
                    raise StorageError(f"back-fill job {args.resume} is being run by another process")
            else:
                watchlist = store.get(args.id)
                if watchlist is None:
                    raise ValidationError(f"watchlist {args.id!r} is not in force (see GET /v1/watchlists)")
                assert since is not None
                started = await start_backfill(conn, watchlist, since, via="cli", requested_by=cli_principal(),
                                               rate=args.rate)
                job = started.job
                if not started.created:
                    raise StorageError(f"back-fill job {job['job_id']} of {args.id} is already {job['state']}"
                                       f" ({job['requested_via']}); follow it with GET /v1/backfills/{job['job_id']}")
            job_id = int(job["job_id"])
            rate = args.rate or job["rate"] or DEFAULT_RATE
            _say(f"back-fill job {job_id}: watchlist {job['watchlist_id']} over {job['total']} mentions since "
                 f"{job['since']:%Y-%m-%d %H:%M}, at most {rate:g}/s; if it stops, continue it with "
                 f"`earful watchlists backfill {job['watchlist_id']} --resume {job_id}`")
            per_set = AccountsInForce(store.current, settings.owned_handles)
            worker = Backfiller(conn, store.current, per_set.owned, per_set.brands, settings.enrichment_text_limit(),
                                min(DEFAULT_BATCH, max(1, int(rate))))
            progress = Progress(f"back-fill {job['watchlist_id']}", int(job["total"]), enabled=not args.no_progress)
            try:
                job = await worker.run(job_id, Throttle(rate), progress)
            except asyncio.CancelledError:
                _say(f"\ninterrupted: continue with `earful watchlists backfill {job['watchlist_id']} --resume {job_id}`")
                raise
            progress.close(job["scanned"], added=job["added"], removed=job["removed"])
            if job["state"] == "failed":
                _say(f"back-fill job {job_id} failed: {job['error']}")
            return job
        finally:
            await store.stop()
    finally:
        await conn.close()

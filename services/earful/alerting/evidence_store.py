"""The evidence in PostgreSQL (migration 021), so a restarted alerting service explains alerts with
what it saw before the restart, and the API shows why an alert fired after it resolved.

* `EvidenceStore`: the three tables: recent posts and term history per watchlist, and the
  evidence each alert fired with (by alert id).
* `EvidenceKeeper`: the background side. Once PostgreSQL is up it restores the posts and history
  (before the detector starts counting, up to `RESTORE_WAIT_S`), then writes what was added every
  `FLUSH_S` in one transaction and prunes what is no longer needed every `PRUNE_S`.

History rows are added to (counts summed), never overwritten, so nothing is counted twice: a
post re-delivered after a restart is recognised among the restored posts, and counts written
before the restore are only read, never written again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import mode

from earful.alerting import SERVICE
from earful.alerting.explain import HOUR_MS, Evidence, Post
from earful.core.errors import StorageError
from earful.core.metrics import ERRORS

log = logging.getLogger(__name__)

FLUSH_S = 1.0
PRUNE_S = 60.0
RESTORE_WAIT_S = 30.0  # how long the detector waits for the restore before it counts without it
POSTS_KEPT_S = 86_400  # posts stored longer ago than this (wall clock) go whatever their event time
FORGET_AFTER = timedelta(days=7)  # evidence of alerts that stopped firing this long ago goes

_MERGE_HISTORY = """
INSERT INTO alert_term_history AS h (watchlist_id, hour, posts, terms, updated_at)
VALUES ($1, $2, $3, $4::jsonb, $5)
ON CONFLICT (watchlist_id, hour) DO UPDATE SET
    posts = h.posts + EXCLUDED.posts,
    terms = (SELECT coalesce(jsonb_object_agg(key, n), '{}'::jsonb) FROM (
        SELECT key, sum(value::bigint) AS n FROM (
            SELECT key, value FROM jsonb_each_text(h.terms)
            UNION ALL SELECT key, value FROM jsonb_each_text(EXCLUDED.terms)) kv
        GROUP BY key) s),
    updated_at = EXCLUDED.updated_at"""


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _clean(text: str) -> str:
    """PostgreSQL text and jsonb refuse NUL characters; a post may contain one."""
    return text.replace("\x00", "")


def _json(value: Any) -> str:
    """`value` as JSON for a jsonb column, without NUL characters in any string (jsonb refuses \\u0000).

    JSON writes a NUL as the escape ``\\u0000``; only a text with that escape (or with a backslash
    before "u0000") is walked and cleaned, almost none."""
    text = json.dumps(value, ensure_ascii=False)
    if "\\u0000" not in text:
        return text

    def scrub(v: Any) -> Any:
        if isinstance(v, str):
            return _clean(v)
        if isinstance(v, dict):
            return {_clean(str(k)): scrub(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [scrub(x) for x in v]
        return v
    return json.dumps(scrub(value), ensure_ascii=False)


class EvidenceStore:
    """Reads and writes the evidence tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def write(self, posts: list[tuple[str, Post]], history: dict[str, dict[int, tuple[int, Counter[str]]]],
                    now: datetime) -> None:
        """New posts and history counts, in one transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            if posts:
                await conn.execute(
                    "INSERT INTO alert_evidence_posts (watchlist_id, mention_id, created_at, post, stored_at)"
                    " SELECT w, m, c, p::jsonb, $5 FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS t(w, m, c, p)"
                    " ON CONFLICT (watchlist_id, mention_id) DO NOTHING",
                    [w for w, _ in posts], [p.mention_id for _, p in posts], [_ts(p.created_ms) for _, p in posts],
                    [_json(p.to_json()) for _, p in posts], now)
            rows = [(wid, _ts(hour * HOUR_MS), n, _json(dict(counts)), now)
                    for wid, hours in history.items() for hour, (n, counts) in hours.items() if n or counts]
            if rows:
                await conn.executemany(_MERGE_HISTORY, rows)

    async def load(self, max_posts: int, history_hours: int) -> tuple[list[tuple[str, Post]], list[tuple[str, int, int, Counter[str]]]]:
        """The newest `max_posts` posts of each watchlist (oldest first) and its last `history_hours` hours of counts."""
        post_rows = await self.pool.fetch(
            "SELECT watchlist_id, post FROM (SELECT watchlist_id, post, created_at, row_number() OVER"
            " (PARTITION BY watchlist_id ORDER BY created_at DESC) AS rank FROM alert_evidence_posts) r"
            " WHERE rank <= $1 ORDER BY watchlist_id, created_at", max_posts)
        history_rows = await self.pool.fetch(
            "SELECT watchlist_id, hour, posts, terms FROM (SELECT *, max(hour) OVER (PARTITION BY watchlist_id) AS newest"
            " FROM alert_term_history) h WHERE hour > newest - make_interval(hours => $1) ORDER BY watchlist_id, hour",
            history_hours)
        posts = [(r["watchlist_id"], Post.from_json(json.loads(r["post"]))) for r in post_rows]
        history = [(r["watchlist_id"], int(r["hour"].timestamp() * 1000) // HOUR_MS, int(r["posts"]),
                    Counter({k: int(v) for k, v in json.loads(r["terms"]).items()})) for r in history_rows]
        return posts, history

    async def prune(self, horizon_ms: int, max_posts: int, history_hours: int, now: datetime) -> None:
        """Forget posts outside each watchlist's horizon (or beyond its newest `max_posts`), history
        older than `history_hours` before its newest hour, terms seen once in closed hours, and the
        evidence of alerts that stopped firing a week ago."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM alert_evidence_posts p USING (SELECT watchlist_id, mention_id, created_at,"
                " max(created_at) OVER (PARTITION BY watchlist_id) AS newest,"
                " row_number() OVER (PARTITION BY watchlist_id ORDER BY created_at DESC) AS rank FROM alert_evidence_posts) r"
                " WHERE p.watchlist_id = r.watchlist_id AND p.mention_id = r.mention_id"
                " AND (r.created_at < r.newest - make_interval(secs => $1) OR r.rank > $2 OR p.stored_at < $3)",
                horizon_ms / 1000, max_posts, now - timedelta(seconds=POSTS_KEPT_S))
            await conn.execute(
                "DELETE FROM alert_term_history h USING (SELECT watchlist_id, max(hour) AS newest FROM alert_term_history"
                " GROUP BY 1) n WHERE h.watchlist_id = n.watchlist_id"
                " AND (h.hour <= n.newest - make_interval(hours => $1) OR h.updated_at < $2)",
                history_hours, now - timedelta(hours=history_hours * 2))
            await conn.execute(
                "UPDATE alert_term_history h SET compacted = true, terms = (SELECT coalesce(jsonb_object_agg(key, value),"
                " '{}'::jsonb) FROM jsonb_each(h.terms) WHERE value::text::bigint >= 2) FROM (SELECT watchlist_id,"
                " max(hour) AS newest FROM alert_term_history GROUP BY 1) n"
                " WHERE h.watchlist_id = n.watchlist_id AND h.hour < n.newest AND NOT h.compacted")
            await conn.execute(
                "DELETE FROM alert_evidence e WHERE recorded_at < $1 AND NOT EXISTS"
                " (SELECT 1 FROM alert_state s WHERE s.alert_id = e.alert_id AND s.status = 'firing')", now - FORGET_AFTER)


async def remember(pool: asyncpg.Pool, event: dict[str, Any], now: datetime) -> bool:
    """Keep the evidence a firing alert event carries (the first one recorded per alert id wins);
    False when the event has none."""
    explanation = event.get("explanation")
    if event.get("status") != "firing" or not explanation:
        return False
    severity = event.get("severity_assessment")
    await pool.execute(
        "INSERT INTO alert_evidence (alert_id, fingerprint, watchlist_id, rule, summary, explanation, severity, recorded_at)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8) ON CONFLICT (alert_id) DO NOTHING",
        event["alert_id"], event["fingerprint"], event["watchlist_id"], event["rule"], _clean(str(event.get("summary") or "")),
        _json(explanation), None if severity is None else _json(severity), now)
    return True


async def alert_evidence(pool: asyncpg.Pool, alert_id: str) -> dict[str, Any] | None:
    """What alert `alert_id` fired with: summary, claims (in the explanation), explanation, severity."""
    row = await pool.fetchrow("SELECT summary, explanation, severity, recorded_at FROM alert_evidence WHERE alert_id = $1",
                              alert_id)
    if row is None:
        return None
    return {"summary": row["summary"], "explanation": json.loads(row["explanation"]),
            "severity_assessment": None if row["severity"] is None else json.loads(row["severity"]),
            "recorded_at": row["recorded_at"].astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")}


class EvidenceKeeper(mode.Service):
    """Restores the evidence from PostgreSQL once it is up, then keeps writing and pruning it."""

    def __init__(self, evidence: Evidence, ready: asyncio.Event, pool: Callable[[], asyncpg.Pool | None],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.evidence = evidence
        self.ready = ready
        self.pool = pool
        self.clock = clock
        self.restored = asyncio.Event()
        self._store: EvidenceStore | None = None

    async def on_start(self) -> None:
        self.add_future(self._run())

    async def wait_restored(self, timeout_s: float = RESTORE_WAIT_S) -> bool:
        """Wait until the evidence is restored (at most `timeout_s`); whether it is."""
        try:
            await asyncio.wait_for(self.restored.wait(), timeout=timeout_s)
        except TimeoutError:
            log.warning("evidence not restored yet; counting without it", extra={"waited_s": timeout_s})
        return self.restored.is_set()

    async def _run(self) -> None:
        await self.ready.wait()
        pool = self.pool()
        assert pool is not None, "ready means connected"
        self._store = store = EvidenceStore(pool)
        while not self.restored.is_set():
            try:
                await self.restore(store)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                ERRORS.labels(SERVICE, StorageError.kind).inc()
                log.warning("cannot restore the evidence; retrying", extra={"error": str(exc)[:300]})
                await asyncio.sleep(2.0)
        pruned = time.monotonic()
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.flush(store)
            if time.monotonic() - pruned >= PRUNE_S:
                pruned = time.monotonic()
                try:
                    await store.prune(self.evidence.horizon_ms, self.evidence.max_posts, self.evidence.history_hours,
                                      self.clock())
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    ERRORS.labels(SERVICE, StorageError.kind).inc()
                    log.warning("pruning the evidence failed", extra={"error": str(exc)[:300]})

    async def restore(self, store: EvidenceStore) -> None:
        """Posts and history from PostgreSQL into memory (added to what was counted meanwhile)."""
        started = time.perf_counter()
        posts, history = await store.load(self.evidence.max_posts, self.evidence.history_hours)
        for wid, post in posts:
            self.evidence.add(wid, post, restored=True)
        for wid, hour, n, counts in history:
            self.evidence.history_of(wid).add(hour, counts, posts=n, pending=False)
        self.restored.set()
        log.info("evidence restored", extra={"posts": len(posts), "history_rows": len(history),
                                             "seconds": round(time.perf_counter() - started, 3)})

    async def flush(self, store: EvidenceStore) -> bool:
        """Write what was added since the last flush; on failure it stays queued for the next one."""
        if not self.restored.is_set():
            return False
        posts = list(self.evidence.pending)
        self.evidence.pending.clear()
        history = {wid: h.take_delta() for wid, h in self.evidence.history.items() if h.delta}
        if not posts and not history:
            return True
        try:
            await store.write(posts, history, self.clock())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            ERRORS.labels(SERVICE, StorageError.kind).inc()
            log.warning("writing the evidence failed; retrying", extra={"error": str(exc)[:300], "posts": len(posts)})
            self.evidence.pending.extendleft(reversed(posts))
            for wid, hours in history.items():
                h = self.evidence.history_of(wid)
                for hour, (n, counts) in hours.items():
                    m, d = h.delta.get(hour, (0, Counter()))
                    d.update(counts)
                    h.delta[hour] = (m + n, d)
            return False
        return True

    async def on_stop(self) -> None:
        """A last flush, so a clean restart loses nothing (bounded: a stop must not hang on PostgreSQL)."""
        if self._store is not None:
            try:
                await asyncio.wait_for(self.flush(self._store), timeout=3.0)
            except TimeoutError as exc:
                log.warning("last evidence flush skipped", extra={"error": str(exc)[:300]})

"""The store: alerting's PostgreSQL state (migration 020): alert states, groups, the notification log,
silences and acknowledgements. Every write is idempotent, so a re-delivered alert event or a
notification retried after a restart changes nothing twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from earful.alerting.notification.grouping import Alert, Matcher, NflogEntry, Silence, next_flush_after_change
from earful.alerting.notification.routing import Route


def _alert(row: asyncpg.Record) -> Alert:
    return Alert(
        fingerprint=row["fingerprint"], alert_id=row["alert_id"], status=row["status"],
        labels=json.loads(row["labels"]), starts_at=row["starts_at"], ends_at=row["ends_at"],
        group_key=row["group_key"], receivers=tuple(row["receivers"]), event=json.loads(row["event"]),
        acked_by=row["acked_by"],
    )


def _silence(row: asyncpg.Record) -> Silence:
    return Silence(str(row["id"]), tuple(Matcher(**m) for m in json.loads(row["matchers"])), row["starts_at"],
                   row["ends_at"], row["created_by"], row["comment"])


_ALERT_COLUMNS = ("SELECT s.fingerprint, s.alert_id, s.status, s.labels, s.starts_at, s.ends_at, s.group_key, s.receivers,"
                  " s.event, a.acked_by FROM alert_state s LEFT JOIN alert_acks a ON a.alert_id = s.alert_id")


class AlertStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- alerts and groups ---------------------------------------------------------------------

    async def record(self, event: dict[str, Any], group_key: str, receivers: Sequence[str], route: Route,
                     now: datetime) -> datetime | None:
        """Take an alert event (JSON-able, RFC 3339 times); returns when its group is due, or None
        when the event changed nothing (a duplicate, or older than what is stored).

        A new group's group_wait counts from the alert's detection (`detected_at`), not from this
        call: the time the event spent on its topic is part of the wait, not added to it."""
        async with self.pool.acquire() as conn, conn.transaction():
            changed = await conn.fetchval(
                "INSERT INTO alert_state (fingerprint, alert_id, status, group_key, receivers, labels, event, starts_at,"
                " ends_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                " ON CONFLICT (fingerprint) DO UPDATE SET alert_id = EXCLUDED.alert_id, status = EXCLUDED.status,"
                " group_key = EXCLUDED.group_key, receivers = EXCLUDED.receivers, labels = EXCLUDED.labels,"
                " event = EXCLUDED.event, starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at,"
                " updated_at = EXCLUDED.updated_at"
                " WHERE EXCLUDED.starts_at > alert_state.starts_at"
                " OR (EXCLUDED.alert_id = alert_state.alert_id AND alert_state.status = 'firing'"
                "     AND EXCLUDED.status = 'resolved')"
                " RETURNING 1",
                event["fingerprint"], event["alert_id"], event["status"], group_key, list(receivers),
                json.dumps(event["labels"]), json.dumps(event), _ts(event["starts_at"]), _ts(event.get("ends_at")), now,
            )
            if not changed:
                return None
            row = await conn.fetchrow("SELECT next_flush_at, last_flush_at FROM alert_groups WHERE group_key = $1 FOR UPDATE",
                                      group_key)
            detected = _ts(event.get("detected_at"))
            since = min(now, detected) if detected is not None else now
            due = next_flush_after_change(row["last_flush_at"] if row else None, row["next_flush_at"] if row else None,
                                          since, route)
            await conn.execute(
                "INSERT INTO alert_groups (group_key, route, next_flush_at, created_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (group_key) DO UPDATE SET next_flush_at = $3, route = $2", group_key, route.name, due, now)
            return due

    async def claim_due(self, now: datetime, limit: int = 100) -> list[str]:
        """Take the groups due by `now` (each exactly once across replicas) and mark them flushed."""
        rows = await self.pool.fetch(
            "UPDATE alert_groups SET next_flush_at = NULL, last_flush_at = $1 WHERE group_key IN ("
            " SELECT group_key FROM alert_groups WHERE next_flush_at <= $1 ORDER BY next_flush_at"
            " FOR UPDATE SKIP LOCKED LIMIT $2) RETURNING group_key", now, limit)
        return [r["group_key"] for r in rows]

    async def next_due(self) -> datetime | None:
        return await self.pool.fetchval("SELECT min(next_flush_at) FROM alert_groups")

    async def schedule(self, group_key: str, at: datetime) -> None:
        """Flush `group_key` at `at` unless it is already due earlier."""
        await self.pool.execute(
            "UPDATE alert_groups SET next_flush_at = least(coalesce(next_flush_at, $2), $2) WHERE group_key = $1",
            group_key, at)

    async def group_alerts(self, group_key: str) -> list[Alert]:
        rows = await self.pool.fetch(_ALERT_COLUMNS + " WHERE s.group_key = $1 ORDER BY s.starts_at", group_key)
        return [_alert(r) for r in rows]

    async def firing(self) -> list[Alert]:
        rows = await self.pool.fetch(_ALERT_COLUMNS + " WHERE s.status = 'firing' ORDER BY s.starts_at")
        return [_alert(r) for r in rows]

    async def alerts(self, status: str | None = None, limit: int = 500) -> list[Alert]:
        rows = await self.pool.fetch(_ALERT_COLUMNS + " WHERE ($1::text IS NULL OR s.status = $1)"
                                     " ORDER BY s.updated_at DESC LIMIT $2", status, limit)
        return [_alert(r) for r in rows]

    async def alert(self, key: str) -> Alert | None:
        """An alert by fingerprint or by alert id."""
        row = await self.pool.fetchrow(_ALERT_COLUMNS + " WHERE s.fingerprint = $1 OR s.alert_id = $1", key)
        return _alert(row) if row else None

    async def recover(self, now: datetime, horizon: timedelta = timedelta(days=1)) -> int:
        """After a start: flush every group that changed recently; the notification log keeps the
        receivers from hearing anything twice, and anything not yet delivered goes out now."""
        result = await self.pool.execute(
            "UPDATE alert_groups g SET next_flush_at = $1 WHERE next_flush_at IS NULL AND EXISTS ("
            " SELECT 1 FROM alert_state s WHERE s.group_key = g.group_key AND (s.status = 'firing' OR s.updated_at > $2))",
            now, now - horizon)
        return int(result.split()[-1])

    async def flush_firing_now(self, now: datetime) -> int:
        """Make every group with a firing alert due now (after a silence or acknowledgement changed)."""
        result = await self.pool.execute(
            "UPDATE alert_groups g SET next_flush_at = least(coalesce(next_flush_at, $1), $1) WHERE EXISTS ("
            " SELECT 1 FROM alert_state s WHERE s.group_key = g.group_key AND s.status = 'firing')", now)
        return int(result.split()[-1])

    async def forget(self, now: datetime, horizon: timedelta = timedelta(days=7)) -> None:
        """Drop resolved alerts (and empty groups) older than `horizon`."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM alert_state WHERE status = 'resolved' AND updated_at < $1", now - horizon)
            await conn.execute("DELETE FROM alert_groups g WHERE next_flush_at IS NULL AND NOT EXISTS"
                               " (SELECT 1 FROM alert_state s WHERE s.group_key = g.group_key)")
            await conn.execute("DELETE FROM alert_nflog n WHERE NOT EXISTS"
                               " (SELECT 1 FROM alert_groups g WHERE g.group_key = n.group_key)")

    # --- notification log ----------------------------------------------------------------------

    async def nflog(self, group_key: str, receiver: str) -> NflogEntry | None:
        row = await self.pool.fetchrow("SELECT announced, seq, sent_at FROM alert_nflog WHERE group_key = $1 AND receiver = $2",
                                       group_key, receiver)
        return NflogEntry(frozenset(row["announced"]), row["seq"], row["sent_at"]) if row else None

    async def delivered(self, group_key: str, receiver: str, entry: NflogEntry, row: dict[str, Any]) -> None:
        """Record a delivered notification: the receiver's log entry and the notification_log row, together."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO alert_nflog (group_key, receiver, announced, seq, sent_at) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (group_key, receiver) DO UPDATE SET announced = $3, seq = $4, sent_at = $5",
                group_key, receiver, sorted(entry.announced), entry.seq, entry.sent_at)
            await self._log(conn, row)

    async def log(self, row: dict[str, Any]) -> None:
        async with self.pool.acquire() as conn:
            await self._log(conn, row)

    @staticmethod
    async def _log(conn: asyncpg.Connection, row: dict[str, Any]) -> None:
        await conn.execute(
            "INSERT INTO notification_log (group_key, receiver, receiver_kind, status, alert_ids, fingerprints, attempts,"
            " outcome, http_status, error, sent_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            row["group_key"], row["receiver"], row["receiver_kind"], row["status"], row["alert_ids"], row["fingerprints"],
            row["attempts"], row["outcome"], row.get("http_status"), row.get("error"), row["sent_at"])

    async def notifications(self, group_key: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT id, group_key, receiver, receiver_kind, status, alert_ids, fingerprints, attempts, outcome,"
            " http_status, error, sent_at FROM notification_log WHERE ($1::text IS NULL OR group_key = $1)"
            " ORDER BY id DESC LIMIT $2", group_key, limit)
        return [dict(r) for r in rows]

    # --- silences and acknowledgements ---------------------------------------------------------

    async def silences(self, now: datetime | None = None, include_expired: bool = False) -> list[Silence]:
        if include_expired or now is None:
            rows = await self.pool.fetch("SELECT * FROM silences ORDER BY starts_at DESC LIMIT 1000")
        else:
            rows = await self.pool.fetch("SELECT * FROM silences WHERE ends_at > $1 ORDER BY starts_at", now)
        return [_silence(r) for r in rows]

    async def silence(self, silence_id: str) -> Silence | None:
        row = await self.pool.fetchrow("SELECT * FROM silences WHERE id = $1", uuid.UUID(silence_id))
        return _silence(row) if row else None

    async def add_silence(self, matchers: Sequence[Matcher], starts_at: datetime, ends_at: datetime, created_by: str,
                          comment: str, now: datetime) -> Silence:
        sid = uuid.uuid4()
        await self.pool.execute(
            "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $7)", sid,
            json.dumps([m.__dict__ for m in matchers]), starts_at, ends_at, created_by, comment, now)
        return Silence(str(sid), tuple(matchers), starts_at, ends_at, created_by, comment)

    async def expire_silence(self, silence_id: str, now: datetime) -> bool:
        """End a silence now (kept for the record); False if it does not exist or already ended."""
        result = await self.pool.execute(
            "UPDATE silences SET ends_at = greatest(starts_at + interval '1 millisecond', $2), updated_at = $2"
            " WHERE id = $1 AND ends_at > $2", uuid.UUID(silence_id), now)
        return result.endswith(" 1")

    async def ack(self, alert: Alert, by: str, comment: str, now: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO alert_acks (alert_id, fingerprint, acked_by, comment, acked_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (alert_id) DO NOTHING", alert.alert_id, alert.fingerprint, by, comment, now)


def _ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


async def reset_local_state(conn: asyncpg.Connection) -> None:
    """Forget alert states, groups, receivers' log entries, acknowledgements and the evidence (not
    silences, not the notification history). For a local stack only: its in-memory broker starts
    empty, so the detector starts afresh too, and a replay of the same sample must alert again
    rather than be taken for the episode a previous stack already notified."""
    await conn.execute("TRUNCATE alert_state, alert_groups, alert_nflog, alert_acks, alert_evidence_posts,"
                       " alert_term_history, alert_evidence")

"""The audit log of write and admin actions on the HTTP APIs: who, what, when, and the outcome.

Each entry is a structured log line (logger `earful.audit`, always) and, in services that have
PostgreSQL (storage, alerting), a row of `api_audit` (migration 009), written before the answer
leaves, so an action a client saw answered is in the table. A failed insert is logged as an
error and counted (`earful_audit_failures_total`) but does not change the answer: the action
already happened, and the log line still records it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import asyncpg
from prometheus_client import Counter

log = logging.getLogger("earful.audit")
FAILURES = Counter("earful_audit_failures_total", "Audit entries that could not be written to PostgreSQL (the log line was).")

#: The pool to write to, or None while the service has none (the entry is then only logged).
PoolLookup = Callable[[], "asyncpg.Pool | None"]

INSERT = ("INSERT INTO api_audit (at, service, key_name, scope, method, path, target, status, outcome, client)"
          " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")


def outcome_of(status: int) -> str:
    """ok (2xx, 3xx), denied (401, 403), refused (another 4xx), failed (5xx)."""
    if status in (401, 403):
        return "denied"
    if status >= 500:
        return "failed"
    return "refused" if status >= 400 else "ok"


@dataclass(frozen=True)
class AuditEntry:
    """One audited request."""

    at: datetime
    key: str | None  # the key's name; None when the API has no keys or none valid was sent
    scope: str
    method: str
    path: str
    target: str | None
    status: int
    outcome: str
    client: str | None

    @classmethod
    def now(cls, *, key: str | None, scope: str, method: str, path: str, target: str | None, status: int,
            client: str | None) -> AuditEntry:
        return cls(datetime.now(timezone.utc), key, scope, method, path, target, status, outcome_of(status), client)


class AuditLog:
    """Where one service's audit entries go: the `earful.audit` logger and, with a pool, `api_audit`."""

    def __init__(self, service: str, pool: PoolLookup | None = None) -> None:
        self.service = service
        self.pool = pool or (lambda: None)

    async def record(self, entry: AuditEntry) -> None:
        fields = asdict(entry)
        fields["at"] = entry.at.isoformat().replace("+00:00", "Z")
        log.info("audit %s %s %s", entry.method, entry.path, entry.outcome,
                 extra={"audit": True, **{f"audit_{k}": v for k, v in fields.items()}})
        pool = self.pool()
        if pool is None:
            return
        try:
            await pool.execute(INSERT, entry.at, self.service, entry.key, entry.scope, entry.method, entry.path,
                               entry.target, entry.status, entry.outcome, entry.client)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            FAILURES.inc()
            log.error("audit entry not stored", extra={"error": repr(exc), "audit_path": entry.path})

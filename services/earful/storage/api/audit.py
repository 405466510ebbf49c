"""`GET /v1/audit`: the audit log of write and admin requests (earful.core.audit), newest first.

Needs the `admin` scope: it names who did what to which ids. Keyset pages by id; filters by key,
outcome, service and time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from earful.core.auth import AuditedRoute, Scope, requires
from earful.storage.api.deps import Page, aware, db_pool, encode_cursor, pagination
from earful.storage.api.responses import ERRORS, jsonable

router = APIRouter(route_class=AuditedRoute)

COLUMNS = "id, at, service, key_name, scope, method, path, target, status, outcome, client"


class AuditEntryOut(BaseModel):
    id: int = Field(description="Increasing with time of writing.")
    at: datetime = Field(description="When the request was answered.")
    service: Literal["storage", "alerting"]
    key_name: str | None = Field(description="The key's name; null when the API has no keys or no valid key was sent.")
    scope: Literal["write", "admin"]
    method: str
    path: str
    target: str | None = Field(description="What the request acted on (an id; an erased author only by hash).")
    status: int = Field(description="The HTTP status answered.")
    outcome: Literal["ok", "denied", "refused", "failed"] = Field(
        description="ok (2xx), denied (401, 403), refused (another 4xx), failed (5xx).")
    client: str | None = Field(description="The client's address as the service saw it.")


class AuditPage(BaseModel):
    entries: list[AuditEntryOut] = Field(description="Newest first.")
    next_cursor: str | None


def audit_query(key: str | None, outcome: str | None, service: str | None, since: datetime | None,
                before_id: int | None, limit: int) -> tuple[str, list[Any]]:
    """The SQL and arguments of one page (every value a bind parameter)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("key_name", key), ("outcome", outcome), ("service", service)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if since is not None:
        args.append(since)
        where.append(f"at >= ${len(args)}")
    if before_id is not None:
        args.append(before_id)
        where.append(f"id < ${len(args)}")
    args.append(limit)
    sql = (f"SELECT {COLUMNS} FROM api_audit{' WHERE ' + ' AND '.join(where) if where else ''}"
           f" ORDER BY id DESC LIMIT ${len(args)}")
    return sql, args


@router.get("/v1/audit", tags=["audit"], response_model=AuditPage, responses=ERRORS, operation_id="listAuditEntries",
            dependencies=[requires(Scope.ADMIN)],
            summary="Who did what, when, with which outcome: every write and admin request, newest first.")
async def audit(
    key: str | None = Query(None, max_length=64, description="Only requests made with this key (its name)."),
    outcome: Literal["ok", "denied", "refused", "failed"] | None = Query(None, description="Only this outcome."),
    service: Literal["storage", "alerting"] | None = Query(None, description="Only requests to this service."),
    since: datetime | None = Query(None, description="Only requests from this time (RFC 3339 with a time zone)."),
    page: Page = Depends(pagination()),
    pool: asyncpg.Pool = Depends(db_pool),
) -> Any:
    after = page.after(["int"])
    sql, args = audit_query(key, outcome, service, aware("since", since), after[0] if after else None, page.limit + 1)
    rows, more = page.cut(await pool.fetch(sql, *args))
    return {"entries": [jsonable(r) for r in rows], "next_cursor": encode_cursor(rows[-1]["id"]) if more else None}

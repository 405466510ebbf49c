"""`GET /v1/alerts`: alert state changes, newest first, each with the notifications sent for it."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query

from earful.core.auth import AuditedRoute, Scope, requires
from earful.storage.api.deps import (
    WATCHLIST_PATTERN,
    ApiContext,
    Output,
    Page,
    Period,
    context,
    encode_cursor,
    output,
    pagination,
    period,
)
from earful.storage.api.queries import (
    NOTIFICATION_LOG_EXISTS,
    AlertFilter,
    alert_listing,
)
from earful.storage.api.responses import CSV_RESPONSE, jsonable

router = APIRouter(dependencies=[requires(Scope.READ)], route_class=AuditedRoute)

ALERT_COLUMNS = ("detected_at", "alert_id", "status", "rule", "watchlist_id", "severity", "summary", "observed",
                 "baseline", "score", "starts_at", "ends_at", "group_key", "notifications")


async def notification_log_exists(ctx: ApiContext) -> bool:
    """Whether the alerting service's notification log is there yet (asked until it is)."""
    if not ctx.notification_log_seen:
        ctx.notification_log_seen = bool(await ctx.pool.fetchval(NOTIFICATION_LOG_EXISTS))
    return ctx.notification_log_seen


@router.get("/v1/alerts", tags=["alerts"], responses=CSV_RESPONSE, operation_id="listAlertHistory",
            summary="Alert state changes, newest first, each with its notifications.")
async def alerts(
    watchlist: str | None = Query(None, pattern=WATCHLIST_PATTERN),
    status: Literal["firing", "resolved"] | None = Query(None),
    rule: str | None = Query(None, pattern=r"^[a-z_]{1,64}$"),
    severity: Literal["info", "warning", "critical"] | None = Query(None),
    when: Period = Depends(period("Detected from (inclusive).", "Detected before (exclusive).")),
    page: Page = Depends(pagination()),
    out: Output = Depends(output),
    ctx: ApiContext = Depends(context),
) -> Any:
    from_, to = when.bounds()
    kept = AlertFilter(watchlist=watchlist, status=status, rule=rule, severity=severity, from_=from_, to=to)
    after = page.after(["time", "str", "str"])
    sql, args = alert_listing(kept, (after[0], after[1], after[2]) if after else None, page.limit,
                              await notification_log_exists(ctx))
    rows, more = page.cut(await ctx.pool.fetch(sql, *args))
    items = [jsonable(r) for r in rows]
    next_cursor = encode_cursor(rows[-1]["detected_at"], rows[-1]["alert_id"], rows[-1]["status"]) if more else None
    return out.listing({"alerts": items, "next_cursor": next_cursor}, items, ALERT_COLUMNS, "alerts")

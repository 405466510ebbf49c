"""`GET /v1/watchlists/{watchlist_id}/kpis`: a watchlist's figures against the targets of its `kpis:`
block, with status and trend (earful.storage.kpis)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Depends

from earful.core.auth import AuditedRoute, Scope, requires
from earful.storage.api.deps import ApiContext, Period, bad_param, context, period, watchlist_path
from earful.storage.api.queries import MINUTE, WATCHLIST_TOTALS, ceil_to
from earful.storage.api.responses import WATCHLIST_RESPONSE
from earful.storage.api.watchlists import known_watchlist
from earful.storage.dashboard_views import compared_watchlists
from earful.storage.kpis import Window, watchlist_kpis
from earful.watchlists import Watchlist

router = APIRouter(dependencies=[requires(Scope.READ)], route_class=AuditedRoute)

UTC = timezone.utc
KPI_DEFAULT = timedelta(days=7)
NEWEST = "SELECT max(bucket) FROM mention_rollups_minute WHERE watchlist_id = $1"


@router.get("/v1/watchlists/{watchlist_id}/kpis", tags=["trends"], responses=WATCHLIST_RESPONSE,
            operation_id="getWatchlistKpis",
            summary="The watchlist's KPIs (net sentiment, share of voice, first response, answered within SLA) over a "
                    "period: value, target, status (met / at_risk / missed) and trend against the previous period.")
async def kpis(
    watchlist_id: str = watchlist_path(),
    when: Period = Depends(period("Start (inclusive; rounded down to the minute). Default: 7 days before `to`.",
                                  "End (exclusive; rounded up to the minute). Default: just after the watchlist's "
                                  "newest stored mention (now without any).")),
    ctx: ApiContext = Depends(context),
) -> dict[str, Any]:
    from_, to = when.bounds()
    w = await known_watchlist(ctx, watchlist_id)
    if to is None:
        newest = await ctx.pool.fetchval(NEWEST, watchlist_id)
        to = newest + timedelta(minutes=1) if newest else ceil_to(datetime.now(UTC), MINUTE)
        if from_ is not None and from_ >= to:
            raise bad_param("query", "from", "must be before 'to' (the default 'to' is just after the newest mention)")
    window = Window(from_ or to - KPI_DEFAULT, to)
    watchlists = ctx.watchlists()
    totals = [dict(r) for r in await ctx.pool.fetch(WATCHLIST_TOTALS)]
    subject = w or Watchlist(watchlist_id, watchlist_id, "topic")
    report = await watchlist_kpis(ctx.pool, subject, window, compared=compared_watchlists(watchlist_id, totals, watchlists))
    body = report.to_dict()
    body["configured"] = w is not None
    return body

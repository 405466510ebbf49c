"""Campaigns: `GET /v1/campaigns` and `GET /v1/campaigns/{id}`, the live lift of a campaign against
the matched period before launch (earful.storage.campaigns)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam

from earful.core.auth import AuditedRoute, Scope, requires
from earful.storage.api.deps import WATCHLIST_PATTERN, ApiContext, aware, bad_param, context
from earful.storage.api.queries import WATCHLIST_TOTALS
from earful.storage.api.responses import ERRORS, iso
from earful.storage.campaigns import campaign_charts, campaign_lift, campaign_watchlists
from earful.storage.dashboard_views import compared_watchlists, zone

router = APIRouter(dependencies=[requires(Scope.READ)], route_class=AuditedRoute)

UTC = timezone.utc
MAX_LISTED = 50
AS_OF_DOC = "Measure the lift as of this time (RFC 3339 with a zone). Default: now."
TZ_DOC = "IANA time zone of the chart labels, e.g. Europe/Paris. Default: UTC."


def _as_of(value: datetime | None) -> datetime:
    return aware("as_of", value) or datetime.now(UTC)


@router.get("/v1/campaigns", tags=["campaigns"], responses=ERRORS, operation_id="listCampaigns",
            summary="The campaign watchlists, latest launch first, each with its lift so far (no posts, no charts).")
async def campaigns(as_of: datetime | None = Query(None, description=AS_OF_DOC),
                    ctx: ApiContext = Depends(context)) -> dict[str, Any]:
    when = _as_of(as_of)
    watchlists = ctx.watchlists()
    found = campaign_watchlists(watchlists)[:MAX_LISTED]
    totals = [dict(r) for r in await ctx.pool.fetch(WATCHLIST_TOTALS)] if found else []
    out = []
    for w in found:
        lift = await campaign_lift(ctx.pool, w, as_of=when, compared=compared_watchlists(w.id, totals, watchlists),
                                   top_posts=0)
        body = lift.to_dict()
        body.pop("series")
        body.pop("posts")
        body["href"] = f"#campaign?id={w.id}"
        out.append(body)
    return {"as_of": iso(when), "campaigns": out}


@router.get("/v1/campaigns/{campaign_id}", tags=["campaigns"],
            responses={**ERRORS, 404: {"description": "No configured campaign watchlist has this id."}},
            operation_id="getCampaign",
            summary="A campaign's live lift against the matched period before launch: volume, reach, net sentiment and "
                    "share of voice with confidence intervals, the buckets of both periods, the posts that drive it, "
                    "and SVG charts.")
async def campaign(
    campaign_id: str = PathParam(..., pattern=WATCHLIST_PATTERN, description="The campaign watchlist's id."),
    as_of: datetime | None = Query(None, description=AS_OF_DOC),
    align: Literal["week", "adjacent"] = Query("week", description="`week`: the baseline covers the same hours of the "
                                               "week, whole weeks before launch; `adjacent`: it ends at launch."),
    posts: int = Query(10, ge=0, le=50, description="How many top posts (by engagement) to list."),
    tz: str | None = Query(None, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$", description=TZ_DOC),
    ctx: ApiContext = Depends(context),
) -> dict[str, Any]:
    when = _as_of(as_of)
    try:
        where = zone(tz)
    except ValueError as exc:
        raise bad_param("query", "tz", str(exc)) from exc
    watchlists = ctx.watchlists()
    w = watchlists.watchlists.get(campaign_id)
    if w is None or w.kind != "campaign":
        raise HTTPException(404, detail=f"campaign_id: no campaign watchlist {campaign_id!r} is configured")
    totals = [dict(r) for r in await ctx.pool.fetch(WATCHLIST_TOTALS)]
    lift = await campaign_lift(ctx.pool, w, as_of=when, compared=compared_watchlists(w.id, totals, watchlists),
                               align=align, top_posts=posts)
    body = lift.to_dict()
    body["charts"] = campaign_charts(lift, where)
    return body

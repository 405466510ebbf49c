"""The dashboard: a page at `/`, `GET /v1/dashboard`
(the overview: figures, server-rendered SVG charts, lists), `GET /v1/dashboard/mentions/{id}`
(a mention with all of its enrichment) and `GET /v1/stats` (totals).

The page asks for the API key itself (typed once, kept in the tab's sessionStorage, sent as
X-API-Key) and never takes it from its URL, which would leak it into logs, history and Referer
headers; the page is served with `Referrer-Policy: no-referrer` and a Content-Security-Policy
that allows only its own inline script and style (by their SHA-256) and requests to this origin.
Without configured keys it works as it is.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response

from earful.core.auth import AuditedRoute, Scope, requires
from earful.storage.api.deps import WATCHLIST_PATTERN, ApiContext, aware, bad_param, context, db_pool
from earful.storage.api.queries import TOTAL_MENTIONS, WATCHLIST_TOTALS
from earful.storage.api.responses import ERRORS, jsonable
from earful.storage.api.watchlists import known_watchlist
from earful.storage.dashboard_views import DEFAULT_LENGTH, LENGTHS, Request, mention_detail, overview, zone

STATIC = Path(__file__).resolve().parent.parent / "static"
PAGE = "dashboard.html"


def _hashes(html: str, tag: str) -> str:
    """The CSP sources of the page's inline `<tag>` blocks: 'sha256-...' of each one's text."""
    found, start = [], 0
    while (i := html.find(f"<{tag}>", start)) >= 0:
        j = html.index(f"</{tag}>", i)
        found.append("'sha256-" + base64.b64encode(hashlib.sha256(html[i + len(tag) + 2:j].encode()).digest()).decode() + "'")
        start = j
    return " ".join(found) or "'none'"


@functools.cache
def _page() -> tuple[str, dict[str, str]]:
    """The page and its headers (read once: the file ships with the package)."""
    html = (STATIC / PAGE).read_text(encoding="utf-8")
    csp = (f"default-src 'none'; script-src {_hashes(html, 'script')}; style-src {_hashes(html, 'style')}; "
           "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html, {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "Content-Security-Policy": csp,
                  "X-Content-Type-Options": "nosniff"}


page = APIRouter()
summary = APIRouter(dependencies=[requires(Scope.READ)], route_class=AuditedRoute)


@page.get("/", response_class=HTMLResponse, include_in_schema=False, operation_id="getDashboard")
async def dashboard() -> Response:
    html, headers = _page()
    return HTMLResponse(html, headers=headers)


@summary.get("/v1/stats", tags=["trends"], responses=ERRORS, summary="Totals per watchlist and when each was last mentioned.",
             operation_id="getStats")
async def stats(pool: asyncpg.Pool = Depends(db_pool)) -> dict[str, Any]:
    total = await pool.fetchval(TOTAL_MENTIONS)
    rows = await pool.fetch(WATCHLIST_TOTALS)
    return {"mentions": total, "watchlists": [jsonable(r) for r in rows]}


@summary.get("/v1/dashboard", tags=["trends"], responses={**ERRORS, 404: {"description": "No such watchlist."}},
             operation_id="getDashboardOverview",
             summary="The dashboard's overview of a watchlist over a period, compared with the period before: "
                     "figures, SVG charts whose marks link to their mentions, and lists.")
async def dashboard_overview(
    watchlist: str | None = Query(None, pattern=WATCHLIST_PATTERN,
                                  description="Watchlist shown. Default: the brand with the most mentions."),
    length: Literal[tuple(LENGTHS)] = Query(DEFAULT_LENGTH, description="Length of the period."),  # type: ignore[valid-type]  # Literal of a tuple built at run time
    to: datetime | None = Query(None, description="End of the period (rounded up to its bucket). Default: just after "
                                                  "the watchlist's newest stored mention, so stored data shows however old."),
    tz: str | None = Query(None, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$",
                           description="IANA time zone of the labels, e.g. Europe/Paris. Default: UTC."),
    ctx: ApiContext = Depends(context),
) -> dict[str, Any]:
    to = aware("to", to)
    try:
        where = zone(tz)
    except ValueError as exc:
        raise bad_param("query", "tz", str(exc)) from exc
    watchlists = ctx.watchlists()
    if watchlist:
        await known_watchlist(ctx, watchlist)
    return await overview(ctx.pool, watchlists, Request(watchlist, length, to, where), accounts=ctx.owned())


@summary.get("/v1/dashboard/mentions/{mention_id}", tags=["mentions"],
             responses={**ERRORS, 404: {"description": "No stored mention has this id."}}, operation_id="getMentionDetail",
             summary="One mention with its enrichment: evidence spans, confidences, model versions, highlighted text.")
async def mention(mention_id: uuid.UUID = PathParam(..., description="The mention's id."),
                  ctx: ApiContext = Depends(context)) -> dict[str, Any]:
    found = await mention_detail(ctx.pool, mention_id)
    if found is None:
        raise HTTPException(404, detail=f"mention_id: no stored mention {mention_id}")
    return found

"""The dashboard: a static page at `/`, and `GET /v1/stats`, the totals it opens with.

The page asks for the API key itself (typed once, kept in the tab's sessionStorage, sent as
X-API-Key) and never takes it from its URL, which would leak it into logs, history and Referer
headers; the page is served with `Referrer-Policy: no-referrer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from earful.storage.api.deps import db_pool
from earful.storage.api.queries import TOTAL_MENTIONS, WATCHLIST_TOTALS
from earful.storage.api.responses import ERRORS, jsonable

STATIC = Path(__file__).resolve().parent.parent / "static"

page = APIRouter()
summary = APIRouter()


@page.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> Response:
    return HTMLResponse((STATIC / "dashboard.html").read_text(encoding="utf-8"),
                        headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


@summary.get("/v1/stats", tags=["trends"], responses=ERRORS, summary="Totals per watchlist and when each was last mentioned.")
async def stats(pool: asyncpg.Pool = Depends(db_pool)) -> dict[str, Any]:
    total = await pool.fetchval(TOTAL_MENTIONS)
    rows = await pool.fetch(WATCHLIST_TOTALS)
    return {"mentions": total, "watchlists": [jsonable(r) for r in rows]}

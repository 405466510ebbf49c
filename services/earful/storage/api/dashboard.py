"""The dashboard: a static page at `/`, and `GET /v1/stats`, the totals it opens with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from earful.storage.api.deps import db_pool
from earful.storage.api.queries import TOTAL_MENTIONS, WATCHLIST_TOTALS
from earful.storage.api.responses import ERRORS, jsonable

STATIC = Path(__file__).resolve().parent.parent / "static"

page = APIRouter()
summary = APIRouter()


@page.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> str:
    return (STATIC / "dashboard.html").read_text(encoding="utf-8")


@summary.get("/v1/stats", tags=["trends"], responses=ERRORS, summary="Totals per watchlist and when each was last mentioned.")
async def stats(pool: asyncpg.Pool = Depends(db_pool)) -> dict[str, Any]:
    total = await pool.fetchval(TOTAL_MENTIONS)
    rows = await pool.fetch(WATCHLIST_TOTALS)
    return {"mentions": total, "watchlists": [jsonable(r) for r in rows]}

"""The query API and dashboard served by the storage service (OpenAPI at /openapi.json).

Parameters are validated by FastAPI (a bad one gets a 422 naming it) and every query is
parameterised, so no input reaches SQL as text.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse

from earful.core.health import Health
from earful.core.http import add_ops_routes, api_key_guard

STATIC = Path(__file__).parent / "static"
WATCHLIST_PATTERN = r"^[a-z0-9()][a-z0-9()-]{0,63}$"


def _jsonable(row: asyncpg.Record) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            value = value.isoformat().replace("+00:00", "Z")
        elif key in ("entities", "risks", "matches", "models", "labels") and isinstance(value, str):
            value = json.loads(value)
        elif value is not None and not isinstance(value, (str, int, float, bool, list, dict)):
            value = str(value)
        out[key] = value
    return out


def build_api(pool: asyncpg.Pool, health: Health, api_keys: frozenset[str]) -> FastAPI:
    app = FastAPI(title="Earful query API", version="1",
                  description="Mentions, volume series and alerts stored by Earful.")
    add_ops_routes(app, health)

    require_key = api_key_guard(api_keys)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> str:
        return (STATIC / "dashboard.html").read_text(encoding="utf-8")

    @app.get("/v1/mentions", dependencies=[Depends(require_key)], summary="Latest mentions, newest first.")
    async def mentions(
        watchlist: str | None = Query(None, pattern=WATCHLIST_PATTERN, description="Only mentions of this watchlist."),
        sentiment: str | None = Query(None, pattern="^(negative|neutral|positive)$"),
        limit: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        rows = await pool.fetch(
            "SELECT mention_id, source, source_id, url, author_handle, author_followers, text, lang, created_at,"
            " received_at, sentiment, sentiment_score, watchlist_ids, entities, risks FROM mentions"
            " WHERE ($1::text IS NULL OR watchlist_ids @> ARRAY[$1::text])"
            " AND ($2::text IS NULL OR sentiment = $2) ORDER BY created_at DESC, mention_id LIMIT $3",
            watchlist, sentiment, limit,
        )
        return {"mentions": [_jsonable(r) for r in rows]}

    @app.get("/v1/watchlists/{watchlist_id}/series", dependencies=[Depends(require_key)],
             summary="Mentions per minute by sentiment, from the rollups.")
    async def series(watchlist_id: str, minutes: int = Query(600, ge=1, le=60 * 24 * 31)) -> dict[str, Any]:
        rows = await pool.fetch(
            "WITH last AS (SELECT max(minute) AS m FROM mention_rollups_minute WHERE watchlist_id = $1)"
            " SELECT minute, sentiment, mentions FROM mention_rollups_minute, last"
            " WHERE watchlist_id = $1 AND minute > last.m - make_interval(mins => $2) ORDER BY minute",
            watchlist_id, minutes,
        )
        return {"watchlist_id": watchlist_id, "points": [_jsonable(r) for r in rows]}

    @app.get("/v1/alerts", dependencies=[Depends(require_key)], summary="Alert state changes, newest first.")
    async def alerts(limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        rows = await pool.fetch(
            "SELECT alert_id, status, fingerprint, rule, watchlist_id, severity, labels, summary, observed, baseline,"
            " score, starts_at, ends_at, detected_at, first_received_at, sample_mention_ids FROM alerts"
            " ORDER BY detected_at DESC LIMIT $1", limit,
        )
        return {"alerts": [_jsonable(r) for r in rows]}

    @app.get("/v1/stats", dependencies=[Depends(require_key)], summary="Totals per watchlist.")
    async def stats() -> dict[str, Any]:
        total = await pool.fetchval("SELECT count(*) FROM mentions")
        rows = await pool.fetch(
            "SELECT watchlist_id, sum(mentions)::bigint AS mentions,"
            " sum(mentions) FILTER (WHERE sentiment = 'negative')::bigint AS negative"
            " FROM mention_rollups_minute GROUP BY watchlist_id ORDER BY 2 DESC"
        )
        return {"mentions": total, "watchlists": [dict(r) for r in rows]}

    return app

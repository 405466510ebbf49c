"""The query API and dashboard served by the storage service (OpenAPI at /openapi.json, docs at /docs).

Every listing accepts ``?format=csv`` (spreadsheet-safe, see earful.storage.export). Parameters are
validated before any query runs: a bad one gets a 422 whose ``detail[].loc`` names it, an unknown
watchlist a 404. The SQL is built by pure functions (queries.py) from fixed fragments, every value
a bind parameter. One router per resource; deps.py holds what they share. The request guard
(earful.core.http) runs first: bounded bodies, no NUL characters, and without keys a Host allow-list.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from earful.core.errors import ValidationError
from earful.core.health import Health
from earful.core.http import RequestLimits, add_ops_routes, guard_requests
from earful.storage.api import (
    alerts,
    corrections,
    dashboard,
    entities,
    erasure,
    mentions,
    questions,
    trends,
)
from earful.storage.api.deps import ApiContext, key_required
from earful.storage.outbox import CorrectionOutbox
from earful.watchlists import WatchlistSet

__all__ = ["build_api"]

DESCRIPTION = (
    "Mentions, trends, share of voice, entities, advocates, customer questions and alerts stored by "
    "Earful, and corrections of the enrichment (applied to the stored mentions at once). Send the API key in `X-API-Key`. Times are RFC 3339 with a time zone; buckets are UTC. "
    "Every listing can be exported with `?format=csv`.")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": [], "msg": str(exc), "type": "value_error"}]}, status_code=422)


async def _timeout(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "the query took too long; narrow the time range or the filters"}, status_code=503)


async def _not_text(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": [], "msg": "holds characters PostgreSQL cannot store as text (NUL)",
                                     "type": "value_error"}]}, status_code=422)


async def _db_down(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "the database is unavailable; try again shortly"}, status_code=503,
                        headers={"Retry-After": "5"})


def add_error_handlers(app: FastAPI) -> None:
    """Domain validation errors as 422 (text PostgreSQL refuses too, whichever way it got past the
    guard); a statement timeout, or no database, as 503."""
    app.add_exception_handler(ValidationError, _validation_error)
    for not_text in (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError):
        app.add_exception_handler(not_text, _not_text)
    app.add_exception_handler(asyncpg.QueryCanceledError, _timeout)
    for unavailable in (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
        app.add_exception_handler(unavailable, _db_down)


def build_api(pool: asyncpg.Pool, health: Health, api_keys: frozenset[str],
              watchlists: Callable[[], WatchlistSet] = lambda: WatchlistSet([]), *, limits: RequestLimits,
              outbox: CorrectionOutbox | None = None) -> FastAPI:
    """The FastAPI app: query endpoints, corrections, erasure, ops routes and the dashboard, behind the
    request guard. Without `outbox`, corrections are stored unpublished (the service's loop publishes them)."""
    app = FastAPI(title="Earful query API", version="2", description=DESCRIPTION)
    guard_requests(app, limits)
    add_ops_routes(app, health)
    add_error_handlers(app)
    app.state.query_api = ApiContext(pool, watchlists, keys_configured=bool(api_keys), outbox=outbox)
    app.include_router(dashboard.page)  # open: the page asks for the key itself
    auth = key_required(api_keys)
    for router in (mentions.router, corrections.router, trends.router, entities.router, questions.router, alerts.router,
                   erasure.router, dashboard.summary):
        app.include_router(router, dependencies=auth)
    return app

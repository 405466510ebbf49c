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

from earful.core.audit import AuditLog
from earful.core.auth import ApiAuth, KeyRing, install_auth
from earful.core.errors import ValidationError
from earful.core.health import Health
from earful.core.http import RequestLimits, add_ops_routes, guard_requests, problem_response
from earful.storage.api.deps import ApiContext
from earful.storage.outbox import CorrectionOutbox
from earful.watchlists import WatchlistSet

__all__ = ["build_api", "storage_auth"]

DESCRIPTION = (
    "Mentions, trends, share of voice, entities, advocates, customer questions and alerts stored by "
    "Earful, and corrections of the enrichment (applied to the stored mentions at once). Send the API key in `X-API-Key` "
    "(or `Authorization: Bearer`); each operation names the scope its key needs (read, write or admin), and write and "
    "admin requests are audited (`GET /v1/audit`). Errors are RFC 9457 problem details. Times are RFC 3339 with a time "
    "zone; buckets are UTC. Every listing can be exported with `?format=csv`.")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(422, str(exc), reason="invalid", instance=request.url.path,
                            errors=[{"path": "", "detail": str(exc), "loc": [], "type": "value_error"}])


async def _timeout(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(503, "the query took too long; narrow the time range or the filters", reason="query_timeout",
                            instance=request.url.path)


async def _not_text(request: Request, exc: Exception) -> JSONResponse:
    message = "holds characters PostgreSQL cannot store as text (NUL)"
    return problem_response(422, message, reason="invalid", instance=request.url.path,
                            errors=[{"path": "", "detail": message, "loc": [], "type": "value_error"}])


async def _db_down(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(503, "the database is unavailable; try again shortly", reason="database_unavailable",
                            instance=request.url.path, headers={"Retry-After": "5"})


def add_error_handlers(app: FastAPI) -> None:
    """Domain validation errors as 422 (text PostgreSQL refuses too, whichever way it got past the
    guard); a statement timeout, or no database, as 503."""
    app.add_exception_handler(ValidationError, _validation_error)
    for not_text in (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError):
        app.add_exception_handler(not_text, _not_text)
    app.add_exception_handler(asyncpg.QueryCanceledError, _timeout)
    for unavailable in (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
        app.add_exception_handler(unavailable, _db_down)


def storage_auth(pool: asyncpg.Pool, keys: KeyRing) -> ApiAuth:
    """The storage service's guard: `keys`, auditing to the log and to `api_audit` through `pool`."""
    return ApiAuth(keys, AuditLog("storage", lambda: pool))


def build_api(pool: asyncpg.Pool, health: Health, keys: KeyRing,
              watchlists: Callable[[], WatchlistSet] = lambda: WatchlistSet([]), *, limits: RequestLimits,
              outbox: CorrectionOutbox | None = None, owned_handles: tuple[str, ...] = ()) -> FastAPI:
    """The FastAPI app: query endpoints, corrections, erasure, the audit log, ops routes and the dashboard,
    behind the request guard; every /v1 route declares its scope. Without `outbox`, corrections are
    stored unpublished (the service's loop publishes them). `owned_handles`: EARFUL_OWNED_HANDLES."""
    # The routers are imported here, not with this package: they import the storage modules
    # (dashboard_views, kpis, cases, ...), which import this package's query helpers, so importing
    # them with the package would make every such module circular when it is imported first.
    from earful.storage.api import (
        alerts,
        audit,
        backfill,
        campaigns,
        cases,
        corrections,
        dashboard,
        entities,
        erasure,
        kpis,
        leads,
        mentions,
        questions,
        trends,
    )

    app = FastAPI(title="Earful query API", version="2", description=DESCRIPTION)
    guard_requests(app, limits)
    add_ops_routes(app, health)
    add_error_handlers(app)
    install_auth(app, storage_auth(pool, keys))
    app.state.query_api = ApiContext(pool, watchlists, outbox=outbox, owned_handles=owned_handles)
    app.include_router(dashboard.page)  # open: the page asks for the key itself
    for router in (mentions.router, corrections.router, trends.router, entities.router, questions.router, alerts.router,
                   erasure.router, audit.router, dashboard.summary, campaigns.router, kpis.router,
                   cases.router, leads.router, backfill.router):
        app.include_router(router)
    return app

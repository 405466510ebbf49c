"""Back-fills over the API: `POST /v1/watchlists/{id}/backfill` applies a watchlist as it is now to
the stored mentions since a time (earful.storage.backfill); the storage service runs the job in the
background, and `GET /v1/watchlists/{id}/backfill` (the watchlist's latest) and
`GET /v1/backfills/{job_id}` report its state and progress."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from earful.core.auth import AuditedRoute, Scope, requires
from earful.storage.api.corrections import principal
from earful.storage.api.deps import ApiContext, bad_param, context, watchlist_path
from earful.storage.api.responses import ERRORS
from earful.storage.backfill import get_backfill, job_json, latest_backfill, start_backfill

router = APIRouter(route_class=AuditedRoute)
MAX_RATE = 100_000.0


class BackfillRequest(BaseModel):
    """What to back-fill: the stored mentions created since `since`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"since": "2026-09-01T00:00:00Z"}]})

    since: AwareDatetime = Field(description="Apply the watchlist to the mentions created from this time on (RFC 3339 "
                                             "with a time zone; not in the future).")
    rate: float | None = Field(None, gt=0, le=MAX_RATE, description="At most this many mentions per second "
                                                                    "(default 1,000).")


class Backfill(BaseModel):
    """A back-fill job and how far it got."""

    job_id: int
    watchlist_id: str
    since: datetime
    state: str = Field(description="pending (waiting for the storage service), running, done or failed.")
    revision: str | None = Field(description="The watchlist's revision applied; a change begins the walk again.")
    total: int = Field(description="Stored mentions since `since` when the walk (last) began.")
    scanned: int = Field(description="Of those, matched against the watchlist so far.")
    added: int = Field(description="Mentions that gained the watchlist.")
    removed: int = Field(description="Mentions that lost it.")
    restarts: int = Field(description="Walks begun again because the watchlist changed while the job ran.")
    progress: float = Field(description="scanned / total, 1 once done.")
    cursor: datetime | None = Field(description="created_at of the last mention done (the walk is in that order).")
    rate: float | None = Field(description="Mentions per second at most (null: the default).")
    requested_via: str = Field(description="api or cli.")
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    error: str | None = Field(description="Why it failed (e.g. the watchlist was deleted).")


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such watchlist in force, or no such back-fill."}}


@router.post("/v1/watchlists/{watchlist_id}/backfill", tags=["watchlists"], status_code=202, response_model=Backfill,
             operation_id="startBackfill", dependencies=[requires(Scope.WRITE)],
             responses={**ERRORS, **NOT_FOUND, 202: {"description": "Accepted: the storage service runs it; follow it at "
                                                                   "GET /v1/backfills/{job_id}."},
                        409: {"description": "A back-fill of this watchlist is already pending or running (the "
                                             "problem's detail names its job)."}},
             summary="Apply the watchlist, as it is now, to the stored mentions since a time (matches and every count).")
async def start(
    request: Request,
    watchlist_id: str = watchlist_path(),
    body: BackfillRequest = Body(...),
    ctx: ApiContext = Depends(context),
) -> Any:
    watchlist = ctx.watchlists().get(watchlist_id)
    if watchlist is None:
        raise HTTPException(404, detail=f"watchlist_id: no watchlist {watchlist_id!r} is in force")
    since = body.since.astimezone(timezone.utc)
    if since > datetime.now(timezone.utc):
        raise bad_param("body", "since", "is in the future")
    async with ctx.pool.acquire() as conn:
        started = await start_backfill(conn, watchlist, since, via="api", requested_by=principal(request), rate=body.rate)
    job = job_json(started.job)
    request.state.audit_target = f"watchlist:{watchlist_id} backfill:{job['job_id']}"
    if not started.created:
        raise HTTPException(409, detail=f"back-fill job {job['job_id']} of {watchlist_id} is already {job['state']}; "
                                        f"follow it at GET /v1/backfills/{job['job_id']}")
    return job


@router.get("/v1/watchlists/{watchlist_id}/backfill", tags=["watchlists"], response_model=Backfill,
            operation_id="getWatchlistBackfill", dependencies=[requires(Scope.READ)], responses={**ERRORS, **NOT_FOUND},
            summary="The watchlist's latest back-fill: state and progress.")
async def latest(watchlist_id: str = watchlist_path(), ctx: ApiContext = Depends(context)) -> Any:
    job = await latest_backfill(ctx.pool, watchlist_id)
    if job is None:
        raise HTTPException(404, detail=f"watchlist_id: no back-fill of {watchlist_id!r}")
    return job_json(job)


@router.get("/v1/backfills/{job_id}", tags=["watchlists"], response_model=Backfill, operation_id="getBackfill",
            dependencies=[requires(Scope.READ)], responses={**ERRORS, **NOT_FOUND},
            summary="One back-fill job: state and progress.")
async def one(job_id: int = PathParam(..., ge=1, le=2**63 - 1, description="The job's id."),
              ctx: ApiContext = Depends(context)) -> Any:
    job = await get_backfill(ctx.pool, job_id)
    if job is None:
        raise HTTPException(404, detail=f"job_id: no back-fill job {job_id}")
    return job_json(job)

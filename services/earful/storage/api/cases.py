"""Cases, the care inbox: `GET /v1/cases` (highest priority first), one case with its events, the
changes people make (assign, answer, dismiss, escalate, reopen: valid transitions only, 409
otherwise), and per watchlist the response-time KPIs (`GET /v1/watchlists/{id}/care`).

Every change is recorded as an event in the transaction that makes it and published to
earful.cases.v1 by the storage service's case outbox (earful.storage.case_outbox); see
earful.storage.cases for what opens and answers a case, and docs/care.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from earful.core.auth import AuditedRoute, Scope, principal_of, requires
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
    watchlist_path,
)
from earful.storage.api.responses import CSV_RESPONSE, ERRORS, WATCHLIST_RESPONSE, iso
from earful.storage.api.watchlists import known_watchlist
from earful.storage.cases import (
    ACTIVE_STATES,
    STATES,
    CaseFilter,
    CaseNotFound,
    TransitionRefused,
    act,
    care_kpis,
    case_history,
    case_listing,
    case_priority,
    get_case,
)
from earful.watchlists.care import humanise_seconds, sla_used
from earful.watchlists.model import BusinessHours

router = APIRouter(route_class=AuditedRoute)

AGENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$"
CASE_COLUMNS = ("case_id", "watchlist_id", "kind", "state", "owner", "priority", "opened_at", "waiting_s", "waiting",
                "sla_s", "deadline_at", "warn_at", "sla_used", "answered_at", "source", "source_id", "url",
                "author_handle", "author_followers", "text")
CASE_404: dict[int | str, dict[str, Any]] = {404: {"description": "No case has this id (never opened, or gone with its "
                                                                  "mention by retention or erasure)."}}
CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS, **CASE_404,
    409: {"description": "Not a valid change from the case's state (e.g. answering an answered case)."}}
CaseState = Literal["open", "assigned", "answered", "dismissed", "escalated"]


# --- what the endpoints answer -----------------------------------------------------------------------------------


class CaseOut(BaseModel):
    """A case as the inbox shows it."""

    case_id: str = Field(description="<watchlist_id>:<source>:<source_id> of the mention that opened it.")
    watchlist_id: str
    kind: Literal["question", "complaint"]
    state: CaseState
    owner: str | None
    priority: int = Field(description="0-100 now: reach, negativity, risk tags and waiting time (docs/care.md).")
    priority_reasons: list[str] = Field(description="The terms of priority, one line each.")
    source: str
    source_id: str
    mention_id: str
    url: str | None
    thread_id: str | None = Field(description="source_id of the conversation's oldest stored post; null for a post "
                                              "that replies to nothing.")
    author_handle: str | None
    author_name: str | None
    author_followers: int | None
    text: str | None = Field(description="The customer's post (null when the mention is no longer stored).")
    title: str | None
    lang: str | None
    opened_at: datetime = Field(description="When the customer posted (the SLA clock starts here).")
    waiting_s: float = Field(description="Seconds from opened_at to the answer, the dismissal, or now while it waits.")
    waiting: str = Field(description="waiting_s as people say it, e.g. 3 h 5 min.")
    sla_s: int | None = Field(description="The watchlist's response SLA when the case opened (business-hours seconds).")
    deadline_at: datetime | None = Field(description="When the SLA is breached (business hours counted); null without one.")
    warn_at: datetime | None = Field(description="When the case has used the warning share of its SLA.")
    sla_used: float | None = Field(description="Share of the SLA used over waiting_s, in business hours (1.0: due; "
                                               "above: breached); null without an SLA.")
    answered_at: datetime | None
    answered_by_source_id: str | None = Field(description="The brand reply that answered it, when one did.")
    first_reply_at: datetime | None = Field(description="The first answer ever (kept when the case is reopened).")
    reason: str | None = Field(description="Why it was last dismissed or escalated.")
    updated_at: datetime
    version: int = Field(description="Increases with every change; the latest event's id is <case_id>:<version>.")


class CaseList(BaseModel):
    cases: list[CaseOut] = Field(description="Highest priority first, then the longest waiting.")
    as_of: datetime = Field(description="The instant priorities and waiting times are computed at (kept across pages).")
    next_cursor: str | None


class CaseEventOut(BaseModel):
    """One change of a case, as published on earful.cases.v1 (plus the reason given)."""

    event_id: str
    version: int
    event: Literal["opened", "assigned", "answered", "dismissed", "escalated", "reopened"]
    state: CaseState
    owner: str | None
    priority: int
    priority_reasons: list[str]
    occurred_at: datetime
    actor: str | None = Field(description="stream (storage itself), the API key's name, or null without keys.")
    reason: str | None
    published_at: datetime | None = Field(description="When earful.cases.v1 acknowledged it; null until then.")


class CaseDetail(CaseOut):
    events: list[CaseEventOut] = Field(description="Every change, oldest first.")


class AssignBody(BaseModel):
    owner: str = Field(pattern=AGENT_PATTERN, description="The care agent who is to answer it.")


class ReasonBody(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="Why, for the team and the audit trail.")


class AnswerBody(BaseModel):
    source_id: str | None = Field(None, min_length=1, max_length=500,
                                  description="The reply's id at the source, when the answer was posted.")


class KpiFigures(BaseModel):
    opened: int = Field(description="Cases opened in the period.")
    waiting: int = Field(description="Of those, still open, assigned or escalated.")
    answered: int = Field(description="Of those, answered at least once.")
    dismissed: int
    escalated: int = Field(description="Currently escalated.")
    median_first_reply_s: float | None = Field(description="Median seconds from the post to the first answer.")
    p90_first_reply_s: float | None = Field(description="90th percentile of the same.")
    due: int = Field(description="Cases with an SLA that were answered, or are still waiting past their deadline.")
    answered_within_sla: int = Field(description="Of the due ones, first answered by their deadline.")
    breached: int = Field(description="due - answered_within_sla.")
    within_sla_share: float | None = Field(description="answered_within_sla / due; null with none due.")


class SourceKpis(KpiFigures):
    source: str


class OwnerKpis(KpiFigures):
    owner: str | None = Field(description="null: the unassigned cases.")


class DayKpis(KpiFigures):
    day: datetime = Field(description="The UTC day the cases opened.")


class CareKpis(BaseModel):
    watchlist_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    sla_s: int | None = Field(description="The watchlist's response SLA now.")
    business_hours: dict[str, Any] | None = Field(description="Its business hours now (null: around the clock).")
    total: KpiFigures
    by_source: list[SourceKpis]
    by_owner: list[OwnerKpis]
    by_day: list[DayKpis]


# --- helpers -----------------------------------------------------------------------------------------------------


def _hours(ctx: ApiContext, watchlist_id: str) -> BusinessHours | None:
    w = ctx.watchlists().watchlists.get(watchlist_id)
    return w.care.business_hours if w is not None and w.care is not None else None


def case_out(row: Mapping[str, Any], now: datetime, hours: BusinessHours | None) -> dict[str, Any]:
    """A case row (with its mention's columns) as answered, priority and waiting time at `now` (pure)."""
    if row["state"] == "answered":
        until = row["answered_at"]
    elif row["state"] == "dismissed":
        until = row["updated_at"]
    else:
        until = now
    waited = max(0.0, (until - row["opened_at"]).total_seconds())
    p = case_priority(row, now)
    used = sla_used(row["opened_at"], until, row["sla_s"], hours)
    return {
        "case_id": row["case_id"], "watchlist_id": row["watchlist_id"], "kind": row["kind"], "state": row["state"],
        "owner": row["owner"], "priority": p.value, "priority_reasons": list(p.reasons), "source": row["source"],
        "source_id": row["source_id"], "mention_id": str(row["mention_id"]), "url": row.get("url"),
        "thread_id": row["thread_id"], "author_handle": row["author_handle"], "author_name": row.get("author_name"),
        "author_followers": row["author_followers"], "text": row.get("text"), "title": row.get("title"),
        "lang": row.get("lang"), "opened_at": iso(row["opened_at"]), "waiting_s": round(waited, 1),
        "waiting": humanise_seconds(waited), "sla_s": row["sla_s"],
        "deadline_at": iso(row["deadline_at"]) if row["deadline_at"] else None,
        "warn_at": iso(row["warn_at"]) if row["warn_at"] else None,
        "sla_used": None if used is None else round(used, 4),
        "answered_at": iso(row["answered_at"]) if row["answered_at"] else None,
        "answered_by_source_id": row["answered_by_source_id"],
        "first_reply_at": iso(row["first_reply_at"]) if row["first_reply_at"] else None,
        "reason": row["reason"], "updated_at": iso(row["updated_at"]), "version": row["version"],
    }


def _event_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"event_id": row["event_id"], "version": row["version"], "event": row["event"], "state": row["state"],
            "owner": row["owner"], "priority": row["priority"], "priority_reasons": list(row["priority_reasons"]),
            "occurred_at": iso(row["occurred_at"]), "actor": row["actor"], "reason": row["reason"],
            "published_at": iso(row["published_at"]) if row["published_at"] else None}


def case_path() -> Any:
    return PathParam(..., min_length=5, max_length=700, description="The case id, <watchlist_id>:<source>:<source_id>.")


async def _detail(ctx: ApiContext, the_case: str, now: datetime) -> dict[str, Any]:
    row = await get_case(ctx.pool, the_case, now)
    if row is None:
        raise HTTPException(404, detail=f"case_id: no case {the_case!r}")
    return {**case_out(row, now, _hours(ctx, row["watchlist_id"])),
            "events": [_event_out(e) for e in await case_history(ctx.pool, the_case)]}


async def _change(request: Request, ctx: ApiContext, the_case: str, action: str, **given: Any) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    try:
        async with ctx.pool.acquire() as conn:
            await act(conn, the_case, action, actor=principal_of(request), now=now, **given)
    except CaseNotFound as exc:
        raise HTTPException(404, detail=f"case_id: {exc}") from exc
    except TransitionRefused as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    return await _detail(ctx, the_case, now)


# --- endpoints ---------------------------------------------------------------------------------------------------


@router.get("/v1/cases", tags=["cases"], response_model=CaseList, responses=CSV_RESPONSE, operation_id="listCases",
            dependencies=[requires(Scope.READ)],
            summary="The care inbox: cases by priority (highest first), then the longest waiting; keyset pages.")
async def cases(
    watchlist: str | None = Query(None, pattern=WATCHLIST_PATTERN, description="Only this watchlist's cases."),
    state: list[CaseState] | None = Query(None, description="Only cases in these states (repeat the parameter); "
                                                            "default: open, assigned and escalated."),
    owner: str | None = Query(None, pattern=AGENT_PATTERN, description="Only cases assigned to this agent."),
    page: Page = Depends(pagination("Cases per page.")),
    out: Output = Depends(output),
    ctx: ApiContext = Depends(context),
) -> Any:
    after = page.after(["time", "int", "time", "str"])
    as_of = after[0] if after else datetime.now(timezone.utc)
    kept = CaseFilter(states=tuple(dict.fromkeys(state)) if state else ACTIVE_STATES, watchlist=watchlist, owner=owner)
    sql, args = case_listing(kept, as_of, (after[1], after[2], after[3]) if after else None, page.limit)
    rows, more = page.cut(await ctx.pool.fetch(sql, *args))
    items = [case_out(r, as_of, _hours(ctx, r["watchlist_id"])) for r in rows]
    last = rows[-1] if rows else None
    next_cursor = encode_cursor(as_of, last["priority_now"], last["opened_at"], last["case_id"]) if more and last else None
    return out.listing({"cases": items, "as_of": iso(as_of), "next_cursor": next_cursor}, items, CASE_COLUMNS, "cases")


@router.get("/v1/cases/{case_id:path}", tags=["cases"], response_model=CaseDetail, operation_id="getCase",
            dependencies=[requires(Scope.READ)], responses={**ERRORS, **CASE_404},
            summary="One case, with every change it went through.")
async def case(case_id: str = case_path(), ctx: ApiContext = Depends(context)) -> Any:
    return await _detail(ctx, case_id, datetime.now(timezone.utc))


@router.post("/v1/cases/{case_id:path}/assign", tags=["cases"], response_model=CaseDetail, operation_id="assignCase",
             dependencies=[requires(Scope.WRITE)], responses=CHANGE_RESPONSES,
             summary="Give an open, assigned or escalated case to an agent (an escalated case stays escalated).")
async def assign(request: Request, case_id: str = case_path(), body: AssignBody = Body(...),
                 ctx: ApiContext = Depends(context)) -> Any:
    return await _change(request, ctx, case_id, "assign", owner=body.owner)


@router.post("/v1/cases/{case_id:path}/answer", tags=["cases"], response_model=CaseDetail, operation_id="answerCase",
             dependencies=[requires(Scope.WRITE)], responses=CHANGE_RESPONSES,
             summary="Mark a waiting case answered now (a reply from the brand's handles does it by itself).")
async def answer(request: Request, case_id: str = case_path(), body: AnswerBody | None = Body(None),
                 ctx: ApiContext = Depends(context)) -> Any:
    return await _change(request, ctx, case_id, "answer", answered_by=body.source_id if body else None)


@router.post("/v1/cases/{case_id:path}/dismiss", tags=["cases"], response_model=CaseDetail, operation_id="dismissCase",
             dependencies=[requires(Scope.WRITE)], responses=CHANGE_RESPONSES,
             summary="Close a waiting case that needs no answer, saying why.")
async def dismiss(request: Request, case_id: str = case_path(), body: ReasonBody = Body(...),
                  ctx: ApiContext = Depends(context)) -> Any:
    return await _change(request, ctx, case_id, "dismiss", reason=body.reason)


@router.post("/v1/cases/{case_id:path}/escalate", tags=["cases"], response_model=CaseDetail,
             operation_id="escalateCase", dependencies=[requires(Scope.WRITE)], responses=CHANGE_RESPONSES,
             summary="Hand an open or assigned case on, saying why (it keeps waiting for an answer).")
async def escalate(request: Request, case_id: str = case_path(), body: ReasonBody = Body(...),
                   ctx: ApiContext = Depends(context)) -> Any:
    return await _change(request, ctx, case_id, "escalate", reason=body.reason)


@router.post("/v1/cases/{case_id:path}/reopen", tags=["cases"], response_model=CaseDetail, operation_id="reopenCase",
             dependencies=[requires(Scope.WRITE)], responses=CHANGE_RESPONSES,
             summary="Reopen an answered or dismissed case (assigned again when it has an owner).")
async def reopen(request: Request, case_id: str = case_path(), ctx: ApiContext = Depends(context)) -> Any:
    return await _change(request, ctx, case_id, "reopen")


@router.get("/v1/watchlists/{watchlist_id}/care", tags=["cases"], response_model=CareKpis, operation_id="getWatchlistCare",
            dependencies=[requires(Scope.READ)], responses=WATCHLIST_RESPONSE, response_model_by_alias=True,
            summary="Response times of the cases opened in a period: median and p90 to the first reply, the share "
                    "answered within the SLA (business hours), counts; overall, per source, per owner and per day.")
async def care(
    watchlist_id: str = watchlist_path(),
    when: Period = Depends(period("Cases opened from (inclusive). Default: 30 days before `to`.",
                                  "Cases opened before (exclusive). Default: now.")),
    ctx: ApiContext = Depends(context),
) -> Any:
    now = datetime.now(timezone.utc)
    lo, hi = when.window(timedelta(days=30), now=now)
    w = await known_watchlist(ctx, watchlist_id)
    hours = w.care.business_hours if w is not None and w.care is not None else None
    figures = await care_kpis(ctx.pool, watchlist_id, lo, hi, now)
    return {"watchlist_id": watchlist_id, "from": iso(lo), "to": iso(hi), "sla_s": w.response_sla_s if w else None,
            "business_hours": None if hours is None else {
                "timezone": hours.timezone, "days": {d: [f"{a}-{b}" for a, b in r] for d, r in hours.days.items()},
                "holidays": list(hours.holidays)},
            **figures}


__all__ = ["STATES", "case_out", "router"]

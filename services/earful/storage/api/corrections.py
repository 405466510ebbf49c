"""Corrections: `POST /v1/mentions/{id}/corrections` to correct (or confirm) a mention's sentiment,
entities or risk/intent tags, its audit trail, every correction, and per watchlist how often the
model agreed with them (see earful.storage.corrections for what a correction does)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from earful.core.auth import AuditedRoute, Scope, principal_of, requires
from earful.storage.api.deps import (
    WATCHLIST_PATTERN,
    ApiContext,
    Output,
    Page,
    aware,
    context,
    encode_cursor,
    output,
    pagination,
    watchlist_path,
)
from earful.storage.api.responses import CSV_RESPONSE, ERRORS, iso
from earful.storage.api.watchlists import known_watchlist
from earful.storage.corrections import (
    FAILURES,
    Applied,
    Correction,
    CorrectionConflict,
    CorrectionFilter,
    CorrectionInvalid,
    CorrectionRequest,
    MentionNotFound,
    apply_correction,
    latest_per_mention,
    list_corrections,
    mention_corrections,
    summarize_agreement,
)
from earful.storage.writer import BrandHandles

log = logging.getLogger(__name__)
router = APIRouter(route_class=AuditedRoute)

CORRECTION_COLUMNS = ("corrected_at", "id", "mention_id", "field", "value", "model_value", "previous_value", "agrees",
                      "model_version", "by", "principal", "note", "supersedes", "superseded_by", "published_at")
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
MENTION_404: dict[int | str, dict[str, Any]] = {404: {"description": "No stored mention has this id."}}


# --- what the endpoints answer -----------------------------------------------------------------------


class EntityOut(BaseModel):
    text: str
    type: str
    start: int
    end: int


FieldValue = str | list[str] | list[EntityOut] | None


class CorrectionOut(BaseModel):
    """One correction as stored (an audit-trail entry)."""

    id: int = Field(description="Increasing: the largest id per (mention, field) is in force.")
    mention_id: str
    field: Literal["sentiment", "entities", "risks"]
    value: FieldValue = Field(description="The corrected value: a sentiment label, a sorted list of tags, or the "
                                          "entities ({text, type, start, end}) sorted by start, end, type.")
    model_value: FieldValue = Field(description="What the model said before any correction (sentiment null: no label).")
    previous_value: FieldValue = Field(description="What the mention held just before this correction.")
    agrees: bool = Field(description="value equals model_value: a confirmation of the model.")
    model_version: str = Field(description="The model (name@version) behind model_value, from the mention's provenance.")
    by: str = Field(description="Who corrected: the `by` given, else the principal.")
    principal: str = Field(description="Who was authenticated: key:<key name>, api (no keys) or cli:<user>.")
    note: str | None
    corrected_at: datetime
    supersedes: int | None = Field(description="The correction of this mention and field it replaced.")
    superseded_by: int | None = Field(None, description="The later correction that replaced it; null while in force.")
    watchlist_ids: list[str]
    published_at: datetime | None = Field(description="When earful.corrections.v1 acknowledged it; null until then "
                                                      "(the storage service retries).")


class CorrectedMention(BaseModel):
    """The mention's corrected fields as now stored."""

    sentiment: str | None
    sentiment_score: float
    sentiment_probabilities: dict[str, float] | None
    entities: list[dict[str, Any]]
    risks: list[dict[str, Any]]


class CorrectionResult(BaseModel):
    mention_id: str
    stored: bool = Field(description="False when nothing new was stored: a retry with the same Idempotency-Key, or "
                                     "the same correction already in force.")
    corrections: list[CorrectionOut] = Field(description="One per field of the request.")
    mention: CorrectedMention


class CorrectionTrail(BaseModel):
    mention_id: str
    corrections: list[CorrectionOut] = Field(description="Oldest first; superseded ones stay.")


class CorrectionList(BaseModel):
    corrections: list[CorrectionOut] = Field(description="Newest first.")
    next_cursor: str | None


class ClassAgreement(BaseModel):
    reviewed: int = Field(description="Reviewed mentions whose right label is this class.")
    agreed: int = Field(description="Of those, how many the model labelled so.")
    model_labelled: int = Field(description="Reviewed mentions the model labelled with this class.")
    recall: float | None
    precision: float | None


class Counts(BaseModel):
    corrected: int = Field(description="Right answers (tags, or entity spans) in the corrected values.")
    model: int = Field(description="Answers the model gave.")
    agreed: int = Field(description="Answers both have (an entity: same type, start and end).")
    recall: float | None
    precision: float | None


class SentimentAgreement(BaseModel):
    reviewed: int = Field(description="Mentions whose sentiment was corrected or confirmed.")
    agreed: int = Field(description="Of those, how many the model had right.")
    agreement: float | None = Field(description="agreed / reviewed; null with none reviewed.")
    classes: dict[str, ClassAgreement]
    confusion: dict[str, dict[str, int]] = Field(description="Model label ('unknown': none) → right label → mentions.")


class RiskAgreement(BaseModel):
    reviewed: int
    agreed: int = Field(description="Mentions whose whole tag set the model had right.")
    agreement: float | None
    tags: dict[str, Counts]


class EntityAgreement(BaseModel):
    reviewed: int
    agreed: int = Field(description="Mentions whose whole entity list the model had right.")
    agreement: float | None
    spans: Counts


class AgreementFields(BaseModel):
    sentiment: SentimentAgreement
    entities: EntityAgreement
    risks: RiskAgreement


class ModelAgreement(BaseModel):
    watchlist_id: str
    since: datetime | None
    fields: AgreementFields


# --- helpers -------------------------------------------------------------------------------------------


def principal(request: Request) -> str:
    """Who made the request: the name of the key that authenticated it, or 'api' without keys."""
    name = principal_of(request)
    return f"key:{name}" if name else "api"


def _out(c: Correction) -> dict[str, Any]:
    return c.to_json()


async def _published_now(ctx: ApiContext, applied: Applied) -> Applied:
    """The request's corrections after trying to publish them (a failure leaves them to the outbox loop)."""
    if ctx.outbox is None or all(c.published_at for c in applied.corrections):
        return applied
    try:
        if not await ctx.outbox.publish_mention(applied.mention_id):
            return applied
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:  # committed already: the loop publishes it
        log.warning("could not publish a correction now; the outbox loop will", extra={"error": repr(exc)})
        return applied
    trail = {c.id: c for c in await mention_corrections(ctx.pool, uuid.UUID(applied.mention_id)) or []}
    return Applied(applied.mention_id, [trail.get(c.id, c) for c in applied.corrections], applied.mention, applied.new)


# --- endpoints -----------------------------------------------------------------------------------------


@router.post("/v1/mentions/{mention_id}/corrections", tags=["corrections"], status_code=201, operation_id="correctMention",
             dependencies=[requires(Scope.WRITE)],
             response_model=CorrectionResult,
             responses={**ERRORS, **MENTION_404, 201: {"description": "Stored, and applied to the mention and its counts."},
                        200: {"description": "Nothing new stored (a retry, or a repeat of the "
                                                                       "corrections in force).",
                                                       "model": CorrectionResult},
                        409: {"description": "The Idempotency-Key was used for another correction."}},
             summary="Correct (or confirm) a mention's sentiment, entities or risk/intent tags; applied at once.")
async def correct(
    request: Request,
    response: Response,
    mention_id: uuid.UUID = PathParam(..., description="The mention's id."),
    body: CorrectionRequest = Body(...),
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN,
                                         description="Any unique string (≤ 200 printable ASCII characters): a retry "
                                                     "with the same key returns what the first request stored."),
    ctx: ApiContext = Depends(context),
) -> Any:
    brands = BrandHandles.of(ctx.watchlists().watchlists.values())
    try:
        async with ctx.pool.acquire() as conn:
            applied = await apply_correction(conn, mention_id, body, principal=principal(request),
                                             idempotency_key=idempotency_key, brands=brands)
    except CorrectionInvalid as exc:
        FAILURES.labels(exc.kind).inc()
        raise RequestValidationError([{"loc": exc.loc, "msg": str(exc), "type": "value_error", "input": None}]) from exc
    except MentionNotFound as exc:
        FAILURES.labels(exc.kind).inc()
        raise HTTPException(404, detail=f"mention_id: {exc}") from exc
    except CorrectionConflict as exc:
        FAILURES.labels(exc.kind).inc()
        raise HTTPException(409, detail=str(exc)) from exc
    applied = await _published_now(ctx, applied)
    response.status_code = 201 if applied.created else 200
    return {"mention_id": applied.mention_id, "stored": applied.created,
            "corrections": [_out(c) for c in applied.corrections], "mention": applied.mention}


@router.get("/v1/mentions/{mention_id}/corrections", tags=["corrections"], response_model=CorrectionTrail,
            operation_id="getMentionCorrections", dependencies=[requires(Scope.READ)],
            responses={**ERRORS, **MENTION_404}, summary="A mention's corrections, oldest first (the audit trail).")
async def trail(
    mention_id: uuid.UUID = PathParam(..., description="The mention's id."),
    ctx: ApiContext = Depends(context),
) -> Any:
    found = await mention_corrections(ctx.pool, mention_id)
    if found is None:
        raise HTTPException(404, detail=f"mention_id: no stored mention {mention_id}")
    return {"mention_id": str(mention_id), "corrections": [_out(c) for c in found]}


@router.get("/v1/corrections", tags=["corrections"], response_model=CorrectionList, responses=CSV_RESPONSE,
            operation_id="listCorrections", dependencies=[requires(Scope.READ)],
            summary="Every correction, newest first (filters: watchlist, since, field; keyset pagination).")
async def corrections(
    watchlist: str | None = Query(None, pattern=WATCHLIST_PATTERN, description="Only corrections of this watchlist's mentions."),
    since: datetime | None = Query(None, description="Only corrections made from this time (RFC 3339 with a time zone)."),
    field: Literal["sentiment", "entities", "risks"] | None = Query(None, description="Only corrections of this field."),
    page: Page = Depends(pagination()),
    out: Output = Depends(output),
    ctx: ApiContext = Depends(context),
) -> Any:
    kept = CorrectionFilter(watchlist=watchlist, since=aware("since", since), field=field)
    after = page.after(["int"])
    rows, more = page.cut(await list_corrections(ctx.pool, kept, after[0] if after else None, page.limit + 1))
    items = [_out(c) for c in rows]
    next_cursor = encode_cursor(rows[-1].id) if more else None
    return out.listing({"corrections": items, "next_cursor": next_cursor}, items, CORRECTION_COLUMNS, "corrections")


@router.get("/v1/watchlists/{watchlist_id}/model-agreement", tags=["corrections"], response_model=ModelAgreement,
            operation_id="getModelAgreement", dependencies=[requires(Scope.READ)],
            responses={**ERRORS, 404: {"description": "No watchlist with this id is configured or has data."}},
            summary="How often the model agreed with the corrections of this watchlist's mentions, per field.")
async def model_agreement(
    watchlist_id: str = watchlist_path(),
    since: datetime | None = Query(None, description="Only mentions whose correction in force was made from this time."),
    ctx: ApiContext = Depends(context),
) -> Any:
    since = aware("since", since)
    await known_watchlist(ctx, watchlist_id)
    rows = await latest_per_mention(ctx.pool, CorrectionFilter(watchlist=watchlist_id, since=since))
    return {"watchlist_id": watchlist_id, "since": iso(since) if since else None, "fields": summarize_agreement(rows)}

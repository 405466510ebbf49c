"""`GET /v1/leads` and `GET /v1/policy-flags`: sales leads (storage/leads.py) and the policy flags of
staff posts (storage/policy_flags.py), newest first, with their evidence; `?format=csv` exports them.

The SQL is built by pure functions from fixed fragments, every value a bind parameter.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query

from earful.core.auth import AuditedRoute, Scope, requires
from earful.storage.api.deps import (
    SOURCE_PATTERN,
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
)
from earful.storage.api.responses import CSV_RESPONSE, jsonable
from earful.storage.leads import MAX_EVIDENCE

router = APIRouter(dependencies=[requires(Scope.READ)], route_class=AuditedRoute)

AUTHOR_PATTERN = r"^@?[^\s]{1,256}$"
LEAD_COLUMNS = ("first_mention_at", "last_mention_at", "lead_id", "watchlist_id", "source", "author_handle", "author_name",
                "author_id", "author_followers", "profile_url", "mentions", "period_start", "period_end",
                "latest_evidence", "latest_text", "latest_url")
FLAG_COLUMNS = ("created_at", "detected_at", "flag_id", "rule_id", "kind", "severity", "author_handle", "author_name",
                "source", "url", "staff_watchlist_ids", "evidence_text", "text", "mention_id")


@dataclass(frozen=True)
class LeadFilter:
    watchlist: str | None = None
    source: str | None = None
    author: str | None = None  # a handle (any case, @ optional) or an account id
    from_: datetime | None = None  # first mention at or after
    to: datetime | None = None  # first mention before


def lead_listing(f: LeadFilter, after: tuple[datetime, uuid.UUID] | None, limit: int) -> tuple[str, list[Any]]:
    """Leads by their first mention, newest first, each with its latest evidence (pure)."""
    where, args = [], []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.watchlist:
        where.append(f"l.watchlist_id = {arg(f.watchlist)}")
    if f.source:
        where.append(f"l.source = {arg(f.source)}")
    if f.author:
        author = f.author.removeprefix("@")
        where.append(f"(l.author_key = lower({arg(author)}) OR l.author_id = {arg(author)})")
    if f.from_:
        where.append(f"l.first_mention_at >= {arg(f.from_)}")
    if f.to:
        where.append(f"l.first_mention_at < {arg(f.to)}")
    if after:
        where.append(f"(l.first_mention_at, l.lead_id) < ({arg(after[0])}, {arg(after[1])})")
    sql = f"""
SELECT l.lead_id, l.watchlist_id, l.source, l.author_key, l.author_id, l.author_handle, l.author_name, l.author_followers,
       l.profile_url, l.mentions, l.period_start, l.period_end, l.first_mention_at, l.last_mention_at, l.updated_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                     'mention_id', m.mention_id, 'source_id', m.source_id, 'url', m.url, 'created_at', m.created_at,
                     'text', m.text, 'evidence', m.evidence, 'start', m.evidence_start, 'end', m.evidence_end)
                     ORDER BY m.created_at, m.mention_id)
                 FROM (SELECT * FROM lead_mentions x WHERE x.lead_id = l.lead_id
                       ORDER BY x.created_at DESC, x.mention_id DESC LIMIT {MAX_EVIDENCE}) m), '[]'::jsonb) AS evidence
FROM leads l
{"WHERE " + " AND ".join(where) if where else ""}
ORDER BY l.first_mention_at DESC, l.lead_id DESC
LIMIT {arg(limit + 1)}"""
    return sql, args


@dataclass(frozen=True)
class FlagFilter:
    staff_watchlist: str | None = None
    kind: str | None = None
    rule: str | None = None
    severity: str | None = None
    source: str | None = None
    author: str | None = None
    from_: datetime | None = None  # post published at or after
    to: datetime | None = None


def flag_listing(f: FlagFilter, after: tuple[datetime, int] | None, limit: int) -> tuple[str, list[Any]]:
    """Policy flags by the time of their post, newest first (pure)."""
    where, args = [], []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.staff_watchlist:
        where.append(f"staff_watchlist_ids @> ARRAY[{arg(f.staff_watchlist)}::text]")
    for column, value in (("kind", f.kind), ("rule_id", f.rule), ("severity", f.severity), ("source", f.source)):
        if value:
            where.append(f"{column} = {arg(value)}")
    if f.author:
        author = f.author.removeprefix("@")
        where.append(f"(lower(author_handle) = lower({arg(author)}) OR author_id = {arg(author)})")
    if f.from_:
        where.append(f"mention_created_at >= {arg(f.from_)}")
    if f.to:
        where.append(f"mention_created_at < {arg(f.to)}")
    if after:
        where.append(f"(mention_created_at, id) < ({arg(after[0])}, {arg(after[1])})")
    sql = f"""
SELECT id, flag_id, rule_id, kind, severity, description, mention_id, source, source_id, url,
       mention_created_at AS created_at, author_id, author_handle, author_name, staff_watchlist_ids, watchlist_ids,
       text, evidence, detected_at, published_at
FROM policy_flags
{"WHERE " + " AND ".join(where) if where else ""}
ORDER BY mention_created_at DESC, id DESC
LIMIT {arg(limit + 1)}"""
    return sql, args


def lead_item(row: Any) -> dict[str, Any]:
    """A lead as answered: JSON values, its evidence list, and the latest evidence flat for CSV."""
    item = jsonable(row)
    evidence = json.loads(item["evidence"]) if isinstance(item["evidence"], str) else item["evidence"]
    item["evidence"] = evidence
    latest = evidence[-1] if evidence else {}
    item["latest_evidence"], item["latest_text"], item["latest_url"] = (latest.get("evidence"), latest.get("text"),
                                                                        latest.get("url"))
    return item


def flag_item(row: Any) -> dict[str, Any]:
    item = jsonable(row)
    item.pop("id", None)
    evidence = json.loads(item["evidence"]) if isinstance(item["evidence"], str) else item["evidence"]
    item["evidence"] = evidence
    item["evidence_text"] = " | ".join(e["text"] for e in evidence)
    return item


@router.get("/v1/leads", tags=["leads"], responses=CSV_RESPONSE, operation_id="listLeads",
            summary="Sales leads (purchase intent from prospects), newest first, with evidence and the author's profile.")
async def leads(
    watchlist: str | None = Query(None, pattern=WATCHLIST_PATTERN, description="Only this watchlist's leads."),
    source: str | None = Query(None, pattern=SOURCE_PATTERN, description="Only authors at this source."),
    author: str | None = Query(None, pattern=AUTHOR_PATTERN, description="Only this author: handle (any case, @ optional) or account id."),
    when: Period = Depends(period("Leads whose first mention is at or after (inclusive).",
                                  "Leads whose first mention is before (exclusive).")),
    page: Page = Depends(pagination("Leads per page.")),
    out: Output = Depends(output),
    ctx: ApiContext = Depends(context),
) -> Any:
    from_, to = when.bounds()
    after = page.after(["time", "uuid"])
    sql, args = lead_listing(LeadFilter(watchlist, source, author, from_, to),
                             (after[0], after[1]) if after else None, page.limit)
    rows, more = page.cut(await ctx.pool.fetch(sql, *args))
    items = [lead_item(r) for r in rows]
    next_cursor = encode_cursor(rows[-1]["first_mention_at"], rows[-1]["lead_id"]) if more else None
    return out.listing({"leads": items, "next_cursor": next_cursor}, items, LEAD_COLUMNS, "leads")


@router.get("/v1/policy-flags", tags=["staff"], responses=CSV_RESPONSE, operation_id="listPolicyFlags",
            summary="Staff posts that break a rule of the social-media policy, newest first, with the rule and evidence.")
async def policy_flags(
    staff_watchlist: str | None = Query(None, pattern=WATCHLIST_PATTERN, description="Only staff listed by this staff watchlist."),
    kind: Literal["confidential", "missing_disclosure", "legal"] | None = Query(None),
    rule: str | None = Query(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Only this rule id."),
    severity: Literal["info", "warning", "critical"] | None = Query(None),
    source: str | None = Query(None, pattern=SOURCE_PATTERN),
    author: str | None = Query(None, pattern=AUTHOR_PATTERN, description="Only this author: handle (any case, @ optional) or account id."),
    when: Period = Depends(period("Posts published at or after (inclusive).", "Posts published before (exclusive).")),
    page: Page = Depends(pagination("Flags per page.")),
    out: Output = Depends(output),
    ctx: ApiContext = Depends(context),
) -> Any:
    from_, to = when.bounds()
    after = page.after(["time", "int"])
    kept = FlagFilter(staff_watchlist, kind, rule, severity, source, author, from_, to)
    sql, args = flag_listing(kept, (after[0], after[1]) if after else None, page.limit)
    rows, more = page.cut(await ctx.pool.fetch(sql, *args))
    items = [flag_item(r) for r in rows]
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return out.listing({"policy_flags": items, "next_cursor": next_cursor}, items, FLAG_COLUMNS, "policy-flags")

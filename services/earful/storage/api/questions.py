"""`GET /v1/watchlists/{watchlist_id}/questions`: customer questions a brand has not answered yet,
and how fast it answers the others."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends

from earful.core.auth import AuditedRoute, Scope, requires
from earful.storage.api.deps import (
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
from earful.storage.api.queries import open_questions, question_posts, question_stats
from earful.storage.api.responses import WATCHLIST_RESPONSE, iso, jsonable
from earful.storage.api.watchlists import known_watchlist

router = APIRouter(dependencies=[requires(Scope.READ)], route_class=AuditedRoute)

OPEN_QUESTION_COLUMNS = ("created_at", "waiting_s", "mention_id", "source", "source_id", "url", "author_handle",
                         "author_followers", "lang", "text")


async def fetch_open_questions(pool: asyncpg.Pool, watchlist_id: str, lo: datetime, hi: datetime,
                               after: tuple[datetime, Any] | None, limit: int) -> list[dict[str, Any]]:
    """`open_questions` with their posts: created_at, waiting_s, mention_id, source, source_id, url,
    author_handle, author_followers, lang, text (a question whose post is gone is left out)."""
    sql, args = open_questions(watchlist_id, lo, hi, after, limit)
    page = await pool.fetch(sql, *args)
    if not page:
        return []
    sql, args = question_posts([(q["source"], q["source_id"], q["created_at"]) for q in page])
    posts = {(r["source"], r["source_id"], r["created_at"]): r for r in await pool.fetch(sql, *args)}
    out = []
    for q in page:
        m = posts.get((q["source"], q["source_id"], q["created_at"]))
        if m is not None:
            out.append({"created_at": q["created_at"], "mention_id": q["mention_id"], "source": q["source"],
                        "source_id": q["source_id"], "url": m["url"], "author_handle": m["author_handle"],
                        "author_followers": m["author_followers"], "lang": m["lang"], "text": m["text"],
                        "waiting_s": q["waiting_s"]})
    return out


def summarize(stats: asyncpg.Record, sla_s: int | None) -> dict[str, Any]:
    """The stats row as answered: times rounded to 0.1 s, open questions, and the SLA (breaches only with one)."""
    summary = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in dict(stats).items()}
    summary["open"] = summary["asked"] - summary["answered"]
    summary["sla_s"] = sla_s
    if sla_s is None:
        summary["sla_breached"] = None
    return summary


@router.get("/v1/watchlists/{watchlist_id}/questions", tags=["trends"], responses=WATCHLIST_RESPONSE,
             operation_id="getWatchlistQuestions",
            summary="Open customer questions (longest waiting first) and time to first reply from a brand handle.")
async def questions(
    watchlist_id: str = watchlist_path(),
    when: Period = Depends(period("Questions asked from (inclusive). Default: 7 days before `to`.",
                                  "Questions asked before (exclusive). Default: now.")),
    page: Page = Depends(pagination("Open questions per page.")),
    out: Output = Depends(output),
    ctx: ApiContext = Depends(context),
) -> Any:
    lo, hi = when.window(timedelta(days=7))
    w = await known_watchlist(ctx, watchlist_id)
    sla = w.response_sla_s if w else None
    stats_sql, stats_args = question_stats(watchlist_id, lo, hi, sla)
    stats = await ctx.pool.fetchrow(stats_sql, *stats_args)
    after = page.after(["time", "uuid"])
    rows, more = page.cut(await fetch_open_questions(ctx.pool, watchlist_id, lo, hi,
                                                     (after[0], after[1]) if after else None, page.limit))
    open_items = [jsonable(r) for r in rows]
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["mention_id"]) if more else None
    body = {"watchlist_id": watchlist_id, "from": iso(lo), "to": iso(hi), "stats": summarize(stats, sla),
            "open_questions": open_items, "next_cursor": next_cursor}
    return out.listing(body, open_items, OPEN_QUESTION_COLUMNS, f"questions-{watchlist_id}")

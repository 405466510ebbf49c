"""`GET /v1/mentions`: search and list mentions, newest or largest reach first, JSON or CSV."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query

from earful.core.auth import AuditedRoute, Scope, requires
from earful.core.vocabulary import TAGS
from earful.storage.api.deps import (
    LANG_PATTERN,
    SOURCE_PATTERN,
    WATCHLIST_PATTERN,
    Output,
    Page,
    Period,
    bad_param,
    db_pool,
    encode_cursor,
    output,
    pagination,
    period,
)
from earful.storage.api.queries import (
    MENTION_FIELDS,
    MentionFilter,
    any_of,
    language_alternatives,
    mention_search,
)
from earful.storage.api.responses import CSV_RESPONSE, jsonable

router = APIRouter(dependencies=[requires(Scope.READ)], route_class=AuditedRoute)

Sort = Literal["time", "reach"]
Owned = Literal["any", "true", "false"]
#: The listing's columns: the stored fields, and whether the mention is owned (see `owned_flag`).
LISTING_FIELDS = (*MENTION_FIELDS, "owned")
Sentiment = Literal["negative", "neutral", "positive", "unknown"]
_CURSOR_KINDS = {"time": ["const", "time", "uuid"], "reach": ["const", "int", "uuid"]}


@dataclass(frozen=True)
class Search:
    """What to look for in the mentions, and in which order to list them."""

    lang: str | None
    source: str | None
    sentiment: Sentiment | None
    risk: str | None
    entity: str | None
    q: str | None
    sort: Sort


async def search(
    lang: str | None = Query(None, pattern=LANG_PATTERN, description="Detected language (ISO 639-1); also picks the full-text configuration."),
    source: str | None = Query(None, pattern=SOURCE_PATTERN, description="Source, e.g. twitter."),
    sentiment: Sentiment | None = Query(None),
    risk: Literal[TAGS] | None = Query(None, description="Risk or intent tag."),  # type: ignore[valid-type]  # Literal of a tuple built at run time: FastAPI reads the values, mypy cannot
    entity: str | None = Query(None, min_length=1, max_length=200, description="Entity text (case-insensitive), e.g. #AcmeAir or Zürich."),
    q: str | None = Query(None, min_length=1, max_length=500, description="Full-text query (web search syntax: words, \"phrases\", OR, -word)."),
    sort: Sort = Query("time", description="Newest first, or largest author reach first."),
) -> Search:
    return Search(lang, source, sentiment, risk, entity, q, sort)


async def any_language_tsquery(pool: asyncpg.Pool, q: str) -> str:
    """`q` parsed in every text-search configuration, the distinct results OR-ed. Most configurations
    give the same lexemes, so this is usually 2-3 alternatives instead of 29, which the planner can
    estimate and the executor checks quickly. '' when no configuration finds a word in `q`."""
    sql, args = language_alternatives(q)
    return any_of(await pool.fetchval(sql, *args))


def _after(page: Page, sort: Sort) -> tuple[Any, Any] | None:
    """The (sort key, mention_id) a page starts after; a cursor of the other order is a 422."""
    after = page.after(_CURSOR_KINDS[sort])
    if after is None:
        return None
    c_sort, c_key, c_id = after
    if c_sort != sort:
        raise bad_param("query", "cursor", f"was made for sort={c_sort}, not sort={sort}")
    return c_key, c_id


#: How far back the newest-first search looks at first, then next, before it reads the rest: a
#: search for a common word within a watchlist matched ~6,500 posts over 90 days, and sorting them
#: all (with 90 partitions planned) took 100-300 ms; the last days alone usually fill a page.
SEARCH_WINDOWS = (timedelta(days=2), timedelta(days=14))


async def newest_first(pool: asyncpg.Pool, f: MentionFilter, sort: Sort, after: tuple[Any, Any] | None,
                       limit: int) -> list[asyncpg.Record]:
    """A page (plus one row) of `mention_search`. Newest first, the period is read from its end in
    growing windows (SEARCH_WINDOWS, then the rest) until the page is full: the same rows as one
    query over the whole period, in the same order."""
    if sort != "time":
        sql, args = mention_search(f, sort, after, limit)
        return list(await pool.fetch(sql, *args))
    end = after[0] if after else (f.to or datetime.now(timezone.utc))
    rows: list[asyncpg.Record] = []
    upper = f.to
    for back in (*SEARCH_WINDOWS, None):
        lower = None if back is None else end - back
        if f.from_ is not None and (lower is None or lower <= f.from_):
            lower = f.from_
        window = replace(f, from_=lower, to=upper)
        sql, args = mention_search(window, sort, after, limit - len(rows))
        rows += await pool.fetch(sql, *args)
        if len(rows) > limit or lower is None or lower == f.from_:
            return rows
        upper = lower
    return rows


@router.get("/v1/mentions", tags=["mentions"], responses=CSV_RESPONSE, operation_id="listMentions",
            summary="Search mentions: filters, full-text search, sorted by time or reach, keyset pagination.")
async def mentions(
    watchlist: str | None = Query(None, pattern=WATCHLIST_PATTERN, description="Only mentions of this watchlist."),
    owned: Owned = Query("any", description="`any` (default): owned and earned, each marked `owned`; `true`: only posts by"
                         " the brand's own accounts (of `watchlist` when given); `false`: only earned mentions, as the"
                         " analytics endpoints count them."),
    when: Period = Depends(period()),
    find: Search = Depends(search),
    page: Page = Depends(pagination()),
    out: Output = Depends(output),
    pool: asyncpg.Pool = Depends(db_pool),
) -> Any:
    from_, to = when.bounds()
    tsquery = None
    if find.q:
        tsquery = find.q if find.lang else await any_language_tsquery(pool, find.q)
        if not tsquery:
            return out.listing({"mentions": [], "next_cursor": None}, [], LISTING_FIELDS, "mentions")
    kept = MentionFilter(watchlist=watchlist, entity=find.entity, risk=find.risk, from_=from_, to=to, lang=find.lang,
                         source=find.source, sentiment=find.sentiment, tsquery=tsquery, owned=owned)
    rows, more = page.cut(await newest_first(pool, kept, find.sort, _after(page, find.sort), page.limit))
    next_cursor = encode_cursor(find.sort, rows[-1]["sort_key"], rows[-1]["mention_id"]) if more else None
    items = [{k: v for k, v in jsonable(r).items() if k != "sort_key"} for r in rows]
    for item in items:
        item["owned"] = owned_flag(item["owned_watchlist_ids"], watchlist)
    return out.listing({"mentions": items, "next_cursor": next_cursor}, items, LISTING_FIELDS, "mentions")


def owned_flag(owned_watchlist_ids: list[str] | None, watchlist: str | None) -> bool:
    """Is a listed mention owned: for the filtered watchlist, or (without one) for any of its watchlists?"""
    ids = owned_watchlist_ids or []
    return watchlist in ids if watchlist else bool(ids)

"""Who and what a watchlist's mentions are about: top entities, hashtags and authors, and advocates.

Each top list walks candidates in all-time order (entity_totals, author_totals) in growing chunks,
summing each chunk over the period from the day rollups, until no remaining candidate can enter
the list (see migration 006): a long period costs a few chunks, not a scan of every entity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query

from earful.core.auth import AuditedRoute, Scope, requires
from earful.core.vocabulary import ENTITY_TYPES
from earful.storage.api.deps import (
    ApiContext,
    Output,
    Period,
    context,
    output,
    period,
    watchlist_path,
)
from earful.storage.api.queries import (
    DAY,
    advocate_candidates,
    author_candidates,
    author_sums,
    chunk,
    entity_candidates,
    entity_sums,
)
from earful.storage.api.responses import WATCHLIST_RESPONSE, iso
from earful.storage.api.watchlists import known_watchlist

router = APIRouter(dependencies=[requires(Scope.READ)], route_class=AuditedRoute)

FIRST_CHUNK = 200
MAX_CHUNK = 10_000
_DAYS_TO = "End (rounded up to the UTC day). Default: now."


async def walk(pool: asyncpg.Pool, candidates: tuple[str, Sequence[Any]],
               measure: Callable[[list[asyncpg.Record]], Awaitable[None]],
               stop: Callable[[list[asyncpg.Record]], bool]) -> None:
    """Walk candidates in the order of their query in growing chunks, `measure` each chunk,
    until `stop(chunk)` says the answer cannot change any more."""
    sql, args = candidates
    offset, size = 0, FIRST_CHUNK
    while True:
        rows = await pool.fetch(chunk(sql, offset, size), *args)
        if not rows:
            return
        await measure(rows)
        if len(rows) < size or stop(rows):
            return
        offset, size = offset + size, min(size * 2, MAX_CHUNK)


async def top_entities(pool: asyncpg.Pool, watchlist_id: str, lo: datetime, hi: datetime, limit: int,
                       entity_type: str | None) -> list[dict[str, Any]]:
    """The `limit` entities (of `entity_type`; None: all but hashtags and links) with the most
    mentions in [lo, hi): candidates by all-time count, each summed over the period, until the last
    place beats every remaining candidate's all-time count."""
    best: list[dict[str, Any]] = []

    async def measure(cands: list[asyncpg.Record]) -> None:
        sql, args = entity_sums(watchlist_id, [c["entity_type"] for c in cands], [c["entity_key"] for c in cands], lo, hi)
        best.extend(dict(r) for r in await pool.fetch(sql, *args))
        best.sort(key=lambda r: (-r["mentions"], r["entity_key"]))
        del best[limit:]

    await walk(pool, entity_candidates(watchlist_id, entity_type), measure,
               lambda cands: len(best) >= limit and best[-1]["mentions"] >= cands[-1]["mentions"])
    return [{k: v for k, v in r.items() if k != "entity_key"} for r in best]


async def top_authors(pool: asyncpg.Pool, watchlist_id: str, lo: datetime, hi: datetime, limit: int) -> list[dict[str, Any]]:
    """The `limit` authors with the most mentions in [lo, hi) (same walk as top_entities)."""
    best: list[dict[str, Any]] = []

    async def measure(cands: list[asyncpg.Record]) -> None:
        reach = {(c["source"], c["author_key"]): c["reach"] for c in cands}
        sql, args = author_sums(watchlist_id, [c["source"] for c in cands], [c["author_key"] for c in cands], lo, hi)
        best.extend({**dict(r), "reach": reach[(r["source"], r["author_key"])]} for r in await pool.fetch(sql, *args))
        best.sort(key=lambda r: (-r["mentions"], -r["reach"], r["source"], r["author_key"]))
        del best[limit:]

    await walk(pool, author_candidates(watchlist_id), measure,
               lambda cands: len(best) >= limit and best[-1]["mentions"] >= cands[-1]["mentions"])
    return [{k: r[k] for k in ("source", "author_handle", "author_name", "mentions", "reach")} for r in best]


async def top_advocates(pool: asyncpg.Pool, watchlist_id: str, lo: datetime, hi: datetime, limit: int,
                        min_positive: int, own_handles: list[str]) -> list[dict[str, Any]]:
    """Authors with at least `min_positive` positive mentions in [lo, hi), more positive than negative,
    largest reach first: candidates in reach order (all-time positive count at least `min_positive`),
    kept when their period qualifies, until `limit` are found."""
    found: list[dict[str, Any]] = []

    async def measure(cands: list[asyncpg.Record]) -> None:
        reach = {(c["source"], c["author_key"]): c["reach"] for c in cands}
        sql, args = author_sums(watchlist_id, [c["source"] for c in cands], [c["author_key"] for c in cands], lo, hi)
        order = {key: i for i, key in enumerate(reach)}
        for r in sorted(await pool.fetch(sql, *args), key=lambda r: order[(r["source"], r["author_key"])]):
            if r["positive"] >= min_positive and r["positive"] > r["negative"] and len(found) < limit:
                found.append({"source": r["source"], "author_handle": r["author_handle"], "author_name": r["author_name"],
                              "positive": r["positive"], "negative": r["negative"], "mentions": r["mentions"],
                              "reach": reach[(r["source"], r["author_key"])]})

    await walk(pool, advocate_candidates(watchlist_id, min_positive, own_handles), measure,
               lambda cands: len(found) >= limit)
    return found


@dataclass(frozen=True)
class EntityListing:
    type: str | None
    limit: int


async def entity_listing(
    type: Literal[ENTITY_TYPES] | None = Query(None, description="Only entities of this type in `entities`."),  # type: ignore[valid-type]  # Literal of a tuple built at run time: FastAPI reads the values, mypy cannot
    limit: int = Query(20, ge=1, le=200, description="Items per list."),
) -> EntityListing:
    return EntityListing(type, limit)


@router.get("/v1/watchlists/{watchlist_id}/entities", tags=["trends"], responses=WATCHLIST_RESPONSE,
             operation_id="getWatchlistEntities",
            summary="Top entities, hashtags and authors of a watchlist over a period (whole UTC days).")
async def entities(
    watchlist_id: str = watchlist_path(),
    when: Period = Depends(period("Start (rounded down to the UTC day). Default: 7 days before `to`.", _DAYS_TO)),
    listing: EntityListing = Depends(entity_listing),
    out: Output = Depends(output),
    ctx: ApiContext = Depends(context),
) -> Any:
    lo, hi = when.window(timedelta(days=7), align=DAY)
    await known_watchlist(ctx, watchlist_id)
    limit = listing.limit
    found = {"entities": await top_entities(ctx.pool, watchlist_id, lo, hi, limit, listing.type),
             "hashtags": await top_entities(ctx.pool, watchlist_id, lo, hi, limit, "hashtag"),
             "authors": await top_authors(ctx.pool, watchlist_id, lo, hi, limit)}
    rows = [{"list": name, **item} for name, items in found.items() for item in items]
    return out.listing({"watchlist_id": watchlist_id, "from": iso(lo), "to": iso(hi), **found}, rows,
                       ("list", "type", "text", "source", "author_handle", "author_name", "mentions", "reach"),
                       f"entities-{watchlist_id}")


@dataclass(frozen=True)
class AdvocateListing:
    min_positive: int
    limit: int


async def advocate_listing(
    min_positive: int = Query(2, ge=1, le=1000, description="Least positive mentions in the period (and more positive than negative ones)."),
    limit: int = Query(20, ge=1, le=200),
) -> AdvocateListing:
    return AdvocateListing(min_positive, limit)


@router.get("/v1/watchlists/{watchlist_id}/advocates", tags=["trends"], responses=WATCHLIST_RESPONSE,
             operation_id="getWatchlistAdvocates",
            summary="Authors who repeatedly post positively about a watchlist, largest reach first (whole UTC days).")
async def advocates(
    watchlist_id: str = watchlist_path(),
    when: Period = Depends(period("Start (rounded down to the UTC day). Default: 30 days before `to`.", _DAYS_TO)),
    listing: AdvocateListing = Depends(advocate_listing),
    out: Output = Depends(output),
    ctx: ApiContext = Depends(context),
) -> Any:
    lo, hi = when.window(timedelta(days=30), align=DAY)
    w = await known_watchlist(ctx, watchlist_id)
    own = sorted({h.lower() for h in w.handles}) if w else []
    items = await top_advocates(ctx.pool, watchlist_id, lo, hi, listing.limit, listing.min_positive, own)
    return out.listing({"watchlist_id": watchlist_id, "from": iso(lo), "to": iso(hi), "advocates": items}, items,
                       ("source", "author_handle", "author_name", "positive", "negative", "mentions", "reach"),
                       f"advocates-{watchlist_id}")

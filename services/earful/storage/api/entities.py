"""Who and what a watchlist's mentions are about: top entities, hashtags and authors, and advocates.

Each top list walks candidates in all-time order (entity_totals, author_totals) in growing chunks,
summing each chunk over the period from the day rollups, until no remaining candidate can enter
the list (see migration 006): a long period costs a few chunks, not a scan of every entity.

Advocates are people (earful.watchlists.authors: not media outlets, brand or staff accounts) whose
positive posts about the watchlist travel furthest: ranked by amplification (reposts + replies +
engagement velocity of their positive posts in the period), with the previous period's figure
for the trend and their most amplified posts. Engagement is read from the mentions (it changes
after a post is stored; no rollup holds it), in chunks of the ranking until enough people are found.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeAlias

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
    advocate_day_posts,
    advocate_days,
    advocate_details,
    advocate_ranking,
    author_candidates,
    author_sums,
    chunk,
    entity_candidates,
    entity_sums,
)
from earful.storage.api.responses import WATCHLIST_RESPONSE, iso
from earful.storage.api.watchlists import known_watchlist
from earful.watchlists.authors import author_type
from earful.watchlists.owned import OwnedHandles

router = APIRouter(dependencies=[requires(Scope.READ)], route_class=AuditedRoute)

#: Where reads go: the pool, or one connection held for a chain of dependent reads (so each
#: step does not queue again behind other panels' reads for a connection).
Reader: TypeAlias = "asyncpg.Pool | asyncpg.Connection"
FIRST_CHUNK = 200
MAX_CHUNK = 10_000
_DAYS_TO = "End (rounded up to the UTC day). Default: now."


async def walk(pool: Reader, candidates: tuple[str, Sequence[Any]],
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
                       entity_type: str | None, *, with_key: bool = False) -> list[dict[str, Any]]:
    """The `limit` entities (of `entity_type`; None: all but hashtags and links) with the most
    mentions in [lo, hi): candidates by all-time count, each summed over the period, until the last
    place beats every remaining candidate's all-time count. `with_key`: each keeps its `entity_key`
    (the lower-case text the rollups group by)."""
    best: list[dict[str, Any]] = []

    async def measure(cands: list[asyncpg.Record]) -> None:
        sql, args = entity_sums(watchlist_id, [c["entity_type"] for c in cands], [c["entity_key"] for c in cands], lo, hi)
        best.extend(dict(r) for r in await pool.fetch(sql, *args))
        best.sort(key=lambda r: (-r["mentions"], r["entity_key"]))
        del best[limit:]

    await walk(pool, entity_candidates(watchlist_id, entity_type), measure,
               lambda cands: len(best) >= limit and best[-1]["mentions"] >= cands[-1]["mentions"])
    return best if with_key else [{k: v for k, v in r.items() if k != "entity_key"} for r in best]


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


#: A trend is `up` or `down` when the amplification changed by at least this factor since the previous period.
TREND_FACTOR = 1.1


def trend(current: float, previous: float) -> str:
    """`new` (nothing amplified in the previous period), `up`, `down` or `flat` (within TREND_FACTOR)."""
    if previous <= 0:
        return "new" if current > 0 else "flat"
    if current >= previous * TREND_FACTOR:
        return "up"
    if current * TREND_FACTOR <= previous:
        return "down"
    return "flat"


def advocate_item(row: Mapping[str, Any]) -> dict[str, Any]:
    """One advocate as the API answers it, from a row of `advocate_ranking` (pure)."""
    amplification, previous = float(row["amplification"]), float(row["previous_amplification"])
    return {"source": row["source"], "author_handle": row["author_handle"], "author_id": row["author_id"],
            "author_name": row["author_name"], "author_type": "person", "reach": int(row["reach"]),
            "positive": int(row["positive"]), "negative": int(row["negative"]), "reposts": int(row["reposts"]),
            "replies": int(row["replies"]), "likes": int(row["likes"]), "velocity": round(float(row["velocity"]), 2),
            "amplification": round(amplification, 2), "previous_positive": int(row["previous_positive"]),
            "previous_amplification": round(previous, 2),
            "change": round((amplification - previous) / previous, 4) if previous > 0 else None,
            "trend": trend(amplification, previous), "best_posts": []}


def best_post(row: Mapping[str, Any]) -> dict[str, Any]:
    """One of an advocate's best posts (pure)."""
    return {"mention_id": str(row["mention_id"]), "url": row["url"], "text": row["text"],
            "created_at": iso(row["created_at"]), "likes": int(row["likes"]), "reposts": int(row["reposts"]),
            "replies": int(row["replies"]), "velocity": round(float(row["velocity"]), 2),
            "amplification": round(float(row["amplification"]), 2)}


async def top_advocates(pool: Reader, watchlist_id: str, lo: datetime, hi: datetime, limit: int,
                        min_positive: int, accounts: OwnedHandles, best_posts: int = 3) -> list[dict[str, Any]]:
    """The `limit` people with the most amplified positive posts in [lo, hi) (at least `min_positive`
    of them, more positive than negative), each with the previous period of equal length and their
    `best_posts` most amplified posts. Outlets and brand or staff accounts (`accounts`) are passed over."""
    found: list[tuple[str, str, dict[str, Any]]] = []

    async def measure(rows: list[asyncpg.Record]) -> None:
        step = 2 * limit  # the details of a few candidates at a time: most of the first ones qualify
        for at in range(0, len(rows), step):
            part = rows[at:at + step]
            sql, args = advocate_details(watchlist_id, lo - (hi - lo), lo, hi, [r["source"] for r in part],
                                         [r["author_key"] for r in part])
            details = {(d["source"], d["author_key"]): d for d in await pool.fetch(sql, *args)}
            for r in part:
                d = details.get((r["source"], r["author_key"]))
                if len(found) >= limit or d is None or r["positive"] <= d["negative"]:
                    continue
                if author_type(r["source"], d["author_handle"], d["author_id"], d["author_name"], d["connector"],
                               accounts) == "person":
                    found.append((r["source"], r["author_key"], advocate_item({**dict(d), **dict(r)})))
            if len(found) >= limit:
                return

    # Each chunk aggregates the period again; a large first chunk is nearly free beside that.
    await walk(pool, advocate_ranking(watchlist_id, lo, hi, min_positive), measure, lambda rows: len(found) >= limit)
    if found and best_posts:
        posts = await best_posts_of(pool, watchlist_id, lo, hi, [(s, k) for s, k, _ in found], best_posts)
        for s, k, item in found:
            item["best_posts"] = [best_post(r) for r in posts.get((s, k), [])]
    return [item for _, _, item in found]


def _post_order(r: Mapping[str, Any]) -> tuple[Any, ...]:
    """Most amplified first, then the newest, then by id (ascending): the order of an advocate's best posts."""
    return (-r["amplification"], -r["created_at"].timestamp(), str(r["mention_id"]))


def _settled(posts: list[Mapping[str, Any]], k: int, bound: Decimal | None, day: datetime) -> bool:
    """Whether no post of an unread author-day (`day`, its best post's amplification at most
    `bound`) can enter the `k` best `posts` (sorted): the k-th beats the bound, or equals it and is
    newer than that whole day (newer wins a tie)."""
    if len(posts) < k or bound is None:
        return False
    kth = posts[k - 1]
    return kth["amplification"] > bound or (kth["amplification"] == bound and kth["created_at"] >= day + timedelta(days=1))


async def best_posts_of(pool: Reader, watchlist_id: str, lo: datetime, hi: datetime,
                        authors: list[tuple[str, str]], k: int) -> dict[tuple[str, str], list[asyncpg.Record]]:
    """The `k` most amplified positive earned posts in the day-aligned [lo, hi) of each (source, author
    key). An author's days are read from the highest upper bound of their best post down, `k` days at
    a time, until the k-th post found beats every unread day's bound: usually `k` days, not the
    thousands of posts a prolific author writes in a month."""
    sql, args = advocate_days(watchlist_id, lo, hi, [s for s, _ in authors], [a for _, a in authors])
    days: dict[tuple[str, str], list[tuple[datetime, Decimal | None]]] = {}
    for r in await pool.fetch(sql, *args):
        days.setdefault((r["source"], r["author_key"]), []).append((r["bucket"], r["pos_best"]))
    found: dict[tuple[str, str], list[asyncpg.Record]] = {a: [] for a in authors}
    read = dict.fromkeys(authors, 0)
    while True:
        wanted = []
        for a in authors:
            todo, posts = days.get(a, [])[read[a]:], found[a]
            if todo and not _settled(posts, k, todo[0][1], todo[0][0]):
                wanted += [(a, day) for day, _ in todo[:k]]
                read[a] += len(todo[:k])
        if not wanted:
            return {a: posts[:k] for a, posts in found.items()}
        first, last = min(day for _, day in wanted), max(day for _, day in wanted)
        sql, args = advocate_day_posts(watchlist_id, max(lo, first), min(hi, last + timedelta(days=1)),  # fewer partitions to plan
                                       [a[0] for a, _ in wanted], [a[1] for a, _ in wanted], [day for _, day in wanted])
        for r in await pool.fetch(sql, *args):
            found[(r["source"], r["author_key"])].append(r)
        for posts in found.values():
            posts.sort(key=_post_order)


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
    best_posts: int


async def advocate_listing(
    min_positive: int = Query(2, ge=1, le=1000, description="Least positive mentions in the period (and more positive than negative ones)."),
    limit: int = Query(20, ge=1, le=200),
    best_posts: int = Query(3, ge=0, le=10, description="Most amplified positive posts listed per advocate."),
) -> AdvocateListing:
    return AdvocateListing(min_positive, limit, best_posts)


#: The CSV export's columns (an advocacy programme's list): best_posts as their links, space-separated.
ADVOCATE_COLUMNS = ("source", "author_handle", "author_name", "reach", "positive", "negative", "reposts", "replies",
                    "likes", "velocity", "amplification", "previous_amplification", "change", "trend", "best_posts")


def advocate_csv_row(item: Mapping[str, Any]) -> dict[str, Any]:
    """An advocate as one CSV row: the best posts by link (their mention id when the source gave no link)."""
    return {**item, "best_posts": " ".join(p["url"] or p["mention_id"] for p in item["best_posts"])}


@router.get("/v1/watchlists/{watchlist_id}/advocates", tags=["trends"], responses=WATCHLIST_RESPONSE,
             operation_id="getWatchlistAdvocates",
             summary="People whose positive posts about a watchlist are amplified most (reposts, replies, engagement "
                     "velocity), with the trend from the previous period and their best posts (whole UTC days).")
async def advocates(
    watchlist_id: str = watchlist_path(),
    when: Period = Depends(period("Start (rounded down to the UTC day). Default: 30 days before `to`.", _DAYS_TO)),
    listing: AdvocateListing = Depends(advocate_listing),
    out: Output = Depends(output),
    ctx: ApiContext = Depends(context),
) -> Any:
    lo, hi = when.window(timedelta(days=30), align=DAY)
    await known_watchlist(ctx, watchlist_id)
    items = await top_advocates(ctx.pool, watchlist_id, lo, hi, listing.limit, listing.min_positive, ctx.owned(),
                                listing.best_posts)
    body = {"watchlist_id": watchlist_id, "from": iso(lo), "to": iso(hi), "previous_from": iso(lo - (hi - lo)),
            "advocates": items}
    return out.listing(body, [advocate_csv_row(i) for i in items], ADVOCATE_COLUMNS, f"advocates-{watchlist_id}")

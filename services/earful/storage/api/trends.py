"""Volume and sentiment over time: a watchlist's series, and watchlists compared (share of voice)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query

from earful.core.auth import AuditedRoute, Scope, requires
from earful.storage.api.deps import (
    LANG_PATTERN,
    SOURCE_PATTERN,
    WATCHLIST_PATTERN,
    ApiContext,
    Output,
    Period,
    bad_param,
    context,
    from_query,
    output,
    period,
    to_query,
    watchlist_path,
)
from earful.storage.api.queries import DAY, volume_series
from earful.storage.api.queries import share_of_voice as share_of_voice_query
from earful.storage.api.responses import CSV_RESPONSE, WATCHLIST_RESPONSE, iso, jsonable
from earful.storage.api.watchlists import known_watchlist

router = APIRouter(dependencies=[requires(Scope.READ)], route_class=AuditedRoute)

INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "3h": 10800, "6h": 21600, "12h": 43200,
             "1d": 86400, "7d": 604800}
MAX_POINTS = 5000
MAX_COMPARED = 200


@dataclass(frozen=True)
class Buckets:
    """A series' period and bucket length, as given."""

    period: Period
    interval: str

    def window(self) -> tuple[datetime, datetime, int]:
        """[from, to) aligned to the interval, and its length in seconds; a 422 beyond MAX_POINTS buckets."""
        step = INTERVALS[self.interval]
        lo, hi = self.period.window(timedelta(days=30) if step >= DAY else timedelta(days=1), align=step)
        if (hi - lo).total_seconds() / step > MAX_POINTS:
            raise bad_param("query", "interval", f"gives more than {MAX_POINTS} points for this period; use a longer interval or a shorter period")
        return lo, hi, step


async def buckets(
    from_: datetime | None = from_query("Start (inclusive; rounded down to the interval). Default: 1 day before `to` (30 days for 1d and 7d intervals)."),
    to: datetime | None = to_query("End (exclusive; rounded up to the interval). Default: now."),
    interval: Literal[tuple(INTERVALS)] = Query("1h", description="Bucket length."),  # type: ignore[valid-type]  # Literal of a tuple built at run time: FastAPI reads the values, mypy cannot
) -> Buckets:
    return Buckets(Period(from_, to), interval)


@dataclass(frozen=True)
class RollupFilter:
    source: str | None
    lang: str | None


async def rollup_filter(source: str | None = Query(None, pattern=SOURCE_PATTERN),
                        lang: str | None = Query(None, pattern=LANG_PATTERN)) -> RollupFilter:
    return RollupFilter(source, lang)


@router.get("/v1/watchlists/{watchlist_id}/series", tags=["trends"], responses=WATCHLIST_RESPONSE,
             operation_id="getWatchlistSeries",
            summary="Volume and sentiment of a watchlist per interval (every bucket, zeros included).")
async def series(
    watchlist_id: str = watchlist_path(),
    span: Buckets = Depends(buckets),
    only: RollupFilter = Depends(rollup_filter),
    out: Output = Depends(output),
    ctx: ApiContext = Depends(context),
) -> Any:
    lo, hi, step = span.window()
    await known_watchlist(ctx, watchlist_id)
    sql, args = volume_series(watchlist_id, lo, hi, step, only.source, only.lang)
    points = []
    for r in await ctx.pool.fetch(sql, *args):
        point = jsonable(r)
        polar = point["positive"] + point["negative"]
        point["net_sentiment"] = round((point["positive"] - point["negative"]) / polar, 4) if polar else None
        points.append(point)
    body = {"watchlist_id": watchlist_id, "interval": span.interval, "from": iso(lo), "to": iso(hi), "points": points}
    return out.listing(body, points, ("start", "mentions", "negative", "neutral", "positive", "unknown", "net_sentiment"),
                       f"series-{watchlist_id}")


def _compared(watchlist: list[str] | None) -> list[str] | None:
    """The watchlist ids to compare, each checked (a 422 names the parameter)."""
    for w in watchlist or ():
        if not re.match(WATCHLIST_PATTERN, w):
            raise bad_param("query", "watchlist", f"{w[:80]!r} is not a watchlist id")
    if watchlist and len(watchlist) > MAX_COMPARED:
        raise bad_param("query", "watchlist", f"at most {MAX_COMPARED} watchlists")
    return watchlist


@router.get("/v1/share-of-voice", tags=["trends"], responses=CSV_RESPONSE, operation_id="getShareOfVoice",
            summary="Watchlists compared over a period: mentions, share and sentiment of each.")
async def share_of_voice(
    watchlist: list[str] | None = Query(None, description="Compare only these watchlists (repeat the parameter). Default: every watchlist with mentions."),
    when: Period = Depends(period("Start (inclusive; rounded down to the minute). Default: 30 days before `to`.",
                                  "End (exclusive; rounded up to the minute). Default: now.")),
    out: Output = Depends(output),
    ctx: ApiContext = Depends(context),
) -> Any:
    compared = _compared(watchlist)
    lo, hi = when.window(timedelta(days=30))
    query = share_of_voice_query(lo, hi, compared)
    rows = await ctx.pool.fetch(query[0], *query[1]) if query else []
    total = sum(r["mentions"] for r in rows)
    names = ctx.watchlists().watchlists
    items = []
    for r in rows:
        item = dict(r)
        item["name"] = names[r["watchlist_id"]].name if r["watchlist_id"] in names else r["watchlist_id"]
        item["share"] = round(r["mentions"] / total, 6) if total else 0.0
        items.append(item)
    return out.listing({"from": iso(lo), "to": iso(hi), "total": total, "watchlists": items}, items,
                       ("watchlist_id", "name", "mentions", "share", "negative", "neutral", "positive", "unknown"),
                       "share-of-voice")

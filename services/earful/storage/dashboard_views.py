"""What the dashboard shows, assembled from the stored rollups: the period, the figures with their
change from the previous period, the charts (earful.storage.charts) and the lists, each mark linking
to the mentions behind it.

The pure parts (the period picked by default, humane numbers and durations, local time labels,
drill-down links, the highlighted spans of a mention) are functions of their arguments, tested
without a database; `overview` and `mention_detail` run the queries. The queries reuse the query
API's (earful.storage.api.queries) and read rollups (the tags over time: migration 060's), except the
distinctive terms, which read a sample of the period's and the previous period's posts spread over
their buckets (`sampled_buckets`, `term_sample`) and compare them (`earful.watchlists.terms.telling_terms`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote_plus, urlencode
from zoneinfo import ZoneInfo

import asyncpg

from earful.core.vocabulary import INTENT_TAGS, RISK_TAGS
from earful.storage.api.entities import top_advocates, top_entities
from earful.storage.api.queries import (
    DAY,
    HOUR,
    MINUTE,
    ORIGIN,
    WATCHLIST_TOTALS,
    Params,
    ceil_to,
    entity_sums,
    floor_to,
    question_stats,
    rollup_parts,
    share_of_voice,
    volume_series,
)
from earful.storage.api.questions import fetch_open_questions
from earful.storage.api.responses import iso, jsonable
from earful.storage.charts import Bar, Column, Line, Marker, Segment, hbars, lines, stacked_columns
from earful.storage.sentiment import of_period
from earful.watchlists import WatchlistSet
from earful.watchlists.owned import OwnedHandles
from earful.watchlists.terms import BrandTerms, brand_terms, telling_terms, terms_of

UTC = timezone.utc

#: Period lengths the picker offers, and the bucket of each one's charts (about 24-90 buckets).
LENGTHS: dict[str, tuple[timedelta, int]] = {
    "6h": (timedelta(hours=6), 15 * MINUTE),
    "24h": (timedelta(hours=24), HOUR),
    "7d": (timedelta(days=7), 6 * HOUR),
    "30d": (timedelta(days=30), DAY),
    "90d": (timedelta(days=90), DAY),
}
DEFAULT_LENGTH = "24h"
SENTIMENT_COLORS = {"negative": "#d92d20", "neutral": "#98a2b3", "positive": "#12b76a", "unknown": "#d0d5dd"}
TAG_COLORS = {"reputational": "#b42318", "regulatory": "#7a2e0e", "legal_privacy": "#c11574", "operational": "#f79009",
              "customer_question": "#2e90fa", "complaint": "#f04438", "purchase_intent": "#12b76a"}
PALETTE = ("#2e6be6", "#f79009", "#12b76a", "#9e77ed", "#f04438", "#06aed4", "#667085", "#c11574")
COMPARED_KINDS = ("brand", "competitor")
MAX_COMPARED = 8
ADVOCATES_SHOWN = 8
ADVOCATE_MIN_POSITIVE = 1  # the panel shows whose praise travels, even a single post's
#: Posts read per period for its distinctive terms, from at most TERM_BUCKETS of its buckets spread
#: evenly over it (50 posts from each): enough for a term in 3 % of the posts to count about a dozen
#: times, few enough that reading the two samples and counting their terms keeps the overview within
#: its 200-ms budget at 5 million mentions. Each bucket read builds the watchlist's bitmap of its day;
#: 600 posts from 12 buckets cost the overview's p95 about 35 ms more (bench-api's data set).
TERM_SAMPLE = 400
TERM_BUCKETS = 8
TERM_TEXT_CHARS = 2000  # of each post's text (a long article is one voice, not thousands of words)
TERMS_SHOWN = 10


# --- the period ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """The period shown: [lo, hi) in `step`-second buckets, and the previous period of equal length."""

    length: str
    lo: datetime
    hi: datetime
    step: int

    @property
    def prev_lo(self) -> datetime:
        return self.lo - (self.hi - self.lo)

    def buckets(self) -> list[datetime]:
        n = int((self.hi - self.lo).total_seconds() // self.step)
        return [self.lo + timedelta(seconds=self.step * i) for i in range(n)]


def pick_period(length: str, to: datetime | None, newest: datetime | None, now: datetime) -> Span:
    """The period of `length` ending at `to`; without `to`, ending just after the newest stored
    mention (`newest`: the end of its minute), so stored data shows at first sight however old it
    is; with no data at all, ending now. The end is rounded up to the period's bucket."""
    span, step = LENGTHS[length]
    end = to or newest or now
    hi = ceil_to(end, step)
    return Span(length, hi - span, hi, step)


# --- humane formats ----------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """'45 s', '12 min', '3 h 20 min', '34 d 4 h': at most two units, never '49230 min'."""
    if seconds is None or math.isnan(seconds):
        return "n/a"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < HOUR:
        return f"{s // 60} min"
    if s < DAY:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // HOUR, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def count(n: float) -> str:
    """12345 → '12,345'."""
    return f"{round(n):,}"


def change(current: float, previous: float) -> str:
    """The relative change from the previous period: '+12 %', '−5 %', '±0 %', 'new' (from nothing)."""
    if previous == 0:
        return "±0 %" if current == 0 else "new"
    pct = round(100 * (current - previous) / previous)
    if pct == 0:
        return "±0 %"
    return f"+{pct} %" if pct > 0 else f"−{-pct} %"


def point_change(current: float | None, previous: float | None) -> str:
    """The change of a share in percentage points: '+3.1 pp'; 'n/a' when either is unknown."""
    if current is None or previous is None:
        return "n/a"
    pp = round(100 * (current - previous), 1)
    if pp == 0:
        return "±0 pp"
    return f"+{pp:g} pp" if pp > 0 else f"−{-pp:g} pp"


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone `name` (UTC when None); ValueError when there is no such zone."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"{name[:64]!r} is not an IANA time zone") from exc


def local(ts: datetime, tz: ZoneInfo, step: int = MINUTE, *, with_zone: bool = False) -> str:
    """`ts` in `tz` as the bucket `step` needs: '2 Nov' for days, '2 Nov 09:00' otherwise; the zone's
    abbreviation appended with `with_zone`."""
    t = ts.astimezone(tz)
    text = f"{t.day} {t:%b}" if step >= DAY else f"{t.day} {t:%b %H:%M}"
    return f"{text} {t.tzname()}" if with_zone else text


def period_label(span: Span, tz: ZoneInfo) -> str:
    """'2 Nov 2026 01:00 – 3 Nov 2026 01:00 CET'."""
    a, b = span.lo.astimezone(tz), span.hi.astimezone(tz)
    return f"{a.day} {a:%b %Y %H:%M} – {b.day} {b:%b %Y %H:%M} {b.tzname()}"


# --- drill-down links ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _link_value(value: Any) -> str:
    """A filter's value as the link carries it (RFC 3339 for times), form-encoded. Cached: an
    overview draws hundreds of links from a few dozen bucket times and names."""
    return quote_plus(iso(value) if isinstance(value, datetime) else str(value))


@functools.lru_cache(maxsize=64)
def _link_key(name: str) -> str:
    return quote_plus(name)


def mentions_link(**filters: Any) -> str:
    """The page's address of the mentions behind a mark: `#mentions?` and the filters the mentions
    API takes (watchlist, from, to, sentiment, risk, source, lang, entity), times in RFC 3339."""
    kept = sorted(("from" if k == "from_" else k, v) for k, v in filters.items() if v is not None and v != "")
    return "#mentions?" + "&".join(f"{_link_key(k)}={_link_value(v)}" for k, v in kept)


def term_link(term: str, **filters: Any) -> str:
    """The mentions containing a distinctive term: a hashtag through the entity filter, a word or a
    phrase through full-text search (a phrase quoted, so its words must be adjacent)."""
    if term[:1] == "#":
        return mentions_link(entity=term, **filters)
    return mentions_link(q=f'"{term}"' if " " in term else term, **filters)


def mention_link(mention_id: str) -> str:
    return "#mention?" + urlencode({"id": mention_id})


def advocate_entry(a: dict[str, Any]) -> dict[str, Any]:
    """An advocate as the panel lists it: who, how far their praise went, the trend, a link to their best post."""
    best = a["best_posts"][0] if a["best_posts"] else None
    delta = {"new": "new", "flat": "±0 %"}.get(a["trend"]) if a["change"] is None else change(
        a["amplification"], a["previous_amplification"])
    return {"author_handle": a["author_handle"], "author_name": a["author_name"], "source": a["source"],
            "author_type": a["author_type"], "positive": a["positive"], "reach": a["reach"],
            "amplification": a["amplification"], "display": f"{a['amplification']:,.1f}",
            "previous_amplification": a["previous_amplification"], "trend": a["trend"], "delta": delta,
            "best_post": best["text"] if best else None, "href": mention_link(best["mention_id"]) if best else None}


def alert_markers(alerts: Sequence[dict[str, Any]], span: Span, tz: ZoneInfo, watchlist_id: str) -> list[Marker]:
    """A marker over the column each alert's episode started in (`starts_at`, not when it was
    detected: a replayed sample's alerts mark the period of their mentions), linking to the
    mentions of the episode; alerts that started outside [span.lo, span.hi) get none."""
    out = []
    for a in alerts:
        start, detected = a["starts_at"], a["detected_at"]
        if not span.lo <= start < span.hi:
            continue
        end = a["ends_at"] or start + timedelta(seconds=span.step)
        label = f"{a['severity']} alert from {local(start, tz, with_zone=True)}: {a['summary']}"
        if detected - start >= timedelta(hours=1):
            label += f" (detected {local(detected, tz, with_zone=True)})"
        out.append(Marker(int((start - span.lo).total_seconds() // span.step), label,
                          href=mentions_link(watchlist=watchlist_id, from_=start, to=max(end, start + timedelta(minutes=1)))))
    return out


# --- a mention's highlighted text -------------------------------------------------------------------------


def highlight(text: str, marks: Iterable[tuple[int, int, str]]) -> list[dict[str, Any]]:
    """`text` cut at every mark's start and end (character offsets, as enrichment gives them): a
    list of {text, marks} in order whose texts join to `text`; a mark out of range is clipped, an
    empty one dropped. The page shows each piece as text, never as markup."""
    n = len(text)
    kept = [(max(0, min(n, a)), max(0, min(n, b)), label) for a, b, label in marks]
    kept = [(a, b, label) for a, b, label in kept if a < b]
    cuts = sorted({0, n, *(a for a, _, _ in kept), *(b for _, b, _ in kept)})
    out = []
    for a, b in itertools.pairwise(cuts):
        labels = sorted({label for x, y, label in kept if x <= a and b <= y})
        out.append({"text": text[a:b], "marks": labels})
    return out


def mention_marks(m: dict[str, Any]) -> list[tuple[int, int, str]]:
    """Every span enrichment pointed at: risk evidence, entities, watchlist matches."""
    marks = [(int(r["start"]), int(r["end"]), f"tag:{r['tag']}") for r in m.get("risks") or [] if "start" in r and "end" in r]
    marks += [(int(e["start"]), int(e["end"]), f"entity:{e['type']}") for e in m.get("entities") or []
              if "start" in e and "end" in e]
    marks += [(int(x["start"]), int(x["end"]), f"match:{x['watchlist_id']}") for x in m.get("matches") or []
              if "start" in x and "end" in x]
    return marks


# --- queries of our own (fixed fragments, values as bind parameters) -----------------------------------------


def _table(family: str, step: int) -> str:
    return f"{family}_minute" if step < HOUR else f"{family}_hour" if step < DAY else f"{family}_day"


def share_series(ids: Sequence[str], lo: datetime, hi: datetime, step: int) -> tuple[str, list[Any]]:
    """Mentions per bucket of [lo, hi) of each of the watchlists `ids` (share-of-voice rollups)."""
    p = Params()
    sql = (f"SELECT date_bin({p(timedelta(seconds=step))}::interval, bucket, {p(ORIGIN)}::timestamptz) AS start,"
           f" watchlist_id, sum(mentions)::bigint AS mentions FROM {_table('watchlist_rollups', step)}"
           f" WHERE bucket >= {p(lo)} AND bucket < {p(hi)} AND watchlist_id = ANY({p(list(ids))}::text[]) GROUP BY 1, 2")
    return sql, p.values


def tag_series(watchlist_id: str, lo: datetime, hi: datetime, step: int) -> tuple[str, list[Any]]:
    """Mentions with each risk or intent tag per bucket of [lo, hi) (step-aligned): the watchlist's
    earned mentions (not its own accounts' posts), from the tag rollups of the bucket's granularity."""
    p = Params()
    tags = list(RISK_TAGS + INTENT_TAGS)
    sql = (f"SELECT date_bin({p(timedelta(seconds=step))}::interval, bucket, {p(ORIGIN)}::timestamptz) AS start, tag,"
           f" sum(mentions)::bigint AS mentions FROM {_table('tag_rollups', step)}"
           f" WHERE watchlist_id = {p(watchlist_id)} AND bucket >= {p(lo)} AND bucket < {p(hi)}"
           f" AND tag = ANY({p(tags)}::text[]) GROUP BY 1, 2")
    return sql, p.values


def sampled_buckets(buckets: list[datetime], most: int) -> list[datetime]:
    """At most `most` of the buckets, evenly spread from the first to the last."""
    if len(buckets) <= most:
        return list(buckets)
    if most <= 1:
        return buckets[-1:]
    return [buckets[round(i * (len(buckets) - 1) / (most - 1))] for i in range(most)]


def term_sample(watchlist_id: str, lo: datetime, hi: datetime, starts: list[datetime], step: int,
                per_bucket: int) -> tuple[str, list[Any]]:
    """Up to `per_bucket` earned posts (text and language) of each bucket starting at `starts`, within
    [lo, hi): a sample spread over the whole period, so a busy last hour does not stand for a week.

    Any posts of a bucket will do (no ORDER BY: the scan stops at the `per_bucket`-th). One branch per
    bucket with its own bounds, so PostgreSQL plans each for its one partition and its real width:
    bounds taken from a joined list looked narrow to it, and it intersected the watchlist's posts
    with every post of the day (~8 ms a bucket over day buckets of a large brand)."""
    p = Params()
    wl, owner, n = p([f"w:{watchlist_id}"]), p(watchlist_id), p(per_bucket)
    chars = p(TERM_TEXT_CHARS)
    branches = []
    for start in starts:
        a, b = max(start, lo), min(start + timedelta(seconds=step), hi)
        branches.append(f"(SELECT left(m.text, {chars}) AS text, m.lang FROM mentions m"
                        f" WHERE m.created_at >= {p(a)} AND m.created_at < {p(b)} AND m.facets @> {wl}::text[]"
                        f" AND {owner} <> ALL (m.owned_watchlist_ids) LIMIT {n})")
    sql = " UNION ALL ".join(branches) if branches else "SELECT NULL::text AS text, NULL::text AS lang WHERE false"
    return sql, p.values


def term_counts(posts: Iterable[tuple[str, str | None]]) -> tuple[dict[str, int], int]:
    """Posts containing each term, and the number of posts."""
    texts = list(posts)
    return Counter(t for text, lang in texts for t in terms_of(text or "", lang or "und")), len(texts)


def distinctive_terms(now: Iterable[tuple[str, str | None]], before: Iterable[tuple[str, str | None]],
                      own: BrandTerms, limit: int = TERMS_SHOWN) -> list[dict[str, Any]]:
    """The terms of the period's sampled posts most over-represented against the previous period's
    (the explanation's rules: `telling_terms`), with their share of the sampled posts now and before."""
    return distinctive_of_counts(term_counts(now), term_counts(before), own, limit)


def distinctive_of_counts(now: tuple[dict[str, int], int], before: tuple[dict[str, int], int], own: BrandTerms,
                          limit: int = TERMS_SHOWN) -> list[dict[str, Any]]:
    """`distinctive_terms` of the two samples' `term_counts`."""
    (window, n_now), (background, n_before) = now, before
    if not n_now:
        return []
    return [{"term": d.term, "posts": d.count, "share": d.count / n_now, "previous": d.background,
             "previous_share": (d.background / n_before) if n_before else None, "z": round(d.z, 2)}
            for d in telling_terms(window, background, sum(background.values()), own, limit=limit, min_count=3)]


def source_lang_totals(watchlist_id: str, lo: datetime, hi: datetime) -> tuple[str, list[Any]] | None:
    """Mentions of the watchlist per (source, language) over the minute-aligned [lo, hi)."""
    p = Params()
    wl = p(watchlist_id)
    union = " UNION ALL ".join(
        f"SELECT source, lang, mentions FROM {table} WHERE watchlist_id = {wl} AND bucket >= {p(a)} AND bucket < {p(b)}"
        for table, a, b in rollup_parts(lo, hi, "mention_rollups"))
    if not union:
        return None
    return f"SELECT source, lang, sum(mentions)::bigint AS mentions FROM ({union}) x GROUP BY 1, 2", p.values


#: The firing alerts of a watchlist whose episode started in [lo, hi), in order (event time: a
#: replayed stream's alerts belong to the period of their mentions, not to when they were detected).
ALERTS_STARTED = (
    "SELECT alert_id, rule, severity, summary, starts_at, ends_at, detected_at FROM alerts"
    " WHERE watchlist_id = $1 AND status = 'firing' AND starts_at >= $2 AND starts_at < $3 ORDER BY starts_at, alert_id")

MENTION_DETAIL = (
    "SELECT mention_id, source, source_id, url, author_handle, author_name, author_followers, text, title, country,"
    " connector, content_type, declared_lang, lang, lang_confidence, created_at, received_at, enriched_at, in_reply_to,"
    " reposted_from, likes, reposts, replies, sentiment, sentiment_score, sentiment_reason, sentiment_probabilities,"
    " watchlist_ids, entities, risks, matches, models, owned_watchlist_ids FROM mentions WHERE mention_id = $1 LIMIT 1")


# --- assembly --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What the page asked for (already checked by the endpoint)."""

    watchlist: str | None
    length: str
    to: datetime | None
    tz: ZoneInfo


async def _fetch(pool: asyncpg.Pool, query: tuple[str, list[Any]] | None) -> list[asyncpg.Record]:
    return list(await pool.fetch(query[0], *query[1])) if query else []


async def entities_then_and_now(pool: asyncpg.Pool, watchlist_id: str, lo: datetime, hi: datetime, prev_lo: datetime,
                                 limit: int, entity_type: str | None) -> tuple[list[dict[str, Any]], dict[tuple[str, str], int]]:
    """The top `limit` entities of [lo, hi) and the mentions of each of them in [prev_lo, lo) (whole
    UTC days): exactly theirs, not whichever of them a previous top list happened to hold."""
    top = await top_entities(pool, watchlist_id, lo, hi, limit, entity_type, with_key=True)
    if not top:
        return top, {}
    sql, args = entity_sums(watchlist_id, [e["type"] for e in top], [e["entity_key"] for e in top], prev_lo, lo)
    return top, {(r["type"], r["entity_key"]): int(r["mentions"]) for r in await pool.fetch(sql, *args)}


async def _advocates(pool: asyncpg.Pool, watchlist_id: str, lo: datetime, hi: datetime,
                     accounts: OwnedHandles) -> list[dict[str, Any]]:
    """The advocates panel's reads, one after another on one connection: the longest chain of the
    overview, it should not wait for a free connection at each step."""
    async with pool.acquire() as conn:
        return await top_advocates(conn, watchlist_id, lo, hi, ADVOCATES_SHOWN, ADVOCATE_MIN_POSITIVE, accounts,
                                   best_posts=1)


async def _sample_terms(pool: asyncpg.Pool, query: tuple[str, list[Any]]) -> tuple[dict[str, int], int]:
    """A term sample's `term_counts`, counted as soon as it arrives: the counting (Python) then
    overlaps the other panels' reads (PostgreSQL) instead of following them."""
    return term_counts((r["text"], r["lang"]) for r in await _fetch(pool, query))


def _kpi(name: str, label: str, current: float | None, previous: float | None, display: str, delta: str) -> dict[str, Any]:
    return {"name": name, "label": label, "value": current, "previous": previous, "display": display, "delta": delta}


def choose_watchlist(asked: str | None, totals: Sequence[dict[str, Any]], watchlists: WatchlistSet) -> str | None:
    """The watchlist shown: the one asked for; else the brand with the most mentions; else the
    watchlist with the most mentions; None with no data and no watchlists."""
    if asked:
        return asked
    named = [t for t in totals if t["watchlist_id"] != "(none)"]
    wl = watchlists.watchlists
    brands = [t for t in named if t["watchlist_id"] in wl and wl[t["watchlist_id"]].kind == "brand"]
    for candidates in (brands, named):
        if candidates:
            return str(candidates[0]["watchlist_id"])
    return next(iter(sorted(wl)), None)


def compared_watchlists(selected: str, totals: Sequence[dict[str, Any]], watchlists: WatchlistSet) -> list[str]:
    """Who the share of voice compares: the selected watchlist and the configured brands and
    competitors with data (most mentioned first); without kinds, the most mentioned watchlists."""
    wl = watchlists.watchlists
    with_data = [str(t["watchlist_id"]) for t in totals if t["watchlist_id"] != "(none)"]
    kinds = [w for w in with_data if w in wl and wl[w].kind in COMPARED_KINDS]
    chosen = kinds if kinds else with_data
    out = [selected] + [w for w in chosen if w != selected]
    return out[:MAX_COMPARED]


def _name(watchlists: WatchlistSet, wid: str) -> str:
    w = watchlists.watchlists.get(wid)
    return w.name if w else wid


async def overview(pool: asyncpg.Pool, watchlists: WatchlistSet, req: Request, now: datetime | None = None,
                   accounts: OwnedHandles | None = None) -> dict[str, Any]:
    """Everything the dashboard's overview shows for one watchlist and period; `accounts`: the brand and
    staff accounts in force (default: the watchlists' own, without EARFUL_OWNED_HANDLES)."""
    now = now or datetime.now(UTC)
    totals = [dict(r) for r in await pool.fetch(WATCHLIST_TOTALS)]
    selected = choose_watchlist(req.watchlist, totals, watchlists)
    choices = [{"id": t["watchlist_id"], "name": _name(watchlists, t["watchlist_id"]),
                "kind": (watchlists.watchlists[t["watchlist_id"]].kind if t["watchlist_id"] in watchlists.watchlists else None),
                "mentions": t["mentions"], "newest": iso(t["last_minute"] + timedelta(minutes=1)) if t["last_minute"] else None}
               for t in totals if t["watchlist_id"] != "(none)"]
    for wid in sorted(set(watchlists.watchlists) - {c["id"] for c in choices}):
        choices.append({"id": wid, "name": _name(watchlists, wid), "kind": watchlists.watchlists[wid].kind,
                        "mentions": 0, "newest": None})
    body: dict[str, Any] = {"watchlists": choices, "watchlist": None}
    if selected is None:
        return body
    last = next((t["last_minute"] for t in totals if t["watchlist_id"] == selected), None)
    newest = last + timedelta(minutes=1) if last else None
    span = pick_period(req.length, req.to, newest, now)
    tz = req.tz
    body["watchlist"] = {"id": selected, "name": _name(watchlists, selected),
                         "kind": watchlists.watchlists[selected].kind if selected in watchlists.watchlists else None}
    body["newest"] = iso(newest) if newest else None
    body["period"] = {"length": span.length, "from": iso(span.lo), "to": iso(span.hi), "interval_s": span.step,
                      "label": period_label(span, tz), "zone": str(tz.key)}
    body["previous"] = {"from": iso(span.prev_lo), "to": iso(span.lo),
                        "label": period_label(Span(span.length, span.prev_lo, span.lo, span.step), tz)}
    body["lengths"] = list(LENGTHS)
    buckets = span.buckets()
    labels = [local(b, tz, span.step) for b in buckets]
    end_of = {b: b + timedelta(seconds=span.step) for b in buckets}
    compared = compared_watchlists(selected, totals, watchlists)
    day_lo, day_hi = floor_to(span.lo, DAY), ceil_to(span.hi, DAY)  # entities and advocates: whole UTC days
    prev_day_lo = day_lo - (day_hi - day_lo)
    starts = sampled_buckets(buckets, TERM_BUCKETS)
    posts_per_bucket = max(1, math.ceil(TERM_SAMPLE / len(starts)))
    shift = span.lo - span.prev_lo
    shown = watchlists.watchlists.get(selected)
    sla = shown.response_sla_s if shown else None

    # Every panel's reads at once (they are independent, the pool has several connections and
    # PostgreSQL more than one core); the panels are drawn below from what came back.
    try:
        async with asyncio.TaskGroup() as tg:
            t_vol = tg.create_task(_fetch(pool, volume_series(selected, span.prev_lo, span.hi, span.step)))
            t_alerts = tg.create_task(pool.fetch(ALERTS_STARTED, selected, span.prev_lo, span.hi))
            t_share = tg.create_task(_fetch(pool, share_series(compared, span.lo, span.hi, span.step)))
            t_sov_now = tg.create_task(_fetch(pool, share_of_voice(span.lo, span.hi, compared)))
            t_sov_prev = tg.create_task(_fetch(pool, share_of_voice(span.prev_lo, span.lo, compared)))
            t_tags = tg.create_task(_fetch(pool, tag_series(selected, span.prev_lo, span.hi, span.step)))
            t_by_now = tg.create_task(_fetch(pool, source_lang_totals(selected, span.lo, span.hi)))
            t_by_prev = tg.create_task(_fetch(pool, source_lang_totals(selected, span.prev_lo, span.lo)))
            t_top = {etype: tg.create_task(entities_then_and_now(pool, selected, day_lo, day_hi, prev_day_lo, 30, etype))
                     for etype in (None, "hashtag")}
            t_terms_now = tg.create_task(_sample_terms(pool, term_sample(selected, span.lo, span.hi, starts, span.step,
                                                                         posts_per_bucket)))
            t_terms_before = tg.create_task(_sample_terms(pool, term_sample(
                selected, span.prev_lo, span.lo, [b - shift for b in starts], span.step, posts_per_bucket)))
            t_advocates = tg.create_task(_advocates(
                pool, selected, day_lo, day_hi,
                accounts if accounts is not None else OwnedHandles.of(watchlists.watchlists.values())))
            t_q_now = tg.create_task(pool.fetchrow(*_q(question_stats(selected, span.lo, span.hi, sla))))
            t_q_prev = tg.create_task(pool.fetchrow(*_q(question_stats(selected, span.prev_lo, span.lo, sla))))
            t_waiting = tg.create_task(fetch_open_questions(pool, selected, span.lo, span.hi, None, 8))
    except BaseExceptionGroup as failed:  # the first failure itself, for the API's handlers (timeout, database down)
        raise failed.exceptions[0] from None

    # Volume and sentiment, this period and the previous one (one query over both).
    vol = [dict(r) for r in t_vol.result()]
    cur = [r for r in vol if r["start"] >= span.lo]
    prev = [r for r in vol if r["start"] < span.lo]
    sums = {k: (sum(r[k] for r in cur), sum(r[k] for r in prev)) for k in ("mentions", "negative", "positive", "neutral")}

    # Alerts whose episode started in either period (event time, as the report counts them):
    # markers on the volume chart, a count, a list.
    alerts = [dict(r) for r in t_alerts.result()]
    firing_now = [a for a in alerts if a["starts_at"] >= span.lo]
    firing_before = [a for a in alerts if a["starts_at"] < span.lo]
    markers = alert_markers(firing_now, span, tz, selected)

    columns = []
    for r, label in zip(cur, labels):
        b = r["start"]
        when = local(b, tz, span.step, with_zone=True)
        segs = [Segment(s, r[s], SENTIMENT_COLORS[s],
                        mentions_link(watchlist=selected, from_=b, to=end_of[b], sentiment=s),
                        f"{when}: {count(r[s])} {s} of {count(r['mentions'])}")
                for s in ("negative", "neutral", "positive", "unknown")]
        columns.append(Column(label, segs))
    charts = {"volume": stacked_columns(columns, title=f"Mentions of {_name(watchlists, selected)} by sentiment",
                                        legend=list(SENTIMENT_COLORS.items()), markers=markers, kind="volume")}

    # Share of voice over time against the compared watchlists.
    share_rows = t_share.result()
    per_bucket: dict[datetime, dict[str, int]] = {}
    for r in share_rows:
        per_bucket.setdefault(r["start"], {})[r["watchlist_id"]] = r["mentions"]
    sov_lines = []
    for i, wid in enumerate(compared):
        values: list[float | None] = []
        hrefs: list[str | None] = []
        titles: list[str] = []
        for b in buckets:
            row = per_bucket.get(b, {})
            total = sum(row.values())
            n = row.get(wid, 0)
            values.append(n / total if total else None)
            hrefs.append(mentions_link(watchlist=wid, from_=b, to=end_of[b]))
            titles.append(f"{_name(watchlists, wid)}, {local(b, tz, span.step, with_zone=True)}: "
                          f"{n / total:.0%} ({count(n)} of {count(total)})" if total else "")
        sov_lines.append(Line(_name(watchlists, wid), PALETTE[i % len(PALETTE)], values, hrefs, titles, emphasis=wid == selected))
    charts["share_of_voice"] = lines(labels, sov_lines, title="Share of voice", kind="share_of_voice")
    sov_now = {r["watchlist_id"]: r["mentions"] for r in t_sov_now.result()}
    sov_prev = {r["watchlist_id"]: r["mentions"] for r in t_sov_prev.result()}
    total_now, total_prev = sum(sov_now.values()), sum(sov_prev.values())
    share = [{"watchlist_id": w, "name": _name(watchlists, w), "mentions": sov_now.get(w, 0),
              "share": sov_now.get(w, 0) / total_now if total_now else None,
              "previous_share": sov_prev.get(w, 0) / total_prev if total_prev else None,
              "href": mentions_link(watchlist=w, from_=span.lo, to=span.hi)} for w in compared]
    for s in share:
        s["delta"] = point_change(s["share"], s["previous_share"])
        s["display"] = f"{s['share']:.1%}" if s["share"] is not None else "n/a"

    # Risk and intent tags over time.
    tag_rows = t_tags.result()
    tag_now: dict[datetime, dict[str, int]] = {}
    tag_totals: dict[str, list[int]] = {t: [0, 0] for t in TAG_COLORS}
    for r in tag_rows:
        if r["tag"] not in tag_totals:
            continue
        if r["start"] >= span.lo:
            tag_now.setdefault(r["start"], {})[r["tag"]] = r["mentions"]
            tag_totals[r["tag"]][0] += r["mentions"]
        else:
            tag_totals[r["tag"]][1] += r["mentions"]
    tag_columns = [Column(label, [Segment(t, tag_now.get(b, {}).get(t, 0), color,
                                          mentions_link(watchlist=selected, from_=b, to=end_of[b], risk=t),
                                          f"{local(b, tz, span.step, with_zone=True)}: {count(tag_now.get(b, {}).get(t, 0))} {t}")
                                  for t, color in TAG_COLORS.items()])
                   for b, label in zip(buckets, labels)]
    charts["tags"] = stacked_columns(tag_columns, title="Risk and intent tags", legend=list(TAG_COLORS.items()), kind="tags")

    # Sources and languages, with the previous period's figures as ticks.
    by_now, by_prev = t_by_now.result(), t_by_prev.result()

    def split(rows: Sequence[asyncpg.Record], key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in rows:
            out[r[key]] = out.get(r[key], 0) + r["mentions"]
        return out

    for key, title, kind in (("source", "Sources", "sources"), ("lang", "Languages", "languages")):
        now_c, prev_c = split(by_now, key), split(by_prev, key)
        keys = sorted(set(now_c) | set(prev_c), key=lambda k: (-now_c.get(k, 0), -prev_c.get(k, 0), k))[:10]
        charts[kind] = hbars([Bar(k, now_c.get(k, 0), prev_c.get(k, 0),
                                  mentions_link(watchlist=selected, from_=span.lo, to=span.hi, **{key: k}),
                                  note=change(now_c.get(k, 0), prev_c.get(k, 0)))
                              for k in keys], title=f"{title} (tick: previous period)", kind=kind)

    # Top entities and hashtags (whole UTC days), and the ones that rose most since the previous period.
    lists: dict[str, Any] = {}
    rising: list[dict[str, Any]] = []
    for name, etype in (("entities", None), ("hashtags", "hashtag")):
        top, before = t_top[etype].result()
        items = []
        for e in top:
            p_n = before.get((e["type"], e["entity_key"]), 0)
            items.append({"text": e["text"], "type": e["type"], "mentions": e["mentions"], "previous": p_n,
                          "delta": change(e["mentions"], p_n),
                          "href": mentions_link(watchlist=selected, from_=span.lo, to=span.hi, entity=e["text"])})
        lists[name] = items[:10]
        rising += [i for i in items if i["mentions"] >= 3]
    rising.sort(key=lambda i: (-(i["mentions"] + 1) / (i["previous"] + 1), -i["mentions"], i["text"]))
    lists["rising"] = rising[:8]
    lists["days"] = {"from": iso(day_lo), "to": iso(day_hi)}

    # Distinctive terms: words, hashtags and phrases of a sample of the period's posts against the previous period's.
    counted_now, counted_before = t_terms_now.result(), t_terms_before.result()
    terms = distinctive_of_counts(counted_now, counted_before, brand_terms(shown, selected))
    for t in terms:
        t["href"] = term_link(t["term"], watchlist=selected, from_=span.lo, to=span.hi)
        t["display"] = f"{t['share']:.1%}"
        t["previous_display"] = f"{t['previous_share']:.1%}" if t["previous_share"] is not None else "n/a"
    lists["terms"] = terms
    lists["terms_sample"] = {"posts": counted_now[1], "previous_posts": counted_before[1], "per_bucket": posts_per_bucket}

    # Advocates: people (no outlets, no brand or staff accounts) whose positive posts travelled furthest.
    lists["advocates"] = [advocate_entry(a) for a in t_advocates.result()]
    lists["share_of_voice"] = share
    lists["alerts"] = [{"starts_at": iso(a["starts_at"]), "detected_at": iso(a["detected_at"]),
                        "when": local(a["starts_at"], tz, with_zone=True), "severity": a["severity"], "rule": a["rule"],
                        "summary": a["summary"], "href": m.href} for a, m in zip(firing_now, markers)][:20]

    # Customer questions: asked, answered, time to first reply; the longest waiting.
    q_now, q_prev = dict(t_q_now.result()), dict(t_q_prev.result())
    waiting = [jsonable(r) for r in t_waiting.result()][:8]
    lists["questions"] = [{"mention_id": q["mention_id"], "author_handle": q["author_handle"], "text": q["text"],
                           "source": q["source"], "created_at": q["created_at"],
                           "when": local(datetime.fromisoformat(q["created_at"]), tz, with_zone=True),
                           "waiting": duration(q["waiting_s"]), "href": mention_link(q["mention_id"])} for q in waiting]
    lists["question_stats"] = {
        "asked": q_now["asked"], "answered": q_now["answered"], "open": q_now["asked"] - q_now["answered"],
        "median_first_reply": duration(q_now["median_response_s"]) if q_now["median_response_s"] is not None else "n/a",
        "p90_first_reply": duration(q_now["p90_response_s"]) if q_now["p90_response_s"] is not None else "n/a",
        "sla": duration(sla) if sla else None, "sla_breached": q_now["sla_breached"] if sla else None}

    def neg_share(neg: int, total: int) -> float | None:
        return neg / total if total else None

    ns_now, ns_prev = neg_share(sums["negative"][0], sums["mentions"][0]), neg_share(sums["negative"][1], sums["mentions"][1])
    net_now = of_period(sums["mentions"][0], sums["positive"][0], sums["negative"][0])
    net_prev = of_period(sums["mentions"][1], sums["positive"][1], sums["negative"][1])
    med_now, med_prev = q_now["median_response_s"], q_prev["median_response_s"]
    body["kpis"] = [
        _kpi("mentions", "Mentions", sums["mentions"][0], sums["mentions"][1], count(sums["mentions"][0]),
             change(sums["mentions"][0], sums["mentions"][1])),
        _kpi("negative_share", "Negative", ns_now, ns_prev, f"{ns_now:.1%}" if ns_now is not None else "n/a",
             point_change(ns_now, ns_prev)),
        _kpi("net_sentiment", "Net sentiment", net_now, net_prev, f"{net_now:+.2f}" if net_now is not None else "n/a",
             f"{net_now - net_prev:+.2f}" if net_now is not None and net_prev is not None else "n/a"),
        _kpi("share_of_voice", "Share of voice", share[0]["share"], share[0]["previous_share"], share[0]["display"],
             share[0]["delta"]),
        _kpi("alerts", "Alerts fired", len(firing_now), len(firing_before), count(len(firing_now)),
             change(len(firing_now), len(firing_before))),
        _kpi("questions", "Questions asked", q_now["asked"], q_prev["asked"], count(q_now["asked"]),
             change(q_now["asked"], q_prev["asked"])),
        _kpi("first_reply", "Median first reply", med_now, med_prev, duration(med_now) if med_now is not None else "n/a",
             (("+" if med_now >= med_prev else "−") + duration(abs(med_now - med_prev)))
             if med_now is not None and med_prev is not None else "n/a"),
    ]
    body["charts"] = charts
    body["lists"] = lists
    return body


def _q(query: tuple[str, list[Any]]) -> list[Any]:
    return [query[0], *query[1]]


async def mention_detail(pool: asyncpg.Pool, mention_id: uuid.UUID) -> dict[str, Any] | None:
    """A stored mention with all of its enrichment (spans, confidences, model versions), its text
    cut into highlighted pieces; None when no mention has this id."""
    row = await pool.fetchrow(MENTION_DETAIL, mention_id)
    if row is None:
        return None
    m = jsonable(row)
    m["pieces"] = highlight(m["text"], mention_marks(m))
    m["link"] = mention_link(m["mention_id"])
    return m

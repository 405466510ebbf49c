"""What the executive report says about one watchlist and period, read from the stored rollups.

The report is the dashboard's overview (earful.storage.dashboard_views) on paper: the same queries,
the same formulas and the same charts (earful.storage.charts), over any period, plus what an
executive reads first (reach, questions answered, the top risks with their loudest post, the
alerts summed by rule), the KPIs against their targets (earful.storage.kpis) and the lift of the
brand's campaigns (earful.storage.campaigns). Every figure carries the address of the dashboard
view that shows it and of the mentions behind it.

Alerts belong to the period their episode started in (event time), not the one they were detected
in: a replayed stream's alerts land in the week of their mentions.

The pure parts (periods, links, the figures' arithmetic) are functions of their arguments, tested
without a database; `gather` runs the queries.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import asyncpg

from earful.core.vocabulary import RISK_TAGS
from earful.storage.api.queries import (
    DAY,
    HOUR,
    MINUTE,
    WATCHLIST_HAS_DATA,
    WATCHLIST_TOTALS,
    ceil_to,
    floor_to,
    question_stats,
    share_of_voice,
    volume_series,
)
from earful.storage.api.responses import iso
from earful.storage.campaigns import campaign_charts, campaign_lift, campaign_watchlists
from earful.storage.charts import Bar, Column, Line, Marker, Segment, hbars, lines, stacked_columns
from earful.storage.dashboard_views import (
    ALERTS_STARTED,
    LENGTHS,
    PALETTE,
    SENTIMENT_COLORS,
    TAG_COLORS,
    change,
    compared_watchlists,
    count,
    duration,
    entities_then_and_now,
    local,
    point_change,
    share_series,
    source_lang_totals,
    tag_series,
)
from earful.storage.dashboard_views import zone as zone  # re-exported for earful.storage.report
from earful.storage.kpis import Window, compared_ids, watchlist_kpis
from earful.storage.sentiment import of_period
from earful.watchlists import Watchlist, WatchlistSet

UTC = timezone.utc
WEEK = 7 * DAY
#: The longest period a report covers (its charts have daily or weekly columns).
MAX_PERIOD = timedelta(days=366)
PERIOD_NAMES = ("last-week", "last-month")


# --- periods ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The reported [lo, hi) (UTC), what it is (`week`, `month` or `custom`), compared with the
    period of equal length just before it."""

    lo: datetime
    hi: datetime
    kind: str = "custom"

    @property
    def length(self) -> timedelta:
        return self.hi - self.lo

    @property
    def prev_lo(self) -> datetime:
        return self.lo - self.length

    @property
    def step(self) -> int:
        """The charts' column length: the dashboard's for its own period lengths (a week: 6 h)."""
        return step_for(self.length)

    def buckets(self) -> list[datetime]:
        first = floor_to(self.lo, self.step)
        n = int((ceil_to(self.hi, self.step) - first).total_seconds() // self.step)
        return [first + timedelta(seconds=self.step * i) for i in range(n)]


def step_for(length: timedelta) -> int:
    """Column length of a period's charts: 15 min up to 6 h, 1 h up to a day, 6 h up to a week,
    a day up to 92 days, a week beyond."""
    if length <= timedelta(hours=6):
        return 15 * MINUTE
    if length <= timedelta(days=1):
        return HOUR
    if length <= timedelta(days=7):
        return 6 * HOUR
    if length <= timedelta(days=92):
        return DAY
    return WEEK


def week_start(ts: datetime) -> datetime:
    """Monday 00:00 UTC of the week `ts` falls in."""
    day = ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def week_of(ts: datetime) -> Period:
    """The Monday-to-Sunday UTC week `ts` falls in."""
    lo = week_start(ts)
    return Period(lo, lo + timedelta(days=7), "week")


def last_week(now: datetime) -> Period:
    """The last complete Monday-to-Sunday UTC week before `now`."""
    return week_of(week_start(now) - timedelta(days=7))


def last_month(now: datetime) -> Period:
    """The last complete calendar month (UTC) before `now`."""
    first = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    prev_first = (first - timedelta(days=1)).replace(day=1)
    return Period(prev_first, first, "month")


def latest_week_with_data(newest_before_this_week: datetime | None) -> Period | None:
    """The latest complete week that has data: the week of the newest stored day before the
    current week began (None: no data before it)."""
    return week_of(newest_before_this_week) if newest_before_this_week is not None else None


def custom_period(lo: datetime, hi: datetime) -> Period:
    """--from/--to as a period; ValueError naming what is wrong."""
    if lo.tzinfo is None or hi.tzinfo is None:
        raise ValueError("--from and --to need a time zone")  # parse_time adds UTC; kept for direct callers
    if hi <= lo:
        raise ValueError(f"--to ({iso(hi)}) must be after --from ({iso(lo)})")
    if hi - lo > MAX_PERIOD:
        raise ValueError(f"the period is {(hi - lo).days} days long; a report covers at most {MAX_PERIOD.days} days")
    if hi - lo < timedelta(minutes=15):
        raise ValueError("the period must be at least 15 minutes long")
    return Period(lo.astimezone(UTC), hi.astimezone(UTC), "custom")


def parse_time(name: str, value: str) -> datetime:
    """An RFC 3339 time or a date (YYYY-MM-DD, midnight); without a zone, UTC. ValueError naming `name`."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{name} {value!r} is not a time (e.g. 2026-11-02 or 2026-11-02T09:00:00Z)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def period_title(period: Period, tz: ZoneInfo) -> str:
    """'Week 45, 2026 (2 – 8 Nov 2026)', 'October 2026', or the period's bounds."""
    if period.kind == "week":
        year, week, _ = period.lo.isocalendar()
        last = period.hi - timedelta(days=1)
        return f"Week {week}, {year} ({period.lo.day} {period.lo:%b} – {last.day} {last:%b %Y}, UTC)"
    if period.kind == "month":
        return f"{calendar.month_name[period.lo.month]} {period.lo.year} (UTC)"
    return span_label(period.lo, period.hi, tz)


def span_label(lo: datetime, hi: datetime, tz: ZoneInfo) -> str:
    """'2 Nov 2026 00:00 – 9 Nov 2026 00:00 UTC' in `tz`."""
    a, b = lo.astimezone(tz), hi.astimezone(tz)
    return f"{a.day} {a:%b %Y %H:%M} – {b.day} {b:%b %Y %H:%M} {b.tzname()}"


# --- links to the dashboard ------------------------------------------------------------------------------


def dashboard_length(period: Period) -> str | None:
    """The dashboard's period length that shows exactly `period` (its end on a bucket boundary), if any."""
    for name, (span, step) in LENGTHS.items():
        if period.length == span and ceil_to(period.hi, step) == period.hi:
            return name
    return None


def view_url(base: str, watchlist_id: str, period: Period) -> str:
    """The dashboard view of the watchlist over the period: `base?watchlist=…&length=…&to=…` (the
    overview's parameters). A period the dashboard cannot show exactly gets the shortest length
    that holds it, ending at its end."""
    length = dashboard_length(period)
    if length is None:
        length = next((n for n, (span, _) in LENGTHS.items() if span >= period.length), list(LENGTHS)[-1])
    return base + "?" + urlencode({"watchlist": watchlist_id, "length": length, "to": iso(period.hi)})


def mentions_url(view: str, **filters: Any) -> str:
    """The view's address opening the list of the mentions behind a figure (`#mentions?` and the
    filters of `GET /v1/mentions`: watchlist, from, to, sentiment, risk, source, lang, entity)."""
    kept = {("from" if k == "from_" else k): (iso(v) if isinstance(v, datetime) else str(v))
            for k, v in filters.items() if v is not None and v != ""}
    return view + "#mentions?" + urlencode(sorted(kept.items()))


def absolute_links(svg: str, view: str) -> str:
    """A dashboard chart whose relative links (`href="#mentions?…"`) point into the dashboard view."""
    return svg.replace(' href="#', f' href="{_attr_escape(view)}#')


def _attr_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


# --- the report ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A headline figure: this period, the previous one, the change, where the dashboard shows it."""

    name: str
    label: str
    display: str
    previous_display: str
    delta: str
    href: str
    value: float | None = None
    previous: float | None = None


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    svg: str  # links absolute (into the dashboard)
    href: str  # the dashboard view that shows it
    caption: str = ""


@dataclass(frozen=True)
class KpiRow:
    """One KPI against its target: the period's value, the target, a status and a trend, as text."""

    label: str
    value: str
    target: str
    status: str  # e.g. "on track", "at risk", "off track", "no data"
    trend: str = ""
    href: str = ""


@dataclass
class Report:
    """Everything the report shows, as values and text ready to print (renderers only lay it out)."""

    watchlist_id: str
    watchlist_name: str
    watchlist_kind: str | None
    period: Period
    tz: str
    title: str
    period_label: str
    previous_label: str
    generated_at: datetime
    view: str
    exact_view: bool
    mentions: int
    figures: list[Figure] = field(default_factory=list)
    kpis: list[KpiRow] = field(default_factory=list)
    kpi_note: str = ""
    charts: list[Chart] = field(default_factory=list)
    share: list[dict[str, Any]] = field(default_factory=list)
    risks: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # the notable ones (`notable_alerts`)
    alert_rules: list[dict[str, Any]] = field(default_factory=list)  # every alert of the period, by rule
    alerts_total: int = 0
    campaigns: list[dict[str, Any]] = field(default_factory=list)
    campaign_note: str = ""
    entities: list[dict[str, Any]] = field(default_factory=list)
    hashtags: list[dict[str, Any]] = field(default_factory=list)
    entity_days: str = ""
    questions: dict[str, Any] = field(default_factory=dict)


SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def alert_rules(alerts: Sequence[dict[str, Any]], tz: ZoneInfo) -> list[dict[str, Any]]:
    """The period's alerts by rule: how many, the highest severity, the first and the first's
    summary; the rarest rules first (a crisis is one alert, a busy care desk hundreds)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for a in alerts:
        by.setdefault(a["rule"], []).append(a)
    rows = []
    for rule, group in by.items():
        first = min(group, key=lambda a: (a["starts_at"], a["summary"]))
        rows.append({"rule": rule, "alerts": len(group), "severity": min((a["severity"] for a in group),
                                                                          key=lambda v: SEVERITY_RANK.get(v, 9)),
                     "first": local(first["starts_at"], tz, with_zone=True), "summary": first["summary"]})
    return sorted(rows, key=lambda r: (r["alerts"], SEVERITY_RANK.get(r["severity"], 9), r["rule"]))


def notable_alerts(alerts: Sequence[dict[str, Any]], per_rule: int = 3, limit: int = 12) -> list[dict[str, Any]]:
    """The alerts a report lists one by one: at most `per_rule` of each rule (its first), rarer
    rules and higher severities first, at most `limit`, in time order."""
    counts: dict[str, int] = {}
    for a in alerts:
        counts[a["rule"]] = counts.get(a["rule"], 0) + 1
    ranked = sorted(alerts, key=lambda a: (counts[a["rule"]], SEVERITY_RANK.get(a["severity"], 9), a["rule"], a["starts_at"]))
    kept: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    for a in ranked:
        if taken.get(a["rule"], 0) < per_rule and len(kept) < limit:
            kept.append(a)
            taken[a["rule"]] = taken.get(a["rule"], 0) + 1
    return sorted(kept, key=lambda a: (a["starts_at"], a["rule"]))


def signed(value: float | None, fmt: str = "+.2f") -> str:
    return "n/a" if value is None else format(value, fmt).replace("-", "−")


def diff(current: float | None, previous: float | None, fmt: str = "+.2f") -> str:
    return "n/a" if current is None or previous is None else signed(current - previous, fmt)


def share_display(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def reply_delta(now_s: float | None, prev_s: float | None) -> str:
    """'+12 min' (slower) or '−3 h 5 min' (faster), as the dashboard says it."""
    if now_s is None or prev_s is None:
        return "n/a"
    return ("+" if now_s >= prev_s else "−") + duration(abs(now_s - prev_s))


# --- queries of the report's own (values as bind parameters) -------------------------------------------------

#: Followers of the distinct authors of the watchlist's mentions in [lo, hi): each author counted
#: once, with the largest follower count seen (the alerts' "reach").
REACH = (
    "SELECT coalesce(sum(f), 0)::bigint AS reach, count(*)::bigint AS authors FROM ("
    " SELECT max(coalesce(author_followers, 0)) AS f FROM mentions"
    " WHERE facets @> $1::text[] AND created_at >= $2 AND created_at < $3"
    " AND (author_handle IS NOT NULL OR author_id IS NOT NULL)"
    " GROUP BY source, coalesce(lower(author_handle), 'id:' || author_id)) a")

#: The most followed author's post with a tag in [lo, hi): what a risk looks like.
LOUDEST = (
    "SELECT mention_id, text, author_handle, author_followers, url, source, created_at FROM mentions"
    " WHERE facets @> $1::text[] AND created_at >= $2 AND created_at < $3"
    " ORDER BY coalesce(author_followers, 0) DESC, created_at LIMIT 1")

#: The newest stored day of a watchlist before a time.
NEWEST_DAY_BEFORE = "SELECT max(bucket) FROM mention_rollups_day WHERE watchlist_id = $1 AND bucket < $2"


async def newest_day_before(pool: asyncpg.Pool, watchlist_id: str, before: datetime) -> datetime | None:
    value = await pool.fetchval(NEWEST_DAY_BEFORE, watchlist_id, before)
    return value if isinstance(value, datetime) else None


async def has_data(pool: asyncpg.Pool, watchlist_id: str) -> bool:
    return await pool.fetchval(WATCHLIST_HAS_DATA, watchlist_id) is not None


async def _fetch(pool: asyncpg.Pool, query: tuple[str, list[Any]] | None) -> list[asyncpg.Record]:
    return list(await pool.fetch(query[0], *query[1])) if query else []


def _name(watchlists: WatchlistSet, wid: str) -> str:
    w = watchlists.watchlists.get(wid)
    return w.name if w else wid


async def gather(pool: asyncpg.Pool, watchlists: WatchlistSet, watchlist_id: str, period: Period, tz: ZoneInfo,
                 base_url: str, now: datetime | None = None) -> Report:
    """The report of one watchlist over `period`, compared with the period before; every figure
    links into the dashboard at `base_url`."""
    now = now or datetime.now(UTC)
    lo, hi, prev_lo, step = period.lo, period.hi, period.prev_lo, period.step
    view = view_url(base_url, watchlist_id, period)
    name = _name(watchlists, watchlist_id)
    w = watchlists.watchlists.get(watchlist_id)
    report = Report(
        watchlist_id=watchlist_id, watchlist_name=name, watchlist_kind=w.kind if w else None, period=period, tz=str(tz.key),
        title=period_title(period, tz), period_label=span_label(lo, hi, tz), previous_label=span_label(prev_lo, lo, tz),
        generated_at=now, view=view, exact_view=dashboard_length(period) is not None, mentions=0)

    def link(**filters: Any) -> str:
        return mentions_url(view, watchlist=watchlist_id, **{"from_": lo, "to": hi, **filters})

    # Volume and sentiment: the columns of this period; totals of both periods.
    buckets = period.buckets()
    vol = [dict(r) for r in await _fetch(pool, volume_series(watchlist_id, floor_to(prev_lo, step), ceil_to(hi, step), step))]
    cur = [r for r in vol if r["start"] >= floor_to(lo, step)]
    if all(t == floor_to(t, step) for t in (prev_lo, lo, hi)):  # the dashboard's sums, column by column
        sums = {k: (sum(r[k] for r in vol if lo <= r["start"] < hi), sum(r[k] for r in vol if prev_lo <= r["start"] < lo))
                for k in ("mentions", "negative", "positive", "neutral")}
    else:  # a period off the columns' boundaries: totals exact to the minute
        sums = await _totals(pool, watchlist_id, period)
    report.mentions = int(sums["mentions"][0])

    # Alerts whose episode started in either period (event time: a replayed stream's alerts land in
    # the week of their mentions, however much later they were detected).
    alert_rows = [dict(r) for r in await pool.fetch(ALERTS_STARTED, watchlist_id, prev_lo, hi)]
    firing_now = [a for a in alert_rows if a["starts_at"] >= lo]
    firing_before = [a for a in alert_rows if a["starts_at"] < lo]
    markers, alert_list = [], []
    first = buckets[0] if buckets else lo
    report.alert_rules = alert_rules(firing_now, tz)
    report.alerts_total = len(firing_now)
    for a in notable_alerts(firing_now):
        start = a["starts_at"]
        end = a["ends_at"] or start + timedelta(seconds=step)
        href = mentions_url(view, watchlist=watchlist_id, from_=start, to=end)
        markers.append(Marker(int((start - first).total_seconds() // step), f"{a['severity']} alert at "
                              f"{local(start, tz, with_zone=True)}: {a['summary']}", href=href))
        alert_list.append({"when": local(start, tz, with_zone=True), "severity": a["severity"], "rule": a["rule"],
                           "summary": a["summary"], "href": href})
    report.alerts = alert_list

    labels = [local(b, tz, step) for b in buckets]
    columns = []
    for r, label in zip(cur, labels):
        b = r["start"]
        when = local(b, tz, step, with_zone=True)
        end_b = b + timedelta(seconds=step)
        segs = [Segment(s, r[s], SENTIMENT_COLORS[s], mentions_url(view, watchlist=watchlist_id, from_=b, to=end_b, sentiment=s),
                        f"{when}: {count(r[s])} {s} of {count(r['mentions'])}")
                for s in ("negative", "neutral", "positive", "unknown")]
        columns.append(Column(label, segs))
    charts = [Chart("volume", f"Mentions of {name} by sentiment",
                    stacked_columns(columns, title=f"Mentions of {name} by sentiment", legend=list(SENTIMENT_COLORS.items()),
                                    markers=markers, kind="volume"), view,
                    f"Mentions per {duration(step)} column, stacked by sentiment; ▼ marks an alert.")]

    # Share of voice against the compared watchlists.
    totals = [dict(r) for r in await pool.fetch(WATCHLIST_TOTALS)]
    compared = compared_watchlists(watchlist_id, totals, watchlists)
    share_rows = await _fetch(pool, share_series(compared, floor_to(lo, step), ceil_to(hi, step), step))
    per_bucket: dict[datetime, dict[str, int]] = {}
    for r in share_rows:
        per_bucket.setdefault(r["start"], {})[r["watchlist_id"]] = r["mentions"]
    sov_lines = []
    for i, wid in enumerate(compared):
        values: list[float | None] = []
        hrefs: list[str | None] = []
        for b in buckets:
            row = per_bucket.get(b, {})
            total = sum(row.values())
            values.append(row.get(wid, 0) / total if total else None)
            hrefs.append(mentions_url(view, watchlist=wid, from_=b, to=b + timedelta(seconds=step)))
        sov_lines.append(Line(_name(watchlists, wid), PALETTE[i % len(PALETTE)], values, hrefs, emphasis=wid == watchlist_id))
    charts.append(Chart("share_of_voice", "Share of voice", lines(labels, sov_lines, title="Share of voice",
                                                                  kind="share_of_voice"), view,
                        "Each watchlist's share of the compared watchlists' mentions per column."))
    sov_now = {r["watchlist_id"]: r["mentions"] for r in await _fetch(pool, share_of_voice(lo, hi, compared))}
    sov_prev = {r["watchlist_id"]: r["mentions"] for r in await _fetch(pool, share_of_voice(prev_lo, lo, compared))}
    total_now, total_prev = sum(sov_now.values()), sum(sov_prev.values())
    for wid in compared:
        s_now = sov_now.get(wid, 0) / total_now if total_now else None
        s_prev = sov_prev.get(wid, 0) / total_prev if total_prev else None
        report.share.append({"watchlist_id": wid, "name": _name(watchlists, wid), "mentions": sov_now.get(wid, 0),
                             "share": s_now, "previous_share": s_prev, "display": share_display(s_now),
                             "delta": point_change(s_now, s_prev),
                             "href": mentions_url(view, watchlist=wid, from_=lo, to=hi)})

    # Risk and intent tags over time, and the top risks with their loudest post.
    tag_rows = await _fetch(pool, tag_series(watchlist_id, floor_to(prev_lo, step), ceil_to(hi, step), step))
    tag_now: dict[datetime, dict[str, int]] = {}
    tag_totals: dict[str, list[int]] = {t: [0, 0] for t in TAG_COLORS}
    for r in tag_rows:
        if r["tag"] not in tag_totals:
            continue
        if r["start"] >= floor_to(lo, step):
            tag_now.setdefault(r["start"], {})[r["tag"]] = r["mentions"]
            tag_totals[r["tag"]][0] += r["mentions"]
        else:
            tag_totals[r["tag"]][1] += r["mentions"]
    tag_columns = [Column(label, [Segment(t, tag_now.get(b, {}).get(t, 0), color,
                                          mentions_url(view, watchlist=watchlist_id, from_=b, to=b + timedelta(seconds=step), risk=t),
                                          f"{local(b, tz, step, with_zone=True)}: {count(tag_now.get(b, {}).get(t, 0))} {t}")
                                  for t, color in TAG_COLORS.items()])
                   for b, label in zip(buckets, labels)]
    charts.append(Chart("tags", "Risk and intent tags", stacked_columns(tag_columns, title="Risk and intent tags",
                                                                        legend=list(TAG_COLORS.items()), kind="tags"), view,
                        "Mentions with each risk or intent tag per column (a mention with two tags counts under both)."))
    for tag in sorted(RISK_TAGS, key=lambda t: (-tag_totals[t][0], -tag_totals[t][1], t)):
        n_now, n_prev = tag_totals[tag]
        if not n_now and not n_prev:
            continue
        loudest = await pool.fetchrow(LOUDEST, [f"w:{watchlist_id}", f"r:{tag}"], lo, hi) if n_now else None
        report.risks.append({
            "tag": tag, "label": tag.replace("_", " / ") if tag == "legal_privacy" else tag, "mentions": n_now,
            "previous": n_prev, "delta": change(n_now, n_prev), "href": link(risk=tag),
            "loudest": None if loudest is None else {
                "text": loudest["text"], "author": loudest["author_handle"], "followers": loudest["author_followers"],
                "url": loudest["url"], "source": loudest["source"],
                "href": view + "#mention?" + urlencode({"id": str(loudest["mention_id"])})}})

    # Sources and languages (the previous period as a tick).
    by_now = await _fetch(pool, source_lang_totals(watchlist_id, floor_to(lo, MINUTE), ceil_to(hi, MINUTE)))
    by_prev = await _fetch(pool, source_lang_totals(watchlist_id, floor_to(prev_lo, MINUTE), floor_to(lo, MINUTE)))
    for key, title, kind in (("source", "Sources", "sources"), ("lang", "Languages", "languages")):
        now_c, prev_c = _split(by_now, key), _split(by_prev, key)
        keys = sorted(set(now_c) | set(prev_c), key=lambda k: (-now_c.get(k, 0), -prev_c.get(k, 0), k))[:10]
        svg = hbars([Bar(k, now_c.get(k, 0), prev_c.get(k, 0), link(**{key: k}), note=change(now_c.get(k, 0), prev_c.get(k, 0)))
                     for k in keys], title=f"{title} (tick: previous period)", kind=kind)
        charts.append(Chart(kind, title, svg, view, f"Mentions per {key if key == 'source' else 'language'};"
                                                    " the dark tick is the previous period."))
    report.charts = [Chart(c.key, c.title, absolute_links(c.svg, view), c.href, c.caption) for c in charts]

    # Top entities and hashtags (whole UTC days, the entity rollups being daily).
    day_lo, day_hi = floor_to(lo, DAY), ceil_to(hi, DAY)
    prev_day_lo = day_lo - (day_hi - day_lo)
    report.entity_days = span_label(day_lo, day_hi, ZoneInfo("UTC"))
    for attr, etype in (("entities", None), ("hashtags", "hashtag")):
        top, before = await entities_then_and_now(pool, watchlist_id, day_lo, day_hi, prev_day_lo, 10, etype)
        setattr(report, attr, [{"text": e["text"], "type": e["type"], "mentions": e["mentions"],
                                "previous": before.get((e["type"], e["entity_key"]), 0),
                                "delta": change(e["mentions"], before.get((e["type"], e["entity_key"]), 0)),
                                "href": mentions_url(view, watchlist=watchlist_id, from_=day_lo, to=day_hi, entity=e["text"])}
                               for e in top])

    # Customer questions, reach.
    sla = w.response_sla_s if w else None
    q_now = dict(await pool.fetchrow(*_q(question_stats(watchlist_id, lo, hi, sla))))
    q_prev = dict(await pool.fetchrow(*_q(question_stats(watchlist_id, prev_lo, lo, sla))))
    reach_now = dict(await pool.fetchrow(REACH, [f"w:{watchlist_id}"], lo, hi))
    reach_prev = dict(await pool.fetchrow(REACH, [f"w:{watchlist_id}"], prev_lo, lo))
    report.questions = {"asked": q_now["asked"], "answered": q_now["answered"], "open": q_now["asked"] - q_now["answered"],
                        "median_first_reply": duration(q_now["median_response_s"]),
                        "p90_first_reply": duration(q_now["p90_response_s"]),
                        "sla": duration(sla) if sla else None, "sla_breached": q_now["sla_breached"] if sla else None,
                        "href": view}

    report.figures = headline_figures(sums, report.share[0] if report.share else None, q_now, q_prev,
                                      (reach_now["reach"], reach_prev["reach"]), (len(firing_now), len(firing_before)),
                                      view, link)
    report.kpis, report.kpi_note = await kpi_section(pool, watchlists, watchlist_id, period, view, now)
    report.campaigns, report.campaign_note = await campaign_section(pool, watchlists, watchlist_id, period, tz, base_url, now)
    return report


async def _totals(pool: asyncpg.Pool, watchlist_id: str, period: Period) -> dict[str, tuple[int, int]]:
    """Mentions and sentiment of both periods from the watchlist rollups, exact to the minute."""
    rows = []
    for a, b in ((period.lo, period.hi), (period.prev_lo, period.lo)):
        found = await _fetch(pool, share_of_voice(floor_to(a, MINUTE), floor_to(b, MINUTE), [watchlist_id]))
        rows.append(dict(found[0]) if found else {})
    return {k: (int(rows[0].get(k, 0)), int(rows[1].get(k, 0))) for k in ("mentions", "negative", "positive", "neutral")}


def headline_figures(sums: dict[str, tuple[int, int]], share: dict[str, Any] | None, q_now: dict[str, Any],
                     q_prev: dict[str, Any], reach: tuple[int, int], alerts: tuple[int, int], view: str,
                     link: Any) -> list[Figure]:
    """The report's first page: volume, net sentiment, negative share, share of voice, reach,
    questions answered, median first reply, alerts; each against the previous period."""
    m_now, m_prev = sums["mentions"]
    net_now = of_period(m_now, sums["positive"][0], sums["negative"][0])
    net_prev = of_period(m_prev, sums["positive"][1], sums["negative"][1])
    neg_now = sums["negative"][0] / m_now if m_now else None
    neg_prev = sums["negative"][1] / m_prev if m_prev else None
    ans_now = q_now["answered"] / q_now["asked"] if q_now["asked"] else None
    ans_prev = q_prev["answered"] / q_prev["asked"] if q_prev["asked"] else None
    med_now, med_prev = q_now["median_response_s"], q_prev["median_response_s"]
    figures = [
        Figure("mentions", "Mentions", count(m_now), count(m_prev), change(m_now, m_prev), link(), m_now, m_prev),
        Figure("net_sentiment", "Net sentiment", signed(net_now), signed(net_prev), diff(net_now, net_prev), link(),
               net_now, net_prev),
        Figure("negative_share", "Negative", share_display(neg_now), share_display(neg_prev), point_change(neg_now, neg_prev),
               link(sentiment="negative"), neg_now, neg_prev),
    ]
    if share is not None:
        figures.append(Figure("share_of_voice", "Share of voice", share["display"], share_display(share["previous_share"]),
                              share["delta"], share["href"], share["share"], share["previous_share"]))
    figures += [
        Figure("reach", "Reach (followers of distinct authors)", count(reach[0]), count(reach[1]), change(reach[0], reach[1]),
               link(), reach[0], reach[1]),
        Figure("questions_answered", "Questions answered",
               f"{share_display(ans_now)} ({count(q_now['answered'])} of {count(q_now['asked'])})" if q_now["asked"] else "none asked",
               f"{share_display(ans_prev)} ({count(q_prev['answered'])} of {count(q_prev['asked'])})" if q_prev["asked"] else "none asked",
               point_change(ans_now, ans_prev), view, ans_now, ans_prev),
        Figure("first_reply", "Median first reply", duration(med_now), duration(med_prev), reply_delta(med_now, med_prev), view,
               med_now, med_prev),
        Figure("alerts", "Alerts fired", count(alerts[0]), count(alerts[1]), change(*alerts), view, alerts[0], alerts[1]),
    ]
    return figures


# --- KPIs and campaign lift (earful.storage.kpis, earful.storage.campaigns) ---------------------------------------

NO_KPI_TARGETS = "No KPI targets are set for this watchlist (its `kpis:` block): the figures are shown without a status."
KPI_STATUS = {"met": "met", "at_risk": "at risk", "missed": "missed", "no_target": "no target", "no_data": "no data"}


async def kpi_section(pool: asyncpg.Pool, watchlists: WatchlistSet, watchlist_id: str, period: Period, view: str,
                      now: datetime) -> tuple[list[KpiRow], str]:
    """The watchlist's four KPIs over the period (earful.storage.kpis: value, target, status,
    trend against the previous period), and a note."""
    w = watchlists.watchlists.get(watchlist_id)
    if w is None:
        return [], "This watchlist is not configured here (no file in EARFUL_WATCHLISTS_DIR): it has no KPI targets."
    kpis = await watchlist_kpis(pool, w, Window(period.lo, period.hi), compared=await compared_ids(pool, watchlist_id, watchlists),
                                now=now)
    rows = [KpiRow(f.label, f.display, f.target_display, KPI_STATUS.get(f.status, f.status),
                   f"{f.trend} ({f.delta_display})" if f.trend != "n/a" else "n/a", view)
            for f in kpis.figures]
    notes = [NO_KPI_TARGETS] if not kpis.has_targets else []
    notes += [f"{f.label}: {f.note}." for f in kpis.figures if f.note]
    return rows, " ".join(notes)


def brand_campaigns(watchlists: WatchlistSet, watchlist_id: str, period: Period) -> list[Watchlist]:
    """The campaigns a report on `watchlist_id` shows: the watchlist itself when it is a campaign,
    else the campaign watchlists labelled `brand: <its id>`; those running at some time of the period."""
    w = watchlists.watchlists.get(watchlist_id)
    if w is not None and w.kind == "campaign":
        found = [w]
    else:
        found = [c for c in campaign_watchlists(watchlists) if c.labels.get("brand") == watchlist_id]
    return [c for c in found if c.campaign is not None and c.campaign.launch_at < period.hi
            and (c.campaign.ends_at is None or c.campaign.ends_at > period.lo)]


async def campaign_section(pool: asyncpg.Pool, watchlists: WatchlistSet, watchlist_id: str, period: Period, tz: ZoneInfo,
                           base_url: str, now: datetime) -> tuple[list[dict[str, Any]], str]:
    """Each campaign's lift as of the end of the period (earful.storage.campaigns: four figures with
    95 % intervals against the same hours before launch), with its chart; or a note saying why none."""
    found = brand_campaigns(watchlists, watchlist_id, period)
    if not found:
        return [], ("No campaign of this brand ran in this period (a campaign watchlist belongs to a brand through"
                    " its label `brand: <brand id>`).")
    out = []
    for c in found:
        view = view_url(base_url, c.id, period)
        lift = await campaign_lift(pool, c, as_of=min(period.hi, now), compared=await compared_ids(pool, c.id, watchlists),
                                   top_posts=3)
        charts = campaign_charts(lift, tz)
        out.append({
            "id": c.id, "name": c.name, "state": lift.state,
            "window": span_label(lift.window.start, lift.window.end, tz) if lift.window else "not started",
            "baseline": span_label(lift.baseline.start, lift.baseline.end, tz) if lift.baseline else "",
            "href": view + "#campaign?" + urlencode({"id": c.id}),
            "lifts": [{"label": x.label, "campaign": x.campaign_display, "baseline": x.baseline_display,
                       "change": x.change_display, "interval": x.interval_display, "verdict": x.verdict} for x in lift.lifts],
            "notes": list(lift.notes),
            "chart": Chart(f"campaign-{c.id}", f"{c.name}: change since launch", absolute_links(charts["lift"], view),
                           view + "#campaign?" + urlencode({"id": c.id}),
                           "Each figure's change against the baseline with its 95 % interval; the dashed line is no change.")
            if "lift" in charts else None})
    return out, ""


def _split(rows: Sequence[asyncpg.Record], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r[key]] = out.get(r[key], 0) + r["mentions"]
    return out


def _q(query: tuple[str, list[Any]]) -> list[Any]:
    return [query[0], *query[1]]

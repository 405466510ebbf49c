"""Campaign lift: what a campaign changed, measured live against the matched period before launch.

A campaign is a watchlist of kind `campaign` with `campaign.launch_at` and an optional `ends_at`.
Its **window** is [launch, min(as_of, end)), to the minute; its **baseline** is a period of the same
length before launch. With `align="week"` (the default) the baseline is shifted back by whole weeks
(the window's length rounded up to weeks), so it covers the same hours of the week: a campaign
that has run Monday 09:00 to Wednesday 15:00 is compared with Monday 09:00 to Wednesday 15:00 one
week earlier, and a weekly rhythm (quiet nights, busy Mondays) cannot pass for lift. With
`align="adjacent"` the baseline ends at launch.

Four figures, each with a 95 % confidence interval (`LEVEL`):

* **volume** (mentions): the rate ratio campaign / baseline. Log-scale Wald interval,
  log(n₁/n₀) ± z·√(φ·(1/n₁ + 1/n₀)), with 0.5 added to both counts when either is zero. φ is the
  overdispersion (at least 1): the buckets of the two windows are paired by their offset from the
  start (the same hour of the week with the aligned baseline), and φ is the ratio of the
  bucket-clustered (sandwich) variance of the log ratio to the Poisson one. A rhythm both windows
  share cancels out in the pairs; bursts do not, so bursty traffic widens the interval instead
  of passing for lift.
* **reach**: the sum of the authors' follower counts over the mentions (potential impressions; an
  author posting twice counts twice), as a ratio. A compound-Poisson interval on the log scale,
  log(S₁/S₀) ± z·√(φ·(Σx₁²/S₁² + Σx₀²/S₀²)), which is the volume interval when every x is 1.
* **net sentiment**, (positive − negative) / (positive + negative) (earful.storage.sentiment): the
  difference campaign − baseline. Normal approximation of a difference of means of scores in
  {−1, +1} over the mentions that take a side, with one positive and one negative pseudo-mention
  added to each window (the Agresti–Caffo idea) so a window of all-negative mentions does not get a
  zero-width interval.
* **share of voice**: the campaign's mentions / the mentions of the compared watchlists (itself and
  the configured brands and competitors with data), as a difference of proportions with the
  Agresti–Caffo interval (one success and one failure added to each window).

A figure whose interval excludes no change (ratio 1, difference 0) is an `increase` or `decrease`;
otherwise `no significant change`. The four intervals are each 95 % on their own (no correction
for looking at four). The sentiment and share-of-voice intervals treat mentions as independent.
Only earned mentions count, as in the rollups: not the posts of the watchlist's own accounts
(`owned_watchlist_ids`).

The interval maths are pure functions (tested without a database); `campaign_lift` runs the
queries; `campaign_charts` renders its SVG charts (earful.storage.charts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from statistics import NormalDist
from typing import Any, Literal
from zoneinfo import ZoneInfo

from earful.core.errors import ValidationError
from earful.storage.api.queries import DAY, HOUR, MINUTE, floor_to, share_of_voice
from earful.storage.api.responses import iso
from earful.storage.charts import Interval, Line, intervals, lines
from earful.storage.dashboard_views import count, local, mention_link, mentions_link
from earful.storage.kpis import Db, Window
from earful.storage.sentiment import of_period
from earful.watchlists import Watchlist, WatchlistSet
from earful.watchlists.model import Campaign

__all__ = [
    "LEVEL", "CampaignLift", "Estimate", "Lift", "Post", "campaign_charts", "campaign_lift", "campaign_watchlists",
    "campaign_windows", "net_sentiment_difference", "overdispersion", "proportion_difference", "rate_ratio",
    "sum_ratio", "verdict",
]

UTC = timezone.utc
LEVEL = 0.95
WEEK = 7 * DAY
Align = Literal["week", "adjacent"]
STEPS = (MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, WEEK)
MAX_BUCKETS = 72


# --- the interval maths (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A point estimate (None when not estimable, e.g. a ratio over zero) and its interval."""

    estimate: float | None
    low: float | None
    high: float | None


NONE = Estimate(None, None, None)


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def rate_ratio(n1: float, n0: float, exposure1: float = 1.0, exposure0: float = 1.0, *, dispersion: float = 1.0,
               level: float = LEVEL) -> Estimate:
    """The ratio of two Poisson rates (n₁/e₁) / (n₀/e₀) with a Wald interval on the log scale,
    its variance scaled by `dispersion`; 0.5 is added to both counts for the interval when either
    is zero (the estimate is then None if n₀ is zero: a rise from nothing has no ratio)."""
    if n1 < 0 or n0 < 0 or exposure1 <= 0 or exposure0 <= 0:
        raise ValueError("counts must be >= 0 and exposures > 0")
    if n1 == 0 and n0 == 0:
        return NONE
    a, b = (n1 + 0.5, n0 + 0.5) if n1 == 0 or n0 == 0 else (n1, n0)
    log_ratio = math.log((a / exposure1) / (b / exposure0))
    half = _z(level) * math.sqrt(max(dispersion, 1.0) * (1 / a + 1 / b))
    estimate = (n1 / exposure1) / (n0 / exposure0) if n0 else None
    return Estimate(estimate, math.exp(log_ratio - half), math.exp(log_ratio + half))


def sum_ratio(s1: float, sq1: float, s0: float, sq0: float, exposure1: float = 1.0, exposure0: float = 1.0, *,
              dispersion: float = 1.0, level: float = LEVEL) -> Estimate:
    """The ratio of two compound-Poisson totals (S = Σx over events, sq = Σx²), e.g. reach, with a
    delta-method interval on the log scale: Var(log S) ≈ φ·Σx²/S². None when either total is zero."""
    if s1 <= 0 or s0 <= 0:
        return NONE
    log_ratio = math.log((s1 / exposure1) / (s0 / exposure0))
    half = _z(level) * math.sqrt(max(dispersion, 1.0) * (sq1 / s1 ** 2 + sq0 / s0 ** 2))
    return Estimate(math.exp(log_ratio), math.exp(log_ratio - half), math.exp(log_ratio + half))


def net_sentiment_difference(pos1: int, neg1: int, n1: int, pos0: int, neg0: int, n0: int, *,
                             level: float = LEVEL) -> Estimate:
    """The difference of the mean score (pos − neg) / n between two windows of n scored mentions
    (+1 positive, −1 negative, 0 the others), with a normal interval that adds one positive and one
    negative pseudo-mention to each window. Net sentiment passes n = pos + neg."""
    if n1 <= 0 or n0 <= 0:
        return NONE

    def adjusted(pos: int, neg: int, n: int) -> tuple[float, float]:
        p, q, m = pos + 1, neg + 1, n + 2
        mean = (p - q) / m
        return mean, max((p + q) / m - mean ** 2, 0.0) / m

    m1, v1 = adjusted(pos1, neg1, n1)
    m0, v0 = adjusted(pos0, neg0, n0)
    half = _z(level) * math.sqrt(v1 + v0)
    return Estimate((pos1 - neg1) / n1 - (pos0 - neg0) / n0, m1 - m0 - half, m1 - m0 + half)


def proportion_difference(x1: int, n1: int, x0: int, n0: int, *, level: float = LEVEL) -> Estimate:
    """p₁ − p₀ with the Agresti–Caffo interval (one success and one failure added to each window)."""
    if n1 <= 0 or n0 <= 0:
        return NONE
    a, b = (x1 + 1) / (n1 + 2), (x0 + 1) / (n0 + 2)
    half = _z(level) * math.sqrt(a * (1 - a) / (n1 + 2) + b * (1 - b) / (n0 + 2))
    return Estimate(x1 / n1 - x0 / n0, a - b - half, a - b + half)


def overdispersion(pairs: Sequence[tuple[float, float]]) -> float:
    """φ ≥ 1 from paired bucket counts (campaign, baseline). Given a pair's total t, the campaign's
    count is binomial(t, p) under a constant ratio, p = n₁ / (n₁ + n₀); φ is the squared residuals
    over their binomial variances, summed over the pairs with mentions and scaled by B / (B − 1):
    the ratio of the bucket-clustered (sandwich) variance of log(n₁/n₀) to the Poisson one. 1 when
    it cannot be told (fewer than two such pairs, or one window empty)."""
    used = [(a, b) for a, b in pairs if a + b > 0]
    n1, total = sum(a for a, _ in used), sum(a + b for a, b in used)
    if len(used) < 2 or total == 0 or n1 in (0, total):
        return 1.0
    p = n1 / total
    residuals = sum((a - (a + b) * p) ** 2 for a, b in used)
    return max(1.0, residuals / (total * p * (1 - p)) * len(used) / (len(used) - 1))


def verdict(e: Estimate, null: float) -> str:
    """`increase` / `decrease` when the interval excludes `null`, else `no significant change`;
    `not enough data` without an interval."""
    if e.low is None or e.high is None:
        return "not enough data"
    if e.low > null:
        return "increase"
    if e.high < null:
        return "decrease"
    return "no significant change"


# --- the periods (pure) ---------------------------------------------------------------------------------


def campaign_state(campaign: Campaign | None, as_of: datetime) -> str:
    """`unscheduled` (no launch time), `scheduled`, `running` or `ended`."""
    if campaign is None:
        return "unscheduled"
    if as_of < campaign.launch_at:
        return "scheduled"
    if campaign.ends_at is not None and as_of >= campaign.ends_at:
        return "ended"
    return "running"


def campaign_windows(campaign: Campaign, as_of: datetime, align: Align = "week") -> tuple[Window, Window] | None:
    """The campaign's window [launch, min(as_of, end)) in whole minutes and its baseline of the same
    length: `week` shifts it back by its length rounded up to whole weeks (same hours of the week),
    `adjacent` ends it at launch. None before the first whole minute after launch."""
    start = floor_to(campaign.launch_at, MINUTE)
    end = floor_to(min(as_of, campaign.ends_at) if campaign.ends_at else as_of, MINUTE)
    if end <= start:
        return None
    length = end - start
    shift = timedelta(seconds=math.ceil(length.total_seconds() / WEEK) * WEEK) if align == "week" else length
    return Window(start, end), Window(start - shift, start - shift + length)


def bucket_step(length: timedelta) -> int:
    """The bucket of the campaign's series: the shortest of STEPS giving at most MAX_BUCKETS."""
    seconds = length.total_seconds()
    return next((s for s in STEPS if seconds / s <= MAX_BUCKETS), STEPS[-1])


# --- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lift:
    """One figure of a campaign: its value in the window and the baseline, the change (a ratio or
    a difference) with its interval, and what that says."""

    metric: str  # volume | reach | net_sentiment | share_of_voice
    label: str
    kind: str  # ratio | difference
    campaign: float | None
    baseline: float | None
    estimate: float | None
    low: float | None
    high: float | None
    no_change: float  # 1 for a ratio, 0 for a difference
    verdict: str  # increase | decrease | no significant change | not enough data
    method: str
    campaign_display: str
    baseline_display: str
    change_display: str
    interval_display: str
    level: float = LEVEL


@dataclass(frozen=True)
class Post:
    """A post of the campaign window that drives it (most engagement first)."""

    mention_id: str
    created_at: str
    source: str
    author_handle: str | None
    author_followers: int | None
    text: str
    url: str | None
    sentiment: str | None
    likes: int
    reposts: int
    replies: int
    engagement: int
    engagement_share: float | None  # of the window's engagement
    href: str


@dataclass(frozen=True)
class SeriesPoint:
    """Mentions in bucket `index` of the window and of the baseline (same offset from the start)."""

    index: int
    start: str
    baseline_start: str
    campaign: int
    baseline: int


@dataclass(frozen=True)
class CampaignLift:
    """A campaign's lift as of `as_of` (see the module docstring)."""

    watchlist_id: str
    name: str
    state: str  # unscheduled | scheduled | running | ended
    launch_at: datetime | None
    ends_at: datetime | None
    as_of: datetime
    align: str
    window: Window | None = None
    baseline: Window | None = None
    step_s: int | None = None
    dispersion: float = 1.0
    lifts: tuple[Lift, ...] = ()
    posts: tuple[Post, ...] = ()
    series: tuple[SeriesPoint, ...] = ()
    compared: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def lift(self, metric: str) -> Lift:
        return next(x for x in self.lifts if x.metric == metric)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (the API's answer, without charts)."""
        return {"watchlist_id": self.watchlist_id, "name": self.name, "state": self.state,
                "launch_at": iso(self.launch_at) if self.launch_at else None,
                "ends_at": iso(self.ends_at) if self.ends_at else None, "as_of": iso(self.as_of), "align": self.align,
                "window": self.window.to_dict() if self.window else None,
                "baseline": self.baseline.to_dict() if self.baseline else None,
                "interval_s": self.step_s, "dispersion": round(self.dispersion, 3), "level": LEVEL,
                "lifts": [asdict(x) for x in self.lifts], "posts": [asdict(p) for p in self.posts],
                "series": [asdict(s) for s in self.series], "compared": list(self.compared), "notes": list(self.notes),
                "mentions_href": mentions_link(watchlist=self.watchlist_id, from_=self.window.start, to=self.window.end)
                if self.window else None}


# --- display (pure) -------------------------------------------------------------------------------------


def compact(n: float | None) -> str:
    """12345 → '12,345'; 3456789 → '3.5 M'; 1234567890 → '1.2 B'."""
    if n is None:
        return "n/a"
    for size, unit in ((1e9, "B"), (1e6, "M")):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return count(n)


def _ratio_text(r: float | None) -> str:
    if r is None:
        return "n/a"
    pct = round(100 * (r - 1))
    return f"×{r:.2f} ({'+' if pct >= 0 else '−'}{abs(pct)} %)"


def _diff_text(d: float | None, percent: bool) -> str:
    if d is None:
        return "n/a"
    if percent:
        pp = round(100 * d, 1)
        return "±0 pp" if pp == 0 else f"{'+' if pp > 0 else '−'}{abs(pp):g} pp"
    r = round(d, 2)
    return "±0.00" if r == 0 else f"{'+' if r > 0 else '−'}{abs(r):.2f}"


def _interval_text(e: Estimate, kind: str, percent: bool = False) -> str:
    if e.low is None or e.high is None:
        return "n/a"
    if kind == "ratio":
        return f"×{e.low:.2f} to ×{e.high:.2f}"
    return f"{_diff_text(e.low, percent)} to {_diff_text(e.high, percent)}"


METHODS = {
    "volume": "rate ratio, Wald interval on the log scale, quasi-Poisson (variance × dispersion)",
    "reach": "ratio of follower sums, compound-Poisson delta-method interval on the log scale, × dispersion",
    "net_sentiment": "difference of (positive − negative) / (positive + negative), normal interval with a positive and a "
                     "negative pseudo-mention",
    "share_of_voice": "difference of proportions, Agresti–Caffo interval",
}


def make_lift(metric: str, label: str, kind: str, campaign: float | None, baseline: float | None, e: Estimate,
              shown: tuple[str, str]) -> Lift:
    """A Lift with its verdict and display texts (pure)."""
    null = 1.0 if kind == "ratio" else 0.0
    percent = metric == "share_of_voice"
    change = _ratio_text(e.estimate) if kind == "ratio" else _diff_text(e.estimate, percent)
    if kind == "ratio" and e.estimate is None and e.low is not None:
        change = "new (none before launch)"
    return Lift(metric, label, kind, campaign, baseline, e.estimate, e.low, e.high, null, verdict(e, null),
                METHODS[metric], shown[0], shown[1], change, _interval_text(e, kind, percent))


# --- queries --------------------------------------------------------------------------------------------

WINDOW_BUCKETS = (
    "SELECT date_bin($1::interval, created_at, $2::timestamptz) AS start, count(*)::bigint AS mentions,"
    " count(*) FILTER (WHERE sentiment = 'positive')::bigint AS positive,"
    " count(*) FILTER (WHERE sentiment = 'negative')::bigint AS negative,"
    " coalesce(sum(greatest(coalesce(author_followers, 0), 0)), 0)::float8 AS reach,"
    " coalesce(sum(greatest(coalesce(author_followers, 0), 0)::float8 ^ 2), 0)::float8 AS reach_sq,"
    " coalesce(sum(likes + reposts + replies), 0)::float8 AS engagement"
    " FROM mentions WHERE facets @> $3::text[] AND created_at >= $2 AND created_at < $4"
    " AND $5::text <> ALL(owned_watchlist_ids) GROUP BY 1")
TOP_POSTS = (
    "SELECT mention_id, created_at, source, url, author_handle, author_followers, text, sentiment, likes, reposts, replies,"
    " (likes + reposts + replies) AS engagement FROM mentions"
    " WHERE facets @> $1::text[] AND created_at >= $2 AND created_at < $3 AND $5::text <> ALL(owned_watchlist_ids)"
    " ORDER BY likes + reposts + replies DESC, coalesce(author_followers, 0) DESC, mention_id LIMIT $4")


def campaign_watchlists(watchlists: WatchlistSet) -> list[Watchlist]:
    """The configured campaigns, latest launch first (those without a launch time last)."""
    found = [w for w in watchlists.watchlists.values() if w.kind == "campaign"]
    far = datetime(1970, 1, 1, tzinfo=UTC)
    return sorted(found, key=lambda w: (w.campaign.launch_at if w.campaign else far, w.id), reverse=True)


async def _buckets(db: Db, watchlist_id: str, window: Window, step: int) -> dict[int, dict[str, float]]:
    rows = await db.fetch(WINDOW_BUCKETS, timedelta(seconds=step), window.start, [f"w:{watchlist_id}"], window.end,
                          watchlist_id)
    return {int((r["start"] - window.start).total_seconds() // step): dict(r) for r in rows}


async def _mentions_of(db: Db, window: Window, ids: Sequence[str]) -> dict[str, int]:
    query = share_of_voice(window.start, window.end, list(ids))
    if query is None:
        return {}
    return {r["watchlist_id"]: int(r["mentions"]) for r in await db.fetch(query[0], *query[1])}


async def campaign_lift(db: Db, watchlist: Watchlist, *, as_of: datetime | None = None, compared: Sequence[str] | None = None,
                        align: Align = "week", top_posts: int = 10) -> CampaignLift:
    """The lift of campaign `watchlist` as of `as_of` (default now; a report passes the end of its
    period): the four figures with their intervals, the buckets of both windows, and the `top_posts`
    posts of the window with the most engagement. `compared`: who the share of voice is measured
    against (earful.storage.kpis.compared_ids; the campaign itself is added); None or only the
    campaign: no share of voice. ValidationError when `watchlist` is not of kind campaign."""
    if watchlist.kind != "campaign":
        raise ValidationError(f"{watchlist.id} is a {watchlist.kind} watchlist, not a campaign")
    as_of = as_of or datetime.now(UTC)
    c = watchlist.campaign
    base = CampaignLift(watchlist.id, watchlist.name, campaign_state(c, as_of), c.launch_at if c else None,
                        c.ends_at if c else None, as_of, align)
    if c is None:
        return replace(base, notes=("no campaign.launch_at: give the campaign a launch time",))
    windows = campaign_windows(c, as_of, align)
    if windows is None:
        return replace(base, notes=("the campaign has not started yet",))
    win, bl = windows
    step = bucket_step(win.length)
    cur, before = await _buckets(db, watchlist.id, win, step), await _buckets(db, watchlist.id, bl, step)
    n_buckets = math.ceil(win.length.total_seconds() / step)

    def total(rows: dict[int, dict[str, float]], key: str) -> float:
        return sum(r[key] for r in rows.values())

    n1, n0 = total(cur, "mentions"), total(before, "mentions")
    phi = overdispersion([(cur.get(i, {}).get("mentions", 0), before.get(i, {}).get("mentions", 0))
                          for i in range(n_buckets)])
    lifts = [make_lift("volume", "Mentions", "ratio", n1, n0, rate_ratio(n1, n0, dispersion=phi),
                       (count(n1), count(n0)))]
    r1, r0 = total(cur, "reach"), total(before, "reach")
    lifts.append(make_lift("reach", "Reach (followers)", "ratio", r1, r0,
                           sum_ratio(r1, total(cur, "reach_sq"), r0, total(before, "reach_sq"), dispersion=phi),
                           (compact(r1), compact(r0))))
    pos1, neg1, pos0, neg0 = (int(total(cur, "positive")), int(total(cur, "negative")), int(total(before, "positive")),
                              int(total(before, "negative")))
    ns1, ns0 = of_period(n1, pos1, neg1), of_period(n0, pos0, neg0)
    lifts.append(make_lift("net_sentiment", "Net sentiment", "difference", ns1, ns0,
                           net_sentiment_difference(pos1, neg1, pos1 + neg1, pos0, neg0, pos0 + neg0),
                           (_diff_text(ns1, False), _diff_text(ns0, False))))
    ids = [watchlist.id, *(x for x in (compared or ()) if x != watchlist.id)]
    notes = []
    if len(ids) > 1:
        m1, m0 = await _mentions_of(db, win, ids), await _mentions_of(db, bl, ids)
        c1, t1, c0, t0 = m1.get(watchlist.id, 0), sum(m1.values()), m0.get(watchlist.id, 0), sum(m0.values())
        s1, s0 = (c1 / t1 if t1 else None), (c0 / t0 if t0 else None)
        sov = proportion_difference(c1, t1, c0, t0)
        shown = (f"{100 * s1:.1f} %" if s1 is not None else "n/a", f"{100 * s0:.1f} %" if s0 is not None else "n/a")
    else:
        s1 = s0 = None
        sov, shown = NONE, ("n/a", "n/a")
        notes.append("share of voice: no brand or competitor watchlist with data to compare with")
    lifts.append(make_lift("share_of_voice", "Share of voice", "difference", s1, s0, sov, shown))
    if n0 == 0:
        notes.append("no mentions in the baseline: the watchlist may have been created (or backfilled) after it; "
                     "see `earful watchlists backfill`")
    series = tuple(SeriesPoint(i, iso(win.start + timedelta(seconds=i * step)), iso(bl.start + timedelta(seconds=i * step)),
                               int(cur.get(i, {}).get("mentions", 0)), int(before.get(i, {}).get("mentions", 0)))
                   for i in range(n_buckets))
    engagement = total(cur, "engagement")
    rows = (await db.fetch(TOP_POSTS, [f"w:{watchlist.id}"], win.start, win.end, top_posts, watchlist.id)
            if top_posts > 0 else [])
    posts = tuple(Post(str(r["mention_id"]), iso(r["created_at"]), r["source"], r["author_handle"], r["author_followers"],
                       r["text"], r["url"], r["sentiment"], int(r["likes"]), int(r["reposts"]), int(r["replies"]),
                       int(r["engagement"]), (r["engagement"] / engagement) if engagement else None,
                       mention_link(str(r["mention_id"])))
                  for r in rows)
    return replace(base, window=win, baseline=bl, step_s=step, dispersion=phi, lifts=tuple(lifts), posts=posts,
                    series=series, compared=tuple(ids), notes=tuple(notes))


# --- charts (pure) --------------------------------------------------------------------------------------

COLORS = {"increase": "#12b76a", "decrease": "#d92d20", "no significant change": "#98a2b3", "not enough data": "#d0d5dd"}


def campaign_charts(lift: CampaignLift, tz: ZoneInfo) -> dict[str, str]:
    """SVG charts of a campaign: `lift` (each figure's change with its interval, no change marked)
    and `series` (mentions per bucket of the window against the baseline, each point linking to
    its mentions). Ratios are drawn on a log scale."""
    if lift.window is None or lift.baseline is None or lift.step_s is None:
        return {}
    rows = []
    for x in lift.lifts:
        log = x.kind == "ratio"

        def t(v: float | None, log: bool = log) -> float | None:
            return (math.log(v) if v and v > 0 else None) if log else v

        rows.append(Interval(x.label, t(x.estimate), t(x.low), t(x.high), 0.0,
                             f"{x.change_display} ({x.interval_display})" if x.low is not None else x.verdict,
                             COLORS[x.verdict],
                             mentions_link(watchlist=lift.watchlist_id, from_=lift.window.start, to=lift.window.end)))
    charts = {"lift": intervals(rows, title=f"Change since launch, {LEVEL:.0%} intervals", kind="lift")}
    step = lift.step_s
    labels = [local(datetime.fromisoformat(p.start), tz, step) for p in lift.series]

    def hrefs(starts: list[str]) -> list[str | None]:
        out: list[str | None] = []
        for s in starts:
            a = datetime.fromisoformat(s)
            out.append(mentions_link(watchlist=lift.watchlist_id, from_=a, to=a + timedelta(seconds=step)))
        return out

    cur = Line("campaign", "#2e6be6", [p.campaign for p in lift.series], hrefs([p.start for p in lift.series]),
               [f"{local(datetime.fromisoformat(p.start), tz, step, with_zone=True)}: {count(p.campaign)} mentions"
                for p in lift.series], emphasis=True)
    weeks = round((lift.window.start - lift.baseline.start).total_seconds() / WEEK, 2)
    name = f"baseline ({weeks:g} week{'s' if weeks != 1 else ''} earlier)" if lift.align == "week" else "baseline (just before)"
    base = Line(name, "#98a2b3", [p.baseline for p in lift.series], hrefs([p.baseline_start for p in lift.series]),
                [f"{local(datetime.fromisoformat(p.baseline_start), tz, step, with_zone=True)}: {count(p.baseline)} mentions"
                 for p in lift.series])
    charts["series"] = lines(labels, [cur, base], title="Mentions: campaign and baseline", percent=False, kind="campaign_series")
    return charts

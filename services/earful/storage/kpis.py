"""KPIs: a watchlist's figures judged against the targets in its `kpis:` block, with their trend.

Four figures, each over a period and the previous period of the same length:

* `net_sentiment`: (positive − negative) / (positive + negative) of the watchlist's mentions, −1..1
  (the rollups; earful.storage.sentiment: 0 when none is positive or negative, no data without mentions);
* `share_of_voice`: the watchlist's mentions / the mentions of the compared watchlists (itself and
  the configured brands and competitors with data, as the dashboard compares them);
* `first_response_s`: the median time from a customer question (the `questions` table) to the
  first reply from one of the watchlist's handles, over the questions of the period answered so far;
* `answered_within_sla`: of the period's questions whose outcome is known, the share answered
  within `response_sla_s`. A question still open counts as missed once it has waited longer than
  the SLA, and is left out while it still could make it. With `care.business_hours` the SLA
  clock runs only in business hours (earful.watchlists.care, as the care inbox counts it); without,
  around the clock. The first response time is always wall-clock time: what the customer waited.

A figure's **status** against its target: `met`; `at_risk` when it misses the target by no more
than the tolerance, or meets it by no more than the tolerance while getting worse; `missed` when
it misses by more; `no_target` / `no_data` when there is nothing to judge. The **trend** compares
it with the previous period: `improving`, `worsening` or `steady` (a change smaller than the
figure's step), in the figure's good direction (a shorter first response is an improvement).

`judge` and `trend_of` are pure; `watchlist_kpis` runs the queries. The report and the
dashboard's KPI strip both read `watchlist_kpis`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeAlias

import asyncpg

from earful.storage.api.queries import MINUTE, WATCHLIST_TOTALS, ceil_to, floor_to, share_of_voice
from earful.storage.api.responses import iso
from earful.storage.dashboard_views import compared_watchlists, duration
from earful.storage.sentiment import of_period
from earful.watchlists import Watchlist, WatchlistSet
from earful.watchlists.care import sla_deadline
from earful.watchlists.model import BusinessHours

__all__ = ["KPIS", "KpiFigure", "KpiReport", "Window", "compared_ids", "figure", "judge", "sla_outcomes", "trend_of",
           "watchlist_kpis"]

UTC = timezone.utc
Db: TypeAlias = asyncpg.Pool | asyncpg.Connection  # anything with fetch/fetchrow/fetchval


@dataclass(frozen=True)
class Window:
    """A period [start, end) in UTC; `previous` is the period of the same length just before it."""

    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    @property
    def previous(self) -> Window:
        return Window(self.start - self.length, self.start)

    def aligned(self, step: int = MINUTE) -> Window:
        """Rounded outwards to `step` seconds (the rollups count whole minutes)."""
        return Window(floor_to(self.start, step), ceil_to(self.end, step))

    def to_dict(self) -> dict[str, str]:
        return {"from": iso(self.start), "to": iso(self.end)}


@dataclass(frozen=True)
class KpiDef:
    """How a figure is judged: its good direction, its tolerance band and its steady step."""

    name: str
    label: str
    higher_is_better: bool
    tolerance: float  # absolute, or relative to the target when `relative`
    relative: bool
    steady: float  # a change smaller than this is `steady` (relative to the previous value when `relative`)

    def band(self, target: float) -> float:
        return self.tolerance * abs(target) if self.relative else self.tolerance


#: The four KPIs, in the order they are shown.
KPIS: dict[str, KpiDef] = {k.name: k for k in (
    KpiDef("net_sentiment", "Net sentiment", True, 0.05, False, 0.01),
    KpiDef("share_of_voice", "Share of voice", True, 0.10, True, 0.005),
    KpiDef("first_response_s", "Median first response", False, 0.25, True, 0.05),
    KpiDef("answered_within_sla", "Answered within SLA", True, 0.05, False, 0.01),
)}


# --- pure judgement ------------------------------------------------------------------------------


def trend_of(name: str, value: float | None, previous: float | None) -> str:
    """`improving`, `worsening`, `steady` or `n/a` (either period without a value)."""
    if value is None or previous is None:
        return "n/a"
    k = KPIS[name]
    delta = value - previous
    step = k.steady * abs(previous) if k.relative else k.steady
    if abs(delta) <= step:
        return "steady"
    return "improving" if (delta > 0) == k.higher_is_better else "worsening"


def judge(name: str, value: float | None, target: float | None, trend: str = "n/a") -> str:
    """The status of `value` against `target`: met, at_risk, missed, no_target or no_data."""
    if target is None:
        return "no_target"
    if value is None:
        return "no_data"
    k = KPIS[name]
    margin = (value - target) if k.higher_is_better else (target - value)  # >= 0: met
    band = k.band(target)
    if margin < -band:
        return "missed"
    if margin < 0 or (margin <= band and trend == "worsening"):
        return "at_risk"
    return "met"


def _show(name: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if name == "net_sentiment":
        return f"{value:+.2f}"
    if name == "first_response_s":
        return duration(value)
    return f"{100 * value:.1f} %"


def _show_delta(name: str, value: float | None, previous: float | None) -> str:
    if value is None or previous is None:
        return "n/a"
    d = value - previous
    if name == "net_sentiment":
        return "±0.00" if round(d, 2) == 0 else f"{d:+.2f}"
    if name == "first_response_s":
        return ("+" if d >= 0 else "−") + duration(abs(d))
    pp = round(100 * d, 1)
    return "±0 pp" if pp == 0 else (f"+{pp:g} pp" if pp > 0 else f"−{-pp:g} pp")


def _show_target(name: str, target: float | None) -> str:
    if target is None:
        return "no target"
    return ("≥ " if KPIS[name].higher_is_better else "≤ ") + _show(name, target)


@dataclass(frozen=True)
class KpiFigure:
    """One KPI over the period: value, previous value, target, status and trend, with display texts."""

    name: str
    label: str
    value: float | None
    previous: float | None
    target: float | None
    status: str  # met | at_risk | missed | no_target | no_data
    trend: str  # improving | worsening | steady | n/a
    higher_is_better: bool
    display: str
    previous_display: str
    target_display: str
    delta_display: str
    basis: dict[str, float | int | None] = field(default_factory=dict)  # the counts behind the figure
    note: str = ""


def figure(name: str, value: float | None, previous: float | None, target: float | None,
           basis: dict[str, float | int | None] | None = None, note: str = "") -> KpiFigure:
    """A KpiFigure with its status, trend and display texts (pure)."""
    k = KPIS[name]
    trend = trend_of(name, value, previous)
    return KpiFigure(name, k.label, value, previous, target, judge(name, value, target, trend), trend,
                     k.higher_is_better, _show(name, value), _show(name, previous), _show_target(name, target),
                     _show_delta(name, value, previous), dict(basis or {}), note)


@dataclass(frozen=True)
class KpiReport:
    """A watchlist's KPIs over `window`, compared with `previous`."""

    watchlist_id: str
    window: Window
    previous: Window
    figures: tuple[KpiFigure, ...]
    compared: tuple[str, ...]  # who the share of voice is measured against (the watchlist first)
    sla_s: int | None
    sla_clock: str = "wall-clock"  # or business-hours (care.business_hours)
    has_targets: bool = False

    def figure(self, name: str) -> KpiFigure:
        return next(f for f in self.figures if f.name == name)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (the API's answer)."""
        return {"watchlist_id": self.watchlist_id, "period": self.window.to_dict(), "previous": self.previous.to_dict(),
                "has_targets": self.has_targets, "compared": list(self.compared), "sla_s": self.sla_s,
                "sla_clock": self.sla_clock, "kpis": [asdict(f) for f in self.figures]}


# --- queries -----------------------------------------------------------------------------------------

QUESTION_TIMES = ("SELECT created_at, first_reply_at, (created_at >= $3) AS current FROM questions"
                  " WHERE watchlist_id = $1 AND created_at >= $2 AND created_at < $4")
QUESTION_KPIS = (
    "SELECT (created_at >= $3) AS current, count(*) AS asked, count(first_reply_at) AS answered,"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM greatest(first_reply_at - created_at, interval '0')))"
    "   FILTER (WHERE first_reply_at IS NOT NULL) AS median_s,"
    " count(*) FILTER (WHERE first_reply_at IS NOT NULL AND first_reply_at - created_at <= make_interval(secs => $5::bigint))"
    "   AS within_sla,"
    " count(*) FILTER (WHERE first_reply_at IS NULL AND $6::timestamptz - created_at <= make_interval(secs => $5::bigint))"
    "   AS pending"
    " FROM questions WHERE watchlist_id = $1 AND created_at >= $2 AND created_at < $4 GROUP BY 1")


def sla_outcomes(questions: Iterable[tuple[datetime, datetime | None]], sla_s: int, hours: BusinessHours | None,
                 now: datetime) -> tuple[int, int]:
    """(answered within the SLA, still pending) of (created_at, first_reply_at) pairs, the SLA
    clock running in business `hours` (None: around the clock). Pending: open and not yet due."""
    within = pending = 0
    for created, replied in questions:
        due = sla_deadline(created, sla_s, hours)
        if replied is not None:
            within += replied <= due
        else:
            pending += now <= due
    return within, pending


async def compared_ids(db: Db, watchlist_id: str, watchlists: WatchlistSet) -> list[str]:
    """Who a share of voice compares `watchlist_id` with: itself first, then the configured brands
    and competitors that have data (as the dashboard does)."""
    totals = [dict(r) for r in await db.fetch(WATCHLIST_TOTALS)]
    return compared_watchlists(watchlist_id, totals, watchlists)


async def _volumes(db: Db, window: Window, ids: Sequence[str]) -> dict[str, dict[str, int]]:
    query = share_of_voice(window.start, window.end, list(ids))
    if query is None:
        return {}
    return {r["watchlist_id"]: dict(r) for r in await db.fetch(query[0], *query[1])}


async def watchlist_kpis(db: Db, watchlist: Watchlist, window: Window, *, compared: Sequence[str] | None = None,
                         now: datetime | None = None) -> KpiReport:
    """The KPIs of `watchlist` over `window` (rounded outwards to minutes) and the period before it.

    `compared`: the watchlists the share of voice is measured against (see `compared_ids`; the
    watchlist itself is added if missing); None or only the watchlist itself: no share of voice.
    `now` decides which open questions can still be answered within the SLA (default: now)."""
    now = now or datetime.now(UTC)
    cur = window.aligned()
    prev = cur.previous
    ids = [watchlist.id, *(c for c in (compared or ()) if c != watchlist.id)]
    vol_now, vol_prev = await _volumes(db, cur, ids), await _volumes(db, prev, ids)
    sla = watchlist.response_sla_s
    rows = await db.fetch(QUESTION_KPIS, watchlist.id, prev.start, cur.start, cur.end, sla, now)
    q = {bool(r["current"]): dict(r) for r in rows}
    hours = watchlist.care.business_hours if watchlist.care is not None else None
    if hours is not None and sla is not None:
        times = await db.fetch(QUESTION_TIMES, watchlist.id, prev.start, cur.start, cur.end)
        for current, r in q.items():
            r["within_sla"], r["pending"] = sla_outcomes(
                ((t["created_at"], t["first_reply_at"]) for t in times if t["current"] == current), sla, hours, now)
    targets = watchlist.kpis

    def net(v: dict[str, dict[str, int]]) -> tuple[float | None, dict[str, float | int | None]]:
        r = v.get(watchlist.id)
        n, pos, neg = (r["mentions"], r["positive"], r["negative"]) if r else (0, 0, 0)
        basis: dict[str, float | int | None] = {"mentions": n, "positive": pos, "negative": neg}
        return of_period(n, pos, neg), basis

    def sov(v: dict[str, dict[str, int]]) -> tuple[float | None, dict[str, float | int | None]]:
        own = v.get(watchlist.id, {}).get("mentions", 0)
        total = sum(r["mentions"] for r in v.values())
        return (own / total if total and len(ids) > 1 else None), {"mentions": own, "compared_mentions": total}

    def response(r: dict[str, Any] | None) -> tuple[float | None, dict[str, float | int | None]]:
        if not r:
            return None, {"asked": 0, "answered": 0}
        return (float(r["median_s"]) if r["median_s"] is not None else None), {"asked": r["asked"], "answered": r["answered"]}

    def within(r: dict[str, Any] | None) -> tuple[float | None, dict[str, float | int | None]]:
        if not r or sla is None:
            return None, {"asked": r["asked"] if r else 0}
        decided = r["asked"] - r["pending"]
        basis: dict[str, float | int | None] = {"asked": r["asked"], "decided": decided, "within_sla": r["within_sla"],
                                                "pending": r["pending"]}
        return (r["within_sla"] / decided if decided else None), basis

    computed = {"net_sentiment": (net(vol_now), net(vol_prev)), "share_of_voice": (sov(vol_now), sov(vol_prev)),
                "first_response_s": (response(q.get(True)), response(q.get(False))),
                "answered_within_sla": (within(q.get(True)), within(q.get(False)))}
    notes = {"share_of_voice": "no brand or competitor watchlist with data to compare with" if len(ids) < 2 else "",
             "answered_within_sla": "the watchlist has no response_sla_s" if sla is None else ""}
    figures = []
    for name, ((value, basis), (previous, prev_basis)) in computed.items():
        target = getattr(targets, name) if targets is not None else None
        basis = {**basis, **{f"previous_{k}": v for k, v in prev_basis.items()}}
        figures.append(figure(name, value, previous, float(target) if target is not None else None, basis,
                              notes.get(name, "")))
    has_targets = targets is not None and any(getattr(targets, k) is not None for k in KPIS)
    clock = "business-hours" if hours is not None else "wall-clock"
    return KpiReport(watchlist.id, cur, prev, tuple(figures), tuple(ids), sla, clock, has_targets)

"""Detection per watchlist: pure functions over a small JSON-able state, evaluated on every event.

Rules (see `earful.alerting.rules`):

* **volume_spike**: mentions are counted in short event-time buckets; the current bucket is
  compared, on every mention, with a robust baseline: the larger of the median and the mean of
  the last `baseline_buckets` buckets (the mean keeps a sparse series from being judged against
  zero), raised to the hour-of-week norm once `seasonal_weeks` weeks of history exist. A count is
  a spike when it reaches `min_count`, `min_ratio` × expected, a Poisson tail probability below
  `max_p_value` (small brands: every mention matters, chance is priced in) and a robust z-score of
  `min_z` against the larger of the Poisson spread and the observed spread (1.4826 × MAD), which
  keeps bursty, over-dispersed series from crying wolf.
* **negative_surge**: the negative share of the last `window_buckets` buckets against the
  watchlist's usual share (decayed counts with a six-hour half-life, the window itself excluded),
  with a minimum volume, a minimum share, a minimum ratio and a binomial tail test.
* **risk_mention**: a mention tagged with one of the risk tags (legal_privacy, regulatory, ...) by
  an author with at least `min_reach` followers; resolves after `quiet_s` without another.
* **viral_post**: one post whose reshares + replies grow by `min_growth` within `window_s`, from
  successive engagement observations of the post, or from the reshares and replies seen in the
  stream.
* **unanswered_question**: customer questions and complaints with no reply from one of the
  watchlist's own handles within its SLA.
* **volume_drop**: the mentions of the trailing `window_s` fell to `max_ratio` of the usual level
  (the mean of the baseline buckets before the window, lowered to the hour-of-week norm once known,
  so a quiet night is not a drop), with a Poisson lower-tail test and a minimum usual volume (a
  small brand's silence is normal). Judged as time passes, since an absence sends no event;
  resolves once the window is back to `recover_ratio` of the level the alert fired against.

Every rule shares one episode life cycle: pending (the condition must hold for `pending_s`) →
firing → resolved (always reported) → cooling down for `cooldown_s`. Mentions may arrive late in
event time (several partitions, slow sources, fast replays): buckets up to `lateness_buckets`
behind the newest are still judged, and a count-based alert resolves only once `resolve_buckets`
settled buckets after its last spike were normal. `tick` advances time when no mention arrives
(the event clock moves with the wall clock), so a watchlist that falls silent still resolves and
an unanswered question still becomes overdue.

State is a plain dict so it can live in a Faust table (changelogged, survives restarts).
"""

from __future__ import annotations

import hashlib
import math
import statistics
from dataclasses import dataclass
from typing import Any

from earful.alerting.rules import (
    NEGATIVE_SURGE,
    RISK_MENTION,
    UNANSWERED_QUESTION,
    VIRAL_POST,
    VOLUME_DROP,
    VOLUME_SPIKE,
    RuleConfig,
    WatchlistRules,
)
from earful.alerting.stats import MAD_TO_SD, log_binomial_tail, log_poisson_cdf, log_poisson_tail, mad, median, poisson_tail
from earful.core.settings import drop_window_buckets_max
from earful.core.vocabulary import ALERTING_RISK_TAGS

__all__ = ["DetectorConfig", "Mention", "Decision", "fingerprint", "new_state", "observe", "observe_counts", "tick",
           "poisson_tail", "log_poisson_tail", "MAX_SAMPLES"]

MAX_SAMPLES = 5
SAMPLE_BUCKETS = 6  # buckets that keep sample mention ids (a bucket judged later has none; its evidence still explains it)
STATE_VERSION = 2
HOURS_PER_WEEK = 168
SEASON_ALPHA = 0.3  # weight of the newest week in an hour-of-week slot
NEGATIVE_HALF_LIFE_S = 6 * 3600  # memory of the usual negative share
QUESTION_TAGS = frozenset({"customer_question", "complaint"})


@dataclass(frozen=True)
class DetectorConfig:
    """Service-wide detector settings (the per-watchlist ones are in RuleConfig)."""

    bucket_s: int = 10
    baseline_buckets: int = 60
    warmup_buckets: int = 12
    resolve_buckets: int = 3
    lateness_buckets: int = 30
    seasonal_weeks: int = 2
    peak_half_life_s: int = 172800
    risk_tags: frozenset[str] = frozenset(ALERTING_RISK_TAGS)
    max_posts: int = 50  # posts tracked per watchlist for viral_post (the state is written on every mention)
    max_questions: int = 300  # open questions tracked per watchlist (the oldest; newer ones wait for room)

    @property
    def bucket_ms(self) -> int:
        return self.bucket_s * 1000

    @classmethod
    def from_settings(cls, settings: Any) -> "DetectorConfig":
        s = settings
        return cls(bucket_s=s.alert_bucket_s, baseline_buckets=s.alert_baseline_buckets,
                   warmup_buckets=s.alert_warmup_buckets, resolve_buckets=s.alert_resolve_buckets,
                   lateness_buckets=s.alert_lateness_buckets, seasonal_weeks=s.alert_seasonal_weeks,
                   peak_half_life_s=s.alert_peak_half_life_s, risk_tags=frozenset(s.alert_risk_tags))


@dataclass(frozen=True)
class Mention:
    """What the detector needs to know about one mention of a watchlist."""

    mention_id: str
    created_ms: int
    received_ms: int
    source: str = ""
    source_id: str = ""
    author_handle: str | None = None
    followers: int | None = None
    negative: bool = False
    risks: tuple[str, ...] = ()
    in_reply_to: str | None = None
    reposted_from: str | None = None
    engagement: int = 0  # reposts + replies at the observation
    observed_ms: int | None = None  # when the engagement was observed at the source; None = unknown
    matched: bool = True  # False: routed to this watchlist only because one of its handles wrote it


@dataclass(frozen=True)
class Decision:
    """A state change the detector decided: fire or resolve one alert episode."""

    status: str  # firing | resolved
    rule: str
    watchlist_id: str
    fingerprint: str
    alert_id: str
    labels: dict[str, str]
    observed: float
    baseline: float
    score: float
    starts_at_ms: int
    ends_at_ms: int | None
    sample_mention_ids: list[str]
    first_received_at_ms: int | None
    summary: str
    window: tuple[int, int] | None = None  # event-time window the evidence covers


def fingerprint(labels: dict[str, str]) -> str:
    """Stable identity of an alert: a hash of its sorted labels (same labels → same fingerprint)."""
    text = "\x1f".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def new_state() -> dict[str, Any]:
    return {"v": STATE_VERSION, "first": None, "latest": None, "clock": None, "counts": {}, "neg": {}, "recv": {},
            "samples": {}, "season": None, "peak": None, "negbase": None, "episodes": {}, "cool": {}, "risk": {}, "posts": {},
            "questions": {}}


def upgrade_state(state: dict[str, Any] | None) -> dict[str, Any]:
    """A state from the table, brought to the current layout (older layouts keep their counts)."""
    if not state:
        return new_state()
    if state.get("v") == STATE_VERSION:
        return state
    fresh = new_state()
    for key in ("first", "latest", "counts", "recv", "samples"):
        if key in state:
            fresh[key] = state[key]
    return fresh


# --- entry points ------------------------------------------------------------------------------


def observe(state: dict[str, Any], rules: WatchlistRules, m: Mention, cfg: DetectorConfig,
            wall_ms: int | None = None) -> list[Decision]:
    """Take one mention into `state` (mutating it) and return the alert decisions it causes."""
    decisions: list[Decision] = []
    _advance_clock(state, m.created_ms, m.received_ms if wall_ms is None else wall_ms)
    own = (m.author_handle or "").casefold().lstrip("@") in rules.handles if m.author_handle else False
    idx = m.created_ms // cfg.bucket_ms

    if m.matched and not own and _count(state, idx, m, cfg):
        decisions += _judge_counts(state, rules, idx, cfg, m.created_ms)
    if m.matched and not own:
        decisions += _risk(state, rules, m, cfg)
    decisions += _viral(state, rules, m, cfg)
    decisions += _questions(state, rules, m, own, cfg)
    decisions += _settle(state, rules, cfg)
    return decisions


def observe_counts(state: dict[str, Any], rules: WatchlistRules, idx: int, count: int, cfg: DetectorConfig,
                   negative: int = 0) -> list[Decision]:
    """Take a whole bucket's count at once (backtests over pre-counted series, e.g. NAB CSVs)."""
    at_ms = idx * cfg.bucket_ms
    _advance_clock(state, at_ms, at_ms)
    if state["first"] is None:
        state["first"] = state["latest"] = idx
    if idx > state["latest"]:
        _advance_to(state, idx, cfg)
    key = str(idx)
    state["counts"][key] = state["counts"].get(key, 0) + count
    if negative:
        state["neg"][key] = state["neg"].get(key, 0) + negative
    _season_add(state, idx, count, cfg)
    decisions = _judge_counts(state, rules, idx, cfg, at_ms) if count else []
    return decisions + _settle(state, rules, cfg)


def tick(state: dict[str, Any], rules: WatchlistRules, cfg: DetectorConfig, wall_ms: int) -> list[Decision]:
    """Let time pass without a mention: the event clock advances with the wall clock since the
    newest mention, so a silent watchlist resolves and questions become overdue."""
    clock = state.get("clock")
    if not clock:
        return []
    event_ms, seen_wall = clock
    now = event_ms + max(0, wall_ms - seen_wall)
    virtual = now // cfg.bucket_ms - 1  # one bucket of slack for mentions still in the pipeline
    if state["latest"] is not None and virtual > state["latest"]:
        _advance_to(state, virtual, cfg)
    return _settle(state, rules, cfg, now)


# --- clock and counting ------------------------------------------------------------------------


def _advance_clock(state: dict[str, Any], event_ms: int, wall_ms: int) -> None:
    clock = state.get("clock")
    if clock is None or event_ms > clock[0]:
        state["clock"] = [event_ms, wall_ms]


def _now(state: dict[str, Any]) -> int:
    return int(state["clock"][0]) if state.get("clock") else 0


def _count(state: dict[str, Any], idx: int, m: Mention, cfg: DetectorConfig) -> bool:
    """Count a mention into its bucket; False when it is too late to matter for any bucket."""
    if state["first"] is None:
        state["first"] = state["latest"] = idx
    if idx < state["latest"] - cfg.baseline_buckets:
        return False
    key = str(idx)
    state["counts"][key] = state["counts"].get(key, 0) + 1
    if m.negative:
        state["neg"][key] = state["neg"].get(key, 0) + 1
    state["recv"][key] = min(state["recv"].get(key, m.received_ms), m.received_ms)
    samples = state["samples"].setdefault(key, [])
    if len(samples) < MAX_SAMPLES:
        samples.append(m.mention_id)
    state["first"] = min(state["first"], idx)
    if idx > state["latest"]:
        _advance_to(state, idx, cfg)
    _season_add(state, idx, 1, cfg)
    return True


def _advance_to(state: dict[str, Any], idx: int, cfg: DetectorConfig) -> None:
    """Move the newest bucket forward; fold what left the negative-share window; prune."""
    state["latest"] = idx
    _fold_negative_base(state, idx, cfg)
    below = idx - cfg.baseline_buckets - cfg.lateness_buckets - 1
    judged = idx - cfg.lateness_buckets  # first receipts matter only for buckets still judged
    recent = idx - min(cfg.lateness_buckets, SAMPLE_BUCKETS)  # sample ids: the newest buckets only (state size)
    for table, limit in (("counts", below), ("neg", below), ("recv", judged), ("samples", recent)):
        for key in [k for k in state[table] if int(k) < limit]:
            del state[table][key]


# --- hour-of-week seasonality ------------------------------------------------------------------


def _season_per_hour(cfg: DetectorConfig) -> int:
    return 3600 // cfg.bucket_s if cfg.bucket_s <= 3600 and 3600 % cfg.bucket_s == 0 else 0


def _season_add(state: dict[str, Any], idx: int, count: int, cfg: DetectorConfig) -> None:
    """Keep per hour-of-week the usual count per bucket (an EWMA over weeks, winsorised)."""
    per_hour = _season_per_hour(cfg)
    if not per_hour:
        return
    hour = idx // per_hour
    season = state["season"]
    if season is None:  # the first hour is partial: it never updates the norm
        state["season"] = season = {"h": hour, "n": 0, "partial": True,
                                    "rate": [0.0] * HOURS_PER_WEEK, "weeks": [0] * HOURS_PER_WEEK}
    if hour < season["h"]:
        return  # late for an hour already closed
    if hour > season["h"]:
        if not season["partial"]:
            _season_close(season, season["h"], season["n"] / per_hour)
        for empty in range(max(season["h"] + 1, hour - HOURS_PER_WEEK), hour):
            _season_close(season, empty, 0.0)
        season.update(h=hour, n=0, partial=False)
    season["n"] += count


def _season_close(season: dict[str, Any], hour: int, rate: float) -> None:
    slot = hour % HOURS_PER_WEEK
    weeks, old = season["weeks"][slot], season["rate"][slot]
    if weeks:
        rate = min(rate, 3.0 * old + 3.0)  # a past crisis must not become the norm
        rate = old + SEASON_ALPHA * (rate - old)
    season["rate"][slot] = round(rate, 4)
    season["weeks"][slot] = min(weeks + 1, 52)


def seasonal_expected(state: dict[str, Any], idx: int, cfg: DetectorConfig) -> float | None:
    """The usual count per bucket at this hour of the week, once enough weeks were seen."""
    per_hour = _season_per_hour(cfg)
    season = state.get("season")
    if not per_hour or not season:
        return None
    slot = (idx // per_hour) % HOURS_PER_WEEK
    return float(season["rate"][slot]) if season["weeks"][slot] >= cfg.seasonal_weeks else None


# --- volume spike ------------------------------------------------------------------------------


def baseline(state: dict[str, Any], idx: int, cfg: DetectorConfig) -> tuple[float, float, int]:
    """(expected count for bucket idx, observed spread, buckets of history behind it)."""
    first = state["first"]
    lo = max(first, idx - cfg.baseline_buckets)
    history = [state["counts"].get(str(j), 0) for j in range(lo, idx)]
    if not history:
        return 0.0, 0.0, 0
    centre = median(history)
    expected = max(centre, statistics.fmean(history))
    seasonal = seasonal_expected(state, idx, cfg)
    if seasonal is not None:
        expected = max(expected, seasonal)
    spread = MAD_TO_SD * mad(history, centre)
    return expected, spread, idx - first


def assess(count: int, expected: float, spread: float, history: int, rule: RuleConfig,
           cfg: DetectorConfig) -> tuple[bool, float]:
    """(is this count a spike, score = -log10 of its Poisson tail probability; 0 when it is not)."""
    if history < cfg.warmup_buckets or count < rule["min_count"] or count < rule["min_ratio"] * expected:
        return False, 0.0  # the cheap tests first: most mentions end here
    mean = max(expected, 1.0 / cfg.baseline_buckets)
    if (count - expected) / max(math.sqrt(mean), spread) < rule["min_z"]:
        return False, 0.0
    log_p = log_poisson_tail(count, mean)
    return log_p <= math.log(rule["max_p_value"]), -log_p / math.log(10)


def _above_recent_peak(state: dict[str, Any], count: int, at_ms: int, cfg: DetectorConfig, key: str = "peak") -> bool:
    """Is `count` above the recent peak (the largest bucket seen, halving every peak_half_life_s)?

    Remembers `count` as the new peak when it is. A watchlist that is often bursty (a big brand
    on a busy news day) thereby alerts only on bursts bigger than its recent ones, and one story
    that dominates coverage for days is one alert, not one per wave.
    """
    if not cfg.peak_half_life_s:
        return True
    peak = state.get(key) or [0.0, at_ms]
    decayed = peak[0] * 0.5 ** (max(0, at_ms - peak[1]) / (cfg.peak_half_life_s * 1000))
    if count > decayed:
        state[key] = [count, max(at_ms, peak[1])]
        return True
    return False


def _judge_volume(state: dict[str, Any], rules: WatchlistRules, rule: RuleConfig, idx: int, cfg: DetectorConfig,
                  at_ms: int) -> list[Decision]:
    """A spike in the current bucket, or a sustained one in the trailing `window_s`: at least half its
    buckets elevated and their sum a spike (35 a minute against 1 a minute shows in no single
    10 s bucket). Off when a bucket is as long as the window."""
    counts = state["counts"]
    count = counts[str(idx)]
    width = max(1, int(rule.thresholds.get("window_s", 0)) // cfg.bucket_s)
    total = sum(counts.get(str(j), 0) for j in range(idx - width + 1, idx + 1)) if width > 1 else count
    bucket_spike = window_spike = False
    score = expected = 0.0
    elevated: list[int] = []
    if count >= rule["min_count"]:  # below it no baseline is needed
        expected, spread, history = baseline(state, idx, cfg)
        bucket_spike, score = assess(count, expected, spread, history, rule, cfg)
    first = idx - width + 1
    if not bucket_spike and width > 1 and total >= rule["min_count"] and state["first"] is not None and first > state["first"]:
        expected_w, spread_w, history_w = baseline(state, first, cfg)
        # Sustained: at least half the window's buckets are elevated (one burst is the bucket test's business).
        elevated = [j for j in range(first, idx + 1) if counts.get(str(j), 0) >= max(2.0, rule["min_ratio"] * expected_w)]
        if 2 * len(elevated) >= width:
            window_spike, score = assess(total, expected_w * width, spread_w * math.sqrt(width), history_w, rule, cfg)
        if window_spike:
            expected = expected_w * width
    above_peak = _above_recent_peak(state, count, at_ms, cfg)
    above_window_peak = width > 1 and _above_recent_peak(state, total, at_ms, cfg, key="peakw")
    under_way = VOLUME_SPIKE in state["episodes"]  # an episode under way keeps counting
    name = rules.name or rules.watchlist_id
    if bucket_spike and (above_peak or under_way):
        summary = f"{name}: {count} mentions in {_duration(cfg.bucket_s)}, {count / max(expected, 0.1):.0f}x the usual {expected:.1f}"
        return _hit(state, rules, rule, VOLUME_SPIKE, {}, at_ms, idx, cfg, observed=count, expected=expected,
                    score=score, summary=summary)
    if window_spike and (above_window_peak or under_way):
        summary = (f"{name}: {total} mentions in {_duration(width * cfg.bucket_s)}, "
                   f"{total / max(expected, 0.1):.0f}x the usual {expected:.1f}")
        started = elevated[0] if VOLUME_SPIKE not in state["episodes"] else None  # the surge began there
        return _hit(state, rules, rule, VOLUME_SPIKE, {}, at_ms, idx, cfg, observed=total, expected=expected,
                    score=score, summary=summary, window=(first * cfg.bucket_ms, (idx + 1) * cfg.bucket_ms),
                    starts_ms=None if started is None else started * cfg.bucket_ms)
    return []


def _judge_counts(state: dict[str, Any], rules: WatchlistRules, idx: int, cfg: DetectorConfig,
                  at_ms: int) -> list[Decision]:
    """Judge bucket idx (if still within the lateness window) for the count-based rules."""
    if idx < state["latest"] - cfg.lateness_buckets:
        return []
    out: list[Decision] = []
    rule = rules.get(VOLUME_SPIKE)
    if rule is not None:
        out += _judge_volume(state, rules, rule, idx, cfg, at_ms)
    rule = rules.get(NEGATIVE_SURGE)
    if rule is not None:
        out += _judge_negative(state, rules, rule, idx, cfg, at_ms)
    return out


# --- negative surge ----------------------------------------------------------------------------


def _fold_negative_base(state: dict[str, Any], latest: int, cfg: DetectorConfig) -> None:
    """Fold buckets that left the judged window into the decayed usual counts (total, negative).

    The newest `lateness_buckets` + 30 buckets are never part of the norm, so a surge is not
    compared with itself.
    """
    upto = latest - cfg.lateness_buckets - min(30, cfg.baseline_buckets)
    base = state.get("negbase")
    if base is None:
        state["negbase"] = [0.0, 0.0, upto]
        return
    if upto <= base[2]:
        return
    decay = 0.5 ** (cfg.bucket_s / NEGATIVE_HALF_LIFE_S)
    total, negative = base[0] * decay ** (upto - base[2]), base[1] * decay ** (upto - base[2])
    for key, n in state["counts"].items():
        j = int(key)
        if base[2] < j <= upto:
            weight = decay ** (upto - j)
            total += n * weight
            negative += state["neg"].get(key, 0) * weight
    state["negbase"] = [round(total, 4), round(negative, 4), upto]


def _judge_negative(state: dict[str, Any], rules: WatchlistRules, rule: RuleConfig, idx: int,
                    cfg: DetectorConfig, at_ms: int) -> list[Decision]:
    window = max(1, int(rule["window_buckets"]))
    n = sum(state["counts"].get(str(j), 0) for j in range(idx - window + 1, idx + 1))
    k = sum(state["neg"].get(str(j), 0) for j in range(idx - window + 1, idx + 1))
    base = state.get("negbase") or [0.0, 0.0, 0]
    if n < rule["min_count"] or base[0] < rule["min_count"]:
        return []
    usual = (base[1] + 1.0) / (base[0] + 4.0)  # a little prior towards 25 %
    share = k / n
    if share < rule["min_share"] or share < rule["min_ratio"] * usual:
        return []  # the cheap tests first
    log_p = log_binomial_tail(k, n, usual)
    if log_p > math.log(rule["max_p_value"]):
        return []
    name = rules.name or rules.watchlist_id
    summary = f"{name}: {share:.0%} of {n} mentions negative in {_duration(window * cfg.bucket_s)}, usually {usual:.0%}"
    return _hit(state, rules, rule, NEGATIVE_SURGE, {}, at_ms, idx, cfg, observed=round(share, 4),
                expected=round(usual, 4), score=-log_p / math.log(10), summary=summary,
                window=((idx - window + 1) * cfg.bucket_ms, (idx + 1) * cfg.bucket_ms))


# --- volume drop -------------------------------------------------------------------------------


def _judge_drop(state: dict[str, Any], rules: WatchlistRules, cfg: DetectorConfig) -> list[Decision]:
    """Judge the trailing window of closed buckets for a drop (once per newest bucket): fire when
    its count is far below the usual level before it, resolve when it has recovered."""
    rule = rules.get(VOLUME_DROP)
    latest = state["latest"]
    if rule is None or latest is None or state["first"] is None or state.get("drop_at") == latest:
        return []
    state["drop_at"] = latest
    end = latest - 1  # the newest closed bucket
    longest = drop_window_buckets_max(cfg.baseline_buckets, cfg.lateness_buckets, cfg.warmup_buckets)
    width = min(longest, max(1, int(rule["window_s"]) // cfg.bucket_s))  # a longer window has no history before it
    start = end - width + 1
    counts = state["counts"]
    observed = sum(counts.get(str(j), 0) for j in range(start, end + 1))
    name = rules.name or rules.watchlist_id
    span = _duration(width * cfg.bucket_s)
    ep = state["episodes"].get(VOLUME_DROP)
    if ep is not None and ep["phase"] == "firing":
        usual = float(ep.get("usual", 0.0))
        if observed >= rule["recover_ratio"] * usual:
            return _resolve(state, VOLUME_DROP, ep, (end + 1) * cfg.bucket_ms, float(observed), usual,
                            f"{name}: mentions are back ({observed} in {span}, usually {usual:.0f})")
        return []
    oldest_kept = latest - cfg.baseline_buckets - cfg.lateness_buckets
    history = [counts.get(str(j), 0) for j in range(max(state["first"], start - cfg.baseline_buckets, oldest_kept), start)]
    if len(history) < cfg.warmup_buckets or not history:
        return []
    per_bucket = statistics.fmean(history)
    seasonal = seasonal_expected(state, start, cfg)
    if seasonal is not None:
        per_bucket = min(per_bucket, seasonal)
    usual = per_bucket * width
    if usual < rule["min_expected"] or observed > rule["max_ratio"] * usual:
        return []  # the cheap tests first
    log_p = log_poisson_cdf(observed, usual)
    if log_p > math.log(rule["max_p_value"]):
        return []
    summary = f"{name}: {observed} mentions in the last {span}, usually {usual:.0f}"
    decisions = _hit(state, rules, rule, VOLUME_DROP, {}, (end + 1) * cfg.bucket_ms, None, cfg, observed=observed,
                     expected=round(usual, 2), score=-log_p / math.log(10), summary=summary, samples=[],
                     window=(start * cfg.bucket_ms, (end + 1) * cfg.bucket_ms), starts_ms=start * cfg.bucket_ms)
    ep = state["episodes"].get(VOLUME_DROP)
    if ep is not None:  # recovery is judged against the level the drop fell from, not the sagging baseline
        ep["usual"] = max(float(ep.get("usual", 0.0)), round(usual, 2))
    return decisions


# --- risk mentions -----------------------------------------------------------------------------


def _risk(state: dict[str, Any], rules: WatchlistRules, m: Mention, cfg: DetectorConfig) -> list[Decision]:
    rule = rules.get(RISK_MENTION)
    if rule is None or not m.risks:
        return []
    if (m.followers or 0) < rule["min_reach"]:
        return []
    out: list[Decision] = []
    for tag in sorted(set(m.risks) & cfg.risk_tags):
        track = state["risk"].get(tag)
        if track is None or m.created_ms - track[0] > rule["quiet_s"] * 1000:
            track = [m.created_ms, 0, m.mention_id]
        track[0] = max(track[0], m.created_ms)
        track[1] += 1
        state["risk"][tag] = track
        if track[1] < rule["min_count"]:
            continue
        name = rules.name or rules.watchlist_id
        reach = f" (author reach {m.followers:,})" if m.followers else ""
        out += _hit(state, rules, rule, RISK_MENTION, {"risk": tag}, m.created_ms, None, cfg, observed=track[1],
                    expected=0.0, score=float(track[1]), summary=f"{name}: {track[1]} mention(s) tagged {tag}{reach}",
                    samples=[track[2], m.mention_id], first_received=m.received_ms,
                    window=(m.created_ms - int(rule["quiet_s"] * 1000), m.created_ms + 1))
    return out


# --- viral posts -------------------------------------------------------------------------------


def _post_key(source: str, source_id: str) -> str:
    return f"{source}:{source_id}"


def _viral(state: dict[str, Any], rules: WatchlistRules, m: Mention, cfg: DetectorConfig) -> list[Decision]:
    rule = rules.get(VIRAL_POST)
    if rule is None or not m.source:
        return []
    posts = state["posts"]
    window_ms = int(rule["window_s"] * 1000)
    touched: list[tuple[str, str]] = []
    if m.observed_ms is not None and m.source_id:  # an engagement observation of the post itself
        key = _post_key(m.source, m.source_id)
        post = posts.setdefault(key, {"obs": [[m.created_ms, 0]], "rep": [], "m": m.mention_id, "u": m.author_handle})
        post["obs"] = _push(post["obs"], [max(m.observed_ms, m.created_ms), m.engagement], window_ms)
        touched.append((key, "obs"))
    for parent in {p for p in (m.reposted_from, m.in_reply_to) if p}:  # a reshare or reply seen in the stream
        key = _post_key(m.source, parent)
        post = posts.setdefault(key, {"obs": [], "rep": [], "m": None, "u": None})
        count = (post["rep"][-1][1] if post["rep"] else 0) + 1
        post["rep"] = _push(post["rep"], [m.created_ms, count], window_ms)
        touched.append((key, "rep"))
    if len(posts) > cfg.max_posts:  # forget the posts that went quiet longest ago
        idle = [k for k in sorted(posts, key=lambda k: _last_seen(posts[k])) if f"{VIRAL_POST}:{k}" not in state["episodes"]]
        for key in idle[: len(posts) - cfg.max_posts]:
            del posts[key]
    out: list[Decision] = []
    for key, kind in touched:
        if key not in posts:
            continue
        growth = _growth(posts[key][kind], window_ms)
        if growth >= rule["min_growth"]:
            post = posts[key]
            name = rules.name or rules.watchlist_id
            who = f" by @{post['u']}" if post.get("u") else ""
            out += _hit(state, rules, rule, VIRAL_POST, {"post": key}, m.created_ms, None, cfg, observed=growth,
                        expected=0.0, score=float(growth),
                        summary=f"{name}: a post{who} gained {growth:,} reshares and replies within {_duration(int(rule['window_s']))}",
                        samples=[s for s in (post.get("m"), m.mention_id) if s], first_received=m.received_ms,
                        window=(m.created_ms - window_ms, m.created_ms + 1))
    return out


def _push(series: list[list[int]], point: list[int], window_ms: int) -> list[list[int]]:
    """Add a (time, running total) point: one point per slot (a minute, or window/30 for long
    windows; the latest total in the slot wins), keeping the slots inside the window and the
    last one before it, so at most ~32 points per post."""
    slot_ms = max(60_000, window_ms // 30)
    t, total = point
    if series and t < series[-1][0]:
        t = series[-1][0]  # late arrivals count as now (running totals only grow)
    if series and series[-1][0] // slot_ms == t // slot_ms:
        series = [*series[:-1], [t, total]]
    else:
        series = [*series, [t, total]]
    cut = t - window_ms
    before = [p for p in series if p[0] <= cut][-1:]
    return before + [p for p in series if p[0] > cut]


def _growth(series: list[list[int]], window_ms: int, now_ms: int | None = None) -> int:
    """How much the running total grew within the window ending at `now_ms` (default: the newest
    point). The total at the window's start is interpolated between the points around it, so a
    post first seen with 5,000 reshares a month after it was written grew by ~1 in ten minutes,
    not 5,000."""
    if not series:
        return 0
    end = series[-1][0] if now_ms is None else now_ms
    start = end - window_ms
    inside = [(t, total) for t, total in series if start < t <= end]
    if not inside:
        return 0
    before = [(t, total) for t, total in series if t <= start]
    base = 0.0
    if before:
        (t0, v0), (t1, v1) = before[-1], inside[0]
        base = v0 + (v1 - v0) * (start - t0) / (t1 - t0) if t1 > t0 else v0
    return max(0, int(max(total for _, total in inside) - base))


def _last_seen(post: dict[str, Any]) -> int:
    return max([p[0] for p in post["obs"]] + [p[0] for p in post["rep"]] + [0])


# --- unanswered questions ----------------------------------------------------------------------


def _questions(state: dict[str, Any], rules: WatchlistRules, m: Mention, own: bool,
               cfg: DetectorConfig) -> list[Decision]:
    rule = rules.get(UNANSWERED_QUESTION)
    if rule is None or rule["sla_s"] <= 0:
        return []
    questions = state["questions"]
    if own and m.in_reply_to:
        questions.pop(_post_key(m.source, m.in_reply_to), None)
    elif m.matched and not own and QUESTION_TAGS & set(m.risks) and m.source_id:
        key = _post_key(m.source, m.source_id)
        if key not in questions and len(questions) < cfg.max_questions:
            questions[key] = [m.created_ms, m.mention_id, m.received_ms]
    return []  # overdue questions are judged in _settle, as time passes


# --- settling: resolutions and everything that depends on time passing --------------------------


def _settle(state: dict[str, Any], rules: WatchlistRules, cfg: DetectorConfig, now: int | None = None) -> list[Decision]:
    now = _now(state) if now is None else now
    out: list[Decision] = []
    # Pending episodes whose condition stopped holding are dropped; rules removed since are resolved.
    for key, ep in list(state["episodes"].items()):
        rule = rules.get(ep["rule"])
        if rule is None:
            out += _resolve(state, key, ep, now, 0.0, 0.0, f"{ep['labels'].get('watchlist')}: rule {ep['rule']} removed")
            continue
        if ep["phase"] == "pending" and _pending_expired(ep, now, state, cfg):
            del state["episodes"][key]
    out += _settle_counts(state, rules, cfg)
    out += _settle_risk(state, rules, now)
    out += _settle_viral(state, rules, now)
    out += _settle_questions(state, rules, cfg, now)
    out += _judge_drop(state, rules, cfg)
    return out


def _pending_expired(ep: dict[str, Any], now: int, state: dict[str, Any], cfg: DetectorConfig) -> bool:
    if ep.get("bucket") is not None:  # count-based: the bucket after the last hit came and went normal
        return state["latest"] is not None and state["latest"] > ep["bucket"] + 1
    return now - ep["last_ms"] > max(ep.get("pending_s", 0) * 1000, cfg.bucket_ms) * 2


def _settle_counts(state: dict[str, Any], rules: WatchlistRules, cfg: DetectorConfig) -> list[Decision]:
    """Resolve a count-based alert once `resolve_buckets` settled buckets after its last hit were normal."""
    out: list[Decision] = []
    if state["latest"] is None:
        return out
    last_settled = state["latest"] - cfg.lateness_buckets - 1
    for rule_name in (VOLUME_SPIKE, NEGATIVE_SURGE):
        ep = state["episodes"].get(rule_name)
        if ep is None or ep["phase"] != "firing":
            continue
        end = ep["bucket"] + cfg.resolve_buckets  # the last of the normal buckets required
        if last_settled < end:
            continue
        name = rules.name or rules.watchlist_id
        if rule_name == VOLUME_SPIKE:
            count = state["counts"].get(str(end), 0)
            expected, _, _ = baseline(state, end, cfg)
            summary = f"{name}: mention volume back to normal ({count} in {_duration(cfg.bucket_s)} vs {expected:.1f} expected)"
            observed = float(count)
        else:
            base = state.get("negbase") or [0.0, 0.0, 0]
            expected = (base[1] + 1.0) / (base[0] + 4.0)
            observed = 0.0
            summary = f"{name}: negative share back to normal (usually {expected:.0%})"
        out += _resolve(state, rule_name, ep, (end + 1) * cfg.bucket_ms, observed, expected, summary)
    return out


def _settle_risk(state: dict[str, Any], rules: WatchlistRules, now: int) -> list[Decision]:
    out: list[Decision] = []
    rule = rules.get(RISK_MENTION)
    for tag, track in list(state["risk"].items()):
        quiet_ms = int((rule["quiet_s"] if rule else 0) * 1000)
        if now - track[0] < quiet_ms:
            continue
        del state["risk"][tag]
        key = f"{RISK_MENTION}:{tag}"
        ep = state["episodes"].get(key)
        if ep is not None and ep["phase"] == "firing":
            name = rules.name or rules.watchlist_id
            out += _resolve(state, key, ep, track[0] + quiet_ms, 0.0, 0.0,
                            f"{name}: no new mention tagged {tag} for {_duration(quiet_ms // 1000)}")
    return out


def _settle_viral(state: dict[str, Any], rules: WatchlistRules, now: int) -> list[Decision]:
    out: list[Decision] = []
    rule = rules.get(VIRAL_POST)
    for key, ep in list(state["episodes"].items()):
        if ep["rule"] != VIRAL_POST or ep["phase"] != "firing" or rule is None:
            continue
        post = state["posts"].get(ep["labels"].get("post", ""))
        window_ms = int(rule["window_s"] * 1000)
        growth = 0
        if post is not None:  # observation times may run ahead of the event clock: judge at the later
            growth = max(_growth(post["obs"], window_ms, max(now, post["obs"][-1][0] if post["obs"] else now)),
                         _growth(post["rep"], window_ms, max(now, post["rep"][-1][0] if post["rep"] else now)))
        if growth < rule["min_growth"] / 2:  # hysteresis: half the firing growth
            name = rules.name or rules.watchlist_id
            out += _resolve(state, key, ep, now, float(growth), 0.0, f"{name}: the post stopped spreading fast ({growth} in the last {_duration(window_ms // 1000)})")
    return out


def _settle_questions(state: dict[str, Any], rules: WatchlistRules, cfg: DetectorConfig, now: int) -> list[Decision]:
    rule = rules.get(UNANSWERED_QUESTION)
    if rule is None or rule["sla_s"] <= 0:
        state["questions"].clear()
        return []
    questions = state["questions"]
    max_age_ms = int(rule["max_age_s"] * 1000)
    for key in [k for k, q in questions.items() if now - q[0] > max_age_ms]:
        del questions[key]
    sla_ms = int(rule["sla_s"] * 1000)
    overdue = sorted((q for q in questions.values() if now - q[0] >= sla_ms), key=lambda q: q[0])
    name = rules.name or rules.watchlist_id
    ep = state["episodes"].get(UNANSWERED_QUESTION)
    if len(overdue) >= rule["min_count"]:
        oldest_min = (now - overdue[0][0]) // 60000
        summary = (f"{name}: {len(overdue)} customer question(s) without a reply from the brand for longer than "
                   f"{_duration(int(rule['sla_s']))} (oldest {oldest_min} min)")
        if ep is not None and ep["phase"] == "firing":
            ep["observed"] = len(overdue)
            return []
        return _hit(state, rules, rule, UNANSWERED_QUESTION, {}, now, None, cfg, observed=len(overdue),
                    expected=float(rule["min_count"]), score=float(len(overdue)), summary=summary,
                    samples=[q[1] for q in overdue[:MAX_SAMPLES]], first_received=overdue[0][2],
                    window=(overdue[0][0], now), starts_ms=overdue[0][0] + sla_ms)
    if ep is not None and ep["phase"] == "firing":
        return _resolve(state, UNANSWERED_QUESTION, ep, now, float(len(overdue)), float(rule["min_count"]),
                        f"{name}: every customer question past the SLA has been answered")
    return []


# --- the episode life cycle (shared by every rule) ---------------------------------------------


def _labels(rules: WatchlistRules, rule: RuleConfig, extra: dict[str, str]) -> dict[str, str]:
    labels = {k: v for k, v in rules.labels.items()}
    labels.update({"watchlist": rules.watchlist_id, "rule": rule.rule, "severity": rule.severity})
    labels.update(extra)
    return labels


def _hit(state: dict[str, Any], rules: WatchlistRules, rule: RuleConfig, key_rule: str, extra: dict[str, str],
         at_ms: int, bucket: int | None, cfg: DetectorConfig, *, observed: float, expected: float, score: float,
         summary: str, samples: list[str] | None = None, first_received: int | None = None,
         window: tuple[int, int] | None = None, starts_ms: int | None = None) -> list[Decision]:
    """The rule's condition holds at `at_ms`: start pending, fire once pending is over, or extend."""
    key = key_rule if not extra else f"{key_rule}:{':'.join(extra.values())}"
    ep = state["episodes"].get(key)
    if ep is not None and ep["phase"] == "firing":
        if bucket is not None:
            ep["bucket"] = max(ep["bucket"], bucket)
        ep["last_ms"] = max(ep["last_ms"], at_ms)
        return []
    if ep is None:
        if at_ms <= state["cool"].get(key, -1):
            return []  # cooling down after a resolution: one crisis, one alert
        ep = {"rule": rule.rule, "phase": "pending", "since_ms": at_ms, "last_ms": at_ms, "bucket": bucket,
              "since_bucket": bucket, "pending_s": rule.pending_s, "labels": _labels(rules, rule, extra)}
        state["episodes"][key] = ep
    ep["last_ms"] = max(ep["last_ms"], at_ms)
    if bucket is not None:
        ep["bucket"] = bucket if ep.get("bucket") is None else max(ep["bucket"], bucket)
    if at_ms - ep["since_ms"] < rule.pending_s * 1000:
        return []
    labels = ep["labels"]
    fp = fingerprint(labels)
    if starts_ms is None:
        since_bucket = ep.get("since_bucket")
        starts_ms = since_bucket * cfg.bucket_ms if since_bucket is not None else ep["since_ms"]
    alert_id = f"{fp}-{starts_ms}"
    ep.update(phase="firing", fingerprint=fp, alert_id=alert_id, starts_ms=starts_ms, cooldown_s=rule.cooldown_s,
              observed=observed)
    if samples is None and bucket is not None:
        samples = list(state["samples"].get(str(bucket), []))
        first_received = state["recv"].get(str(bucket))
    if window is None and bucket is not None:
        window = (bucket * cfg.bucket_ms, (bucket + 1) * cfg.bucket_ms)
    return [Decision(
        status="firing", rule=rule.rule, watchlist_id=rules.watchlist_id, fingerprint=fp, alert_id=alert_id,
        labels=dict(labels), observed=float(observed), baseline=float(expected), score=float(score),
        starts_at_ms=starts_ms, ends_at_ms=None, sample_mention_ids=samples or [], first_received_at_ms=first_received,
        summary=summary, window=window,
    )]


def _resolve(state: dict[str, Any], key: str, ep: dict[str, Any], ends_ms: int, observed: float, expected: float,
             summary: str) -> list[Decision]:
    del state["episodes"][key]
    if ep["phase"] != "firing":
        return []
    state["cool"][key] = ends_ms + int(ep.get("cooldown_s", 0)) * 1000
    for k in [k for k, until in state["cool"].items() if until < ends_ms]:  # expired cool-downs
        del state["cool"][k]
    labels = ep["labels"]
    return [Decision(
        status="resolved", rule=ep["rule"], watchlist_id=labels.get("watchlist", ""), fingerprint=ep["fingerprint"],
        alert_id=ep["alert_id"], labels=dict(labels), observed=float(observed), baseline=float(expected), score=0.0,
        starts_at_ms=ep["starts_ms"], ends_at_ms=max(ends_ms, ep["starts_ms"]), sample_mention_ids=[],
        first_received_at_ms=None, summary=summary,
    )]


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"

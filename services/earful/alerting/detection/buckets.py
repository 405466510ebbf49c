"""Counting mentions in event-time buckets, the event clock, hour-of-week norms and the baseline.

Mentions may arrive late in event time (several partitions, slow sources, fast replays): a
mention is still counted while its bucket is within `baseline_buckets` of the newest one, and
buckets are pruned as the newest one moves on, so the state stays bounded.
"""

from __future__ import annotations

import statistics

from earful.alerting.detection import negative_surge
from earful.alerting.detection.model import MAX_SAMPLES, DetectorConfig, Mention
from earful.alerting.detection.state import HOURS_PER_WEEK, DetectorState, Season
from earful.alerting.detection.stats import MAD_TO_SD, mad, median

SAMPLE_BUCKETS = 6  # buckets that keep sample mention ids (a bucket judged later has none; its evidence still explains it)
SEASON_ALPHA = 0.3  # weight of the newest week in an hour-of-week slot
WHOLE_SECONDS_ALPHA = 0.01  # weight of the newest mention in the share of event times in whole seconds


# --- the event clock ---------------------------------------------------------------------------


def advance_clock(state: DetectorState, event_ms: int, wall_ms: int) -> None:
    """Remember the newest event time and the wall time it was seen (so `tick` can let time pass)."""
    clock = state["clock"]
    if clock is None or event_ms > clock[0]:
        state["clock"] = [event_ms, wall_ms]


def now_of(state: DetectorState) -> int:
    """The event clock: the newest event time seen (0 before any)."""
    return int(state["clock"][0]) if state["clock"] else 0


# --- counting ------------------------------------------------------------------------------------


def count(state: DetectorState, idx: int, m: Mention, cfg: DetectorConfig) -> bool:
    """Count a mention into its bucket; False when it is too late to matter for any bucket."""
    first, latest = state["first"], state["latest"]
    if first is None or latest is None:
        first = latest = state["first"] = state["latest"] = idx
    if idx < latest - cfg.baseline_buckets:
        return False
    key = str(idx)
    state["counts"][key] = state["counts"].get(key, 0) + 1
    if m.negative:
        state["neg"][key] = state["neg"].get(key, 0) + 1
    state["recv"][key] = min(state["recv"].get(key, m.received_ms), m.received_ms)
    samples = state["samples"].setdefault(key, [])
    if len(samples) < MAX_SAMPLES:
        samples.append(m.mention_id)
    state["first"] = min(first, idx)
    if idx > latest:
        advance_to(state, idx, cfg)
    season_add(state, idx, 1, cfg)
    if cfg.fast_window_s:
        count_second(state, m.created_ms, cfg)
    return True


def count_second(state: DetectorState, event_ms: int, cfg: DetectorConfig) -> None:
    """Count a mention into its second of event time, for volume_spike's fast window; only the
    seconds of the window ending at the event clock are kept (an older mention no longer counts).

    Also follows how many event times are whole seconds: many sources give no milliseconds, and
    then the clock's second holds all of that second's mentions, not the share elapsed.
    """
    whole = 1.0 if event_ms % 1000 == 0 else 0.0
    state["fastwhole"] = round(state["fastwhole"] + WHOLE_SECONDS_ALPHA * (whole - state["fastwhole"]), 5)
    newest = now_of(state) // 1000
    second = event_ms // 1000
    if second <= newest - cfg.fast_window_s:
        return
    fast = state["fast"]
    key = str(second)
    fast[key] = fast.get(key, 0) + 1
    if len(fast) > cfg.fast_window_s:
        for old in [k for k in fast if int(k) <= newest - cfg.fast_window_s]:
            del fast[old]


def advance_to(state: DetectorState, idx: int, cfg: DetectorConfig) -> None:
    """Move the newest bucket forward; fold what left the negative-share window; prune."""
    state["latest"] = idx
    negative_surge.fold_base(state, idx, cfg)
    fold_rate(state, idx, cfg)
    below = idx - cfg.baseline_buckets - cfg.lateness_buckets - 1
    judged = idx - cfg.lateness_buckets  # first receipts matter only for buckets still judged
    recent = idx - min(cfg.lateness_buckets, SAMPLE_BUCKETS)  # sample ids: the newest buckets only (state size)
    for table, limit in ((state["counts"], below), (state["neg"], below), (state["recv"], judged),
                         (state["samples"], recent)):
        for key in [k for k in table if int(k) < limit]:
            del table[key]


# --- the long-memory rate ----------------------------------------------------------------------

RATE_PRIOR_MENTIONS = 1.0  # the rate's prior: one mention per baseline (a watchlist never seen is not silent for sure)


def fold_rate(state: DetectorState, latest: int, cfg: DetectorConfig) -> None:
    """Fold buckets older than the baseline window into the long-memory rate (an exponentially
    decayed count and weight, half-life `rate_half_life_s`). The newest `baseline_buckets` are never
    part of it, so a surge is not compared with itself; the trailing windows' expectation rests on it."""
    upto = latest - cfg.baseline_buckets
    rate = state.get("rate")
    if rate is None:
        first = state["first"] if state["first"] is not None else latest
        rate = state["rate"] = [0.0, 0.0, first - 1]  # nothing before the first bucket ever counted
    if upto <= rate[2]:
        return
    decay = 0.5 ** (cfg.bucket_s / max(1, cfg.rate_half_life_s))
    steps = int(upto - rate[2])
    total, weight = rate[0] * decay ** steps, rate[1] * decay ** steps
    weight += (1 - decay ** steps) / (1 - decay) if decay < 1 else steps  # every bucket counts, the empty ones too
    for key, n in state["counts"].items():
        j = int(key)
        if rate[2] < j <= upto:
            total += n * decay ** (upto - j)
    state["rate"] = [round(total, 4), round(weight, 4), upto]


def long_rate(state: DetectorState, cfg: DetectorConfig) -> float:
    """The usual mentions per bucket over the long memory (with a weak prior of one mention per
    baseline, so a new or silent watchlist is not judged against zero)."""
    rate = state.get("rate") or [0.0, 0.0, 0]
    return (rate[0] + RATE_PRIOR_MENTIONS) / (rate[1] + cfg.baseline_buckets)


# --- hour-of-week seasonality ------------------------------------------------------------------


def _season_per_hour(cfg: DetectorConfig) -> int:
    return 3600 // cfg.bucket_s if cfg.bucket_s <= 3600 and 3600 % cfg.bucket_s == 0 else 0


def season_add(state: DetectorState, idx: int, count: int, cfg: DetectorConfig) -> None:
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
        season["h"], season["n"], season["partial"] = hour, 0, False
    season["n"] += count


def _season_close(season: Season, hour: int, rate: float) -> None:
    slot = hour % HOURS_PER_WEEK
    weeks, old = season["weeks"][slot], season["rate"][slot]
    if weeks:
        rate = min(rate, 3.0 * old + 3.0)  # a past crisis must not become the norm
        rate = old + SEASON_ALPHA * (rate - old)
    season["rate"][slot] = round(rate, 4)
    season["weeks"][slot] = min(weeks + 1, 52)


def seasonal_expected(state: DetectorState, idx: int, cfg: DetectorConfig) -> float | None:
    """The usual count per bucket at this hour of the week, once enough weeks were seen."""
    per_hour = _season_per_hour(cfg)
    season = state["season"]
    if not per_hour or not season:
        return None
    slot = (idx // per_hour) % HOURS_PER_WEEK
    return float(season["rate"][slot]) if season["weeks"][slot] >= cfg.seasonal_weeks else None


# --- the baseline --------------------------------------------------------------------------------


def baseline(state: DetectorState, idx: int, cfg: DetectorConfig) -> tuple[float, float, int]:
    """(expected count for bucket idx, observed spread, buckets of history behind it).

    Expected is the larger of the median and the mean of the last `baseline_buckets` buckets (the
    mean keeps a sparse series from being judged against zero), raised to the hour-of-week norm
    once `seasonal_weeks` weeks of history exist; the spread is 1.4826 × MAD.
    """
    first = state["first"]
    assert first is not None
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

"""volume_spike: far more mentions than usual, in one bucket or over a trailing window.

Mentions are counted in short event-time buckets; the current bucket is compared, on every
mention, with a robust baseline (see `buckets.baseline`). A count is a spike when it reaches
`min_count`, `min_ratio` × expected, a Poisson tail probability below `max_p_value` (small brands:
every mention matters, chance is priced in) and a robust z-score of `min_z` against the larger of
the Poisson spread and the observed spread (1.4826 × MAD), which keeps bursty, over-dispersed
series from crying wolf. A burst must also beat the recent peak, so a story that dominates for
days is one alert, not one per wave. Resolves once `resolve_buckets` settled buckets after the
last spike were normal.
"""

from __future__ import annotations

import math
from typing import Literal

from earful.alerting.detection.buckets import baseline
from earful.alerting.detection.lifecycle import hit, resolve, settled_end
from earful.alerting.detection.model import Decision, DetectorConfig, duration_text
from earful.alerting.detection.rules import VOLUME_SPIKE, RuleConfig, WatchlistRules
from earful.alerting.detection.state import DetectorState
from earful.alerting.detection.stats import log_poisson_tail


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


def _above_recent_peak(state: DetectorState, count: int, at_ms: int, cfg: DetectorConfig,
                       key: Literal["peak", "peakw"] = "peak") -> bool:
    """Is `count` above the recent peak (the largest bucket seen, halving every peak_half_life_s)?

    Remembers `count` as the new peak when it is. A watchlist that is often bursty (a big brand
    on a busy news day) thereby alerts only on bursts bigger than its recent ones, and one story
    that dominates coverage for days is one alert, not one per wave.
    """
    if not cfg.peak_half_life_s:
        return True
    peak = state[key] or [0.0, at_ms]
    decayed = peak[0] * 0.5 ** (max(0, at_ms - peak[1]) / (cfg.peak_half_life_s * 1000))
    if count > decayed:
        state[key] = [count, max(at_ms, peak[1])]
        return True
    return False


def judge(state: DetectorState, rules: WatchlistRules, rule: RuleConfig, idx: int, cfg: DetectorConfig,
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
        summary = f"{name}: {count} mentions in {duration_text(cfg.bucket_s)}, {count / max(expected, 0.1):.0f}x the usual {expected:.1f}"
        return hit(state, rules, rule, VOLUME_SPIKE, {}, at_ms, idx, cfg, observed=count, expected=expected,
                   score=score, summary=summary)
    if window_spike and (above_window_peak or under_way):
        summary = (f"{name}: {total} mentions in {duration_text(width * cfg.bucket_s)}, "
                   f"{total / max(expected, 0.1):.0f}x the usual {expected:.1f}")
        started = elevated[0] if VOLUME_SPIKE not in state["episodes"] else None  # the surge began there
        return hit(state, rules, rule, VOLUME_SPIKE, {}, at_ms, idx, cfg, observed=total, expected=expected,
                   score=score, summary=summary, window=(first * cfg.bucket_ms, (idx + 1) * cfg.bucket_ms),
                   starts_ms=None if started is None else started * cfg.bucket_ms)
    return []


def settle(state: DetectorState, rules: WatchlistRules, cfg: DetectorConfig) -> list[Decision]:
    """Resolve once `resolve_buckets` settled buckets after the last spike were normal."""
    settled = settled_end(state, VOLUME_SPIKE, cfg)
    if settled is None:
        return []
    ep, end = settled
    name = rules.name or rules.watchlist_id
    count = state["counts"].get(str(end), 0)
    expected, _, _ = baseline(state, end, cfg)
    summary = f"{name}: mention volume back to normal ({count} in {duration_text(cfg.bucket_s)} vs {expected:.1f} expected)"
    return resolve(state, VOLUME_SPIKE, ep, (end + 1) * cfg.bucket_ms, float(count), expected, summary)

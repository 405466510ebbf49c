"""volume_drop: the mentions of the trailing `window_s` fell far below the usual level.

The usual level is the mean of the baseline buckets before the window, lowered to the
hour-of-week norm once known (so a quiet night is not a drop). A drop needs `max_ratio` of it at
most, a Poisson lower-tail probability below `max_p_value` and a usual volume of `min_expected`
at least (a small brand's silence is normal). Judged as time passes, since an absence sends no
event; resolves once the window is back to `recover_ratio` of the level the alert fired against.
"""

from __future__ import annotations

import math
import statistics

from earful.alerting.detection.buckets import seasonal_expected
from earful.alerting.detection.lifecycle import hit, resolve
from earful.alerting.detection.model import Decision, DetectorConfig, duration_text
from earful.alerting.detection.rules import VOLUME_DROP, RuleConfig, WatchlistRules
from earful.alerting.detection.state import DetectorState, Episode
from earful.alerting.detection.stats import log_poisson_cdf
from earful.core.settings import drop_window_buckets_max


def judge(state: DetectorState, rules: WatchlistRules, cfg: DetectorConfig) -> list[Decision]:
    """Judge the trailing window of closed buckets for a drop (once per newest bucket): fire when
    its count is far below the usual level before it, resolve when it has recovered."""
    rule = rules.get(VOLUME_DROP)
    latest = state["latest"]
    if rule is None or latest is None or state["first"] is None or state["drop_at"] == latest:
        return []
    state["drop_at"] = latest
    end = latest - 1  # the newest closed bucket
    longest = drop_window_buckets_max(cfg.baseline_buckets, cfg.lateness_buckets, cfg.warmup_buckets)
    width = min(longest, max(1, int(rule["window_s"]) // cfg.bucket_s))  # a longer window has no history before it
    start = end - width + 1
    observed = sum(state["counts"].get(str(j), 0) for j in range(start, end + 1))
    ep = state["episodes"].get(VOLUME_DROP)
    if ep is not None and ep["phase"] == "firing":
        usual = float(ep.get("usual", 0.0))
        if observed >= rule["recover_ratio"] * usual:
            name = rules.name or rules.watchlist_id
            if _filled_in_late(state, ep, width, cfg) >= rule["recover_ratio"] * usual:
                return resolve(state, VOLUME_DROP, ep, (end + 1) * cfg.bucket_ms, float(observed), usual,
                               f"{name}: no drop after all: late mentions filled the window it was judged on",
                               cool_down=False)
            return resolve(state, VOLUME_DROP, ep, (end + 1) * cfg.bucket_ms, float(observed), usual,
                           f"{name}: mentions are back ({observed} in {duration_text(width * cfg.bucket_s)}, usually {usual:.0f})")
        return []
    return _fire_on_drop(state, rules, rule, cfg, start, end, observed)


def _filled_in_late(state: DetectorState, ep: Episode, width: int, cfg: DetectorConfig) -> int:
    """The mentions now counted in the window the drop fired on. Mentions arrive late when the
    consumer catches up on partitions unevenly (a replay, a restart); if they fill that window the
    drop was never real, and its resolution must not start a cool-down that would hide a real one."""
    start = int(ep["starts_ms"]) // cfg.bucket_ms
    return sum(state["counts"].get(str(j), 0) for j in range(start, start + width))


def _fire_on_drop(state: DetectorState, rules: WatchlistRules, rule: RuleConfig, cfg: DetectorConfig, start: int,
                  end: int, observed: int) -> list[Decision]:
    """Fire when the window [start, end] holds far fewer mentions than the usual level before it."""
    first, latest = state["first"], state["latest"]
    assert first is not None and latest is not None
    width = end - start + 1
    oldest_kept = latest - cfg.baseline_buckets - cfg.lateness_buckets
    counts = state["counts"]
    history = [counts.get(str(j), 0) for j in range(max(first, start - cfg.baseline_buckets, oldest_kept), start)]
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
    name = rules.name or rules.watchlist_id
    summary = f"{name}: {observed} mentions in the last {duration_text(width * cfg.bucket_s)}, usually {usual:.0f}"
    decisions = hit(state, rules, rule, VOLUME_DROP, {}, (end + 1) * cfg.bucket_ms, None, cfg, observed=observed,
                    expected=round(usual, 2), score=-log_p / math.log(10), summary=summary, samples=[],
                    window=(start * cfg.bucket_ms, (end + 1) * cfg.bucket_ms), starts_ms=start * cfg.bucket_ms)
    ep = state["episodes"].get(VOLUME_DROP)
    if ep is not None:  # recovery is judged against the level the drop fell from, not the sagging baseline
        ep["usual"] = max(float(ep.get("usual", 0.0)), round(usual, 2))
    return decisions

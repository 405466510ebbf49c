"""negative_surge: the share of negative mentions jumps above the watchlist's usual share.

The negative share of the last `window_buckets` buckets is compared with the usual share (decayed
counts with a six-hour half-life, the window itself excluded), with a minimum volume, a minimum
share, a minimum ratio and a binomial tail test. Resolves like volume_spike: once
`resolve_buckets` settled buckets after the last surge were normal.
"""

from __future__ import annotations

import math

from earful.alerting.detection.lifecycle import hit, resolve, settled_end
from earful.alerting.detection.model import Decision, DetectorConfig, duration_text
from earful.alerting.detection.rules import NEGATIVE_SURGE, RuleConfig, WatchlistRules
from earful.alerting.detection.state import DetectorState
from earful.alerting.detection.stats import log_binomial_tail

NEGATIVE_HALF_LIFE_S = 6 * 3600  # memory of the usual negative share


def fold_base(state: DetectorState, latest: int, cfg: DetectorConfig) -> None:
    """Fold buckets that left the judged window into the decayed usual counts (total, negative).

    The newest `lateness_buckets` + 30 buckets are never part of the norm, so a surge is not
    compared with itself.
    """
    upto = latest - cfg.lateness_buckets - min(30, cfg.baseline_buckets)
    base = state["negbase"]
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


def _usual_share(state: DetectorState) -> tuple[float, float]:
    """(usual negative share, with a little prior towards 25 %; the decayed volume behind it)."""
    base = state["negbase"] or [0.0, 0.0, 0]
    return (base[1] + 1.0) / (base[0] + 4.0), base[0]


def judge(state: DetectorState, rules: WatchlistRules, rule: RuleConfig, idx: int, cfg: DetectorConfig,
          at_ms: int) -> list[Decision]:
    """Judge the window ending at bucket idx."""
    window = max(1, int(rule["window_buckets"]))
    n = sum(state["counts"].get(str(j), 0) for j in range(idx - window + 1, idx + 1))
    k = sum(state["neg"].get(str(j), 0) for j in range(idx - window + 1, idx + 1))
    usual, volume = _usual_share(state)
    if n < rule["min_count"] or volume < rule["min_count"]:
        return []
    share = k / n
    if share < rule["min_share"] or share < rule["min_ratio"] * usual:
        return []  # the cheap tests first
    log_p = log_binomial_tail(k, n, usual)
    if log_p > math.log(rule["max_p_value"]):
        return []
    name = rules.name or rules.watchlist_id
    summary = f"{name}: {share:.0%} of {n} mentions negative in {duration_text(window * cfg.bucket_s)}, usually {usual:.0%}"
    return hit(state, rules, rule, NEGATIVE_SURGE, {}, at_ms, idx, cfg, observed=round(share, 4),
               expected=round(usual, 4), score=-log_p / math.log(10), summary=summary,
               window=((idx - window + 1) * cfg.bucket_ms, (idx + 1) * cfg.bucket_ms))


def settle(state: DetectorState, rules: WatchlistRules, cfg: DetectorConfig) -> list[Decision]:
    """Resolve once `resolve_buckets` settled buckets after the last surge were normal."""
    settled = settled_end(state, NEGATIVE_SURGE, cfg)
    if settled is None:
        return []
    ep, end = settled
    name = rules.name or rules.watchlist_id
    usual, _ = _usual_share(state)
    summary = f"{name}: negative share back to normal (usually {usual:.0%})"
    return resolve(state, NEGATIVE_SURGE, ep, (end + 1) * cfg.bucket_ms, 0.0, usual, summary)

"""volume_spike: far more mentions than usual, in one bucket or over a trailing window.

Mentions are counted in short event-time buckets. On every mention the current bucket and the
trailing windows (`window_s`, `window_medium_s`, `window_long_s`: 1, 5 and 15 minutes by default)
are judged at once, so a big brand's burst shows in one bucket and a small brand's slow-burning
crisis (nine mentions a minute against one every few minutes) in the longer windows, which are
judged while the watchlist is sparse (under one mention a bucket, usually): a busy watchlist's
surge shows within a minute, and its long windows would only add its correlated noise.

Each test asks how unlikely the count is given the watchlist's own baseline: a Poisson tail
probability below `max_p_value` divided by the number of tests (the bucket and each window longer
than it; Bonferroni: judging four counts must not quadruple the false alarms), at least `min_ratio` × expected, and, where the
baseline is more spread than Poisson (bursty, over-dispersed series), a robust z-score of `min_z`
against the observed spread (1.4826 × MAD). So the floor scales with the baseline: a few
mentions can be a spike for a brand that usually has none, never for one that has hundreds;
`min_count` is only a small absolute minimum. Expected is the larger of the short baseline (see
`buckets.baseline`) and the long-memory rate (`buckets.long_rate`). A window's excess must not
sit in a single bucket (that is the bucket test's business), and its newer half must still hold a
quarter of it (a surge that ended does not keep its alert firing while its window empties). A burst must also beat the recent
peak of its window length, so a story that dominates for days is one alert, not one per wave.
Resolves once `resolve_buckets` settled buckets after the last spike were normal.
"""

from __future__ import annotations

import math
import statistics

from earful.alerting.detection.buckets import baseline, long_rate, now_of
from earful.alerting.detection.lifecycle import hit, resolve, settled_end
from earful.alerting.detection.model import Decision, DetectorConfig, duration_text
from earful.alerting.detection.rules import VOLUME_SPIKE, RuleConfig, WatchlistRules
from earful.alerting.detection.state import DetectorState
from earful.alerting.detection.stats import MAD_TO_SD, log_binomial_tail, log_poisson_tail, mad, median

WINDOW_THRESHOLDS = ("window_s", "window_medium_s", "window_long_s")
SPARSE_PER_BUCKET = 1.0  # usual mentions per bucket below which the medium and long windows are judged
MAX_BINOMIAL_N = 2000  # beyond this many mentions the usual rate is known well enough for the Poisson test alone
FAST_PEAK = "fast"  # the fast window's recent peak, in `peaks`
MILLISECOND_SOURCES = 0.01  # below this share of event times in whole seconds, the clock's second is judged as partial


def window_widths_short(rule: RuleConfig, cfg: DetectorConfig) -> int:
    """The first window's width in buckets (judged at every scale)."""
    return int(rule.thresholds.get("window_s", 0)) // cfg.bucket_s


def window_widths(rule: RuleConfig, cfg: DetectorConfig) -> list[int]:
    """The trailing windows judged, in buckets: longer than one bucket, within the counts kept."""
    kept = cfg.baseline_buckets + cfg.lateness_buckets
    widths = {min(kept, int(rule.thresholds.get(name, 0)) // cfg.bucket_s) for name in WINDOW_THRESHOLDS}
    return sorted(w for w in widths if w > 1)


def assess(count: int, expected: float, spread: float, history: int, rule: RuleConfig, cfg: DetectorConfig,
           tests: int = 1, width: float = 1, memory: tuple[float, float] | None = None) -> tuple[bool, float]:
    """(is this count of `width` buckets a spike, score = -log10 of its tail probability; 0 when it is not).

    `tests`: how many counts are judged together (the bar is `max_p_value` / tests). `memory`: the
    long-memory (mentions, buckets) behind the expectation: while it is short, the usual rate itself
    is uncertain, and the count is also judged as a share of window plus memory (a binomial test
    of equal rates), whichever is less surprising."""
    if history < cfg.warmup_buckets or count < rule["min_count"] or count < rule["min_ratio"] * expected:
        return False, 0.0  # the cheap tests first: most mentions end here
    mean = max(expected, 1e-9)
    if spread > math.sqrt(mean) and (count - expected) / spread < rule["min_z"]:
        return False, 0.0  # over-dispersed: the count must stand out of the observed spread too
    log_p = log_poisson_tail(count, mean)
    bar = math.log(rule["max_p_value"] / tests)
    if log_p <= bar and memory is not None and memory[1] > 0 and count + memory[0] <= MAX_BINOMIAL_N:
        log_p = max(log_p, log_binomial_tail(count, count + round(memory[0]), width / (width + memory[1])))
    return log_p <= bar, -log_p / math.log(10)


def _above_recent_peak(state: DetectorState, count: int, at_ms: int, cfg: DetectorConfig, width: int | str = 1) -> bool:
    """Is `count` above the recent peak of its window length (the largest count seen, halving
    every peak_half_life_s)?

    Remembers `count` as the new peak when it is. A watchlist that is often bursty (a big brand
    on a busy news day) thereby alerts only on bursts bigger than its recent ones, and one story
    that dominates coverage for days is one alert, not one per wave.
    """
    if not cfg.peak_half_life_s:
        return True
    peak = (state["peak"] if width == 1 else state["peaks"].get(str(width))) or [0.0, at_ms]
    decayed = peak[0] * 0.5 ** (max(0, at_ms - peak[1]) / (cfg.peak_half_life_s * 1000))
    if count > decayed:
        if width == 1:
            state["peak"] = [count, max(at_ms, peak[1])]
        else:
            state["peaks"][str(width)] = [count, max(at_ms, peak[1])]
        return True
    return False


def judge(state: DetectorState, rules: WatchlistRules, rule: RuleConfig, idx: int, cfg: DetectorConfig,
          at_ms: int) -> list[Decision]:
    """A spike in the current bucket, or in one of the trailing windows ending with it."""
    counts = state["counts"]
    count = counts[str(idx)]
    widths = window_widths(rule, cfg)
    tests = 1 + len(widths)
    usual = long_rate(state, cfg)
    rate = state["rate"]
    memory = (rate[0], rate[1]) if rate else None
    under_way = VOLUME_SPIKE in state["episodes"]  # an episode under way keeps counting
    name = rules.name or rules.watchlist_id
    above_peak = _above_recent_peak(state, count, at_ms, cfg)  # every count is remembered: the peak is the largest seen
    if count >= max(rule["min_count"], rule["min_ratio"] * usual):  # below it no baseline is needed
        expected, spread, history = baseline(state, idx, cfg)
        expected = max(expected, usual)
        spike, score = assess(count, expected, spread, history, rule, cfg, tests, 1, memory)
        if spike and (above_peak or under_way):
            summary = _spike_summary(name, count, duration_text(cfg.bucket_s), expected)
            return hit(state, rules, rule, VOLUME_SPIKE, {}, at_ms, idx, cfg, observed=count, expected=expected,
                       score=score, summary=summary)
    fast = _judge_fast(state, rules, rule, cfg, usual, tests, memory, under_way)
    if fast:
        return fast
    first_kept = state["first"]
    assert first_kept is not None
    for width in widths:
        if width > window_widths_short(rule, cfg) and usual >= SPARSE_PER_BUCKET:
            break  # the medium and long windows are for sparse series: a busy one shows a surge in a minute
        first = idx - width + 1
        if first <= first_kept:
            break  # no history before this window (nor before the longer ones)
        window = [counts.get(str(j), 0) for j in range(first, idx + 1)]
        total = sum(window)
        above_peak = _above_recent_peak(state, total, at_ms, cfg, width)
        if total < max(rule["min_count"], rule["min_ratio"] * usual * width):
            continue
        per_bucket, spread, history = _window_baseline(state, first, cfg)
        per_bucket = max(per_bucket, usual)
        expected = per_bucket * width
        if max(window) - per_bucket > 0.5 * (total - expected):
            continue  # one burst: the bucket test's business
        recent = window[width // 2:]
        if sum(recent) - per_bucket * len(recent) < 0.25 * (total - expected):
            continue  # the surge is over: its window is still full of it, but the newest half is not
        spike, score = assess(total, expected, spread * math.sqrt(width), history, rule, cfg, tests, width, memory)
        if not spike or not (above_peak or under_way):
            continue
        summary = _spike_summary(name, total, duration_text(width * cfg.bucket_s), expected)
        started = None
        if not under_way:  # the surge began with the first bucket above the usual level
            started = next((j for j, n in zip(range(first, idx + 1), window) if n > per_bucket), first)
        return hit(state, rules, rule, VOLUME_SPIKE, {}, at_ms, idx, cfg, observed=total, expected=expected,
                   score=score, summary=summary, window=(first * cfg.bucket_ms, (idx + 1) * cfg.bucket_ms),
                   starts_ms=None if started is None else started * cfg.bucket_ms)
    return []


def _judge_fast(state: DetectorState, rules: WatchlistRules, rule: RuleConfig, cfg: DetectorConfig, usual: float,
                tests: int, memory: tuple[float, float] | None, under_way: bool) -> list[Decision]:
    """A spike in the last `fast_window_s` seconds of event time, on a watchlist busy enough.

    A bucket is judged against a whole bucket's expected count, so a surge that starts in the middle
    of a busy watchlist's bucket needs seconds to reach `min_ratio` × that (a brand at 15 mentions/s
    whose rate quintuples: 4-9 s). The window ending at the event clock is judged against its share
    of a bucket's expectation with the bucket's thresholds, where it usually holds at least
    `fast_min_expected` mentions: below that a few posts within a second (a thread, a bot) would
    be a spike. Its bar counts the bucket's fast windows as tests of their own (Bonferroni).
    The clock's own second counts for the part of it elapsed only while (nearly) every event time
    has milliseconds: where times are whole seconds, that second holds all its mentions as soon as
    they arrive, and is judged as a whole second.
    """
    if not cfg.fast_window_s or cfg.fast_window_s >= cfg.bucket_s or not state["fast"]:
        return []
    clock_ms = now_of(state)
    first_second = clock_ms // 1000 - cfg.fast_window_s + 1
    if state["fastwhole"] < MILLISECOND_SOURCES:
        span_ms = clock_ms + 1 - first_second * 1000  # the clock's second is as far gone as the clock
    else:
        span_ms = cfg.fast_window_s * 1000  # times in whole seconds: the clock's second may hold all its mentions
    share = span_ms / cfg.bucket_ms  # of a bucket
    count = sum(n for k, n in state["fast"].items() if int(k) >= first_second)
    if count < max(rule["min_count"], rule["min_ratio"] * usual * share):
        return []  # the cheap test first: most mentions end here
    idx = clock_ms // cfg.bucket_ms
    expected, spread, history = baseline(state, idx, cfg)
    expected = max(expected, usual) * share
    if expected < cfg.fast_min_expected:
        return []  # too few mentions a second for a second to tell
    above_peak = _above_recent_peak(state, count, clock_ms, cfg, FAST_PEAK)
    tests += math.ceil(cfg.bucket_s / cfg.fast_window_s)
    spike, score = assess(count, expected, spread * math.sqrt(share), history, rule, cfg, tests, share, memory)
    if not spike or not (above_peak or under_way):
        return []
    summary = _spike_summary(rules.name or rules.watchlist_id, count, f"{span_ms / 1000:.1f}s", expected)
    return hit(state, rules, rule, VOLUME_SPIKE, {}, clock_ms, idx, cfg, observed=count, expected=expected,
               score=score, summary=summary, window=(first_second * 1000, clock_ms + 1),
               starts_ms=None if under_way else first_second * 1000)


def _spike_summary(name: str, count: int, span: str, expected: float) -> str:
    """The detector's own one-line account of a spike (explain.py words the one the alert carries)."""
    return f"{name}: {count} mentions in {span}, {count / max(expected, 0.1):.0f}x the usual {expected:.1f}"


def _window_baseline(state: DetectorState, first: int, cfg: DetectorConfig) -> tuple[float, float, int]:
    """(expected per bucket, spread, buckets of history) before a window starting at `first`, from
    the buckets still kept (a long window leaves few or none: then the long-memory rate decides)."""
    oldest = state["first"]
    assert oldest is not None and state["latest"] is not None
    kept = max(oldest, state["latest"] - cfg.baseline_buckets - cfg.lateness_buckets, first - cfg.baseline_buckets)
    history = [state["counts"].get(str(j), 0) for j in range(kept, first)]
    if len(history) < cfg.warmup_buckets:
        return 0.0, 0.0, first - oldest
    centre = median(history)
    return max(centre, statistics.fmean(history)), MAD_TO_SD * mad(history, centre), first - oldest


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

"""Volume-spike detection per watchlist: pure functions over a small JSON-able state.

Counts mentions in short event-time buckets and compares the current bucket, on every event,
with a robust baseline (the larger of the median and the mean of the last N buckets, so a
sparse series is not judged against zero). A count is a spike when it is at least
`min_count`, at least `min_ratio` × baseline, and its Poisson tail probability P(X ≥ count)
is below `max_p_value` (small brands: every mention matters, but chance is priced in).
Mentions may arrive up to `lateness_buckets` late in event time (several partitions, slow
sources, accelerated replays): such buckets are still judged, and a firing alert resolves only
after `resolve_buckets` normal buckets past its last spike have settled; a resolved alert cannot
fire again for `cooldown_buckets`, so one crisis never flaps into several alerts.

State is a plain dict so it can live in a Faust table (changelogged, survives restarts).
"""

from __future__ import annotations

import hashlib
import math
import statistics
from dataclasses import dataclass
from typing import Any

RULE = "volume_spike"
MAX_SAMPLES = 5


@dataclass(frozen=True)
class DetectorConfig:
    bucket_s: int = 10
    baseline_buckets: int = 60
    warmup_buckets: int = 12
    min_count: int = 10
    min_ratio: float = 3.0
    max_p_value: float = 1e-6
    resolve_buckets: int = 3
    lateness_buckets: int = 30
    cooldown_buckets: int = 30
    severity: str = "critical"


@dataclass(frozen=True)
class Decision:
    """A state change the detector decided: fire or resolve one alert episode."""

    status: str  # firing | resolved
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


def fingerprint(labels: dict[str, str]) -> str:
    """Stable identity of an alert: a hash of its sorted labels (same labels → same fingerprint)."""
    text = "\x1f".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def log_poisson_tail(count: int, mean: float) -> float:
    """ln P(X ≥ count) for X ~ Poisson(mean), exact far below the smallest float (viral bursts)."""
    if count <= 0:
        return 0.0
    if mean <= 0:
        return -math.inf
    if count <= mean:  # the tail is at least ~1/2: 1 - CDF is accurate
        cdf = sum(math.exp(k * math.log(mean) - mean - math.lgamma(k + 1)) for k in range(count))
        return math.log(max(1.0 - cdf, 1e-300))
    # Beyond the mean each term is the previous times mean/(k+1) < 1: sum the ratios, add the logs.
    log_first = count * math.log(mean) - mean - math.lgamma(count + 1)
    ratio_sum, ratio, k = 1.0, 1.0, count
    while ratio > 1e-17 * ratio_sum:
        k += 1
        ratio *= mean / k
        ratio_sum += ratio
    return min(0.0, log_first + math.log(ratio_sum))


def poisson_tail(count: int, mean: float) -> float:
    """P(X ≥ count) for X ~ Poisson(mean) (0.0 once it is below the smallest float)."""
    return math.exp(log_poisson_tail(count, mean))


def new_state() -> dict[str, Any]:
    return {"counts": {}, "recv": {}, "samples": {}, "latest": None, "first": None, "firing": None,
            "last_spike": None, "quiet_until": None}


def baseline(state: dict[str, Any], idx: int, cfg: DetectorConfig) -> tuple[float, int]:
    """(expected count for bucket idx, buckets of history behind it)."""
    first = state["first"]
    lo = max(first, idx - cfg.baseline_buckets)
    history = [state["counts"].get(str(j), 0) for j in range(lo, idx)]
    if not history:
        return 0.0, 0
    return max(statistics.median(history), statistics.fmean(history)), idx - first


def assess(count: int, expected: float, history: int, cfg: DetectorConfig) -> tuple[bool, float]:
    """(is this count a spike, score = -log10 tail probability)."""
    log_p = log_poisson_tail(count, max(expected, 1.0 / cfg.baseline_buckets))
    score = -log_p / math.log(10)
    spike = (
        history >= cfg.warmup_buckets
        and count >= cfg.min_count
        and count >= cfg.min_ratio * expected
        and log_p <= math.log(cfg.max_p_value)
    )
    return spike, score


def observe(
    state: dict[str, Any],
    watchlist_id: str,
    created_at_ms: int,
    received_at_ms: int,
    mention_id: str,
    cfg: DetectorConfig,
) -> list[Decision]:
    """Count one mention (mutating `state`) and return the alert decisions it causes.

    Mentions arrive out of event-time order (several partitions, slow sources), so any bucket
    within `lateness_buckets` of the newest one is judged when a mention lands in it, and a
    firing alert resolves only once the buckets after its last spike are settled (older than the
    lateness window) and `resolve_buckets` of them were normal.
    """
    idx = created_at_ms // (cfg.bucket_s * 1000)
    decisions: list[Decision] = []
    if state["first"] is None:
        state["first"] = state["latest"] = idx
    if idx < state["latest"] - cfg.baseline_buckets:
        return decisions  # too late to matter for any bucket we still judge
    key = str(idx)
    state["counts"][key] = state["counts"].get(key, 0) + 1
    state["recv"][key] = min(state["recv"].get(key, received_at_ms), received_at_ms)
    samples = state["samples"].setdefault(key, [])
    if len(samples) < MAX_SAMPLES:
        samples.append(mention_id)
    state["first"] = min(state["first"], idx)
    if idx > state["latest"]:
        state["latest"] = idx
        _prune(state, idx - cfg.baseline_buckets - cfg.lateness_buckets - 1)

    if idx >= state["latest"] - cfg.lateness_buckets:
        count = state["counts"][key]
        expected, history = baseline(state, idx, cfg)
        spike, score = assess(count, expected, history, cfg)
        if spike and state["firing"] is not None:
            state["last_spike"] = max(state["last_spike"], idx)
        elif spike and (state["quiet_until"] is None or idx > state["quiet_until"]):
            state["last_spike"] = idx
            decisions.append(_fire(state, watchlist_id, idx, count, expected, score, cfg))

    resolved = _maybe_resolve(state, watchlist_id, cfg)
    if resolved is not None:
        decisions.append(resolved)
    return decisions


def _maybe_resolve(state: dict[str, Any], wid: str, cfg: DetectorConfig) -> Decision | None:
    """Resolve once `resolve_buckets` settled buckets after the last spike were all normal."""
    if state["firing"] is None:
        return None
    last_settled = state["latest"] - cfg.lateness_buckets - 1
    end = state["last_spike"] + cfg.resolve_buckets  # the last of the normal buckets required
    if last_settled < end:
        return None
    firing = state["firing"]
    count = state["counts"].get(str(end), 0)
    expected, _ = baseline(state, end, cfg)
    state["firing"] = None
    state["quiet_until"] = end + cfg.cooldown_buckets
    return Decision(
        status="resolved", watchlist_id=wid, fingerprint=firing["fingerprint"], alert_id=firing["alert_id"],
        labels=_labels(wid, cfg), observed=float(count), baseline=float(expected), score=0.0,
        starts_at_ms=firing["starts_at_ms"], ends_at_ms=(end + 1) * cfg.bucket_s * 1000,
        sample_mention_ids=[], first_received_at_ms=None,
        summary=f"{wid}: mention volume back to normal ({count} in {cfg.bucket_s}s vs {expected:.1f} expected)",
    )


def _fire(state: dict[str, Any], wid: str, idx: int, count: int, expected: float, score: float, cfg: DetectorConfig) -> Decision:
    labels = _labels(wid, cfg)
    fp = fingerprint(labels)
    starts_at_ms = idx * cfg.bucket_s * 1000
    alert_id = f"{fp}-{starts_at_ms}"
    state["firing"] = {"fingerprint": fp, "alert_id": alert_id, "starts_at_ms": starts_at_ms}
    return Decision(
        status="firing", watchlist_id=wid, fingerprint=fp, alert_id=alert_id, labels=labels,
        observed=float(count), baseline=float(expected), score=score, starts_at_ms=starts_at_ms, ends_at_ms=None,
        sample_mention_ids=list(state["samples"].get(str(idx), [])),
        first_received_at_ms=state["recv"].get(str(idx)),
        summary=f"{wid}: {count} mentions in {cfg.bucket_s}s, {count / max(expected, 0.1):.0f}x the usual {expected:.1f}",
    )


def _labels(wid: str, cfg: DetectorConfig) -> dict[str, str]:
    return {"watchlist": wid, "rule": RULE, "severity": cfg.severity}


def _prune(state: dict[str, Any], below: int) -> None:
    for table in ("counts", "recv", "samples"):
        for key in [k for k in state[table] if int(k) < below]:
            del state[table][key]

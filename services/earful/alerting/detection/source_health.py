"""Source health: is each source (twitter, mastodon, news, ...) still delivering, and on time?

Every enriched mention is counted per source by the time ingest received it (not when it was
written: a connector that stops delivers nothing, whatever the posts' own times), in buckets
of `bucket_s`. Two signals per source:

* **silence**: the trailing `window_s` (complete buckets only) holds at most `max_ratio` of the
  usual count, with a Poisson probability of so few below `max_p_value`, where the usual count
  (the median bucket of the `history_s` before the window, so a past burst does not become the
  norm) is at least `min_expected` mentions: a `source_outage` alert, which resolves once the
  window is back to `recover_ratio` of the usual level (higher than volume_drop's, so a
  watchlist's drop resolves first and is never notified after the outage ends);
* **lag**: the median delay from a post's creation to its receipt over the window exceeds the
  usual median by `lag_s` and by a factor of `lag_factor` (a connector catching up, a backlog).

A source is *degraded* while it is silent (pending or firing) or late. Each watchlist depends on
the sources its mentions came from within `history_s`; every alert of a watchlist fired while one
of them is degraded names it (annotation `degraded_sources`), and the default inhibit rule mutes
`volume_drop` of a watchlist whose degraded sources include the one in outage. Connector errors
are counted by ingest (`earful_ingest_errors_total`), which alerting cannot see; silence and lag
are what a failing connector shows downstream.

The state is plain JSON (it is kept in the detector's changelogged table) and every function is
pure but for the state it is handed, with the clock passed in.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from earful.alerting.detection.model import Decision, duration_text, fingerprint
from earful.alerting.detection.stats import log_poisson_cdf

SOURCE_OUTAGE = "source_outage"
LAG_SAMPLES = 5  # delays kept per source and bucket (the state is written to the changelog)
MIN_LAG_SAMPLES = 5


@dataclass(frozen=True)
class SourceHealthConfig:
    """How source health is judged (from the EARFUL_ALERT_SOURCE_* settings)."""

    bucket_s: int = 10
    window_s: int = 300
    history_s: int = 3600
    min_history_s: int = 600  # a source seen for less than this is not judged yet
    min_expected: float = 20.0
    max_ratio: float = 0.25
    max_p_value: float = 1e-6
    recover_ratio: float = 0.8
    lag_s: int = 600
    lag_factor: float = 4.0
    severity: str = "warning"

    @property
    def bucket_ms(self) -> int:
        return self.bucket_s * 1000

    @classmethod
    def from_settings(cls, settings: Any) -> SourceHealthConfig:
        s = settings
        return cls(bucket_s=s.alert_bucket_s, window_s=s.alert_source_window_s, history_s=s.alert_source_history_s,
                   min_history_s=min(s.alert_source_history_s, 2 * s.alert_source_window_s),
                   min_expected=float(s.alert_source_min_expected), max_ratio=s.alert_drop_max_ratio,
                   max_p_value=s.alert_drop_max_p_value, recover_ratio=s.alert_source_recover_ratio,
                   lag_s=s.alert_source_lag_s)


def new_health() -> dict[str, Any]:
    """The state: per source its counts and delays per bucket, its episode and who depends on it."""
    return {"version": 1, "sources": {}, "judged": None}


def observe(state: dict[str, Any], source: str, created_ms: int, received_ms: int, watchlists: list[str] | tuple[str, ...],
            cfg: SourceHealthConfig) -> None:
    """Count one enriched mention of `source` (received at `received_ms`) for the watchlists it matched."""
    if not source:
        return
    src = state["sources"].setdefault(source, {"first": received_ms, "n": {}, "lag": {}, "ep": None, "deps": {}})
    key = str(received_ms // cfg.bucket_ms)
    src["n"][key] = src["n"].get(key, 0) + 1
    delays = src["lag"].setdefault(key, [])
    if len(delays) < LAG_SAMPLES:
        delays.append(max(0, received_ms - created_ms))
    src["first"] = min(src["first"], received_ms)
    for wid in watchlists:
        if src["deps"].get(wid, 0) < received_ms:
            src["deps"][wid] = received_ms


def judge(state: dict[str, Any], now_ms: int, cfg: SourceHealthConfig) -> list[Decision]:
    """Judge every source: fire or resolve its outage, note whether it is late; prune once per bucket.

    Cheap enough to run on every tick and before any alert says which sources are degraded (mentions
    received since the last judgement, even in the same bucket, may change the verdict)."""
    current = now_ms // cfg.bucket_ms
    new_bucket = state["judged"] != current
    state["judged"] = current
    out: list[Decision] = []
    width = max(1, cfg.window_s // cfg.bucket_s)
    end = current - 1  # the newest complete bucket
    start = end - width + 1
    history = max(width, cfg.history_s // cfg.bucket_s)
    for name, src in sorted(state["sources"].items()):
        if new_bucket:
            _prune(src, start - history, now_ms - cfg.history_s * 1000)
        counts = src["n"]
        observed = sum(counts.get(str(j), 0) for j in range(start, end + 1))
        before = [counts.get(str(j), 0) for j in range(start - history, start) if j * cfg.bucket_ms >= src["first"]]
        usual = statistics.median(before) * width if before else 0.0
        lag = _lag(src, start, end, history, cfg)
        src["late"] = lag is not None
        ep = src["ep"]
        if ep is not None and ep["phase"] == "firing":
            if observed >= cfg.recover_ratio * ep["usual"]:
                out.append(_decision("resolved", name, ep, observed, ep["usual"], 0.0, (end + 1) * cfg.bucket_ms,
                                     f"source {name}: mentions are arriving again ({observed} in "
                                     f"{duration_text(width * cfg.bucket_s)}, usually {ep['usual']:.0f})", cfg))
                src["ep"] = None
            continue
        seen_s = (now_ms - src["first"]) / 1000
        silent = (seen_s >= cfg.min_history_s + cfg.window_s and usual >= cfg.min_expected
                  and observed <= cfg.max_ratio * usual and log_poisson_cdf(observed, usual) <= math.log(cfg.max_p_value))
        if not silent:
            src["ep"] = None
            continue
        score = -log_poisson_cdf(observed, usual) / math.log(10)
        ep = {"phase": "firing", "since_ms": start * cfg.bucket_ms, "usual": round(usual, 2)}
        src["ep"] = ep
        out.append(_decision("firing", name, ep, observed, usual, score, None,
                             f"source {name}: {observed} mentions received in the last "
                             f"{duration_text(width * cfg.bucket_s)}, usually {usual:.0f}: the source or its "
                             "connector has stopped delivering", cfg))
    return out


def degraded(state: dict[str, Any]) -> dict[str, str]:
    """Source → why it is degraded now (outage, late)."""
    out = {}
    for name, src in state["sources"].items():
        if src.get("ep"):
            out[name] = "outage"
        elif src.get("late"):
            out[name] = "late"
    return out


def degraded_for(state: dict[str, Any], watchlist_id: str) -> list[str]:
    """The degraded sources a watchlist depends on (its mentions came from them within the history)."""
    return sorted(name for name in degraded(state) if watchlist_id in state["sources"][name]["deps"])


def _lag(src: dict[str, Any], start: int, end: int, history: int, cfg: SourceHealthConfig) -> float | None:
    """The window's median delay when it is late against the usual one, else None."""
    recent = [d for j in range(start, end + 1) for d in src["lag"].get(str(j), ())]
    usual = [d for j in range(start - history, start) for d in src["lag"].get(str(j), ())]
    if len(recent) < MIN_LAG_SAMPLES or len(usual) < MIN_LAG_SAMPLES:
        return None
    now, norm = statistics.median(recent), statistics.median(usual)
    return now if now >= cfg.lag_factor * norm and now - norm >= cfg.lag_s * 1000 else None


def _prune(src: dict[str, Any], oldest: int, deps_after_ms: int) -> None:
    for table in (src["n"], src["lag"]):
        for key in [k for k in table if int(k) < oldest]:
            del table[key]
    for wid in [w for w, at in src["deps"].items() if at < deps_after_ms]:
        del src["deps"][wid]


def _decision(status: str, source: str, ep: dict[str, Any], observed: float, usual: float, score: float,
              ends_ms: int | None, summary: str, cfg: SourceHealthConfig) -> Decision:
    labels = {"rule": SOURCE_OUTAGE, "source": source, "severity": cfg.severity}
    fp = fingerprint(labels)
    return Decision(status=status, rule=SOURCE_OUTAGE, watchlist_id="", fingerprint=fp, alert_id=f"{fp}-{ep['since_ms']}",
                    labels=labels, observed=float(observed), baseline=float(usual), score=float(score),
                    starts_at_ms=int(ep["since_ms"]), ends_at_ms=ends_ms, sample_mention_ids=[], first_received_at_ms=None,
                    summary=summary, window=None)

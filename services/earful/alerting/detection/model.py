"""What the detector takes in and hands out: its settings, the mentions it sees, its decisions.

`fingerprint` is an alert's identity (a hash of its labels, as in Alertmanager), so the same
episode keeps one identity across restarts and replicas.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from earful.core.vocabulary import ALERTING_RISK_TAGS

MAX_SAMPLES = 5  # sample mention ids an alert carries


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
    rate_half_life_s: int = 3600  # memory of the long-memory rate the trailing windows are judged against
    fast_window_s: int = 2  # volume_spike's fast window: the trailing seconds judged on a busy watchlist (0: off)
    fast_min_expected: float = 10.0  # mentions the fast window usually holds before it is judged
    risk_tags: frozenset[str] = frozenset(ALERTING_RISK_TAGS)
    max_posts: int = 50  # posts tracked per watchlist for viral_post (the state is written on every mention)
    max_questions: int = 300  # open questions tracked per watchlist (the oldest; newer ones wait for room)

    @property
    def bucket_ms(self) -> int:
        return self.bucket_s * 1000

    @classmethod
    def from_settings(cls, settings: Any) -> DetectorConfig:
        s = settings
        return cls(bucket_s=s.alert_bucket_s, baseline_buckets=s.alert_baseline_buckets,
                   warmup_buckets=s.alert_warmup_buckets, resolve_buckets=s.alert_resolve_buckets,
                   lateness_buckets=s.alert_lateness_buckets, seasonal_weeks=s.alert_seasonal_weeks,
                   peak_half_life_s=s.alert_peak_half_life_s, rate_half_life_s=s.alert_rate_half_life_s,
                   fast_window_s=s.alert_fast_window_s, fast_min_expected=s.alert_fast_min_expected,
                   risk_tags=frozenset(s.alert_risk_tags))


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
    owned: bool = False  # written by one of the brand's own accounts (earful.watchlists.owned): not counted


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


def mention_of(record: dict[str, Any], watchlist_id: str, owned: bool = False) -> Mention:
    """The detector's view of an enriched mention (schemas/enriched_mention.avsc), for one watchlist;
    `owned`: its author is one of the watchlist's brand's own accounts (staff included)."""
    m = record["mention"]
    engagement = m.get("engagement") or {}
    observed = engagement.get("observed_at")
    return Mention(
        mention_id=m["mention_id"], created_ms=int(m["created_at"].timestamp() * 1000),
        received_ms=int(m["received_at"].timestamp() * 1000), source=m["source"], source_id=m["source_id"],
        author_handle=(m.get("author") or {}).get("handle"), followers=(m.get("author") or {}).get("followers"),
        negative=(record.get("sentiment") or {}).get("label") == "negative",
        risks=tuple(r["tag"] for r in record.get("risks") or ()), in_reply_to=m.get("in_reply_to"),
        reposted_from=m.get("reposted_from"),
        engagement=int(engagement.get("reposts") or 0) + int(engagement.get("replies") or 0),
        observed_ms=None if observed is None else int(observed.timestamp() * 1000),
        matched=watchlist_id in record.get("watchlist_ids", ()), owned=owned,
    )


def post_key(source: str, source_id: str) -> str:
    """The key of one post across rules (viral posts, open questions): unique per source."""
    return f"{source}:{source_id}"


def duration_text(seconds: int) -> str:
    """A duration as alert summaries show it: 45s, 10 min, 3 h."""
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"

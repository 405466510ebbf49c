"""The detector's state for one watchlist: typed, versioned, and readable in every older layout.

The state lives in a changelogged Faust table (JSON values, written on every mention), so it stays
plain JSON-able dicts and lists with short keys; these TypedDicts say what each key holds. A
state read from the table always goes through `upgrade_state`: a restart after an upgrade meets
states written by the previous version, and must keep their counts and open episodes.

Layouts:

* 5 (current): the version under ``version``; every key declared here. Adds ``fast`` (mentions
  per second of event time over the last few seconds, for volume_spike's fast window) and
  ``fastwhole`` (the recent share of event times in whole seconds).
* 4: as 5 without ``fast`` and ``fastwhole``; upgraded by adding them as a new state has them.
  It added ``rate`` (the long-memory mention rate), ``peaks`` (the recent peak per trailing
  window), ``riskrate`` (each risk tag's usual count) and ``qsrc`` (the sources the watchlist's
  own handles answer on).
* 3: as 4 without those keys, and one window peak under ``peakw``. Upgraded keeping everything
  else (the window peaks are learnt afresh).
* 2: the version under ``v``; ``peakw`` and ``drop_at`` written only once used. Upgraded
  without loss.
* 1 (no version): counts, receipts and samples only. Upgraded keeping the counts, so the
  baseline survives; everything else starts afresh.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, cast

STATE_VERSION = 5
HOURS_PER_WEEK = 168


class Episode(TypedDict):
    """One alert episode of one rule (and label set): pending until `pending_s` held, then firing."""

    rule: str
    phase: str  # pending | firing
    since_ms: int  # event time the condition first held
    last_ms: int  # event time the condition last held
    bucket: int | None  # count-based rules: the newest bucket that hit
    since_bucket: int | None  # count-based rules: the first bucket that hit
    pending_s: int
    labels: dict[str, str]
    # Set when the episode fires:
    fingerprint: NotRequired[str]
    alert_id: NotRequired[str]
    starts_ms: NotRequired[int]
    cooldown_s: NotRequired[int]
    observed: NotRequired[float]
    usual: NotRequired[float]  # volume_drop: the level the drop fell from (recovery is judged against it)


class Season(TypedDict):
    """Hour-of-week norms: the usual count per bucket for each of the week's 168 hours."""

    h: int  # the hour (since the epoch) being counted now
    n: int  # mentions counted in that hour so far
    partial: bool  # the first hour seen: it started mid-way, so it never updates a norm
    rate: list[float]  # per hour of the week: usual count per bucket (an EWMA over weeks)
    weeks: list[int]  # per hour of the week: weeks of history behind `rate`


class TrackedPost(TypedDict):
    """One post followed for viral_post: running totals of its reshares and replies over time."""

    obs: list[list[int]]  # [observed_ms, reshares + replies] from engagement observations of the post
    rep: list[list[int]]  # [created_ms, running count] of the reshares and replies seen in the stream
    m: str | None  # the post's own mention id, once seen
    u: str | None  # its author's handle, once seen


class DetectorState(TypedDict):
    """Everything the detector remembers about one watchlist (bucket indexes are string keys: JSON)."""

    version: int
    first: int | None  # the oldest bucket ever counted
    latest: int | None  # the newest bucket counted (or reached as time passed)
    clock: list[int] | None  # [newest event time, wall time it was seen] (ms): lets time pass without mentions
    counts: dict[str, int]  # bucket → mentions
    neg: dict[str, int]  # bucket → negative mentions
    recv: dict[str, int]  # bucket → first receipt time (ms), for the alert's latency
    samples: dict[str, list[str]]  # bucket → a few mention ids
    season: Season | None
    peak: list[float] | None  # [largest bucket count, when]: bursts must beat the recent peak
    peaks: dict[str, list[float]]  # trailing-window width (buckets), or "fast" → [largest window count, when]
    fast: dict[str, int]  # second of event time → mentions (the last few seconds): volume_spike's fast window
    fastwhole: float  # recent share of mentions whose event time is a whole second (a source without milliseconds)
    rate: list[float] | None  # [decayed mentions, decayed buckets, bucket folded up to]: the long-memory rate
    negbase: list[float] | None  # [decayed total, decayed negative, bucket folded up to]: the usual negative share
    drop_at: int | None  # the newest bucket volume_drop judged (once per bucket)
    episodes: dict[str, Episode]  # episode key (rule, or rule:label values) → episode
    cool: dict[str, int]  # episode key → event time until which it may not fire again
    risk: dict[str, list[Any]]  # risk tag → [last event time, mentions, first mention id, first event time]
    riskrate: dict[str, list[float]]  # risk tag → [decayed count of mentions that qualify, when]: the tag's usual
    qsrc: dict[str, int]  # source → newest event time (ms) one of the watchlist's own handles replied there
    posts: dict[str, TrackedPost]  # post key → its growth
    questions: dict[str, list[Any]]  # post key → [created_ms, mention id, received_ms] of an open question


def new_state() -> DetectorState:
    """The state of a watchlist never seen before."""
    return {"version": STATE_VERSION, "first": None, "latest": None, "clock": None, "counts": {}, "neg": {},
            "recv": {}, "samples": {}, "season": None, "peak": None, "peaks": {}, "fast": {}, "fastwhole": 1.0, "rate": None, "negbase": None,
            "drop_at": None, "episodes": {}, "cool": {}, "risk": {}, "posts": {}, "questions": {}, "riskrate": {}, "qsrc": {}}


def upgrade_state(stored: dict[str, Any] | None) -> DetectorState:
    """A state from the table, brought to the current layout.

    The current layout and layout 2 are the table's own object (upgraded in place), so time
    passing without a decision (the timer does not write the table back) still advances it.
    """
    if not stored:
        return new_state()
    if stored.get("version") == STATE_VERSION:
        return cast(DetectorState, stored)
    if stored.get("version") in (3, 4):
        return _from_v3(stored)
    if stored.get("v") == 2:
        return _from_v2(stored)
    return _from_v1(stored)


def _from_v3(stored: dict[str, Any]) -> DetectorState:
    """Layout 3 lacked the long-memory rate, the per-window peaks and the sources, layout 4 the
    fast window's seconds and whole-second share: added as a new state has them (everything else
    is kept)."""
    stored.pop("peakw", None)
    for key, value in new_state().items():
        stored.setdefault(key, value)
    stored["version"] = STATE_VERSION
    return cast(DetectorState, stored)


def _from_v2(stored: dict[str, Any]) -> DetectorState:
    """Layout 2 held the same keys (some only once used): nothing is lost."""
    del stored["v"]
    stored["version"] = 3
    return _from_v3(stored)


def _from_v1(stored: dict[str, Any]) -> DetectorState:
    """Layout 1 tracked one episode its own way: keep the counts (the baseline), start the rest afresh."""
    state = new_state()
    fresh = cast(dict[str, Any], state)
    for key in ("first", "latest", "counts", "recv", "samples"):
        if key in stored:
            fresh[key] = stored[key]
    return state

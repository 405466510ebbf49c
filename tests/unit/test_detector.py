"""The detector: volume spikes (Poisson, robust z, recent peak, seasonality), the other rules, the
episode life cycle and time passing — all with an injected clock (event times and wall times are
arguments; nothing reads the real clock)."""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import random
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from earful.alerting.detection import (
    MAX_SAMPLES,
    Decision,
    DetectorConfig,
    DetectorState,
    Mention,
    fingerprint,
    new_state,
    observe,
    observe_counts,
    tick,
    upgrade_state,
    volume_spike,
)
from earful.alerting.detection.rules import RuleDefaults, WatchlistRules, rules_for
from earful.alerting.detection.state import STATE_VERSION
from earful.alerting.detection.stats import log_binomial_tail, mad, median, poisson_tail
from earful.core.settings import Settings
from earful.watchlists import AlertRule, Watchlist

SERVICES = Path(__file__).resolve().parents[2] / "services"
CFG = DetectorConfig(lateness_buckets=0)  # in-order scenarios; lateness is tested apart
BUCKET_MS = CFG.bucket_s * 1000
T0 = 1_741_939_200_000  # 2025-03-14T08:00:00Z, a bucket boundary
WID = "acme-air"
DEFAULTS = RuleDefaults.from_settings(Settings(_env_file=None))

Event = tuple[int, int, str]  # (created_at_ms, received_at_ms, mention_id)


def wl_rules(*rules: AlertRule, wid: str = WID, handles: tuple[str, ...] = (), sla: int | None = None,
             labels: dict[str, str] | None = None, cooldown_s: int = 0) -> WatchlistRules:
    """Rules as the service derives them from a watchlist (defaults from the settings); a topic, so
    exactly the rules given run (the rule packs of the other kinds are tested on their own)."""
    w = Watchlist(wid, wid, "topic", ("x",), handles=handles, response_sla_s=sla, labels=labels or {},
                  alert_rules=rules or (AlertRule("volume_spike", severity="critical", cooldown_s=cooldown_s),))
    return rules_for(w, DEFAULTS)


VOLUME = wl_rules()


def run(events: list[Event], state: DetectorState | None = None, rules: WatchlistRules = VOLUME,
        cfg: DetectorConfig = CFG) -> tuple[list[tuple[int, Decision]], DetectorState]:
    """Feed events in order; return (index of the causing event, decision) pairs and the state."""
    state = new_state() if state is None else state
    out = []
    for i, (created, received, mid) in enumerate(events):
        for d in observe(state, rules, Mention(mid, created, received), cfg, wall_ms=received):
            out.append((i, d))
    return out, state


def steady(buckets: int, per_bucket: int = 2, start_bucket: int = 0, prefix: str = "s") -> list[Event]:
    """Exactly `per_bucket` mentions in each bucket, spread inside it."""
    events = []
    for b in range(start_bucket, start_bucket + buckets):
        for k in range(per_bucket):
            created = T0 + b * BUCKET_MS + (k + 1) * BUCKET_MS // (per_bucket + 1)
            events.append((created, created + 800, f"{prefix}-{b}-{k}"))
    return events


def exact_tail(count: int, mean: float) -> float:
    """P(X >= count) by summing the upper tail with exact rationals (independent of the code)."""
    m = Fraction(mean)
    term = Fraction(1)
    for k in range(1, count + 1):
        term = term * m / k
    total, k = Fraction(0), count
    while True:
        total += term
        k += 1
        term = term * m / k
        if k > mean + 50 and term < total * Fraction(1, 10**18):
            break
    return float(total * Fraction(math.exp(-mean)))


# --- statistics --------------------------------------------------------------------------------


@pytest.mark.parametrize("mean", [0.1, 0.5, 1.0, 2.0, 4.5, 10.0, 25.0])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 20, 30])
def test_poisson_tail_equals_exact_sum(count: int, mean: float) -> None:
    assert poisson_tail(count, mean) == pytest.approx(exact_tail(count, mean), rel=1e-9)


def test_poisson_tail_edges_and_monotony() -> None:
    assert poisson_tail(0, 3.0) == 1.0 and poisson_tail(-1, 3.0) == 1.0
    assert poisson_tail(1, 0.0) == 0.0 and poisson_tail(0, 0.0) == 1.0
    assert 0.0 < poisson_tail(150, 2.0) < 1e-200
    tails = [poisson_tail(c, 2.0) for c in range(80)]
    assert all(a >= b for a, b in itertools.pairwise(tails))


def _returns_within(code: str, timeout_s: float = 60.0) -> str:
    """Run `code` in a child process and fail if it never returns: a guard against hangs (the
    old Poisson tail looped for ever), not a speed check, so the bound is far above a loaded
    machine's import time."""
    env = {**os.environ, "PYTHONPATH": str(SERVICES) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not return within {timeout_s} s: {code}")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_poisson_tail_terminates_for_huge_counts() -> None:
    out = _returns_within("from earful.alerting.detection.stats import poisson_tail; print(poisson_tail(250, 2.0))")
    assert float(out) < 1e-300


@pytest.mark.parametrize("k,n,p", [(3, 5, 0.5), (9, 10, 0.25), (0, 4, 0.3), (20, 20, 0.9), (15, 40, 0.2)])
def test_binomial_tail_equals_exact_sum(k: int, n: int, p: float) -> None:
    P = Fraction(p)
    exact = sum(Fraction(math.comb(n, j)) * P**j * (1 - P) ** (n - j) for j in range(k, n + 1))
    assert math.exp(log_binomial_tail(k, n, p)) == pytest.approx(float(exact), rel=1e-9)
    assert log_binomial_tail(n + 1, n, p) == -math.inf


def test_median_and_mad() -> None:
    assert median([]) == 0.0 and median([3, 1, 2]) == 2 and median([4, 1, 2, 3]) == 2.5
    assert mad([1, 1, 2, 2, 4, 6, 9]) == 1.0


# --- fingerprint -------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_order_independent() -> None:
    labels = {"watchlist": "acme-air", "rule": "volume_spike", "severity": "critical"}
    reordered = dict(reversed(list(labels.items())))
    assert fingerprint(labels) == fingerprint(reordered) and len(fingerprint(labels)) == 16
    assert fingerprint({**labels, "severity": "warning"}) != fingerprint(labels)
    assert fingerprint({**labels, "team": "ops"}) != fingerprint(labels)


# --- volume spike --------------------------------------------------------------------------------

# A steady baseline of exactly 2 per bucket (median = mean = 2, MAD = 0): with min_ratio 3,
# max_p_value 1e-6 and min_z 8 the first qualifying count is 14 (P(X>=13 | 2) = 2.1e-7 already,
# but (13 - 2) / sqrt(2) = 7.8 < 8 ≤ (14 - 2) / sqrt(2) = 8.5).
SPIKE_AT = 14
B = 100  # the spike bucket


def _spike_events(n: int, bucket: int = B, prefix: str = "spike") -> list[Event]:
    start = T0 + bucket * BUCKET_MS
    events = []
    for k in range(n):
        created = start + 200 + k * 150
        received = created + (100 if k == 1 else 2000)  # the second reached ingest first
        events.append((created, received, f"{prefix}-{k}"))
    return events


def test_threshold_constant_is_right() -> None:
    assert exact_tail(SPIKE_AT - 1, 2.0) < 1e-6  # the Poisson test alone would fire at 13 ...
    assert (SPIKE_AT - 1 - 2) / math.sqrt(2) < 8 <= (SPIKE_AT - 2) / math.sqrt(2)  # ... the robust z waits for 14


def test_no_alert_during_warm_up() -> None:
    events = [(T0 + b * BUCKET_MS + k * 100, T0 + b * BUCKET_MS + k * 100 + 500, f"w-{b}-{k}")
              for b in range(CFG.warmup_buckets) for k in range(60)]
    decisions, state = run(events)
    assert decisions == [] and state["episodes"] == {}


def test_a_spike_right_after_warm_up_fires() -> None:
    events = steady(CFG.warmup_buckets)
    b = CFG.warmup_buckets
    events += [(T0 + b * BUCKET_MS + k * 100, T0 + b * BUCKET_MS + k * 100 + 500, f"x{k}") for k in range(40)]
    decisions, _ = run(events)
    assert [d.status for _, d in decisions] == ["firing"]


def test_the_brands_own_posts_never_make_a_spike() -> None:
    """Owned posts (a care account, staff, EARFUL_OWNED_HANDLES: earful.watchlists.owned) are not
    mentions of the brand: a burst of them counts for nothing; the same burst earned fires."""
    b = CFG.warmup_buckets
    burst = [(T0 + b * BUCKET_MS + k * 100, T0 + b * BUCKET_MS + k * 100 + 500, f"x{k}") for k in range(40)]
    for owned, expected in ((True, []), (False, ["firing"])):
        state = new_state()
        run(steady(b), state)
        statuses = [d.status for created, received, mid in burst
                    for d in observe(state, VOLUME, Mention(mid, created, received, owned=owned), CFG, wall_ms=received)]
        assert statuses == expected, owned


def test_spike_fires_on_the_event_that_crosses_the_threshold() -> None:
    history = steady(B)
    spike = _spike_events(30)
    decisions, state = run(history + spike)
    assert len(decisions) == 1
    index, d = decisions[0]
    assert index == len(history) + SPIKE_AT - 1  # the 14th mention of the bucket, not the bucket's end
    labels = {"watchlist": WID, "rule": "volume_spike", "severity": "critical"}
    starts = T0 + B * BUCKET_MS
    assert (d.status, d.rule, d.watchlist_id, d.labels) == ("firing", "volume_spike", WID, labels)
    assert d.fingerprint == fingerprint(labels) and d.alert_id == f"{d.fingerprint}-{starts}"
    assert (d.starts_at_ms, d.ends_at_ms, d.observed, d.baseline) == (starts, None, float(SPIKE_AT), 2.0)
    # The score is -log10 of the Poisson tail, or of the less surprising test against a memory still short.
    assert -math.log10(1e-6 / 4) < d.score <= -math.log10(exact_tail(SPIKE_AT, 2.0)) + 1e-9
    assert d.first_received_at_ms == spike[1][1]
    assert d.sample_mention_ids == [f"spike-{k}" for k in range(MAX_SAMPLES)]
    assert d.window == (starts, starts + BUCKET_MS)
    assert WID in d.summary and str(SPIKE_AT) in d.summary
    assert state["episodes"]["volume_spike"]["alert_id"] == d.alert_id


def test_one_below_the_threshold_does_not_fire() -> None:
    decisions, state = run(steady(B) + _spike_events(SPIKE_AT - 1))
    assert decisions == [] and "volume_spike" not in state["episodes"]


def test_each_threshold_applies() -> None:
    # Baseline 6: ratio from 15, the Poisson bar (1e-6 shared by the bucket and three windows) decides.
    history = steady(B, per_bucket=6)
    assert run(history + _spike_events(20))[0] == []
    fired = [d.observed for _, d in run(history + _spike_events(30))[0]]
    assert len(fired) == 1 and 21 <= fired[0] <= 26
    # A tiny baseline: the floor comes from it, not from one number for everybody: two mentions are
    # never a spike (min_count 3), a handful in ten seconds is.
    sparse = [(T0 + b * BUCKET_MS, T0 + b * BUCKET_MS, f"s{b}") for b in range(0, B, 20)]
    assert run(sparse + _spike_events(2))[0] == []
    assert next(d.observed for _, d in run(sparse + _spike_events(9))[0]) <= 6
    # Thresholds per watchlist: min_count 40 on this watchlist.
    strict = wl_rules(AlertRule("volume_spike", thresholds={"min_count": 40}))
    assert [d.observed for _, d in run(history + _spike_events(45), rules=strict)[0]] == [40.0]


def test_over_dispersed_history_needs_a_bigger_burst() -> None:
    """Bursty history (counts 0..12 per bucket): the observed spread (1.4826 × MAD), not the
    Poisson spread, sets the bar, so a burst the Poisson test alone would call a spike is not one."""
    rng = random.Random(5)
    history = []
    for b in range(B):
        n = rng.choice([0, 1, 2, 3, 4, 6, 9, 12])
        history += [(T0 + b * BUCKET_MS + k * 50, T0 + b * BUCKET_MS + k * 50, f"h-{b}-{k}") for k in range(n)]
    decisions, state = run(history)
    assert decisions == []
    first = T0 // BUCKET_MS
    counts = [state["counts"].get(str(first + j), 0) for j in range(B - CFG.baseline_buckets, B)]
    expected = max(median(counts), sum(counts) / len(counts))
    spread = 1.4826 * mad(counts)
    assert spread > math.sqrt(expected)  # over-dispersed
    bar = expected + DEFAULTS.thresholds["volume_spike"]["min_z"] * spread
    burst = math.ceil(bar) - 1
    assert poisson_tail(burst, expected) < 1e-8 and burst >= 3 * expected  # Poisson + ratio would fire
    assert run(history + _spike_events(burst))[0] == []
    fired = run(history + _spike_events(int(bar) + 5))[0]
    assert [d.observed for _, d in fired] == [float(math.ceil(bar))]


def test_a_sustained_surge_no_single_bucket_shows_fires_over_the_window() -> None:
    """6 a bucket for a minute against one mention every 30 s: no bucket reaches min_count (10),
    the trailing minute does; a lone burst of 9 does not make a sustained surge."""
    history = [(T0 + k * 30_000 + 5, T0 + k * 30_000 + 500, f"h{k}") for k in range(B // 3)]
    surge = [e for j in range(6) for e in _spike_events(6, bucket=B + j, prefix=f"s{j}")]
    decisions, _ = run(history + surge)
    assert [d.status for _, d in decisions] == ["firing"]
    index, d = decisions[0]
    assert "in 60s" in d.summary and d.observed >= 10
    assert d.starts_at_ms == T0 + B * BUCKET_MS  # where the surge began, not where it was noticed
    assert surge[index - len(history)][0] < T0 + (B + 3) * BUCKET_MS  # within its third bucket
    no_window = wl_rules(AlertRule("volume_spike", severity="critical",
                                   thresholds={"window_s": 0, "window_medium_s": 0, "window_long_s": 0}))
    assert all("in 10s" in d.summary for _, d in run(history + surge, rules=no_window)[0])  # buckets only
    lone = _spike_events(9, bucket=B) + [(T0 + (B + k) * BUCKET_MS, T0 + (B + k) * BUCKET_MS, f"l{k}") for k in range(1, 6)]
    fired = [d for _, d in run(history + lone)[0] if d.status == "firing"]
    assert len(fired) == 1 and "in 10s" in fired[0].summary  # a burst, not a sustained surge


def _poisson_events(rng: random.Random, seconds: int, rate_per_s: float, start_ms: int) -> list[Event]:
    events, t = [], 0.0
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= seconds:
            return events
        created = start_ms + int(t * 1000)
        events.append((created, created + rng.randint(200, 3000), f"p-{len(events)}"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_steady_poisson_traffic_never_alerts(seed: int) -> None:
    events = _poisson_events(random.Random(seed), seconds=2 * 3600, rate_per_s=0.2, start_ms=T0)
    decisions, state = run(events)
    assert decisions == []
    assert len(state["counts"]) <= CFG.baseline_buckets + 2  # memory stays bounded


@pytest.mark.parametrize("seed", [1, 2])
def test_a_busy_watchlists_steady_traffic_never_alerts(seed: int) -> None:
    """15 mentions/s for half an hour: the fast window, judged on every mention, stays quiet too."""
    events = _poisson_events(random.Random(seed), seconds=1800, rate_per_s=15, start_ms=T0)
    assert run(events)[0] == []


def _surge_at(seconds_into_bucket: float, seed: int = 7) -> tuple[list[Event], int]:
    """15 mentions/s for 5 minutes, then 60/s more for 10 s from `seconds_into_bucket` into a bucket."""
    rng = random.Random(seed)
    start = T0 + 300_000 + int(seconds_into_bucket * 1000)
    base = _poisson_events(rng, seconds=320, rate_per_s=15, start_ms=T0)
    surge = [(c, r, f"surge-{m}") for c, r, m in _poisson_events(rng, seconds=10, rate_per_s=60, start_ms=start)]
    return sorted(base + surge), start


@pytest.mark.parametrize("into_bucket", [0.5, 4.0, 7.5])
def test_a_busy_watchlists_surge_alerts_within_seconds_wherever_it_starts_in_a_bucket(into_bucket: float) -> None:
    """A brand at 15/s whose rate quintuples: its bucket needs 2.5 × 150 mentions, which a surge that
    starts late in a bucket reaches only seconds into the next one; the fast window (the last 2 s)
    sees it within about a second."""
    events, start = _surge_at(into_bucket)
    fired = [(i, d) for i, d in run(events)[0] if d.status == "firing"]
    assert len(fired) == 1
    index, d = fired[0]
    assert 0 < events[index][0] - start <= 1500, d.summary
    assert d.starts_at_ms >= start - 2000 and d.window is not None and d.window[1] > events[index][0]
    slow = [i for i, d in run(events, cfg=replace(CFG, fast_window_s=0))[0] if d.status == "firing"]
    assert slow and events[slow[0]][0] - start > 3000  # the buckets alone: what the fast window saves


def _whole_seconds(events: list[Event]) -> list[Event]:
    """As a source without milliseconds gives them: every event time a whole second."""
    return sorted(((c // 1000 * 1000, r, m) for c, r, m in events), key=lambda e: e[0])


def test_event_times_in_whole_seconds_are_judged_as_whole_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole-second times (many sources give no milliseconds): the clock's second holds all its
    mentions as they arrive, so judged as the part of it elapsed it would look up to twice as busy
    as it is, and a rise of half (15/s → 23/s, no spike) would alert. A real surge still does."""
    rng = random.Random(3)
    base = _poisson_events(rng, seconds=420, rate_per_s=15, start_ms=T0)
    rise = [(c, r, f"rise-{m}") for c, r, m in _poisson_events(rng, seconds=120, rate_per_s=8, start_ms=T0 + 300_000)]
    events = _whole_seconds(base + rise)
    assert run(events)[0] == []
    surge, start = _surge_at(4.0)
    surge = _whole_seconds(surge)
    fired = [(i, d) for i, d in run(surge)[0] if d.status == "firing"]
    assert len(fired) == 1 and "in 2.0s" in fired[0][1].summary
    assert surge[fired[0][0]][0] - start <= 2000
    with monkeypatch.context() as patched:  # judged as if the times had milliseconds: the rise alerts
        patched.setattr(volume_spike, "MILLISECOND_SOURCES", 2.0)
        assert [d.status for _, d in run(events)[0]][:1] == ["firing"]


def test_a_burst_of_posts_within_a_second_is_no_spike_for_a_quiet_watchlist() -> None:
    """A thread of 8 posts within a second, on a watchlist with 2 mentions a bucket: the fast window
    is not judged (it would usually hold under one mention), so only the bucket decides, and 8
    against 2 is not a spike."""
    thread = [(T0 + B * BUCKET_MS + 100 * k, T0 + B * BUCKET_MS + 100 * k + 500, f"thread-{k}") for k in range(8)]
    events = steady(B) + thread
    assert run(events)[0] == []
    fired = run(events, cfg=replace(CFG, fast_min_expected=0.1))[0]  # the guard is what keeps it quiet
    assert [d.status for _, d in fired] == ["firing"]


def test_slow_drift_does_not_fire() -> None:
    """Volume growing tenfold over two hours (a story building up slowly) is not a spike."""
    rng = random.Random(11)
    events, t = [], 0.0
    while t < 7200:
        rate = 0.2 + 1.8 * t / 7200  # 2 → 20 per bucket
        t += rng.expovariate(rate)
        created = T0 + int(t * 1000)
        events.append((created, created + 500, f"d-{len(events)}"))
    decisions, _ = run(events)
    assert decisions == []


def test_sparse_series_still_fires() -> None:
    every = 600_000  # one mention every 10 minutes for 6 hours, then 12 in one bucket
    events = [(T0 + k * every + 1234, T0 + k * every + 2234, f"sparse-{k}") for k in range(36)]
    burst_bucket = (T0 + 36 * every) // BUCKET_MS + 1
    burst = [(burst_bucket * BUCKET_MS + 100 * k, burst_bucket * BUCKET_MS + 100 * k + 700, f"burst-{k}") for k in range(12)]
    assert run(events)[0] == []
    decisions, _ = run(events + burst)
    assert [d.status for _, d in decisions] == ["firing"]
    index, d = decisions[0]
    assert index == len(events) + 4 - 1  # 4 in ten seconds against one every ten minutes (the floor is the baseline's)
    assert d.starts_at_ms == burst_bucket * BUCKET_MS and d.first_received_at_ms == burst[0][1]


def _spike_then_normal() -> tuple[list[Event], int]:
    """Spike in B and B+1, then normal traffic from B+2 on. Returns (events, index of first B+5 event)."""
    events = steady(B) + _spike_events(43) + _spike_events(40, bucket=B + 1, prefix="spike2")
    events += steady(3, start_bucket=B + 2, prefix="after")
    first_of_b5 = len(events)
    events += steady(5, start_bucket=B + 5, prefix="later")
    return events, first_of_b5


def test_resolves_after_resolve_buckets_normal_buckets() -> None:
    events, first_of_b5 = _spike_then_normal()
    decisions, state = run(events)
    assert [(i, d.status) for i, d in decisions] == [(decisions[0][0], "firing"), (first_of_b5, "resolved")]
    fired, resolved = decisions[0][1], decisions[1][1]
    assert (resolved.alert_id, resolved.fingerprint) == (fired.alert_id, fired.fingerprint)
    assert resolved.starts_at_ms == fired.starts_at_ms == T0 + B * BUCKET_MS
    assert resolved.ends_at_ms == T0 + (B + 2 + CFG.resolve_buckets) * BUCKET_MS
    assert resolved.sample_mention_ids == [] and resolved.first_received_at_ms is None
    assert state["episodes"] == {}


def test_a_silent_watchlist_resolves_on_the_timer() -> None:
    """No mention after the spike: time passing (the wall clock) resolves it."""
    events = steady(B) + _spike_events(20)
    decisions, state = run(events)
    assert [d.status for _, d in decisions] == ["firing"]
    last_wall = events[-1][1]
    assert tick(state, VOLUME, CFG, last_wall + 2 * BUCKET_MS) == []  # not settled yet
    resolved = tick(state, VOLUME, CFG, last_wall + 6 * BUCKET_MS)
    assert [d.status for d in resolved] == ["resolved"]
    assert resolved[0].ends_at_ms == T0 + (B + 1 + CFG.resolve_buckets) * BUCKET_MS
    assert tick(state, VOLUME, CFG, last_wall + 60 * BUCKET_MS) == []  # once


def test_the_timer_follows_the_wall_clock_from_the_newest_mention() -> None:
    """Event time may be far from wall time (a replay): the timer moves event time by wall time elapsed."""
    events = steady(B) + _spike_events(20)
    shifted = [(c, r + 86_400_000 * 30, m) for c, r, m in events]  # received a month later
    decisions, state = run(shifted)
    assert [d.status for _, d in decisions] == ["firing"]
    assert tick(state, VOLUME, CFG, shifted[-1][1] + 2 * BUCKET_MS) == []
    assert [d.status for d in tick(state, VOLUME, CFG, shifted[-1][1] + 6 * BUCKET_MS)] == ["resolved"]


def test_fires_again_after_resolving_with_a_new_alert_id() -> None:
    events, _ = _spike_then_normal()
    events += steady(20, start_bucket=B + 10, prefix="calm") + _spike_events(60, bucket=B + 30, prefix="again")
    decisions, _ = run(events)
    assert [d.status for _, d in decisions] == ["firing", "resolved", "firing"]
    first, _, second = (d for _, d in decisions)
    assert second.fingerprint == first.fingerprint and second.alert_id != first.alert_id
    assert second.starts_at_ms == T0 + (B + 30) * BUCKET_MS


def test_recent_peak_keeps_one_story_one_alert() -> None:
    """A second wave no bigger than the first does not alert again within the peak's half-life;
    a bigger one does; and once the peak has decayed, the same size alerts again."""
    events, _ = _spike_then_normal()  # peak 43
    calm = steady(40, start_bucket=B + 10, prefix="calm")
    second_wave = _spike_events(40, bucket=B + 50, prefix="wave2")
    decisions, _ = run(events + calm + second_wave)
    assert [d.status for _, d in decisions] == ["firing", "resolved"]
    decisions, _ = run(events + calm + _spike_events(60, bucket=B + 50, prefix="bigger"))
    assert [d.status for _, d in decisions] == ["firing", "resolved", "firing"]
    assert decisions[-1][1].observed == 43.0  # just above the remembered peak (43, decayed a little)
    short = replace(CFG, peak_half_life_s=60)  # the peak halves every minute: after 6 minutes it is ~0.7
    decisions, _ = run(events + calm + second_wave, cfg=short)
    assert [d.status for _, d in decisions] == ["firing", "resolved", "firing"]


def test_flapping_around_the_threshold_is_one_alert() -> None:
    """Spike, normal, spike, normal, ... : one alert, resolved once after it really calmed down."""
    events = steady(B)
    for j in range(8):
        events += _spike_events(20, bucket=B + 2 * j, prefix=f"flap{j}") + steady(1, start_bucket=B + 2 * j + 1, prefix=f"n{j}")
    events += steady(10, start_bucket=B + 16, prefix="calm")
    decisions, _ = run(events)
    assert [d.status for _, d in decisions] == ["firing", "resolved"]
    assert decisions[1][1].ends_at_ms > T0 + (B + 10) * BUCKET_MS  # only after the flapping stopped


def test_pending_period_needs_the_condition_to_hold() -> None:
    pending = wl_rules(AlertRule("volume_spike", severity="critical", pending_s=20))
    one_bucket = steady(B) + _spike_events(30) + steady(5, start_bucket=B + 1, prefix="after")
    assert run(one_bucket, rules=pending)[0] == []  # a 10 s burst is not 20 s of spike
    sustained = steady(B) + [e for j in range(4) for e in _spike_events(30, bucket=B + j, prefix=f"s{j}")]
    decisions, _ = run(sustained, rules=pending)
    assert [d.status for _, d in decisions] == ["firing"]
    d = decisions[0][1]
    assert d.starts_at_ms == T0 + B * BUCKET_MS  # the episode started when the condition first held
    assert (T0 + (B + 2) * BUCKET_MS) <= sustained[decisions[0][0]][0]  # fired only after 20 s of it


def test_cooldown_blocks_an_immediate_second_alert() -> None:
    cooling = wl_rules(AlertRule("volume_spike", severity="critical", cooldown_s=200))
    events, _ = _spike_then_normal()
    events += _spike_events(60, bucket=B + 12, prefix="soon")  # within 200 s of the resolution
    events += steady(30, start_bucket=B + 13, prefix="calm") + _spike_events(90, bucket=B + 60, prefix="later")
    decisions, _ = run(events, rules=cooling, cfg=replace(CFG, peak_half_life_s=0))
    assert [d.status for _, d in decisions] == ["firing", "resolved", "firing"]
    assert decisions[-1][1].starts_at_ms == T0 + (B + 60) * BUCKET_MS


def test_hour_of_week_seasonality() -> None:
    """Every Monday 09:00-10:00 volume jumps tenfold (a weekly show): alerts in the first two
    weeks, none once two weeks of that hour are known; an unusual burst at another hour still alerts."""
    cfg = replace(CFG, bucket_s=300, peak_half_life_s=0)
    rules = wl_rules(cooldown_s=0)
    monday = 1_741_564_800  # 2025-03-10T00:00:00Z, a Monday
    state, fired = new_state(), []
    for week in range(4):
        for b in range(7 * 288):
            t = monday + week * 7 * 86400 + b * 300
            hour = (b * 300 // 3600) % 24
            count = 60 if (b < 288 and hour == 9) else 6
            if week == 3 and b == 3 * 288 + 15 * 12:  # Thursday 15:00 of week 4
                count = 80
            fired += [(week, t) for d in observe_counts(state, rules, t // 300, count, cfg) if d.status == "firing"]
    weeks = [w for w, _ in fired]
    assert weeks.count(0) == 1 and weeks.count(1) == 1, fired  # Monday 09:00 in weeks 1 and 2
    assert weeks.count(2) == 0  # learnt
    assert [w for w in weeks if w == 3] == [3]  # week 4: only the Thursday burst
    assert state["season"]["weeks"][(monday // 3600 + 9) % 168] >= 2


def test_watchlists_are_independent() -> None:
    events = steady(B) + _spike_events(20)
    a = run(events, rules=wl_rules(wid="acme-air"))[0][0][1]
    b = run(events, rules=wl_rules(wid="globex"))[0][0][1]
    assert a.fingerprint != b.fingerprint and b.labels["watchlist"] == "globex"


def test_watchlist_labels_are_copied_onto_alerts() -> None:
    rules = wl_rules(labels={"region": "emea", "rule": "not-this"})
    d = run(steady(B) + _spike_events(20), rules=rules)[0][0][1]
    assert d.labels == {"region": "emea", "watchlist": WID, "rule": "volume_spike", "severity": "critical"}


def test_same_input_gives_the_same_decisions_and_state() -> None:
    events, _ = _spike_then_normal()
    events += _poisson_events(random.Random(7), 600, 0.2, T0 + (B + 10) * BUCKET_MS)
    first, state1 = run(events)
    second, state2 = run(events)
    assert first == second and state1 == state2
    assert [d.status for _, d in first] == ["firing", "resolved"]


def test_state_survives_a_json_round_trip() -> None:
    """The state lives in a changelogged table: restoring it from JSON changes no decision."""
    events, first_of_b5 = _spike_then_normal()
    cut = first_of_b5 - 3  # while firing
    straight, _ = run(events)
    head, state = run(events[:cut])
    restored = json.loads(json.dumps(state))
    assert restored == state
    tail, _ = run(events[cut:], state=restored)
    assert head + [(i + cut, d) for i, d in tail] == straight


def test_observe_mutates_only_the_given_state() -> None:
    _, state = run(steady(20))
    snapshot, other = copy.deepcopy(state), copy.deepcopy(state)
    observe(other, VOLUME, Mention("x", T0 + 20 * BUCKET_MS, T0 + 20 * BUCKET_MS), CFG)
    assert state == snapshot and other != snapshot


def test_late_events_too_old_are_ignored_and_within_the_window_counted() -> None:
    _, state = run(steady(B))
    latest = state["latest"]
    snapshot = copy.deepcopy(state)
    too_old = (latest - CFG.baseline_buckets - 1) * BUCKET_MS + 5
    assert observe(state, VOLUME, Mention("too-old", too_old, too_old + 100), CFG, wall_ms=too_old + 100) == []
    assert {k: v for k, v in state.items() if k != "clock"} == {k: v for k, v in snapshot.items() if k != "clock"}
    oldest = latest - CFG.baseline_buckets
    before = state["counts"].get(str(oldest), 0)
    observe(state, VOLUME, Mention("late", oldest * BUCKET_MS + 5, oldest * BUCKET_MS + 9), CFG)
    assert state["counts"][str(oldest)] == before + 1 and state["latest"] == latest


def test_an_older_state_layout_is_upgraded_keeping_its_counts() -> None:
    old = {"counts": {"5": 3}, "recv": {"5": 1}, "samples": {"5": ["a"]}, "latest": 5, "first": 1, "firing": None,
           "last_spike": None, "quiet_until": None}
    state = upgrade_state(old)
    assert state["counts"] == {"5": 3} and state["latest"] == 5 and state["episodes"] == {}
    assert upgrade_state(None) == new_state()


def test_a_version_2_state_is_upgraded_without_losing_its_episodes() -> None:
    """Layout 2 ("v": 2, peakw and drop_at only once used) is what a running service holds before an upgrade."""
    b = CFG.warmup_buckets
    events = steady(b) + [(T0 + b * BUCKET_MS + k * 100, T0 + b * BUCKET_MS + k * 100 + 500, f"x{k}") for k in range(40)]
    decisions, state = run(events)
    fired = [d for _, d in decisions]
    assert [d.status for d in fired] == ["firing"]
    stored = json.loads(json.dumps(state))  # as the changelog holds it
    stored["v"] = 2
    for key in ("version", "drop_at", "peaks", "rate", "riskrate", "qsrc", "fast", "fastwhole"):  # what layouts 2 to 4 lacked
        del stored[key]
    upgraded = upgrade_state(stored)
    assert upgraded is stored and upgraded["version"] == STATE_VERSION and "v" not in upgraded
    assert upgraded["drop_at"] is None and upgraded["peaks"] == {} and upgraded["rate"] is None and upgraded["fast"] == {} and upgraded["fastwhole"] == 1.0
    assert upgraded["episodes"] == state["episodes"] and upgraded["counts"] == state["counts"]
    resolved = tick(upgraded, VOLUME, CFG, T0 + 3600_000)
    assert [d.status for d in resolved] == ["resolved"] and resolved[0].alert_id == fired[0].alert_id
    assert upgrade_state(upgraded) is upgraded


def test_a_viral_burst_does_not_hang_the_detector() -> None:
    code = (
        "from earful.alerting.detection import DetectorConfig, Mention, new_state, observe\n"
        "from earful.alerting.detection.rules import RuleDefaults, rules_for\n"
        "from earful.core.settings import Settings\n"
        "from earful.watchlists import Watchlist\n"
        "r = rules_for(Watchlist('w', 'w', 'brand', ('w',)), RuleDefaults.from_settings(Settings()))\n"
        "cfg, s, n = DetectorConfig(), new_state(), 0\n"
        "for b in range(100):\n"
        "    for k in range(2):\n"
        "        t = b * 10000 + k * 3000\n"
        "        n += len(observe(s, r, Mention(f'm{b}-{k}', t, t), cfg))\n"
        "for k in range(300):\n"
        "    t = 100 * 10000 + k * 10\n"
        "    n += len(observe(s, r, Mention(f'burst-{k}', t, t), cfg))\n"
        "print(n)\n"
    )
    assert _returns_within(code).strip() == "1"


# --- lateness: mentions out of event-time order ---------------------------------------------------

LATE = DetectorConfig()  # production defaults: lateness on
LB = 20


def _bucket(b: int, n: int, prefix: str) -> list[Event]:
    return [(T0 + b * BUCKET_MS + (k + 1) * BUCKET_MS // (n + 1),) * 2 + (f"{prefix}-{b}-{k}",) for k in range(n)]  # type: ignore[misc]


def _statuses(events: list[Event], cfg: DetectorConfig = LATE, rules: WatchlistRules = VOLUME) -> list[str]:
    return [d.status for _, d in run(events, rules=rules, cfg=cfg)[0]]


def _baseline(buckets: int = LB) -> list[Event]:
    return [e for b in range(buckets) for e in _bucket(b, 2, "base")]


def test_a_crisis_delivered_out_of_order_is_one_alert() -> None:
    events = _baseline() + _bucket(LB, 20, "crisis") + _bucket(LB + 6, 2, "early")
    for b in range(LB + 1, LB + 6):  # their mentions arrive late
        events += _bucket(b, 20, "late")
    events += _bucket(LB + 7, 80, "crisis")
    for b in range(LB + 8, LB + 60):
        events += _bucket(b, 2, "after")
    assert _statuses(events) == ["firing", "resolved"]


def test_a_spike_in_a_late_bucket_still_fires_but_not_beyond_the_window() -> None:
    assert _statuses(_baseline() + _bucket(LB + 5, 2, "ahead") + _bucket(LB + 1, 15, "late")) == ["firing"]
    assert _statuses(_baseline() + _bucket(LB + 40, 2, "ahead") + _bucket(LB + 1, 15, "too-late")) == []


def test_resolution_waits_for_the_window_to_settle() -> None:
    events = _baseline() + _bucket(LB, 20, "crisis")
    quiet = [e for b in range(LB + 1, LB + 34) for e in _bucket(b, 2, "quiet")]
    assert _statuses(events + quiet) == ["firing"]
    more = [e for b in range(LB + 34, LB + 36) for e in _bucket(b, 2, "more")]
    assert _statuses(events + quiet + more) == ["firing", "resolved"]


# --- negative surge --------------------------------------------------------------------------------

NEG = wl_rules(AlertRule("negative_surge"))


def _mentions(n: int, start_ms: int, spacing_ms: int, negative_every: int, prefix: str, **kw: Any) -> list[Mention]:
    return [Mention(f"{prefix}-{i}", start_ms + i * spacing_ms, start_ms + i * spacing_ms + 500,
                    negative=(negative_every > 0 and i % negative_every == 0), **kw) for i in range(n)]


def _feed(mentions: list[Mention], rules: WatchlistRules, cfg: DetectorConfig = CFG,
          state: DetectorState | None = None) -> list[Decision]:
    state = new_state() if state is None else state
    out: list[Decision] = []
    for m in mentions:
        out += observe(state, rules, m, cfg, wall_ms=m.received_ms)
    return out


def test_negative_surge_fires_on_a_share_far_above_the_usual() -> None:
    history = _mentions(300, T0, 12_000, 5, "h")  # one an hour... every 12 s for an hour, 20 % negative
    start = T0 + 300 * 12_000
    surge = _mentions(30, start, 1500, 1, "neg")[:3] + _mentions(27, start + 4500, 1500, 1, "neg2")  # all negative
    decisions = _feed(history + surge, NEG)
    assert [(d.rule, d.status) for d in decisions] == [("negative_surge", "firing")]
    d = decisions[0]
    assert d.observed >= 0.6 and d.baseline < 0.35 and d.labels["severity"] == "warning"
    calm = _mentions(30, start, 1500, 5, "calm")  # the same volume at the usual share
    assert _feed(history + calm, NEG) == []
    few = _mentions(10, start, 1500, 1, "few")  # negative, but fewer than min_count in the window
    assert _feed(history + few, NEG) == []


# --- risk mentions -----------------------------------------------------------------------------------

RISK = wl_rules(AlertRule("risk_mention", thresholds={"min_history_s": 0}))  # news judged from the first mention


def test_risk_mention_by_a_large_account_fires_and_resolves_when_quiet() -> None:
    base = _mentions(20, T0, 10_000, 0, "b")
    big = Mention("leak", T0 + 300_000, T0 + 300_500, source="twitter", source_id="1", followers=84_213,
                  risks=("legal_privacy", "operational"))
    small = replace(big, mention_id="small", followers=120)
    ops = replace(big, mention_id="ops", risks=("operational",))
    assert _feed([*base, small, ops], RISK) == []
    state = new_state()
    decisions = _feed([*base, big], RISK, state=state)
    assert [(d.status, d.labels.get("risk")) for d in decisions] == [("firing", "legal_privacy")]
    assert decisions[0].sample_mention_ids[-1] == "leak" and "84,213" in decisions[0].summary
    quiet_s = DEFAULTS.thresholds["risk_mention"]["quiet_s"]
    assert tick(state, RISK, CFG, big.received_ms + int(quiet_s * 1000) - 5000) == []
    resolved = tick(state, RISK, CFG, big.received_ms + int(quiet_s * 1000) + 1000)
    assert [d.status for d in resolved] == ["resolved"] and resolved[0].alert_id == decisions[0].alert_id


# --- viral posts -----------------------------------------------------------------------------------

VIRAL = wl_rules(AlertRule("viral_post"))


def test_viral_post_from_successive_engagement_observations() -> None:
    post = {"source": "twitter", "source_id": "42", "author_handle": "kat", "followers": 80_000}
    created = T0 + 60_000
    first = Mention("p", created, created + 1000, engagement=50, observed_ms=created + 60_000, **post)
    second = replace(first, engagement=400, observed_ms=created + 300_000, received_ms=created + 300_500)
    state = new_state()
    assert _feed([first], VIRAL, state=state) == []  # 50 in a minute: not yet
    decisions = _feed([second], VIRAL, state=state)
    assert [(d.status, d.labels["post"]) for d in decisions] == [("firing", "twitter:42")]
    assert decisions[0].observed == 400 and "@kat" in decisions[0].summary
    # It stops spreading: once the window holds no growth, the timer resolves it.
    assert [d.status for d in tick(state, VIRAL, CFG, second.received_ms + 700_000)] == ["resolved"]


def test_viral_post_from_reshares_seen_in_the_stream() -> None:
    reposts = [Mention(f"r{i}", T0 + i * 2000, T0 + i * 2000 + 300, source="bluesky", source_id=f"rp{i}",
                       reposted_from="root") for i in range(250)]
    decisions = _feed(reposts, VIRAL)
    assert [(d.status, d.labels["post"], d.observed) for d in decisions] == [("firing", "bluesky:root", 200.0)]
    slow = [replace(m, created_ms=T0 + i * 10_000, received_ms=T0 + i * 10_000) for i, m in enumerate(reposts)]
    assert _feed(slow, VIRAL) == []  # 250 over 40 minutes is not fast


def test_engagement_without_an_observation_time_is_no_velocity() -> None:
    born_big = Mention("p", T0, T0 + 500, source="twitter", source_id="7", engagement=5000)  # observed_at unknown
    assert _feed([born_big], VIRAL) == []


# --- unanswered questions ----------------------------------------------------------------------------

SLA_S = 1800
QUESTIONS = wl_rules(AlertRule("unanswered_question"), handles=("AcmeAirHelp",), sla=SLA_S)


def _question(i: int, at: int) -> Mention:
    return Mention(f"q{i}", at, at + 500, source="twitter", source_id=f"q{i}", author_handle=f"cust{i}",
                   risks=("customer_question",))


def _reply(to: str, at: int) -> Mention:
    return Mention(f"re-{to}", at, at + 500, source="twitter", source_id=f"re-{to}", author_handle="acmeairhelp",
                   in_reply_to=to, matched=False)


def test_a_question_without_a_reply_within_the_sla_alerts_and_a_reply_resolves() -> None:
    state = new_state()
    assert _feed([_question(1, T0)], QUESTIONS, state=state) == []
    assert tick(state, QUESTIONS, CFG, T0 + 500 + SLA_S * 1000 - 10_000) == []
    fired = tick(state, QUESTIONS, CFG, T0 + 500 + SLA_S * 1000 + 1000)
    assert [(d.rule, d.status) for d in fired] == [("unanswered_question", "firing")]
    assert fired[0].sample_mention_ids == ["q1"] and fired[0].starts_at_ms == T0 + SLA_S * 1000
    resolved = _feed([_reply("q1", T0 + SLA_S * 1000 + 60_000)], QUESTIONS, state=state)
    assert [d.status for d in resolved] == ["resolved"]


def test_a_question_answered_in_time_never_alerts() -> None:
    state = new_state()
    _feed([_question(1, T0), _reply("q1", T0 + 600_000)], QUESTIONS, state=state)
    assert tick(state, QUESTIONS, CFG, T0 + 3 * SLA_S * 1000) == []


def test_no_sla_means_no_question_alerts() -> None:
    rules = wl_rules(AlertRule("unanswered_question"), handles=("AcmeAirHelp",), sla=None)
    state = new_state()
    _feed([_question(1, T0)], rules, state=state)
    assert tick(state, rules, CFG, T0 + 10 * 86_400_000) == [] and state["questions"] == {}


def test_a_rule_removed_while_firing_is_resolved() -> None:
    events = steady(B) + _spike_events(20)
    decisions, state = run(events)
    assert [d.status for _, d in decisions] == ["firing"]
    no_volume = wl_rules(AlertRule("negative_surge"))
    gone = tick(state, no_volume, CFG, events[-1][1] + 1000)
    assert [(d.rule, d.status) for d in gone] == [("volume_spike", "resolved")]


# --- volume drop -------------------------------------------------------------------------------

DROP = wl_rules(AlertRule("volume_drop", cooldown_s=0))


def _silence(state: DetectorState, last_wall: int, buckets: int, rules: WatchlistRules = DROP) -> list[tuple[int, Decision]]:
    """Let `buckets` buckets of wall time pass with no mention, a timer tick per bucket."""
    out = []
    for b in range(1, buckets + 1):
        out += [(b, d) for d in tick(state, rules, CFG, last_wall + b * BUCKET_MS)]
    return out


def test_volume_drop_fires_when_mentions_stop_and_resolves_when_they_return() -> None:
    """3 mentions a bucket (90 in the 5-minute window), then nothing: the timer alone notices."""
    events = steady(90, per_bucket=3)
    decisions, state = run(events, rules=DROP)
    assert decisions == []  # a steady stream is not a drop
    fired = _silence(state, events[-1][1], 40)
    assert [d.status for _, d in fired] == ["firing"]
    after, d = fired[0]
    assert d.rule == "volume_drop" and d.labels["severity"] == "warning" and d.baseline == 90.0
    assert d.observed <= 0.25 * 90 and d.score > 6  # so few of 90 is far beyond chance
    assert 20 <= after <= 26  # about three quarters of the window silent
    assert _silence(state, events[-1][1], 60) == []  # still down: no repeat, no flap
    back = steady(40, per_bucket=3, start_bucket=90 + 60, prefix="back")
    resolved, _ = run(back, state=state, rules=DROP)
    assert [d.status for _, d in resolved] == ["resolved"]
    assert resolved[0][1].fingerprint == d.fingerprint and resolved[0][1].baseline == 90.0


def test_volume_drop_ignores_a_watchlist_whose_silence_is_normal() -> None:
    """Half a mention a bucket is 15 in the window, below min_expected (30): silence is no news."""
    events = steady(90, per_bucket=1)[::2]
    _, state = run(events, rules=DROP)
    assert _silence(state, events[-1][1], 90) == []


def test_volume_drop_ignores_a_gradual_decline() -> None:
    """Volume halving over the hour (a quiet evening) is not a drop; a sudden stop would be."""
    events: list[Event] = []
    for b in range(360):
        per_bucket = round(6 * 0.5 ** (b / 360))
        events += steady(1, per_bucket=per_bucket, start_bucket=b, prefix=f"d{b}")
    decisions, _ = run(events, rules=DROP)
    assert decisions == []


def test_volume_drop_thresholds_come_from_the_watchlist() -> None:
    """A watchlist may ask for a shorter window: the outage is noticed sooner."""
    short = wl_rules(AlertRule("volume_drop", cooldown_s=0, thresholds={"window_s": 60}))
    events = steady(90, per_bucket=5)
    _, state = run(events, rules=short)
    fired = _silence(state, events[-1][1], 40, rules=short)
    assert [d.status for _, d in fired] == ["firing"] and fired[0][0] <= 7


def test_a_drop_that_late_mentions_fill_in_is_withdrawn_without_hiding_a_real_one() -> None:
    """A consumer catching up reads one partition ahead of another: the window looks empty, the
    drop fires, then the other partition's mentions fill it. That drop was never real: it resolves
    without a cool-down, so the real outage minutes later still fires (it was hidden before)."""
    rules = wl_rules(AlertRule("volume_drop", thresholds={"window_s": 60}))  # the default cool-down
    cfg = DetectorConfig(lateness_buckets=30)
    ahead = [e for b in range(90, 100) for e in steady(1, per_bucket=1, start_bucket=b, prefix=f"a{b}")]
    behind = [e for b in range(90, 100) for e in steady(1, per_bucket=4, start_bucket=b, prefix=f"b{b}")]
    more = steady(10, per_bucket=5, start_bucket=100, prefix="more")
    decisions, state = run(steady(90, per_bucket=5) + ahead + behind + more, rules=rules, cfg=cfg)
    statuses = [d.status for _, d in decisions]
    assert statuses == ["firing", "resolved"], statuses
    assert "late mentions filled the window" in decisions[1][1].summary
    silent = [d for b in range(1, 40) for d in tick(state, rules, cfg, more[-1][1] + b * BUCKET_MS)]
    assert [d.status for d in silent] == ["firing"]  # the real outage is told


def test_volume_drop_is_judged_in_backtests_of_counted_series() -> None:
    state, out = new_state(), []
    for idx in range(200):
        out += observe_counts(state, DROP, idx, 0 if 120 <= idx < 170 else 4, CFG)
    assert [d.status for d in out] == ["firing", "resolved"]
    assert 120 * BUCKET_MS < out[0].starts_at_ms + 30 * BUCKET_MS <= 150 * BUCKET_MS


def test_a_volume_drop_window_longer_than_the_kept_history_is_refused() -> None:
    from earful.core.errors import ConfigError
    from earful.core.settings import load_settings

    with pytest.raises(ConfigError, match="EARFUL_ALERT_DROP_WINDOW_S=3600"):
        load_settings(alert_drop_window_s=3600)


def test_a_watchlist_volume_drop_window_longer_than_the_kept_history_is_shortened() -> None:
    """A threshold the settings check cannot see: shortened to the history kept, so the rule still works."""
    long = wl_rules(AlertRule("volume_drop", cooldown_s=0, thresholds={"window_s": 3600}))
    events = steady(120, per_bucket=3)
    _, state = run(events, rules=long)
    fired = _silence(state, events[-1][1], 120, rules=long)
    assert [d.status for _, d in fired] == ["firing"]
    start, end = fired[0][1].window
    assert (end - start) // BUCKET_MS == CFG.baseline_buckets + CFG.lateness_buckets - CFG.warmup_buckets

"""The volume-spike detector: Poisson tails, fingerprints and whole event-time scenarios."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import subprocess
import sys
from fractions import Fraction
from typing import Any

from pathlib import Path

import pytest

from earful.alerting.detector import (
    MAX_SAMPLES,
    RULE,
    Decision,
    DetectorConfig,
    fingerprint,
    new_state,
    observe,
    poisson_tail,
)

SERVICES = Path(__file__).resolve().parents[2] / "services"
CFG = DetectorConfig(lateness_buckets=0, cooldown_buckets=0)  # in-order scenarios; lateness tested apart
BUCKET_MS = CFG.bucket_s * 1000
T0 = 1_741_939_200_000  # 2025-03-14T08:00:00Z, a bucket boundary
WID = "acme-air"

Event = tuple[int, int, str]  # (created_at_ms, received_at_ms, mention_id)


def run(events: list[Event], state: dict[str, Any] | None = None, cfg: DetectorConfig = CFG,
        wid: str = WID) -> tuple[list[tuple[int, Decision]], dict[str, Any]]:
    """Feed events in order; return (index of the causing event, decision) pairs and the state."""
    state = new_state() if state is None else state
    out = []
    for i, (created, received, mid) in enumerate(events):
        for d in observe(state, wid, created, received, mid, cfg):
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
        term = term * m / k  # mean^count / count!
    total, k = Fraction(0), count
    while True:
        total += term
        k += 1
        term = term * m / k
        if k > mean + 50 and term < total * Fraction(1, 10**18):
            break
    return float(total * Fraction(math.exp(-mean)))


# --- poisson_tail -----------------------------------------------------------------------------


@pytest.mark.parametrize("mean", [0.1, 0.5, 1.0, 2.0, 4.5, 10.0, 25.0])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 20, 30])
def test_poisson_tail_equals_one_minus_cdf(count: int, mean: float) -> None:
    direct = 1.0 - math.fsum(math.exp(-mean) * mean**k / math.factorial(k) for k in range(count))
    expected = exact_tail(count, mean)
    if direct > 1e-6:  # where the direct form has not lost its digits to cancellation
        assert poisson_tail(count, mean) == pytest.approx(direct, rel=1e-9)
    assert poisson_tail(count, mean) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "count,mean,expected",
    [
        (1, 1.0, 1 - math.exp(-1)),
        (1, 2.0, 1 - math.exp(-2)),
        (2, 1.0, 1 - 2 * math.exp(-1)),
        (13, 2.0, 2.0734696e-07),
        (10, 2.0, 4.649808e-05),
        (50, 1.0, 1.2337509e-65),
    ],
)
def test_poisson_tail_known_values(count: int, mean: float, expected: float) -> None:
    assert poisson_tail(count, mean) == pytest.approx(expected, rel=1e-4)


def test_poisson_tail_edges() -> None:
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(-1, 3.0) == 1.0
    assert poisson_tail(1, 0.0) == 0.0
    assert poisson_tail(0, 0.0) == 1.0
    assert 0.0 < poisson_tail(150, 2.0) < 1e-200


def _returns_within(code: str, timeout_s: float = 2.0) -> str:
    """Run `code` in a fresh interpreter (an endless loop must not hang the test run)."""
    env = {**os.environ, "PYTHONPATH": str(SERVICES) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not return within {timeout_s} s: {code}")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_timeout_helper_works() -> None:
    assert _returns_within("from earful.alerting.detector import poisson_tail; print(poisson_tail(13, 2.0))").strip()
    with pytest.raises(pytest.fail.Exception, match="did not return"):
        _returns_within("while True: pass", timeout_s=0.5)


def test_poisson_tail_terminates_for_huge_counts() -> None:
    out = _returns_within("from earful.alerting.detector import poisson_tail; print(poisson_tail(250, 2.0))")
    assert float(out) < 1e-300


def test_a_viral_burst_does_not_hang_the_detector() -> None:
    code = (
        "from earful.alerting.detector import DetectorConfig, new_state, observe\n"
        "cfg, s, n = DetectorConfig(), new_state(), 0\n"
        "for b in range(100):\n"
        "    for k in range(2):\n"
        "        t = b * 10000 + k * 3000\n"
        "        n += len(observe(s, 'w', t, t, f'm{b}-{k}', cfg))\n"
        "for k in range(300):\n"
        "    t = 100 * 10000 + k * 10\n"
        "    n += len(observe(s, 'w', t, t, f'burst-{k}', cfg))\n"
        "print(n)\n"
    )
    assert _returns_within(code).strip() == "1"


def test_poisson_tail_is_monotonic() -> None:
    for mean in (0.05, 1.0, 2.0, 7.5, 30.0):
        tails = [poisson_tail(c, mean) for c in range(0, 80)]
        assert all(a >= b for a, b in zip(tails, tails[1:])), mean
        assert all(0.0 <= t <= 1.0 for t in tails)
    for count in (1, 5, 12, 40):
        by_mean = [poisson_tail(count, m / 4) for m in range(1, 120)]
        # (the series stops at a relative 1e-12, so allow that much wobble near 1)
        assert all(a <= b * (1 + 1e-11) for a, b in zip(by_mean, by_mean[1:])), count
        assert by_mean[0] < by_mean[-1]


# --- fingerprint ------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_order_independent() -> None:
    labels = {"watchlist": "acme-air", "rule": "volume_spike", "severity": "critical"}
    reordered = dict(reversed(list(labels.items())))
    assert list(reordered) != list(labels)
    assert fingerprint(labels) == fingerprint(dict(labels)) == fingerprint(reordered)
    assert len(fingerprint(labels)) == 16 and int(fingerprint(labels), 16) >= 0


@pytest.mark.parametrize(
    "other",
    [
        {"watchlist": "globex", "rule": "volume_spike", "severity": "critical"},
        {"watchlist": "acme-air", "rule": "volume_spike", "severity": "warning"},
        {"watchlist": "acme-air", "rule": "volume_spike"},
        {"watchlist": "acme-air", "rule": "volume_spike", "severity": "critical", "team": "ops"},
    ],
)
def test_fingerprint_differs_for_different_labels(other: dict[str, str]) -> None:
    assert fingerprint(other) != fingerprint({"watchlist": "acme-air", "rule": "volume_spike", "severity": "critical"})


# --- scenarios --------------------------------------------------------------------------------


def test_no_alert_during_warm_up() -> None:
    # A huge burst in the first buckets: no history to judge it against yet.
    events = []
    for b in range(CFG.warmup_buckets):
        for k in range(60):
            created = T0 + b * BUCKET_MS + k * 100
            events.append((created, created + 500, f"w-{b}-{k}"))
    decisions, state = run(events)
    assert decisions == []
    assert state["firing"] is None


def test_a_spike_right_after_warm_up_fires() -> None:
    # Same as above, but once warm-up is over the detector may judge.
    events = steady(CFG.warmup_buckets)
    spike_bucket = CFG.warmup_buckets
    events += [(T0 + spike_bucket * BUCKET_MS + k * 100, T0 + spike_bucket * BUCKET_MS + k * 100 + 500, f"x{k}")
               for k in range(40)]
    decisions, _ = run(events)
    assert [d.status for _, d in decisions] == ["firing"]


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
    events = _poisson_events(random.Random(seed), seconds=2 * 3600, rate_per_s=0.2, start_ms=T0)  # λ≈2 per bucket
    assert 1300 < len(events) < 1600  # 720 buckets × 2
    decisions, state = run(events)
    assert decisions == []
    assert state["firing"] is None
    # Memory stays bounded: only the baseline window is kept.
    assert len(state["counts"]) <= CFG.baseline_buckets + 2


# A steady baseline of exactly 2 per bucket (median = mean = 2): with min_ratio 3 and
# max_p_value 1e-6 the first qualifying count is 13 (P(X>=12 | 2) = 1.4e-6, P(X>=13 | 2) = 2.1e-7).
SPIKE_AT = 13
B = 100  # the spike bucket


def _spike_events(n: int, bucket: int = B, prefix: str = "spike") -> list[Event]:
    start = T0 + bucket * BUCKET_MS
    events = []
    for k in range(n):
        created = start + 200 + k * 150
        # The second mention reached ingest first: first_received_at is the minimum, not the first.
        received = created + (100 if k == 1 else 2000)
        events.append((created, received, f"{prefix}-{k}"))
    return events


def test_threshold_constant_is_right() -> None:
    assert exact_tail(SPIKE_AT - 1, 2.0) > CFG.max_p_value >= exact_tail(SPIKE_AT, 2.0)
    assert SPIKE_AT >= CFG.min_count and SPIKE_AT >= CFG.min_ratio * 2


def test_spike_fires_on_the_event_that_crosses_the_threshold() -> None:
    history = steady(B)
    spike = _spike_events(30)
    decisions, state = run(history + spike)
    assert len(decisions) == 1
    index, d = decisions[0]
    assert index == len(history) + SPIKE_AT - 1  # the 13th mention of the bucket, not the bucket's end
    assert spike[SPIKE_AT - 1][0] < T0 + (B + 1) * BUCKET_MS

    labels = {"watchlist": WID, "rule": RULE, "severity": CFG.severity}
    starts = T0 + B * BUCKET_MS
    assert d.status == "firing"
    assert d.watchlist_id == WID
    assert d.labels == labels
    assert d.fingerprint == fingerprint(labels)
    assert d.alert_id == f"{d.fingerprint}-{starts}"
    assert d.starts_at_ms == starts
    assert d.ends_at_ms is None
    assert d.observed == float(SPIKE_AT)
    assert d.baseline == 2.0
    assert d.score == pytest.approx(-math.log10(exact_tail(SPIKE_AT, 2.0)), rel=1e-6)
    assert d.first_received_at_ms == spike[1][1]
    assert d.sample_mention_ids == [f"spike-{k}" for k in range(MAX_SAMPLES)]
    assert WID in d.summary and str(SPIKE_AT) in d.summary
    assert state["firing"]["alert_id"] == d.alert_id


def test_one_below_the_threshold_does_not_fire() -> None:
    decisions, state = run(steady(B) + _spike_events(SPIKE_AT - 1))
    assert decisions == []
    assert state["firing"] is None


def test_min_ratio_and_min_count_apply() -> None:
    # Baseline 6 per bucket: the ratio is met from 18, the p-value only from 22 (P(X>=21 | 6) = 1.5e-6).
    history = steady(B, per_bucket=6)
    decisions, _ = run(history + _spike_events(21))
    assert decisions == []
    decisions, _ = run(history + _spike_events(30))
    assert [d.observed for _, d in decisions] == [22.0]
    # A tiny baseline: 10 mentions are needed however unlikely 3 are.
    sparse = [(T0 + b * BUCKET_MS, T0 + b * BUCKET_MS, f"s{b}") for b in range(0, B, 20)]
    decisions, _ = run(sparse + _spike_events(9))
    assert decisions == []


def _spike_then_normal() -> tuple[list[Event], int]:
    """Spike in B and B+1, then normal traffic from B+2 on. Returns (events, index of first B+5 event)."""
    events = steady(B) + _spike_events(43) + _spike_events(40, bucket=B + 1, prefix="spike2")
    events += steady(3, start_bucket=B + 2, prefix="after")
    first_of_b5 = len(events)
    events += steady(5, start_bucket=B + 5, prefix="later")
    return events, first_of_b5


def test_no_second_firing_while_firing() -> None:
    events, first_of_b5 = _spike_then_normal()
    decisions, _ = run(events[:first_of_b5])
    assert [d.status for _, d in decisions] == ["firing"]


def test_resolves_after_resolve_buckets_normal_buckets() -> None:
    events, first_of_b5 = _spike_then_normal()
    decisions, state = run(events)
    assert [(i, d.status) for i, d in decisions] == [
        (decisions[0][0], "firing"),
        (first_of_b5, "resolved"),  # B+2, B+3, B+4 normal; B+4 closes when the first B+5 mention arrives
    ]
    fired, resolved = decisions[0][1], decisions[1][1]
    assert resolved.alert_id == fired.alert_id
    assert resolved.fingerprint == fired.fingerprint
    assert resolved.starts_at_ms == fired.starts_at_ms == T0 + B * BUCKET_MS
    assert resolved.ends_at_ms == T0 + (B + 2 + CFG.resolve_buckets) * BUCKET_MS
    assert resolved.observed == 2.0
    assert resolved.sample_mention_ids == [] and resolved.first_received_at_ms is None
    assert state["firing"] is None


def test_resolution_follows_resolve_buckets_setting() -> None:
    cfg = DetectorConfig(resolve_buckets=1, lateness_buckets=0, cooldown_buckets=0)
    events, _ = _spike_then_normal()
    decisions, _ = run(events, cfg=cfg)
    resolved = [d for _, d in decisions if d.status == "resolved"]
    assert [d.ends_at_ms for d in resolved] == [T0 + (B + 3) * BUCKET_MS]


def test_silence_resolves_when_the_next_mention_arrives() -> None:
    events = steady(B) + _spike_events(20)
    later = T0 + (B + 50) * BUCKET_MS + 10
    decisions, _ = run(events + [(later, later, "late-quiet")])
    assert [d.status for _, d in decisions] == ["firing", "resolved"]
    assert decisions[1][1].ends_at_ms == T0 + (B + 1 + CFG.resolve_buckets) * BUCKET_MS


def test_fires_again_after_resolving_with_a_new_alert_id() -> None:
    events, _ = _spike_then_normal()
    events += steady(20, start_bucket=B + 10, prefix="calm") + _spike_events(60, bucket=B + 30, prefix="again")
    decisions, _ = run(events)
    statuses = [d.status for _, d in decisions]
    assert statuses == ["firing", "resolved", "firing"]
    first, _, second = (d for _, d in decisions)
    assert second.fingerprint == first.fingerprint
    assert second.alert_id != first.alert_id
    assert second.starts_at_ms == T0 + (B + 30) * BUCKET_MS


def test_watchlists_are_independent() -> None:
    events = steady(B) + _spike_events(20)
    decisions_a, _ = run(events, wid="acme-air")
    decisions_b, _ = run(events, wid="globex")
    assert decisions_a[0][1].fingerprint != decisions_b[0][1].fingerprint
    assert decisions_b[0][1].labels["watchlist"] == "globex"


def test_same_input_gives_the_same_decisions() -> None:
    events, _ = _spike_then_normal()
    events += _poisson_events(random.Random(7), 600, 0.2, T0 + (B + 10) * BUCKET_MS)
    first, state1 = run(events)
    second, state2 = run(events)
    assert first == second
    assert state1 == state2
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
    events = steady(20)
    _, state = run(events)
    snapshot = copy.deepcopy(state)
    other = copy.deepcopy(state)
    observe(other, WID, T0 + 20 * BUCKET_MS, T0 + 20 * BUCKET_MS, "x", CFG)
    assert state == snapshot
    assert other != snapshot


def test_late_events_too_old_are_ignored() -> None:
    _, state = run(steady(B))
    latest = state["latest"]
    assert latest == (T0 + (B - 1) * BUCKET_MS) // BUCKET_MS
    snapshot = copy.deepcopy(state)
    too_old = (latest - CFG.baseline_buckets - 1) * BUCKET_MS + 5
    assert observe(state, WID, too_old, too_old + 100, "too-old", CFG) == []
    assert state == snapshot
    way_too_old = (latest - 10 * CFG.baseline_buckets) * BUCKET_MS
    assert observe(state, WID, way_too_old, way_too_old, "ancient", CFG) == []
    assert state == snapshot


def test_late_events_within_the_window_are_counted() -> None:
    _, state = run(steady(B))
    latest = state["latest"]
    oldest_kept = latest - CFG.baseline_buckets
    before = state["counts"].get(str(oldest_kept), 0)
    assert observe(state, WID, oldest_kept * BUCKET_MS + 5, oldest_kept * BUCKET_MS + 9, "late", CFG) == []
    assert state["counts"][str(oldest_kept)] == before + 1
    assert state["latest"] == latest


def test_sparse_series_still_fires() -> None:
    # One mention every 10 minutes for 6 hours, then 12 in one bucket.
    every = 600_000
    events = [(T0 + k * every + 1234, T0 + k * every + 2234, f"sparse-{k}") for k in range(36)]
    burst_bucket = (T0 + 36 * every) // BUCKET_MS + 1
    burst = [(burst_bucket * BUCKET_MS + 100 * k, burst_bucket * BUCKET_MS + 100 * k + 700, f"burst-{k}")
             for k in range(12)]
    decisions, _ = run(events)
    assert decisions == []
    decisions, _ = run(events + burst)
    assert [d.status for _, d in decisions] == ["firing"]
    index, d = decisions[0]
    assert index == len(events) + CFG.min_count - 1  # as soon as min_count is reached
    assert d.starts_at_ms == burst_bucket * BUCKET_MS
    assert d.first_received_at_ms == burst[0][1]

"""Out-of-order mentions: late buckets still alert, a crisis never flaps, resolved alerts cool down."""

from __future__ import annotations

from earful.alerting.detector import DetectorConfig, new_state, observe

CFG = DetectorConfig()  # production defaults: lateness and cooldown on
B_MS = CFG.bucket_s * 1000
T0 = 1_741_939_200_000
B = 20  # first bucket after warm-up


def bucket(b: int, n: int, prefix: str) -> list[tuple[int, str]]:
    return [(T0 + b * B_MS + (k + 1) * B_MS // (n + 1), f"{prefix}-{b}-{k}") for k in range(n)]


def feed(events: list[tuple[int, str]], cfg: DetectorConfig = CFG, state: dict | None = None) -> list[str]:
    state = new_state() if state is None else state
    out = []
    for created, mid in events:
        out += [d.status for d in observe(state, "acme-air", created, created + 500, mid, cfg)]
    return out


def baseline(buckets: int = B) -> list[tuple[int, str]]:
    return [e for b in range(buckets) for e in bucket(b, 2, "base")]


def test_a_crisis_delivered_out_of_order_is_one_alert() -> None:
    events = baseline() + bucket(B, 20, "crisis")
    events += bucket(B + 6, 2, "early")  # one partition runs ahead: buckets B+1..B+5 look empty for now
    for b in range(B + 1, B + 6):  # ... until their mentions arrive late
        events += bucket(b, 20, "late")
    events += bucket(B + 7, 80, "crisis")
    for b in range(B + 8, B + 60):
        events += bucket(b, 2, "after")
    assert feed(events) == ["firing", "resolved"]


def test_the_same_stream_flapped_without_a_lateness_window() -> None:
    """What the lateness window fixes: judged only in order, the same stream fires twice."""
    events = baseline() + bucket(B, 20, "crisis") + bucket(B + 6, 2, "early")
    for b in range(B + 1, B + 6):
        events += bucket(b, 20, "late")
    events += bucket(B + 7, 80, "crisis")
    assert feed(events, DetectorConfig(lateness_buckets=0, cooldown_buckets=0)) == ["firing", "resolved", "firing"]


def test_a_spike_in_a_late_bucket_still_fires() -> None:
    events = baseline() + bucket(B + 5, 2, "ahead") + bucket(B + 1, 15, "late-spike")
    assert feed(events) == ["firing"]


def test_a_spike_older_than_the_lateness_window_is_not_alerted() -> None:
    events = baseline() + bucket(B + 40, 2, "ahead") + bucket(B + 1, 15, "too-late")
    assert feed(events) == []


def test_resolution_waits_for_the_window_to_settle() -> None:
    events = baseline() + bucket(B, 20, "crisis")
    quiet = [e for b in range(B + 1, B + 34) for e in bucket(b, 2, "quiet")]
    assert feed(events + quiet) == ["firing"]  # B+1..B+3 normal, but not settled yet
    more = [e for b in range(B + 34, B + 36) for e in bucket(b, 2, "more")]
    assert feed(events + quiet + more) == ["firing", "resolved"]


def test_cooldown_blocks_an_immediate_second_alert() -> None:
    cfg = DetectorConfig(lateness_buckets=0, cooldown_buckets=10)
    events = baseline() + bucket(B, 20, "first") + [e for b in range(B + 1, B + 6) for e in bucket(b, 2, "calm")]
    events += bucket(B + 8, 25, "soon")  # within the cooldown: no new alert
    events += [e for b in range(B + 9, B + 40) for e in bucket(b, 2, "calm2")]
    events += bucket(B + 40, 30, "later")  # after it: a new alert
    assert feed(events, cfg) == ["firing", "resolved", "firing"]

"""The NAB scorer (bench/nab.py) on hand-computed cases: windows, the scaled sigmoid, probation,
false positives before and after windows, and normalisation (nothing = 0, perfect = 100)."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import nab

T0 = datetime(2015, 3, 1, 0, 0, 0)
TIMES = [T0 + timedelta(minutes=5 * i) for i in range(20)]
WINDOW = [(TIMES[8], TIMES[11])]  # rows 8..11: width 4
STANDARD = nab.STANDARD


def sig(x: float) -> float:  # the formula, written out independently
    return -1.0 if x >= 3 else 2 / (1 + math.exp(5 * x)) - 1


def test_scaled_sigmoid_known_points() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)  # window's left edge
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(3.0) == -1.0 and nab.scaled_sigmoid(50.0) == -1.0


def test_probation_length() -> None:
    assert nab.probation_length(20) == 3  # floor(0.15 × 20)
    assert nab.probation_length(1000) == 150
    assert nab.probation_length(15_902) == 750  # capped at 15 % of 5000 rows


def test_earliest_detection_in_a_window_scores_one() -> None:
    f = nab.score_file("s", TIMES, WINDOW, [8])
    assert f.raw == pytest.approx(1.0) and f.null == -1.0 and (f.windows, f.detected, f.false_positives) == (1, 1, 0)
    assert f.delays_h == [0.0]


def test_a_later_detection_earns_less_and_only_the_best_counts() -> None:
    f = nab.score_file("s", TIMES, WINDOW, [10])
    expected = sig(-(11 - 10 + 1) / 4) / sig(-1)  # position -0.5 → 0.84828 / 0.98661
    assert f.raw == pytest.approx(expected) and expected == pytest.approx(0.85979, abs=1e-5)
    both = nab.score_file("s", TIMES, WINDOW, [10, 8, 11])
    assert both.raw == pytest.approx(1.0) and both.false_positives == 0 and both.delays_h == [0.0]


def test_false_positives_before_and_after_a_window() -> None:
    before = nab.score_file("s", TIMES, WINDOW, [5])  # no window before: a full false positive
    assert before.raw == pytest.approx(-1.0 - 0.11) and before.false_positives == 1
    after = nab.score_file("s", TIMES, WINDOW, [13])  # (13 - 11) / (4 - 1) past the window
    assert after.raw == pytest.approx(-1.0 + 0.11 * sig(2 / 3))
    assert 0.11 * sig(2 / 3) == pytest.approx(-0.10242, abs=1e-5)  # cheaper than a full one
    far = nab.score_file("s", TIMES, WINDOW, [19])  # (19 - 11) / 3 ≥ 3: a full false positive
    assert far.raw == pytest.approx(-1.11)


def test_probation_rows_and_windows_do_not_count() -> None:
    assert nab.score_file("s", TIMES, WINDOW, [1, 2]).raw == -1.0  # detections in probation are ignored
    early = nab.score_file("s", TIMES, [(TIMES[0], TIMES[2])], [1])  # a window wholly inside probation
    assert (early.windows, early.raw, early.null) == (0, 0.0, 0.0)


def test_normalisation() -> None:
    perfect = nab.normalise([nab.score_file("a", TIMES, WINDOW, [8]), nab.score_file("b", TIMES, WINDOW, [8])], 2)
    assert perfect.score == pytest.approx(100.0) and perfect.perfect == 2 and perfect.null == -2
    nothing = nab.normalise([nab.score_file("a", TIMES, WINDOW, []), nab.score_file("b", TIMES, WINDOW, [])], 2)
    assert nothing.score == 0.0
    mixed = nab.normalise([nab.score_file("a", TIMES, WINDOW, [10, 5]), nab.score_file("b", TIMES, WINDOW, [])], 2)
    raw = (0.85979 - 0.11) + (-1.0)  # file a: the window (late) and a false positive; file b: missed
    assert mixed.score == pytest.approx(100 * (raw + 2) / 4, abs=1e-3)
    assert mixed.false_positives == 1 and mixed.detected == 1


def test_scoring_alert_files_against_a_corpus_on_disk(tmp_path: Path) -> None:
    rows = "\n".join(f"{t:%Y-%m-%d %H:%M:%S},{i}" for i, t in enumerate(TIMES))
    (tmp_path / "series.csv").write_text("timestamp,value\n" + rows + "\n")
    (tmp_path / "windows.json").write_text(json.dumps(
        {"realTweets/series.csv": [[f"{TIMES[8]:%Y-%m-%d %H:%M:%S}.000000", f"{TIMES[11]:%Y-%m-%d %H:%M:%S}.000000"]]}))
    (tmp_path / "profiles.json").write_text(json.dumps({"standard": {"CostMatrix": STANDARD}}))
    alerts = {"series.csv": [f"{TIMES[8]:%Y-%m-%d %H:%M:%S}", "2015-03-01 23:59:59"]}  # the second is not a row
    corpus = nab.score_alert_files(tmp_path, alerts, nab.profile(tmp_path))
    assert corpus.score == pytest.approx(100.0) and corpus.windows == 1

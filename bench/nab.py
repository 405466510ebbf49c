"""The Numenta Anomaly Benchmark (NAB) scoring rules, for scoring `earful backtest` output.

Written from NAB's own definition (numenta/NAB `nab/sweeper.py`, `nab/runner.py`):

* Each labelled anomaly has a window (rows `windows.json` names). A detection inside a window is a
  true positive worth ``tpWeight × scaledSigmoid(position) / scaledSigmoid(-1)``, where
  ``position = -(right - i + 1) / width`` runs from -1 (the window's first row) to just below 0
  (its last row) and ``scaledSigmoid(x) = 2 / (1 + e^(5x)) - 1`` (-1.0 from x ≥ 3): earlier is
  better. Only the best (earliest) detection of a window counts; a window without one costs
  ``-fnWeight``.
* A detection outside every window is a false positive worth ``fpWeight × scaledSigmoid(x)``:
  -fpWeight before the first window, and after a window ``x = (i - right) / (width - 1)``, so a
  detection just after a window costs less than one far from any.
* The first ``min(floor(0.15 × rows), 0.15 × 5000)`` rows of each file are a probation period:
  detections there do not count, and neither does a window that lies wholly inside it.
* The corpus score is the sum over files; it is normalised so that detecting nothing scores 0
  and a perfect detector 100: ``100 × (raw - null) / (perfect - null)`` with
  ``perfect = tpWeight × windows``.

A detector here is binary (it alerts or not), so NAB's threshold sweep reduces to one threshold:
every alert row is a detection.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

STANDARD = {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}
PROBATION_PERCENT = 0.15


def parse_time(text: str) -> datetime:
    """NAB timestamps: '2015-03-03 21:07:53' in the CSVs, '... .000000' in the label files."""
    return datetime.fromisoformat(text.strip())


def scaled_sigmoid(position: float) -> float:
    """NAB's scaled sigmoid: 0.987 at the window's left edge, 0 at its right edge, -1 far after."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_length(rows: int, percent: float = PROBATION_PERCENT) -> float:
    return min(math.floor(percent * rows), percent * 5000)


@dataclass(frozen=True)
class Row:
    index: int
    weighted: float  # the score this row earns if it is a detection
    window: int | None  # index of the window it lies in
    probation: bool


@dataclass
class FileScore:
    name: str
    raw: float
    null: float
    windows: int  # windows that count (not wholly in probation)
    detected: int
    false_positives: int
    detections: int
    scored_days: float
    delays_h: list[float] = field(default_factory=list)  # window start → first detection, per detected window


def rows_with_scores(times: Sequence[datetime], windows: Sequence[tuple[datetime, datetime]],
                     cost: dict[str, float] = STANDARD, probation_percent: float = PROBATION_PERCENT) -> list[Row]:
    """Each row's weighted score as a detection (NAB's Sweeper.calcSweepScore)."""
    bounds = []
    for start, end in sorted(windows):
        left = next((i for i, t in enumerate(times) if t >= start), None)
        right = next((i for i in range(len(times) - 1, -1, -1) if times[i] <= end), None)
        if left is not None and right is not None and left <= right:
            bounds.append((left, right))
    max_tp = scaled_sigmoid(-1.0)
    probation = probation_length(len(times), probation_percent)
    rows: list[Row] = []
    current: int | None = None
    prev_right: int | None = None
    prev_width: float | None = None
    for i in range(len(times)):
        if current is None and bounds and len([b for b in bounds if b[0] == i]):
            current = next(w for w, b in enumerate(bounds) if b[0] == i)
        if current is not None:
            left, right = bounds[current]
            width = float(right - left + 1)
            weighted = scaled_sigmoid(-(right - i + 1) / width) * cost["tpWeight"] / max_tp
        else:
            position = 3.0 if prev_right is None else abs(prev_right - i) / float((prev_width or 2.0) - 1)
            weighted = scaled_sigmoid(position) * cost["fpWeight"]
        rows.append(Row(i, weighted, current, i < probation))
        if current is not None and i == bounds[current][1]:
            prev_right, prev_width = i, float(bounds[current][1] - bounds[current][0] + 1)
            current = None
    return rows


def score_file(name: str, times: Sequence[datetime], windows: Sequence[tuple[datetime, datetime]],
               detections: Iterable[int], cost: dict[str, float] = STANDARD,
               probation_percent: float = PROBATION_PERCENT) -> FileScore:
    """Score one file's detections (row indexes) the NAB way (Sweeper.calcScoreByThreshold)."""
    rows = rows_with_scores(times, windows, cost, probation_percent)
    scorable = [r for r in rows if not r.probation]
    parts: dict[object, float] = {"fp": 0.0}
    for r in scorable:
        if r.window is not None:
            parts[r.window] = -cost["fnWeight"]
    counted_windows = len(parts) - 1
    null = sum(parts.values())
    detected_at: dict[int, int] = {}
    fps = detections_n = 0
    for i in sorted(set(detections)):
        if i < 0 or i >= len(rows) or rows[i].probation:
            continue
        detections_n += 1
        r = rows[i]
        if r.window is None:
            parts["fp"] += r.weighted
            fps += 1
        else:
            parts[r.window] = max(parts[r.window], r.weighted)
            detected_at.setdefault(r.window, i)
    window_starts = {}
    for r in rows:
        if r.window is not None and r.window not in window_starts:
            window_starts[r.window] = r.index
    delays = [(times[i] - times[window_starts[w]]).total_seconds() / 3600 for w, i in sorted(detected_at.items())]
    days = (times[-1] - times[scorable[0].index]).total_seconds() / 86400 if scorable else 0.0
    return FileScore(name, sum(parts.values()), null, counted_windows, len(detected_at), fps, detections_n, days, delays)


@dataclass
class CorpusScore:
    score: float  # normalised: 0 = detect nothing, 100 = perfect
    raw: float
    null: float
    perfect: float
    files: list[FileScore]

    @property
    def windows(self) -> int:
        return sum(f.windows for f in self.files)

    @property
    def detected(self) -> int:
        return sum(f.detected for f in self.files)

    @property
    def false_positives(self) -> int:
        return sum(f.false_positives for f in self.files)

    @property
    def false_alarms_per_series_day(self) -> float:
        days = sum(f.scored_days for f in self.files)
        return self.false_positives / days if days else 0.0

    @property
    def delays_h(self) -> list[float]:
        return [d for f in self.files for d in f.delays_h]


def normalise(files: list[FileScore], total_windows: int, cost: dict[str, float] = STANDARD) -> CorpusScore:
    raw = sum(f.raw for f in files)
    null = sum(f.null for f in files)
    perfect = cost["tpWeight"] * total_windows
    score = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    return CorpusScore(score, raw, null, perfect, files)


# --- the corpus on disk (NAB's layout: <name>.csv, windows.json, labels.json, profiles.json) -------


def read_series(path: Path) -> tuple[list[str], list[float]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["timestamp"] for r in rows], [float(r["value"]) for r in rows]


def corpus_windows(directory: Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """File name → its windows, from NAB's windows.json (keys like 'realTweets/<name>.csv')."""
    raw = json.loads((directory / "windows.json").read_text(encoding="utf-8"))
    return {Path(key).name: [(parse_time(a), parse_time(b)) for a, b in value] for key, value in raw.items()}


def profile(directory: Path, name: str = "standard") -> dict[str, float]:
    path = directory / "profiles.json"
    if not path.is_file():
        return dict(STANDARD)
    return dict(json.loads(path.read_text(encoding="utf-8"))[name]["CostMatrix"])


def score_alert_files(directory: Path, alerts_by_file: dict[str, list[str]], cost: dict[str, float]) -> CorpusScore:
    """Score alert timestamps (per CSV file name) against the corpus in `directory`."""
    windows = corpus_windows(directory)
    files = []
    for name in sorted(alerts_by_file):
        stamps, _ = read_series(directory / name)
        times = [parse_time(t) for t in stamps]
        index = {t: i for i, t in enumerate(times)}
        detections = [index[parse_time(a)] for a in alerts_by_file[name] if parse_time(a) in index]
        files.append(score_file(name, times, windows.get(name, []), detections, cost))
    return normalise(files, sum(len(windows.get(n, [])) for n in alerts_by_file), cost)

"""Leave-one-series-out cross-validation of the volume detector's defaults on NAB's realTweets.

For each of the development series, the candidate settings that score best (NAB standard profile)
on the other series are chosen and scored on the one left out; the five held-out alert sets are
scored together. That figure estimates what the defaults score on series they were not chosen on
(the held-out split), unlike the score of the best candidate on all five (which is how the
defaults were chosen: the candidate most often chosen, best on all five).

    .venv/bin/python bench/nab_loo.py [--corpus DIR]

Each candidate runs the service's own detector (`earful.alerting.detection.backtest`) exactly as
`make bench-nab` does, with the `EARFUL_ALERT_*` settings of the grid below and the defaults
otherwise. About 16 × 5 backtests: a minute or two.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import nab as scoring  # bench/nab.py

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services"))

from earful.alerting.detection.backtest import backtest_series, infer_bucket_s, read_series  # noqa: E402
from earful.alerting.detection.model import DetectorConfig  # noqa: E402
from earful.alerting.detection.rules import RuleDefaults, rules_for  # noqa: E402
from earful.core.settings import Settings  # noqa: E402
from earful.watchlists import AlertRule, Watchlist  # noqa: E402

GRID: dict[str, list[Any]] = {
    "alert_min_ratio": [2.5, 3.0],
    "alert_max_p_value": [1e-5, 1e-6],
    "alert_min_z": [6.0, 8.0],
    "alert_peak_half_life_s": [172800, 345600],
}


def alerts(path: Path, overrides: dict[str, Any]) -> list[str]:
    """The timestamps `earful backtest --csv` would write for `path` under these settings."""
    settings = Settings(_env_file=None, **overrides)
    raw, times, values = read_series(path)
    bucket_s = infer_bucket_s(times)
    cfg = replace(DetectorConfig.from_settings(settings), bucket_s=bucket_s)
    defaults = replace(RuleDefaults.from_settings(settings), cooldown_s=settings.alert_cooldown_buckets * bucket_s)
    rules = rules_for(Watchlist("series", "series", "topic", (), alert_rules=(AlertRule("volume_spike", severity="critical"),)),
                      defaults)
    return [line["timestamp"] for line in backtest_series(raw, times, values, rules, cfg)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "eval" / "spikes" / "nab-realtweets")
    args = parser.parse_args()
    files = sorted(p.name for p in args.corpus.glob("*.csv"))
    cost = scoring.profile(args.corpus, "standard")
    candidates = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    per_file: list[dict[str, scoring.FileScore]] = []
    for i, c in enumerate(candidates, 1):
        per_file.append({f: scoring.score_alert_files(args.corpus, {f: alerts(args.corpus / f, c)}, cost).files[0]
                         for f in files})
        print(f"candidate {i}/{len(candidates)} {c}: {total(per_file[-1], files, cost):.1f} on all five", file=sys.stderr)
    held_out = []
    for left_out in files:
        train = [f for f in files if f != left_out]
        best = max(range(len(candidates)), key=lambda k: total(per_file[k], train, cost))
        held_out.append(per_file[best][left_out])
        print(f"{left_out}: chosen on the other four {candidates[best]} → {total(per_file[best], [left_out], cost):.1f}")
    loo = scoring.normalise(held_out, sum(f.windows for f in held_out), cost).score
    best = max(range(len(candidates)), key=lambda k: total(per_file[k], files, cost))
    print(f"leave-one-out NAB score (standard): {loo:.1f}; best candidate on all five: "
          f"{total(per_file[best], files, cost):.1f} {candidates[best]}")
    return 0


def total(scores: dict[str, scoring.FileScore], files: list[str], cost: dict[str, float]) -> float:
    return scoring.normalise([scores[f] for f in files], sum(scores[f].windows for f in files), cost).score


if __name__ == "__main__":
    sys.exit(main())

"""`nab`: `earful backtest` over NAB's realTweets series, scored by NAB's rules (bench/nab.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nab as scoring  # bench/nab.py: NAB's scoring rules

from benchmarks.common import REPO, Context, Result, median, python_env, say

NAME = "nab"
KEYS = ("nab_score_dev", "nab_score_low_fp_dev", "nab_score_low_fn_dev", "nab_windows_detected",
        "nab_false_alarms_per_series_day", "nab_detection_delay_h")
DESCRIPTION = "`earful backtest` over NAB realTweets (dev split), scored with NAB's rules"

NAB_DIR = REPO.parent / "shared" / "eval" / "spikes" / "nab-realtweets"  # EARFUL_NAB_DIR overrides


def run(ctx: Context) -> Result:
    corpus = Path(os.environ.get("EARFUL_NAB_DIR") or NAB_DIR)
    files = sorted(corpus.glob("*.csv"))
    if not files or not (corpus / "windows.json").is_file():
        raise RuntimeError(f"no NAB corpus (CSV files and windows.json) in {corpus}; set EARFUL_NAB_DIR")
    env = {k: v for k, v in python_env().items() if not k.startswith("EARFUL_ALERT_")}  # the service defaults, fixed in advance
    out_dir = ctx.work_dir / "nab"
    out_dir.mkdir(parents=True, exist_ok=True)
    alerts: dict[str, list[str]] = {}
    for f in files:
        out = out_dir / f"{f.stem}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "earful", "backtest", "--csv", str(f), "--out", str(out)],
                              env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"earful backtest --csv {f.name} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        alerts[f.name] = [json.loads(line)["timestamp"] for line in out.read_text().splitlines() if line.strip()]
        say(f"  {f.name}: {proc.stderr.strip().splitlines()[-1]}")
    scores = {}
    for name in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        scores[name] = scoring.score_alert_files(corpus, alerts, scoring.profile(corpus, name))
    standard = scores["standard"]
    for f in standard.files:
        say(f"  {f.name}: {f.detected}/{f.windows} windows, {f.false_positives} false positives, "
            f"delays from window start {', '.join(f'{d:.1f}' for d in f.delays_h)} h")
    say(f"  NAB score {standard.score:.1f} (standard), {scores['reward_low_FP_rate'].score:.1f} (low FP), "
        f"{scores['reward_low_FN_rate'].score:.1f} (low FN); {standard.detected}/{standard.windows} windows, "
        f"{standard.false_positives} false alarms = {standard.false_alarms_per_series_day:.3f} per series per day")
    delays = standard.delays_h
    metrics = {
        "nab_score_dev": round(standard.score, 1),
        "nab_score_low_fp_dev": round(scores["reward_low_FP_rate"].score, 1),
        "nab_score_low_fn_dev": round(scores["reward_low_FN_rate"].score, 1),
        "nab_windows_detected": f"{standard.detected}/{standard.windows}",
        "nab_false_alarms_per_series_day": round(standard.false_alarms_per_series_day, 3),
        "nab_detection_delay_h": round(median(delays), 2) if delays else None,
    }
    ctx.extra_versions["nab_corpus"] = f"{corpus.name} ({len(files)} series)"
    return Result(metrics, dict.fromkeys(metrics, 1))

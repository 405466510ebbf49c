"""`enrichment-accuracy`: every enrichment accuracy figure (`earful models evaluate`) on the development data."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from benchmarks.common import REPO, Context, Result, say

NAME = "enrichment-accuracy"
KEYS = ("sentiment_en_tweeteval_macro_recall", "sentiment_umsab_mean_macro_f1", "ner_wnut17_dev_typed_f1",
        "langid_umsab7_accuracy", "langid_umsab7_decided_accuracy", "langid_lingua_macro_accuracy",
        "langid_lingua_decided_macro_accuracy", "risk_test_macro_precision", "risk_test_macro_recall")
DESCRIPTION = "enrichment accuracy on the development data in ../shared/eval (EARFUL_EVAL_DIR)"

EVAL_DIR = Path(os.environ.get("EARFUL_EVAL_DIR", REPO.parent / "shared" / "eval"))


def run(ctx: Context) -> Result:
    """Every enrichment accuracy figure (`earful models evaluate`) on the development data."""
    from earful.core.settings import Settings
    from earful.enrichment.evaluation import evaluate_all

    if not EVAL_DIR.is_dir():
        raise RuntimeError(f"no evaluation data at {EVAL_DIR} (set EARFUL_EVAL_DIR)")
    report = evaluate_all(EVAL_DIR, {"sentiment", "ner", "language", "risk"}, Settings())
    risk_test = report["risk"]["test"]
    metrics = {
        "sentiment_en_tweeteval_macro_recall": report["sentiment"]["tweeteval_val_macro_recall"],
        "sentiment_umsab_mean_macro_f1": report["sentiment"]["umsab_val_mean_macro_f1"],
        "ner_wnut17_dev_typed_f1": report["ner"]["wnut17_dev_typed_f1"],
        "langid_umsab7_accuracy": report["language"]["umsab_7_accuracy"],
        "langid_umsab7_decided_accuracy": report["language"]["umsab_7_decided_accuracy"],
        "langid_lingua_macro_accuracy": report["language"]["lingua_sentences_macro_accuracy"],
        "langid_lingua_decided_macro_accuracy": report["language"]["lingua_sentences_decided_macro_accuracy"],
        "risk_test_macro_precision": round(statistics.fmean(t["precision"] for t in risk_test.values()), 3),
        "risk_test_macro_recall": round(statistics.fmean(t["recall"] for t in risk_test.values()), 3),
    }
    say("  " + json.dumps(report))
    return Result(metrics, dict.fromkeys(metrics, 1))

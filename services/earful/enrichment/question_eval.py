"""Precision and recall of the `customer_question` tag on its labelled set.

The set (`data/questions_labelled.jsonl`) holds social posts, reviews and feed items in the six
languages the question rules read, each labelled with what it is (`question`, `complaint`,
`headline`, `rhetorical`, `statement`) and whether it is a customer question. Its `tune` split was
looked at while the rules were written; its `holdout` split was written first and scored once at
the end. `earful models evaluate --data DIR --only questions` prints `evaluate_questions()`.

Kept apart from `evaluation.py` so that it needs neither spaCy nor the models: the rules alone.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from earful.core.errors import ValidationError
from earful.enrichment.rules import QUESTION_TAG, RISK_RULES_VERSION, risk_tags

QUESTION_SET = Path(__file__).resolve().parent / "data" / "questions_labelled.jsonl"
SPLITS = ("tune", "holdout")
LABELS = ("question", "complaint", "headline", "rhetorical", "statement")
#: A detector: (text, title, source) -> is it a customer question.
Detector = Callable[[str, str | None, str | None], bool]


def read_question_set(path: Path = QUESTION_SET) -> list[dict[str, Any]]:
    """The labelled rows; a malformed row is an error, not a silent skip (it would move the figures)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if (row.get("split") not in SPLITS or row.get("label") not in LABELS
                or not isinstance(row.get("is_customer_question"), bool) or not isinstance(row.get("text"), str)):
            raise ValidationError(f"{path}:{number}: needs text, split in {SPLITS}, label in {LABELS}, "
                                  "is_customer_question true/false")
        rows.append(row)
    return rows


def rules_detector(text: str, title: str | None, source: str | None) -> bool:
    """What the enrichment processor decides: `risk_tags` with the mention's title and source."""
    return any(t["tag"] == QUESTION_TAG for t in risk_tags(text, title=title, source=source))


def _scores(pairs: Iterable[tuple[bool, bool]]) -> dict[str, Any]:
    tp = fp = fn = n = 0
    for gold, predicted in pairs:
        n += 1
        tp += gold and predicted
        fp += predicted and not gold
        fn += gold and not predicted
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3),
            "tp": tp, "fp": fp, "fn": fn, "n": n}


def evaluate_questions(detector: Detector = rules_detector, rows: list[dict[str, Any]] | None = None,
                       splits: tuple[str, ...] = SPLITS, errors: bool = True) -> dict[str, Any]:
    """Per split: precision, recall and F1 overall and per language, and per label how many rows the
    detector called a question (for `question` that is the recall of the label; for the others each
    one is a false positive, unless the row is labelled a customer question, as a complaint can be)."""
    rows = read_question_set() if rows is None else rows
    out: dict[str, Any] = {"model": RISK_RULES_VERSION, "rows": len(rows),
                           "languages": dict(sorted(Counter(r["lang"] for r in rows).items()))}
    for split in splits:
        part = [r for r in rows if r["split"] == split]
        decided = [(r, detector(r["text"], r.get("title"), r.get("source"))) for r in part]
        by_lang: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
        labels: dict[str, Counter[str]] = defaultdict(Counter)
        for r, predicted in decided:
            by_lang[r["lang"]].append((r["is_customer_question"], predicted))
            counts = labels[r["label"]]
            counts["rows"] += 1
            counts["customer_questions"] += r["is_customer_question"]
            counts["tagged"] += predicted
            counts["false_positives"] += predicted and not r["is_customer_question"]
            counts["misses"] += r["is_customer_question"] and not predicted
        report: dict[str, Any] = {
            **_scores((r["is_customer_question"], p) for r, p in decided),
            "per_language": {lang: _scores(pairs) for lang, pairs in sorted(by_lang.items())},
            "per_label": {label: dict(labels[label]) for label in LABELS if label in labels},
        }
        if errors:
            report["errors"] = [{"id": r["id"], "lang": r["lang"], "label": r["label"], "source": r.get("source"),
                                 "expected": r["is_customer_question"], "text": r["text"]}
                                for r, p in decided if p != r["is_customer_question"]]
        out[split] = report
    return out


if __name__ == "__main__":  # python -m earful.enrichment.question_eval: the figures without --data
    print(json.dumps(evaluate_questions(), indent=2, ensure_ascii=False))

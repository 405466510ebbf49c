"""`earful models evaluate --data DIR`: every enrichment accuracy figure on the development data.

Prints one JSON object. The figures and the community's metrics:
- sentiment, English: TweetEval validation, macro-averaged recall, on the tweets that do not occur
  in the training data (training drops them all, so all 2,000; the count is reported with it).
- sentiment, 8 languages: UMSAB validation, macro F1 per language and their mean.
  Both with the language as labelled and as detected (what the service does), with the
  calibration error and the share of the complaint set read as negative.
- NER: WNUT-17 dev, entity-level exact match, typed (precision, recall, F1, per type), on the
  gold tokenisation.
- language: accuracy on the UMSAB texts (train + validation) of the 7 languages in their own
  script (romanised Hindi excluded; the mean of the per-language accuracies, which are equal in
  size), and macro accuracy on Lingua's test sentences (all 75 languages; each counts equally).
  Both for the best guess (how fastText and py3langid are scored: they never abstain) and for the
  recorded decision, where an unsure vote is 'und' and counts as wrong.
- risk and intent tags: precision and recall per tag on bench/data/risk_intent (dev, test, all).
- customer questions: precision, recall and F1 of the `customer_question` tag on
  enrichment/data/questions_labelled.jsonl (tune, holdout), per language and per label
  (`earful.enrichment.question_eval`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example

from earful.core.errors import ValidationError
from earful.enrichment.language import MIN_CONFIDENCE, LanguageDetector
from earful.enrichment.ner import EntityRecogniser
from earful.enrichment.ner_training import conll_docs, read_conll, wnut_root
from earful.enrichment.question_eval import evaluate_questions
from earful.enrichment.rules import RISK_RULES_VERSION, risk_tags
from earful.enrichment.sentiment import LABELS, SentimentResult, load_backend
from earful.enrichment.training import (
    UMSAB_LANGUAGES,
    dedup_key,
    expected_calibration_error,
    read_split,
    say,
    sentiment_root,
    sentiment_training_set,
)

REPO = Path(__file__).resolve().parents[3]
RISK_SET = REPO / "bench" / "data" / "risk_intent" / "mentions.jsonl"
COMPLAINT_SET = REPO / "bench" / "data" / "complaints" / "complaints.jsonl"
SCRIPT_LANGUAGES = {k: v for k, v in UMSAB_LANGUAGES.items() if k != "hindi"}


def macro_recall(gold: list[int], pred: list[int]) -> float:
    per = [sum(1 for g, p in zip(gold, pred) if g == c and p == c) / max(1, sum(1 for g in gold if g == c))
           for c in sorted(set(gold))]
    return sum(per) / len(per)


def macro_f1(gold: list[int], pred: list[int]) -> float:
    scores = []
    for c in sorted(set(gold) | set(pred)):
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred) if g == c and p != c)
        scores.append(2 * tp / max(1, 2 * tp + fp + fn))
    return sum(scores) / len(scores)


LABEL_INDEX = {"negative": 0, "neutral": 1, "positive": 2}


def evaluate_sentiment(data: Path, backend: Any, detect: bool = True) -> dict[str, Any]:
    """TweetEval val and UMSAB val per language, each with the language as labelled and as detected
    (what the service does: an undetermined or other language is read by the language-agnostic
    model), the calibration error, and the complaint set."""
    root = sentiment_root(data)
    tweeteval = root.parent / "tweeteval-en"
    train_texts, _, _, _ = sentiment_training_set(data)
    seen = {dedup_key(t) for t in train_texts}
    texts = (tweeteval / "val_text.txt").read_text(encoding="utf-8").splitlines()
    labels = [int(x) for x in (tweeteval / "val_labels.txt").read_text().split()]
    unseen = [(t, y) for t, y in zip(texts, labels) if dedup_key(t) not in seen]
    detector = LanguageDetector() if detect else None

    def predict(batch: list[str], langs: list[str]) -> list[SentimentResult]:
        out: list[SentimentResult] = []
        for i in range(0, len(batch), 256):
            out += backend.predict(batch[i:i + 256], langs[i:i + 256])
        return out

    def score(batch: list[str], gold: list[int], lang: str, metric: Callable[[list[int], list[int]], float]) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        runs = [("labelled", [lang] * len(batch))]
        if detector is not None:
            runs.append(("detected", [detector.detect(t).code for t in batch]))
        for name, langs in runs:
            results = predict(batch, langs)
            figures[name] = round(metric(gold, [LABEL_INDEX[r.label] if r.label else 1 for r in results]), 4)
            if name == "detected":
                figures["detected_unlabelled"] = sum(1 for r in results if r.label is None)
                figures["detected_language_agnostic"] = sum(1 for r in results if (r.reason or "").startswith("language_agnostic"))
            probs = [(r.probabilities, g) for r, g in zip(results, gold) if r.probabilities]
            if probs and name == "labelled":
                matrix = np.asarray([[p[label] for label in LABELS] for p, _ in probs])
                figures["ece"] = expected_calibration_error(matrix, np.asarray([g for _, g in probs]))
        return figures

    result: dict[str, Any] = {"model": backend.name}
    english = score([t for t, _ in unseen], [y for _, y in unseen], "en", macro_recall)
    result["tweeteval_val_macro_recall"] = english["labelled"]
    result["tweeteval_val"] = english
    result["tweeteval_val_scored"] = len(unseen)
    result["tweeteval_val_excluded_seen_in_training"] = len(texts) - len(unseen)
    per_language: dict[str, Any] = {}
    for folder, code in UMSAB_LANGUAGES.items():
        val_texts, val_labels = read_split(root / folder, "val")
        per_language[code] = score(val_texts, val_labels, code, macro_f1)
    result["umsab_val_macro_f1"] = {code: v["labelled"] for code, v in per_language.items()}
    result["umsab_val_mean_macro_f1"] = round(sum(v["labelled"] for v in per_language.values()) / len(per_language), 4)
    if detector is not None:
        result["umsab_val_mean_macro_f1_detected"] = round(
            sum(v["detected"] for v in per_language.values()) / len(per_language), 4)
    result["umsab_val"] = per_language
    result["complaints"] = evaluate_complaints(backend, detector)
    return result


def evaluate_complaints(backend: Any, detector: LanguageDetector | None, path: Path = COMPLAINT_SET) -> dict[str, Any]:
    """Share of the complaint set read as negative, per language and split (dev: looked at while the
    complaint cues were written; test: not)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    langs = [detector.detect(r["text"]).code if detector is not None else r["lang"] for r in rows]
    results = backend.predict([r["text"] for r in rows], langs)
    out: dict[str, Any] = {"mentions": len(rows), "languages_from": "detected" if detector is not None else "labelled"}
    for split in ("dev", "test", "all"):
        share: dict[str, float] = {}
        for lang in sorted({r["lang"] for r in rows}):
            picked = [res for r, res in zip(rows, results) if r["lang"] == lang and split in ("all", r["split"])]
            share[lang] = round(sum(1 for res in picked if res.label == "negative") / len(picked), 3)
        out[split] = {"negative_share": share, "lowest": min(share.values())}
    return out


def evaluate_ner(data: Path, recogniser: Any) -> dict[str, Any]:
    gold = conll_docs(recogniser.nlp, read_conll(wnut_root(data) / "emerging.dev.conll"))
    started = time.perf_counter()
    predicted = recogniser.docs([Doc(recogniser.nlp.vocab, words=[t.text for t in g]) for g in gold], batch_size=256)
    elapsed = time.perf_counter() - started
    mapped = []
    for doc in predicted:  # other label schemes (OntoNotes) are mapped to the WNUT types first
        spans = [doc.char_span(e.start_char, e.end_char, label=recogniser.mapping[e.label_])
                 for e in doc.ents if e.label_ in recogniser.mapping]
        doc.ents = [s for s in spans if s is not None]
        mapped.append(doc)
    scores = Scorer.score_spans([Example(p, g) for p, g in zip(mapped, gold)], "ents")
    return {"model": recogniser.name, "wnut17_dev_typed_f1": round(scores["ents_f"], 4),
            "precision": round(scores["ents_p"], 4), "recall": round(scores["ents_r"], 4),
            "per_type_f1": {k: round(v["f"], 4) for k, v in sorted(scores["ents_per_type"].items())},
            "sentences": len(gold), "docs_per_s": round(len(gold) / elapsed, 1)}


def evaluate_language(data: Path, vote: Callable[[str], tuple[str, float]], name: str, min_confidence: float) -> dict[str, Any]:
    """Accuracy of the best guess (what fastText and py3langid are scored on: they never abstain),
    and of the decision Earful records, where a vote below `min_confidence` is 'und' (counted
    wrong), with the share of such abstentions."""
    root = sentiment_root(data)

    def score(items: list[tuple[str, str]]) -> tuple[float, float, float]:
        guess = decided = abstained = 0
        for text, gold in items:
            best, prob = vote(text)
            guess += best == gold
            decided += best == gold and prob >= min_confidence
            abstained += prob < min_confidence
        return guess / len(items), decided / len(items), abstained / len(items)

    umsab: dict[str, tuple[float, float, float]] = {}
    for folder, code in SCRIPT_LANGUAGES.items():
        texts = read_split(root / folder, "train")[0] + read_split(root / folder, "val")[0]
        umsab[code] = score([(t, code) for t in texts])
    sentences = None
    for candidate in (data / "langid" / "lingua-sentences", data / "lingua-sentences"):
        if candidate.is_dir():
            sentences = candidate
    if sentences is None:
        raise ValidationError(f"{data}: no Lingua test sentences found (expected langid/lingua-sentences/*.txt)")
    lingua: dict[str, tuple[float, float, float]] = {}
    started, count = time.perf_counter(), 0
    for path in sorted(sentences.glob("*.txt")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        lingua[path.stem] = score([(line, path.stem) for line in lines])
        count += len(lines)
    elapsed = time.perf_counter() - started

    def mean(table: dict[str, tuple[float, float, float]], i: int) -> float:
        return round(sum(v[i] for v in table.values()) / len(table), 4)

    return {"model": name,
            "umsab_7_accuracy": mean(umsab, 0), "umsab_7_decided_accuracy": mean(umsab, 1), "umsab_7_und_rate": mean(umsab, 2),
            "umsab_7_per_language": {code: round(v[0], 4) for code, v in sorted(umsab.items())},
            "lingua_sentences_macro_accuracy": mean(lingua, 0), "lingua_sentences_decided_macro_accuracy": mean(lingua, 1),
            "lingua_sentences_und_rate": mean(lingua, 2), "lingua_languages": len(lingua),
            "lingua_worst": {code: round(v[0], 4) for code, v in sorted(lingua.items(), key=lambda kv: kv[1][0])[:8]},
            "lingua_texts_per_s": round(count / elapsed, 1)}


def evaluate_risk(tagger: Callable[[str], list[dict[str, Any]]], path: Path = RISK_SET) -> dict[str, Any]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out: dict[str, Any] = {"mentions": len(rows), "languages": dict(Counter(r["lang"] for r in rows))}
    for split in ("dev", "test", "all"):
        tp: Counter[str] = Counter()
        fp: Counter[str] = Counter()
        fn: Counter[str] = Counter()
        for row in rows:
            if split != "all" and row["split"] != split:
                continue
            predicted = {t["tag"] for t in tagger(row["text"])}
            gold = set(row["tags"])
            for tag in predicted | gold:
                if tag in predicted and tag in gold:
                    tp[tag] += 1
                elif tag in predicted:
                    fp[tag] += 1
                else:
                    fn[tag] += 1
        out[split] = {tag: {"precision": round(tp[tag] / max(1, tp[tag] + fp[tag]), 3),
                            "recall": round(tp[tag] / max(1, tp[tag] + fn[tag]), 3),
                            "support": tp[tag] + fn[tag]}
                      for tag in sorted(set(tp) | set(fp) | set(fn))}
    return out


def evaluate_all(data: Path, only: set[str], settings: Any) -> dict[str, Any]:
    """Each requested figure, loading only the models it needs."""
    out: dict[str, Any] = {}
    if "sentiment" in only:
        say("evaluating sentiment...")
        out["sentiment"] = evaluate_sentiment(data, load_backend(settings.sentiment_model, settings.sentiment_languages))
    if "ner" in only:
        say("evaluating NER...")
        out["ner"] = evaluate_ner(data, EntityRecogniser(settings.spacy_model))
    if "language" in only:
        say("evaluating language identification (about a minute)...")
        detector = LanguageDetector()
        out["language"] = evaluate_language(data, lambda text: detector.vote(text)[:2], detector.name, MIN_CONFIDENCE)
    if "risk" in only:
        out["risk"] = {"model": RISK_RULES_VERSION, **evaluate_risk(risk_tags)}
    if "questions" in only:
        out["questions"] = evaluate_questions()
    return out

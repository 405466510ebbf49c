"""Reproducible training of the shipped sentiment model: `earful models train-sentiment`
(the entity model's training is in `ner_training`).

It reads the public development data laid out as in `../shared/eval` (see docs/models.md) and
does not look at the data the accuracy is reported on: the sentiment models are trained on the
TweetEval and UMSAB *training* splits (every text that also occurs in a TweetEval or UMSAB
validation split is dropped), the romanised Hindi detector (`train_romanised_hindi`) on UMSAB,
TweetEval training tweets and part of Lingua's sentences.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression

from earful.core.errors import ValidationError
from earful.enrichment.sentiment import LABELS, Featurizer

# UMSAB folder name → ISO 639-1 (Hindi in UMSAB is mostly romanised).
UMSAB_LANGUAGES = {"arabic": "ar", "english": "en", "french": "fr", "german": "de", "hindi": "hi",
                   "italian": "it", "portuguese": "pt", "spanish": "es"}
# Chosen by 3-fold cross-validation on the training data (TweetEval train + UMSAB train, 58,096
# tweets; English macro recall on the TweetEval folds, mean macro F1 of the 7 other languages on the
# UMSAB folds; `docs/cards/sentiment.md` has the table). The baseline, plain word 1-2 + char 2-5-gram
# logistic regression, reached 0.650 / 0.475 (C=0.5), 0.655 / 0.511 (C=1), 0.653 / 0.538 (C=2),
# 0.649 / 0.547 (C=4); these features (lexicon scores, an English copy of the n-grams, English word
# valences) 0.674 / 0.510 at C=1. The complaint shift was chosen on that model's out-of-fold logits:
# +2 on the negative logit of a text with a complaint cue changed the figures by +0.0004 / -0.0005
# (so costs nothing on general tweets) and is what makes plain complaints read negative. The lexicon
# scales, the English copy and the word valences were chosen earlier, by cross-validation on UMSAB
# train alone. The class offsets of that model are not used (0).
# The multilingual model (the 7 languages other than English, and the language-agnostic reading)
# keeps the settings chosen for it by cross-validation on UMSAB train alone; in the same 3 folds as
# above it reached a mean macro F1 of 0.557 on the 7 languages against 0.510 for the big model.
MULTILINGUAL_DEFAULTS: dict[str, Any] = {"C": 1.0}
SENTIMENT_DEFAULTS: dict[str, Any] = {"n_features": 2**18, "C": 1.0, "lexicon_scale": 3.0, "english_lexicon_scale": 3.0,
                                      "max_iter": 1000, "language_copies": ("en",), "copy_scale": 1.0,
                                      "english_word_lexicon": True, "class_offsets": {}, "complaint_shift": 2.0}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def dedup_key(text: str) -> str:
    """A text reduced to what makes two tweets 'the same' (case, escapes, handles, URLs, punctuation)."""
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text.strip())
    text = text.replace('""', '"').strip('"')
    text = re.sub(r"@\w+", "@user", text)
    text = re.sub(r"https?://\S+|\bhttp\b", "http", text)
    return re.sub(r"\W+", " ", text.lower()).strip()


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ValidationError(f"{path} does not exist (expected the UMSAB layout: umsab/<language>/<split>_text.txt)")
    return path.read_text(encoding="utf-8").splitlines()


def read_split(folder: Path, split: str) -> tuple[list[str], list[int]]:
    """Texts and labels (0 negative, 1 neutral, 2 positive) of one split folder."""
    texts = _lines(folder / f"{split}_text.txt")
    labels = [int(x) for x in _lines(folder / f"{split}_labels.txt") if x.strip()]
    if len(texts) != len(labels):
        raise ValidationError(f"{folder}: {len(texts)} {split} texts but {len(labels)} labels")
    if any(y not in (0, 1, 2) for y in labels):
        raise ValidationError(f"{folder}: {split} labels must be 0, 1 or 2")
    return texts, labels


def sentiment_root(data: Path) -> Path:
    """Accept the eval folder, its sentiment/ folder or the umsab/ folder itself."""
    for candidate in (data / "sentiment" / "umsab", data / "umsab", data):
        if (candidate / "english").is_dir():
            return candidate
    raise ValidationError(f"{data}: no UMSAB data found (expected sentiment/umsab/<language>/train_text.txt)")


def umsab_training_set(data: Path, also_held_out: Sequence[Path] = ()) -> tuple[list[str], list[int], list[str], dict[str, Any]]:
    """UMSAB train of every language, minus texts that also occur in a UMSAB validation split (or in
    the validation split of the `also_held_out` folders)."""
    root = sentiment_root(data)
    held_out = set()
    for split_folder in [*(root / name for name in UMSAB_LANGUAGES), *also_held_out]:
        held_out |= {dedup_key(t) for t in read_split(split_folder, "val")[0]}
    texts, labels, langs, dropped = [], [], [], 0
    for folder, code in UMSAB_LANGUAGES.items():
        for text, label in zip(*read_split(root / folder, "train")):
            if dedup_key(text) in held_out:
                dropped += 1
                continue
            texts.append(text)
            labels.append(label)
            langs.append(code)
    info = {"data": "UMSAB train (cardiffnlp/xlm-t), 8 languages", "examples": len(texts),
            "dropped_as_in_validation": dropped}
    return texts, labels, langs, info


def sentiment_training_set(data: Path) -> tuple[list[str], list[int], list[str], dict[str, Any]]:
    """TweetEval's English training split and UMSAB's training splits (8 languages), minus every text
    that also occurs in a TweetEval or UMSAB validation split, each text once (UMSAB's English
    training tweets all come from the same SemEval pool as TweetEval's and are dropped as repeats)."""
    root = sentiment_root(data)
    tweeteval = root.parent / "tweeteval-en"
    held_out = {dedup_key(t) for t in read_split(tweeteval, "val")[0]}
    for folder in UMSAB_LANGUAGES:
        held_out |= {dedup_key(t) for t in read_split(root / folder, "val")[0]}
    sources = [("tweeteval", "en", *read_split(tweeteval, "train"))]
    sources += [("umsab", code, *read_split(root / folder, "train")) for folder, code in UMSAB_LANGUAGES.items()]
    texts, labels, langs, seen = [], [], [], set()
    counts: dict[str, int] = {}
    dropped_validation = dropped_repeat = 0
    for source, code, source_texts, source_labels in sources:
        for text, label in zip(source_texts, source_labels):
            key = dedup_key(text)
            if key in held_out:
                dropped_validation += 1
            elif key in seen:
                dropped_repeat += 1
            else:
                seen.add(key)
                texts.append(text)
                labels.append(label)
                langs.append(code)
                counts[f"{source}:{code}"] = counts.get(f"{source}:{code}", 0) + 1
    info = {"data": "TweetEval sentiment train (English) + UMSAB train (cardiffnlp/xlm-t, 8 languages)",
            "examples": len(texts), "per_source": counts, "dropped_as_in_validation": dropped_validation,
            "dropped_as_repeat": dropped_repeat}
    return texts, labels, langs, info


LABEL_OF = {label: i for i, label in enumerate(LABELS)}
CORRECTION_WEIGHT = 3.0  # a correction counts as this many training tweets (a person looked at this one)


def sentiment_corrections(path: Path) -> tuple[list[str], list[int], list[str]]:
    """The sentiment corrections of an `earful corrections export` file: (texts, labels, languages)."""
    texts, labels, langs = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if row.get("field") != "sentiment":
                continue
            texts.append(str(row["text"]))
            labels.append(LABEL_OF[row["value"]])
            langs.append(str(row.get("lang") or "und"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationError(f"{path}:{number}: not a sentiment correction line ({exc})") from exc
    return texts, labels, langs


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the log-loss of softmax(logits / T) (temperature scaling)."""
    from scipy.optimize import minimize_scalar

    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(labels)), labels].mean())

    return round(float(minimize_scalar(nll, bounds=(0.2, 5.0), method="bounded").x), 4)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by their size."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return round(float(total), 4)


def _featurizer(params: dict[str, Any]) -> Featurizer:
    return Featurizer(int(params["n_features"]), lexicon_scale=float(params["lexicon_scale"]),
                      english_lexicon_scale=float(params["english_lexicon_scale"]),
                      language_copies=params["language_copies"], copy_scale=float(params["copy_scale"]),
                      english_word_lexicon=bool(params["english_word_lexicon"]))


def _fit(params: dict[str, Any], x: Any, y: np.ndarray, weights: np.ndarray) -> LogisticRegression:
    model = LogisticRegression(C=float(params["C"]), max_iter=int(params["max_iter"]), class_weight="balanced")
    return model.fit(x, y, sample_weight=weights)


def train_sentiment(data: Path, out_dir: Path, corrections: Path | None = None, **overrides: Any) -> dict[str, Any]:
    """Train the two linear sentiment models: the multilingual one (UMSAB train, 8 languages; it reads
    the 7 languages other than English and the language-agnostic reading) into `out_dir/multilingual`,
    then the main one (TweetEval + UMSAB train; it reads English) into `out_dir`."""
    from earful.enrichment.sentiment import MULTILINGUAL, LinearSentiment

    sub_params = {**SENTIMENT_DEFAULTS, **MULTILINGUAL_DEFAULTS, **overrides}
    texts, labels, langs, info = umsab_training_set(data, also_held_out=[sentiment_root(data).parent / "tweeteval-en"])
    say("the multilingual model (UMSAB train, 8 languages):")
    sub = _train_linear(texts, labels, langs, info, out_dir / MULTILINGUAL, sub_params, corrections)
    say("the main model (TweetEval + UMSAB train):")
    texts, labels, langs, info = sentiment_training_set(data)
    routed = sorted(set(sub["languages"]) - {"en"})
    meta = _train_linear(texts, labels, langs, info, out_dir, {**SENTIMENT_DEFAULTS, **overrides}, corrections,
                         extra={"multilingual_languages": routed, "multilingual_version": sub["version"]})
    LinearSentiment(out_dir)  # the pair loads
    return {**meta, "multilingual": sub}


def _train_linear(texts: list[str], labels: list[int], langs: list[str], info: dict[str, Any], out_dir: Path,
                  params: dict[str, Any], corrections: Path | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit one linear sentiment model and write model.json + weights.npz.

    A stratified tenth of the training data is held out first: a model fitted on the rest gives the
    logits the two temperatures are fitted on (own-language reading and language-agnostic reading),
    and the calibration error before and after; then the model is fitted on everything."""
    from sklearn.model_selection import train_test_split

    from earful.enrichment.sentiment import AGNOSTIC, softmax

    weights = [1.0] * len(texts)
    if corrections is not None:
        extra_texts, extra_labels, extra_langs = sentiment_corrections(corrections)
        texts, labels, langs = texts + extra_texts, labels + extra_labels, langs + extra_langs
        weights += [CORRECTION_WEIGHT] * len(extra_texts)
        info["corrections"] = {"file": corrections.name, "examples": len(extra_texts), "weight": CORRECTION_WEIGHT}
        say(f"  + {len(extra_texts)} sentiment corrections from {corrections} (weight {CORRECTION_WEIGHT:g} each)")
    say(f"training sentiment on {len(texts)} texts ({info['dropped_as_in_validation']} dropped: also in a "
        f"validation split; {info.get('dropped_as_repeat', 0)} repeats)")
    started = time.monotonic()
    featurizer = _featurizer(params)
    tfidf = TfidfTransformer(sublinear_tf=False).fit(featurizer.sparse_counts(texts))
    featurizer.idf = tfidf.idf_.astype(np.float32)
    y, w = np.asarray(labels), np.asarray(weights)
    rows = np.arange(len(texts))
    fit_rows, cal_rows = train_test_split(rows, test_size=0.1, random_state=0,
                                          stratify=[f"{lang}{label}" for lang, label in zip(langs, labels)])
    x = featurizer.transform(texts, langs)
    say(f"  features: {x.shape[1]:,} columns, {x.nnz:,} non-zeros ({time.monotonic() - started:.0f}s)")
    held = _fit(params, x[fit_rows], y[fit_rows], w[fit_rows])
    say(f"  calibration model fitted ({time.monotonic() - started:.0f}s)")
    cal_texts = [texts[i] for i in cal_rows]
    probe = _linear(held, featurizer, params)
    own = probe.logits(cal_texts, [langs[i] for i in cal_rows])
    agnostic = probe.logits(cal_texts, [AGNOSTIC] * len(cal_rows))
    temperature, agnostic_temperature = fit_temperature(own, y[cal_rows]), fit_temperature(agnostic, y[cal_rows])
    calibration = {"held_out_examples": len(cal_rows), "temperature": temperature,
                   "agnostic_temperature": agnostic_temperature,
                   "ece_before": expected_calibration_error(softmax(own), y[cal_rows]),
                   "ece_after": expected_calibration_error(softmax(own / temperature), y[cal_rows]),
                   "agnostic_ece_after": expected_calibration_error(softmax(agnostic / agnostic_temperature), y[cal_rows])}
    say(f"  calibration: {calibration}")
    model = _fit(params, x, y, w)
    say(f"  fitted in {time.monotonic() - started:.0f}s")
    if list(model.classes_) != [0, 1, 2]:
        raise ValidationError(f"training data has classes {list(model.classes_)}; need 0, 1 and 2")
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "weights.npz", coef=model.coef_.T.astype(np.float16),
                        intercept=model.intercept_.astype(np.float32), idf=featurizer.idf.astype(np.float16))
    version = datetime.now(timezone.utc).strftime("%Y%m%d") + "-" + _digest(out_dir / "weights.npz")
    meta = {**_meta(params, version), "languages": sorted(set(UMSAB_LANGUAGES.values())),
            "temperature": temperature, "agnostic_temperature": agnostic_temperature, "calibration": calibration,
            "training": info, "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(extra or {})}
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    say(f"wrote {out_dir}/model.json and weights.npz ({(out_dir / 'weights.npz').stat().st_size / 2**20:.1f} MiB)")
    return meta


def _meta(params: dict[str, Any], version: str) -> dict[str, Any]:
    return {
        "name": "earful-linear-sentiment", "version": version, "classes": list(LABELS),
        "n_features": int(params["n_features"]), "lexicon_scale": float(params["lexicon_scale"]),
        "english_lexicon_scale": float(params["english_lexicon_scale"]), "C": float(params["C"]),
        "language_copies": list(params["language_copies"]), "copy_scale": float(params["copy_scale"]),
        "english_word_lexicon": bool(params["english_word_lexicon"]),
        "class_offsets": {lang: [float(v) for v in values] for lang, values in params["class_offsets"].items()},
        "complaint_shift": float(params["complaint_shift"]),
        "features": "hashed word 1-2-grams + char_wb 2-5-grams (log tf, idf, L2) + VADER and emoji lexicon "
                    "scores, for every language and again for English only; the n-grams of the languages in "
                    "language_copies once more (times copy_scale), in that language's texts only; with "
                    "english_word_lexicon, VADER word-valence summaries (negation-aware) for English texts; "
                    "class_offsets are added to the class logits of that language's texts, complaint_shift to the "
                    "negative logit of a text with a complaint cue; the logits are divided by the temperature",
    }


def _linear(model: LogisticRegression, featurizer: Featurizer, params: dict[str, Any]) -> Any:
    """A LinearSentiment over an in-memory fitted model (no files), for the calibration step."""
    from earful.enrichment.sentiment import LinearSentiment

    probe = LinearSentiment.__new__(LinearSentiment)
    probe.coef = model.coef_.T.astype(np.float32)
    probe.intercept = model.intercept_.astype(np.float32)
    probe.featurizer = featurizer
    probe.class_offsets = {lang: np.asarray(v, dtype=np.float32) for lang, v in params["class_offsets"].items()}
    probe.complaint_shift = float(params["complaint_shift"])
    return probe


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


# --- romanised Hindi ---------------------------------------------------------------------------

HINGLISH_NEGATIVE_TWEETS = 6000  # TweetEval training tweets drawn (seed 0) as English examples
HINGLISH_SENTENCES_FROM = 400  # Lingua sentences from this line on (the first 400 of each file are not used)


def train_romanised_hindi(data: Path, out_dir: Path, C: float = 4.0) -> dict[str, Any]:
    """The romanised Hindi detector (language.RomanisedHindi): UMSAB's romanised Hindi training tweets
    against the other seven languages' training tweets, 6,000 TweetEval training tweets and 300
    sentences of each of Lingua's 75 languages; texts also in a UMSAB validation split are dropped.
    C = 4 and the thresholds in language.py were chosen by 5-fold cross-validation on this data."""
    import random

    from sklearn.feature_extraction.text import HashingVectorizer

    from earful.enrichment.language import HINGLISH_DIR, clean_for_detection

    root = sentiment_root(data)
    held_out = {dedup_key(t) for folder in UMSAB_LANGUAGES for t in read_split(root / folder, "val")[0]}
    texts: list[str] = []
    labels: list[int] = []
    for folder, code in UMSAB_LANGUAGES.items():
        for text in read_split(root / folder, "train")[0]:
            if dedup_key(text) not in held_out:
                texts.append(text)
                labels.append(1 if code == "hi" else 0)
    tweeteval = read_split(root.parent / "tweeteval-en", "train")[0]
    english = random.Random(0).sample(tweeteval, min(HINGLISH_NEGATIVE_TWEETS, len(tweeteval)))
    sentences: list[str] = []
    for candidate in (data / "langid" / "lingua-sentences", data / "lingua-sentences"):
        for path in sorted(candidate.glob("*.txt")) if candidate.is_dir() else []:
            sentences += path.read_text(encoding="utf-8").splitlines()[HINGLISH_SENTENCES_FROM:HINGLISH_SENTENCES_FROM + 300]
    texts += english + sentences
    labels += [0] * (len(english) + len(sentences))
    say(f"training the romanised Hindi detector on {len(texts)} texts ({sum(labels)} romanised Hindi)")
    n_features = 2**18
    vectorizer = HashingVectorizer(n_features=n_features, analyzer="char_wb", ngram_range=(1, 4), alternate_sign=False,
                                   norm="l2")
    x = vectorizer.transform([clean_for_detection(t).lower() for t in texts])
    model = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(x, np.asarray(labels))
    out_dir = out_dir if out_dir is not None else HINGLISH_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "weights.npz", coef=model.coef_[0].astype(np.float16),
                        intercept=np.float32(model.intercept_[0]))
    meta = {"name": "romanised-hindi", "version": datetime.now(timezone.utc).strftime("%Y%m%d") + "-"
            + _digest(out_dir / "weights.npz"), "n_features": n_features, "C": C,
            "features": "hashed char_wb 1-4-grams of the cleaned, lower-cased text (L2)",
            "training": {"examples": len(texts), "romanised_hindi": sum(labels), "tweeteval_tweets": len(english),
                         "lingua_sentences": len(sentences)},
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    say(f"wrote {out_dir}/model.json and weights.npz ({(out_dir / 'weights.npz').stat().st_size / 2**10:.0f} KiB)")
    return meta

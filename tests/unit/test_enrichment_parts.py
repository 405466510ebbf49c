"""Enrichment parts that need no model: batch input parsing, text cleaning, BIO decoding, metrics,
the labelled risk/intent set, and the training data readers."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earful.core.errors import ValidationError
from earful.core.vocabulary import MAX_ENTITY_CHARS
from earful.enrichment.batch import parse_line
from earful.enrichment.evaluation import RISK_SET, evaluate_risk, macro_f1, macro_recall
from earful.enrichment.language import clean_for_detection
from earful.enrichment.ner import BioTagDecoder
from earful.enrichment.ner_training import read_conll
from earful.enrichment.rules import _questions, risk_tags, social_entities
from earful.enrichment.sentiment import normalise
from earful.enrichment.training import dedup_key, read_split, umsab_training_set

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


# --- batch input ------------------------------------------------------------------------------


def test_minimal_line() -> None:
    record = parse_line('{"id": "a1", "text": "Hola @AcmeAir", "lang": "es", "author": "ana", '
                        '"created_at": "2026-11-02T09:00:00+01:00", "source": "Mastodon"}', NOW)
    assert record["mention_id"] == record["source_id"] == "a1"
    assert record["text"] == "Hola @AcmeAir" and record["lang"] == "es" and record["source"] == "mastodon"
    assert record["author"]["handle"] == "ana"
    assert record["created_at"] == datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc) and record["received_at"] == NOW


def test_numeric_id_and_author_object() -> None:
    record = parse_line('{"id": 42, "text": "hi there", "author": {"handle": "@bob", "followers": 3}}', NOW)
    assert record["mention_id"] == "42" and record["author"]["handle"] == "bob" and record["author"]["followers"] == 3
    assert record["created_at"] == NOW and record["source"] == "file"


def test_ingest_shape_line_gets_the_stable_mention_id() -> None:
    line = json.dumps({"source": "twitter", "source_id": "9", "text": "hello", "created_at": "2026-11-02T07:00:00Z"})
    record = parse_line(line, NOW)
    assert len(record["mention_id"]) == 36 and record["source_id"] == "9"
    assert parse_line(line, NOW)["mention_id"] == record["mention_id"]


@pytest.mark.parametrize(
    "line,problem",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"id": "x"}', "text"),
        ('{"text": "no id"}', "id"),
        ('{"id": "x", "text": "   "}', "text is blank"),
        ('{"id": "x", "text": "a\\u0000b"}', "NUL"),
        ('{"id": "x", "text": "t", "txt": "typo"}', "txt"),
        ('{"id": "x", "text": "t", "created_at": "yesterday"}', "created_at"),
        ('{"id": "x", "text": "t", "created_at": "2026-11-02T07:00:00"}', "created_at"),
        ('{"id": "x", "text": "t", "lang": "english please"}', "lang"),
        ('{"id": true, "text": "t"}', "id"),
        ('{"source": "twitter", "source_id": "1", "text": "t"}', "created_at"),
    ],
    ids=["not-json", "not-object", "no-text", "no-id", "blank", "nul", "unknown-field", "bad-time", "naive-time",
         "bad-lang", "bool-id", "ingest-shape-missing-time"],
)
def test_bad_lines_name_the_problem(line: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        parse_line(line, NOW)


# --- text normalisation -----------------------------------------------------------------------


def test_cleaning_for_language_detection() -> None:
    assert clean_for_detection("RT @user: Das ist #toll http https://t.co/x $ACME &amp; gut") == ": Das ist toll gut"


def test_normalisation_for_sentiment() -> None:
    assert normalise("@AcmeAir soooooo GOOD!!!!! https://x.y/z") == " @user  sooo good!!!  http "


def test_english_word_valences_follow_negation() -> None:
    from earful.enrichment.sentiment import WORD_LEXICON_FEATURES, Featurizer

    rows = Featurizer(2**10, english_word_lexicon=True).word_lexicon(["this is good!", "this is not good", "a b c", ""])
    assert rows.shape == (4, len(WORD_LEXICON_FEATURES))
    good, not_good, plain, empty = rows
    assert good[0] > 0 and good[1] == 0 and good[6] == pytest.approx(1 / 3)  # one '!'
    assert not_good[0] == 0 and not_good[1] < 0 and not_good[5] == pytest.approx(0.25)  # 1 of 4 words negative
    assert not plain.any() and not empty.any()


# --- BIO decoding -----------------------------------------------------------------------------


def _decoder() -> BioTagDecoder:
    labels = ("O", "B-person", "I-person", "B-location", "I-location")
    return BioTagDecoder(SimpleNamespace(labels=labels, model=None), entity_bias=1.0)


def _doc(words: list[str]):
    import spacy
    from spacy.tokens import Doc

    return Doc(spacy.blank("en").vocab, words=words)


def _probs(rows: list[dict[str, float]]) -> np.ndarray:
    labels = ("O", "B-person", "I-person", "B-location", "I-location")
    out = np.zeros((len(rows), len(labels)), dtype=np.float32)
    for i, row in enumerate(rows):
        for label, p in row.items():
            out[i, labels.index(label)] = p
    return out


def test_ner_bio_decoding_spans_and_types() -> None:
    doc = _doc(["Taylor", "Swift", "in", "New", "York", "!"])
    probs = _probs([{"B-person": 0.8, "O": 0.2}, {"I-person": 0.7, "O": 0.3}, {"O": 0.9, "B-person": 0.1},
                    {"B-location": 0.6, "O": 0.4}, {"I-location": 0.5, "I-person": 0.2, "O": 0.3}, {"O": 1.0}])
    spans = _decoder().spans(doc, probs, 1.0)
    assert [(s.text, s.label_) for s in spans] == [("Taylor Swift", "person"), ("New York", "location")]


def test_ner_bio_decoding_bias_trades_precision_for_recall() -> None:
    doc = _doc(["met", "gaby", "today"])
    probs = _probs([{"O": 0.95, "B-person": 0.05}, {"O": 0.6, "B-person": 0.4}, {"O": 0.9, "B-location": 0.1}])
    assert _decoder().spans(doc, probs, 1.0) == []
    assert [(s.text, s.label_) for s in _decoder().spans(doc, probs, 2.0)] == [("gaby", "person")]


def test_ner_bio_decoding_adjacent_entities_split_on_a_begin_tag() -> None:
    doc = _doc(["Obama", "Trump"])
    probs = _probs([{"B-person": 0.9, "O": 0.1}, {"B-person": 0.8, "I-person": 0.1, "O": 0.1}])
    assert [s.text for s in _decoder().spans(doc, probs, 1.0)] == ["Obama", "Trump"]
    assert _decoder().spans(_doc([]), np.zeros((0, 5), dtype=np.float32), 1.0) == []


def test_ner_bio_decoding_keeps_sequences_valid() -> None:
    # A lone I- tag may not open an entity, nor continue one of another type: the best valid
    # sequence decides (here "York" joins the location "New York" rather than becoming a person).
    doc = _doc(["in", "New", "York"])
    probs = _probs([{"O": 0.9, "I-person": 0.1}, {"B-location": 0.6, "O": 0.4}, {"I-person": 0.5, "I-location": 0.4, "O": 0.1}])
    assert [(s.text, s.label_) for s in _decoder().spans(doc, probs, 1.0)] == [("New York", "location")]
    lone = _probs([{"O": 0.4, "I-person": 0.6}, {"O": 1.0}, {"O": 1.0}])
    assert _decoder().spans(doc, lone, 1.0) == []


def test_ner_bio_decoding_inside_bias_lets_a_name_run_on() -> None:
    doc = _doc(["Pope", "Benedict", "said"])
    probs = _probs([{"B-person": 0.7, "O": 0.3}, {"I-person": 0.4, "O": 0.6}, {"O": 1.0}])
    assert [s.text for s in _decoder().spans(doc, probs, 1.0)] == ["Pope"]
    assert [s.text for s in _decoder().spans(doc, probs, 1.0, inside_bias=2.0)] == ["Pope Benedict"]


def test_ner_bio_decoding_a_batch_matches_one_document_at_a_time() -> None:
    rng = np.random.default_rng(0)
    decoder = _decoder()
    probs = [rng.dirichlet(np.ones(5), size=n).astype(np.float32) for n in (0, 1, 7, 3, 12)]
    logs = [np.log(p) for p in probs]
    together = decoder.paths(logs, 1.5, 2.0)
    assert [list(p) for p in together] == [list(decoder.paths([p], 1.5, 2.0)[0]) for p in logs]
    assert [len(p) for p in together] == [0, 1, 7, 3, 12]


def test_ner_the_shipped_taggers_logits_become_log_probabilities() -> None:
    """spaCy's tagger skips its softmax when predicting; biases read its outputs as probabilities
    only after the decoder normalises them (raw logits merged "London to New York" into one place)."""
    from earful.enrichment.ner import EntityRecogniser

    decoder = EntityRecogniser("builtin").tagger
    assert decoder is not None and decoder.logits
    logits = np.array([[2.0, -1.0, 0.5, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    expected = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert np.allclose(decoder.log_probs(logits), expected)
    assert not _decoder().logits  # a tagger without that flag gives probabilities


# --- metrics ----------------------------------------------------------------------------------


def test_macro_metrics() -> None:
    gold, pred = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    assert macro_recall(gold, pred) == pytest.approx((0.5 + 1 + 0.5) / 3)
    f1 = [2 * 1 / (2 + 1 + 1), 2 * 2 / (4 + 1 + 0), 2 * 1 / (2 + 0 + 1)]
    assert macro_f1(gold, pred) == pytest.approx(sum(f1) / 3)


# --- the labelled risk/intent set -------------------------------------------------------------


def test_risk_set_is_well_formed() -> None:
    rows = [json.loads(line) for line in RISK_SET.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 300 and len({r["id"] for r in rows}) == len(rows) and len({r["text"] for r in rows}) == len(rows)
    assert len({r["lang"] for r in rows}) >= 5
    tags = {"reputational", "regulatory", "legal_privacy", "operational", "customer_question", "complaint", "purchase_intent"}
    assert all(set(r["tags"]) <= tags and r["split"] in ("dev", "test") for r in rows)
    assert all(sum(1 for r in rows if tag in r["tags"]) >= 25 for tag in tags)


def test_risk_rules_hold_their_measured_quality() -> None:
    """A regression guard: the rules' precision and recall on the whole labelled set."""
    report = evaluate_risk(risk_tags)
    for tag, scores in report["all"].items():
        assert scores["precision"] >= 0.9 and scores["recall"] >= 0.9, (tag, scores)


def test_evidence_spans_point_into_the_text() -> None:
    for row in (json.loads(line) for line in RISK_SET.read_text(encoding="utf-8").splitlines()):
        for tag in risk_tags(row["text"]):
            assert row["text"][tag["start"]:tag["end"]] == tag["evidence"]


# --- training data readers --------------------------------------------------------------------


def test_dedup_key_sees_through_escapes_handles_and_urls() -> None:
    assert dedup_key('"I\\u2019m @bob at http://x.y!"') == dedup_key("I’m @alice at https://t.co/abc")


def _umsab(root: Path, texts: dict[str, tuple[list[str], list[int]]]) -> None:
    for language in ("arabic", "english", "french", "german", "hindi", "italian", "portuguese", "spanish"):
        folder = root / "sentiment" / "umsab" / language
        folder.mkdir(parents=True)
        for split in ("train", "val"):
            t, y = texts.get(f"{language}/{split}", ([f"{language} {split} a", f"{language} {split} b"], [0, 2]))
            (folder / f"{split}_text.txt").write_text("\n".join(t) + "\n", encoding="utf-8")
            (folder / f"{split}_labels.txt").write_text("\n".join(map(str, y)) + "\n", encoding="utf-8")


def test_training_set_drops_texts_that_are_in_a_validation_split(tmp_path: Path) -> None:
    _umsab(tmp_path, {"english/train": (["kept one", "Same TEXT @x", "kept two"], [0, 1, 2]),
                      "german/val": (["same text @y"], [1])})
    texts, labels, langs, info = umsab_training_set(tmp_path)
    assert "Same TEXT @x" not in texts and {"kept one", "kept two"} <= set(texts)
    assert info["dropped_as_in_validation"] == 1 and len(texts) == len(labels) == len(langs)


def test_training_data_problems_are_validation_errors(tmp_path: Path) -> None:
    _umsab(tmp_path, {"english/train": (["a", "b"], [0])})
    with pytest.raises(ValidationError, match="2 train texts but 1 labels"):
        read_split(tmp_path / "sentiment" / "umsab" / "english", "train")
    conll = tmp_path / "bad.conll"
    conll.write_text("Paris\tB-place\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="bad tag"):
        read_conll(conll)
    conll.write_text("Paris\tB-location\nis\tO\n\t\nnice\tO\n", encoding="utf-8")
    assert read_conll(conll) == [[("Paris", "B-location"), ("is", "O")], [("nice", "O")]]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab ?.!\n¿", max_size=60))
def test_question_sentences_are_the_old_patterns_matches(text: str) -> None:
    """The one-pass sentence splitter finds exactly what `[^.!?\\n]*\\?+` found (that pattern was quadratic)."""
    old = [(m.start(), m.end()) for m in re.finditer(r"[^.!?\n]*\?+", text)]
    assert list(_questions(text)) == old


def test_overlong_tags_and_links_are_not_entities() -> None:
    """A 3 KB hashtag or link was accepted, then refused by storage's index (entity keys > 2,712 bytes)."""
    long_tag = "#" + "x" * 3000
    long_url = "https://example.com/" + "a" * 3000
    found = social_entities(f"{long_tag} {long_url} #fine https://ok.example/a")
    assert [e["text"] for e in found] == ["#fine", "https://ok.example/a"]
    assert all(len(e["text"]) <= MAX_ENTITY_CHARS for e in found)

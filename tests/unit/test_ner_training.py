"""The entity model's training data: the type mappings of WNUT-16 and the Broad Twitter Corpus,
unannotated tokens, corrections as training sentences, and a tiny `earful models train-ner` run
that consumes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from earful.cli import main as earful_main
from earful.core.errors import ValidationError
from earful.enrichment.ner import EntityRecogniser, KeyRows
from earful.enrichment.ner_training import (
    MISSING,
    WNUT16_TO_EARFUL,
    btc_mapping,
    conll_docs,
    correction_sentences,
    read_conll,
    spans_of,
)

CORRECTION = {"mention_id": "m-1", "text": "Loving my new Pixel 9 from Google in Dublin", "lang": "en", "field": "entities",
              "value": [{"text": "Pixel 9", "type": "product", "start": 14, "end": 21},
                        {"text": "Google", "type": "corporation", "start": 27, "end": 33},
                        {"text": "Dublin", "type": "location", "start": 37, "end": 43}],
              "model_value": [], "model_version": "spacy:en_earful_ner_social@x", "by": "ana", "at": "2026-12-01T10:00:00Z"}


def _conll(path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n", encoding="utf-8")


def test_wnut16_and_btc_types_map_onto_the_wnut17_types(tmp_path: Path) -> None:
    wnut16 = tmp_path / "wnut16"
    _conll(wnut16, [[("Apple", "B-company"), ("Store", "B-facility"), ("in", "O"), ("Soho", "B-geo-loc"),
                     ("Thanksgiving", "B-other"), ("Day", "I-other"), ("Coldplay", "B-musicartist"),
                     ("Breaking", "B-tvshow"), ("Bad", "I-tvshow"), ("Lakers", "B-sportsteam")]])
    assert [t for _, t in read_conll(wnut16, WNUT16_TO_EARFUL)[0]] == [
        "B-corporation", "B-location", "O", "B-location", MISSING, MISSING, MISSING,
        "B-creative-work", "I-creative-work", "B-group"]
    btc = tmp_path / "btc"
    _conll(btc, [[("Obama", "B-PER"), ("at", "O"), ("BBC", "B-ORG"), ("London", "B-LOC")]])
    assert [t for _, t in read_conll(btc, btc_mapping("missing"))[0]] == ["B-person", "O", MISSING, "B-location"]
    assert [t for _, t in read_conll(btc, btc_mapping("corporation"))[0]][2] == "B-corporation"
    assert [t for _, t in read_conll(btc, btc_mapping("O"))[0]][2] == "O"
    with pytest.raises(ValidationError, match="BTC ORG"):
        btc_mapping("company")
    _conll(btc, [[("Obama", "B-PERSON")]])
    with pytest.raises(ValidationError, match="bad tag"):
        read_conll(btc, btc_mapping("missing"))


def test_unannotated_tokens_get_no_tag_so_no_loss() -> None:
    import spacy

    doc = conll_docs(spacy.blank("en"), [[("the", "O"), ("Lakers", MISSING), ("Los", "I-location"), ("Angeles", "I-location")]])[0]
    assert [t.tag_ for t in doc] == ["O", "", "B-location", "I-location"]  # a stray I- starts its span
    assert [(e.text, e.label_) for e in doc.ents] == [("Los Angeles", "location")]
    assert spans_of(["O", "B-person", "I-person", "B-group", "I-person"]) == [(1, 3, "person"), (3, 4, "group"), (4, 5, "person")]


def test_english_entity_corrections_become_training_sentences(tmp_path: Path) -> None:
    path = tmp_path / "corrections.jsonl"
    rows = [
        CORRECTION,
        {**CORRECTION, "mention_id": "m-2", "lang": "de"},  # not English
        {**CORRECTION, "mention_id": "m-3", "field": "sentiment", "value": "negative"},  # not entities
        {**CORRECTION, "mention_id": "m-4", "text": "tesla is down again", "value": []},
        {**CORRECTION, "mention_id": "m-4", "text": "tesla is down again #fail",  # the latest correction wins
         "value": [{"text": "tesla", "type": "corporation", "start": 0, "end": 5},
                   {"text": "#fail", "type": "hashtag", "start": 20, "end": 25}]},  # not an NER type: stays O
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n", encoding="utf-8")
    assert correction_sentences(path) == [
        [("Loving", "O"), ("my", "O"), ("new", "O"), ("Pixel", "B-product"), ("9", "I-product"), ("from", "O"),
         ("Google", "B-corporation"), ("in", "O"), ("Dublin", "B-location")],
        [("tesla", "B-corporation"), ("is", "O"), ("down", "O"), ("again", "O"), ("#", "O"), ("fail", "O")],
    ]
    path.write_text(json.dumps({**CORRECTION, "value": [{"text": "Pix", "type": "product", "start": 14, "end": 17}]}) + "\n",
                    encoding="utf-8")
    with pytest.raises(ValidationError, match="does not match the text's tokens"):
        correction_sentences(path)
    path.write_text(json.dumps({**CORRECTION, "value": [{"text": "Google", "type": "company", "start": 27, "end": 33}]}) + "\n",
                    encoding="utf-8")
    with pytest.raises(ValidationError, match="type must be one of"):
        correction_sentences(path)


def test_train_ner_consumes_the_corrections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A few training steps on a tiny corpus: the run reads all three corpora and the English
    entity corrections, and writes a pipeline the recogniser loads."""
    data = tmp_path / "eval" / "ner"
    tweet = [("I", "O"), ("met", "O"), ("Obama", "B-person"), ("in", "O"), ("Paris", "B-location")]
    _conll(data / "wnut17" / "wnut17train.conll", [[*tweet[:3], (str(i), "O"), *tweet[3:]] for i in range(20)])
    _conll(data / "wnut16" / "test", [[("Apple", "B-company"), ("rocks", "O")]])
    _conll(data / "broad-twitter-corpus" / "btc.train", [[("BBC", "B-ORG"), ("news", "O")]])
    _conll(data / "broad-twitter-corpus" / "btc.dev", [[("Rome", "B-LOC")]])
    corrections = tmp_path / "corrections.jsonl"
    corrections.write_text(json.dumps(CORRECTION) + "\n" + json.dumps({**CORRECTION, "mention_id": "m-2", "lang": "fr"}) + "\n",
                           encoding="utf-8")
    out = tmp_path / "model"
    assert earful_main(["models", "train-ner", "--data", str(tmp_path / "eval"), "--out", str(out), "--max-steps", "3",
                        "--corrections", str(corrections)]) == 0
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["earful"]["training_sentences"] == {"wnut17-train": 18, "wnut16-test": 1, "btc": 2, "corrections": 1}
    assert json.loads(capsys.readouterr().out)["name"] == "earful_ner_social"
    recogniser = EntityRecogniser(str(out))
    assert recogniser.name.startswith("spacy:en_earful_ner_social@") and recogniser.nlp.vocab.vectors.shape == (20000, 300)
    assert isinstance(recogniser.entities(["I met Obama in Paris"])[0], list)


def test_vector_keys_as_arrays_answer_like_spacys_dict(tmp_path: Path) -> None:
    """KeyRows stands in for spaCy's key2row dict (the word vectors' 685,000 keys): same rows,
    -1/None for an unknown word, read from spaCy's own msgpack file."""
    import srsly
    from spacy.strings import hash_string

    table = {hash_string(w): i for i, w in enumerate(["London", "london", "Apple", "the"])} | {2**64 - 1: 7}
    srsly.write_msgpack(tmp_path / "key2row", table)
    rows = KeyRows.from_msgpack(tmp_path / "key2row")
    assert len(rows) == 5 and set(rows) == set(table)
    for key, row in table.items():
        assert rows.get(key, -1) == rows[key] == row and key in rows
    for unknown in (hash_string("Paris"), 0, 2**64 - 2):
        assert rows.get(unknown, -1) == -1 and rows.get(unknown) is None and unknown not in rows
        with pytest.raises(KeyError):
            rows[unknown]
    assert rows.get(hash_string("Paris"), -1) == -1  # cached answers stay right

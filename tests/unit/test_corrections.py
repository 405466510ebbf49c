"""Corrections without a database: what a request may say, how values are normalised and applied to a
mention, the topic's record, the export line, and the agreement arithmetic."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any

import pydantic
import pytest

from earful.core.errors import ValidationError
from earful.core.kafka import Codecs
from earful.core.settings import Settings
from earful.core.topics import CORRECTIONS
from earful.core.vocabulary import TAGS
from earful.storage.correction_tools import parse_time, request_of
from earful.storage.corrections import (
    Correction,
    CorrectionFilter,
    CorrectionInvalid,
    CorrectionRequest,
    applied_entities,
    applied_risks,
    author_key,
    canonical,
    check_against_text,
    check_spans,
    export_line,
    normalise_entities,
    normalise_risks,
    sentiment_columns,
    stored_value,
    summarize_agreement,
)

UTC = timezone.utc
TEXT = "Acme Air lost my bag in London #AcmeAir"
LONDON = {"text": "London", "type": "location", "start": 24, "end": 30}
HASHTAG = {"text": "#AcmeAir", "type": "hashtag", "start": 31, "end": 39}


def errors(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(pydantic.ValidationError) as info:
        CorrectionRequest.model_validate(body)
    return [tuple(e["loc"]) for e in info.value.errors()]


# --- the request ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("body,loc", [
    ({}, ()),
    ({"by": "jane"}, ()),
    ({"sentiment": "angry"}, ("sentiment",)),
    ({"sentiment": None, "risks": None}, ()),
    ({"risks": ["complaint", "nope"]}, ("risks", 1)),
    ({"risks": "complaint"}, ("risks",)),
    ({"risks": ["complaint", "complaint"]}, ("risks",)),
    ({"entities": [{"text": "x", "type": "planet", "start": 0, "end": 1}]}, ("entities", 0, "type")),
    ({"entities": [{"text": "London", "type": "location", "start": 24, "end": 31}]}, ("entities", 0)),
    ({"entities": [{"text": "", "type": "location", "start": 0, "end": 1}]}, ("entities", 0, "text")),
    ({"entities": [{"text": "L", "type": "location", "start": -1, "end": 1}]}, ("entities", 0, "start")),
    ({"entities": [{**LONDON, "origin": "me"}]}, ("entities", 0, "origin")),
    ({"entities": [{"text": "London", "type": "location", "start": 24}]}, ("entities", 0, "end")),
    ({"sentiment": "negative", "confidence": 1}, ("confidence",)),
    ({"sentiment": "negative", "by": "jane\nroot"}, ("by",)),
    ({"sentiment": "negative", "by": "   "}, ("by",)),
    ({"sentiment": "negative", "by": "x" * 101}, ("by",)),
    ({"sentiment": "negative", "note": "x" * 2001}, ("note",)),
])
def test_a_bad_request_names_its_problem(body: dict[str, Any], loc: tuple[Any, ...]) -> None:
    assert errors(body) == [loc]


def test_every_vocabulary_word_is_accepted_and_values_are_normalised() -> None:
    request = CorrectionRequest.model_validate({
        "sentiment": "negative", "risks": list(reversed(TAGS)), "entities": [HASHTAG, LONDON], "by": "Zoë", "note": "ok"})
    assert request.values() == {"sentiment": "negative", "entities": [LONDON, HASHTAG], "risks": sorted(TAGS)}
    assert list(CorrectionRequest(risks=[]).values()) == ["risks"]  # an empty set is a correction too
    assert CorrectionRequest(entities=[]).values() == {"entities": []}


def test_spans_are_checked_against_the_mention() -> None:
    ok = CorrectionRequest.model_validate({"entities": [LONDON, HASHTAG]})
    check_spans(ok)
    check_against_text(ok, TEXT)
    cases = [
        ({**LONDON, "start": 23, "end": 29, "text": "London"}, ("body", "entities", 0, "text")),
        ({"text": "London!", "type": "location", "start": 35, "end": 42}, ("body", "entities", 0, "end")),
    ]
    for entity, loc in cases:
        with pytest.raises(CorrectionInvalid) as info:
            check_against_text(CorrectionRequest.model_validate({"entities": [entity]}), TEXT)
        assert info.value.loc == loc
        assert isinstance(info.value, ValidationError)
    twice = CorrectionRequest.model_validate({"entities": [LONDON, HASHTAG, {**LONDON}]})
    with pytest.raises(CorrectionInvalid) as info:
        check_spans(twice)
    assert info.value.loc == ("body", "entities", 2)
    # The same span with another type is another entity.
    check_spans(CorrectionRequest.model_validate({"entities": [LONDON, {**LONDON, "type": "corporation"}]}))


# --- values -----------------------------------------------------------------------------------------------


def test_stored_values_are_normalised_so_equal_means_equal() -> None:
    mention = {"sentiment": None, "entities": json.dumps([{**HASHTAG, "origin": "rules"}, {**LONDON, "origin": "ner"},
                                                         {**HASHTAG, "origin": "rules"}]),
               "risks": json.dumps([{"tag": "complaint", "evidence": "lost", "start": 9, "end": 13},
                                    {"tag": "operational", "evidence": "bag", "start": 17, "end": 20},
                                    {"tag": "complaint", "evidence": "again", "start": 0, "end": 1}])}
    assert stored_value("sentiment", mention) is None
    assert stored_value("entities", mention) == [LONDON, HASHTAG]
    assert stored_value("risks", mention) == ["complaint", "operational"]
    assert normalise_risks(["operational", "complaint", "complaint"]) == ["complaint", "operational"]
    assert normalise_entities([]) == []
    # jsonb reorders keys; canonical() restores the documented order.
    assert list(canonical("entities", json.dumps([{"end": 30, "start": 24, "type": "location", "text": "London"}]))[0]) == [
        "text", "type", "start", "end"]
    assert canonical("sentiment", json.dumps(None)) is None


def test_applying_keeps_what_the_model_had_right() -> None:
    stored = [{**HASHTAG, "origin": "rules"}]
    assert applied_entities([LONDON, HASHTAG], stored) == [{**LONDON, "origin": "correction"}, {**HASHTAG, "origin": "rules"}]
    risks = [{"tag": "operational", "evidence": "bag", "start": 17, "end": 20},
             {"tag": "legal_privacy", "evidence": "x", "start": 0, "end": 1}]
    assert applied_risks(["complaint", "operational"], risks) == [
        {"tag": "operational", "evidence": "bag", "start": 17, "end": 20},
        {"tag": "complaint", "evidence": "", "start": 0, "end": 0}]
    assert applied_risks([], risks) == []


def test_a_corrected_label_is_certain() -> None:
    label, score, probabilities, reason = sentiment_columns("negative")
    assert (label, score, reason) == ("negative", -1.0, None)
    assert json.loads(probabilities) == {"negative": 1.0, "neutral": 0.0, "positive": 0.0}
    assert sentiment_columns("positive")[1] == 1.0 and sentiment_columns("neutral")[1] == 0.0


def test_author_keys_are_the_rollups() -> None:
    assert author_key("JaneDoe", "42") == "janedoe"
    assert author_key(None, "42") == "id:42"
    assert author_key(None, None) is None


def test_filters_number_their_parameters() -> None:
    since = datetime(2026, 11, 2, tzinfo=UTC)
    assert CorrectionFilter().where() == ("TRUE", [])
    sql, args = CorrectionFilter(watchlist="acme-air", since=since, field="risks").where()
    assert sql == "TRUE AND c.watchlist_ids @> ARRAY[$1]::text[] AND c.created_at >= $2 AND c.field = $3"
    assert args == ["acme-air", since, "risks"]
    assert CorrectionFilter(field="sentiment").where(first=4) == ("TRUE AND c.field = $4", ["sentiment"])


# --- the topic record and the export line ------------------------------------------------------------------


def _row(field: str, value: Any, model_value: Any, **extra: Any) -> dict[str, Any]:
    return {"id": 7, "mention_id": "9ec6ba32-ba62-5d3f-ba26-c2229307cfa0", "source": "twitter", "source_id": "1",
            "mention_created_at": datetime(2026, 11, 2, 9, tzinfo=UTC), "watchlist_ids": ["acme-air"], "lang": "en",
            "field": field, "model_value": json.dumps(model_value), "previous_value": json.dumps(model_value),
            "value": json.dumps(value), "agrees": value == model_value, "model_version": "m@1", "supersedes": None,
            "corrected_by": "jane", "principal": "api-key:0123abcd", "note": None,
            "created_at": datetime(2026, 11, 2, 10, 30, 5, 250000, tzinfo=UTC), "published_at": None, **extra}


@pytest.mark.parametrize("field,value,model_value", [
    ("sentiment", "negative", "neutral"), ("sentiment", "positive", None),
    ("entities", [LONDON], [LONDON, HASHTAG]), ("risks", ["complaint"], []),
])
def test_the_topic_record_round_trips_through_the_schema(field: str, value: Any, model_value: Any) -> None:
    codec = Codecs(Settings()).for_topic(CORRECTIONS)
    correction = Correction.of(_row(field, value, model_value, supersedes=3, note="n"))
    decoded = codec.decode(codec.encode(correction.to_record()))
    assert decoded["correction_id"] == 7 and decoded["field"] == field and decoded["supersedes"] == 3
    assert decoded["value"][field] == value and decoded["model_value"][field] == model_value
    assert all(decoded["value"][other] is None for other in ("sentiment", "entities", "risks") if other != field)
    assert decoded["corrected_at"] == datetime(2026, 11, 2, 10, 30, 5, 250000, tzinfo=UTC)
    assert decoded["agrees"] is (value == model_value)


def test_the_export_line_is_the_training_format() -> None:
    line = export_line({**_row("entities", [LONDON], [HASHTAG]), "text": TEXT})
    assert list(line) == ["mention_id", "text", "lang", "field", "value", "model_value", "model_version", "by", "at"]
    assert line["value"] == [LONDON] and line["model_value"] == [HASHTAG]
    assert line["at"] == "2026-11-02T10:30:05.250000Z" and line["by"] == "jane" and line["text"] == TEXT
    assert json.loads(json.dumps(line)) == line


def test_the_api_view_of_a_correction() -> None:
    out = Correction.of({**_row("sentiment", "negative", "neutral"), "superseded_by": 9}).to_json()
    assert out["by"] == "jane" and out["superseded_by"] == 9 and out["corrected_at"] == "2026-11-02T10:30:05.250000Z"
    assert out["agrees"] is False and out["published_at"] is None


# --- agreement -------------------------------------------------------------------------------------------------


def test_agreement_counts_each_mention_once_per_field() -> None:
    decoded = [  # (field, value, model_value) of the corrections in force; PostgreSQL hands them over as JSON text
        ("sentiment", "negative", "neutral"), ("sentiment", "negative", "negative"), ("sentiment", "negative", "positive"),
        ("sentiment", "neutral", "neutral"), ("sentiment", "positive", None),
        ("risks", ["complaint", "operational"], ["operational"]), ("risks", [], []),
        ("entities", [LONDON, HASHTAG], [HASHTAG]),
    ]
    rows = [{"field": f, "value": json.dumps(v), "model_value": json.dumps(m)} for f, v, m in decoded]
    out = summarize_agreement(rows)
    s = out["sentiment"]
    assert (s["reviewed"], s["agreed"], s["agreement"]) == (5, 2, 0.4)
    assert s["classes"]["negative"] == {"reviewed": 3, "agreed": 1, "model_labelled": 1, "recall": 0.3333, "precision": 1.0}
    assert s["classes"]["neutral"] == {"reviewed": 1, "agreed": 1, "model_labelled": 2, "recall": 1.0, "precision": 0.5}
    assert s["classes"]["positive"] == {"reviewed": 1, "agreed": 0, "model_labelled": 1, "recall": 0.0, "precision": 0.0}
    assert s["confusion"] == {"neutral": {"negative": 1, "neutral": 1}, "negative": {"negative": 1},
                              "positive": {"negative": 1}, "unknown": {"positive": 1}}
    r = out["risks"]
    assert (r["reviewed"], r["agreed"], r["agreement"]) == (2, 1, 0.5)
    assert r["tags"]["complaint"] == {"corrected": 1, "model": 0, "agreed": 0, "recall": 0.0, "precision": None}
    assert r["tags"]["operational"] == {"corrected": 1, "model": 1, "agreed": 1, "recall": 1.0, "precision": 1.0}
    e = out["entities"]
    assert (e["reviewed"], e["agreed"], e["agreement"]) == (1, 0, 0.0)
    assert e["spans"] == {"corrected": 2, "model": 1, "agreed": 1, "recall": 0.5, "precision": 1.0}


def test_no_corrections_no_rates() -> None:
    out = summarize_agreement([])
    assert all(out[f]["reviewed"] == 0 and out[f]["agreement"] is None for f in ("sentiment", "risks", "entities"))
    assert out["sentiment"]["classes"]["negative"]["recall"] is None


# --- the command line --------------------------------------------------------------------------------------------


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"sentiment": None, "risks": None, "entities": None, "by": None, "note": None, **kw})


def test_the_cli_builds_the_same_request() -> None:
    assert request_of(_args(sentiment="negative", risks="complaint, operational", by="jane")).values() == {
        "sentiment": "negative", "risks": ["complaint", "operational"]}
    assert request_of(_args(risks="")).values() == {"risks": []}
    assert request_of(_args(entities=json.dumps([LONDON]))).values() == {"entities": [LONDON]}
    with pytest.raises(ValidationError, match=r"risks\.1: Input should be"):
        request_of(_args(risks="complaint,nope"))
    with pytest.raises(ValidationError, match="--entities is not JSON"):
        request_of(_args(entities="[{"))
    with pytest.raises(ValidationError, match="at least one of"):
        request_of(_args(by="jane"))


def test_cli_times_without_a_zone_are_utc() -> None:
    assert parse_time("--since", "2026-11-02T09:00:00") == datetime(2026, 11, 2, 9, tzinfo=UTC)
    assert parse_time("--since", "2026-11-02T09:00:00Z") == datetime(2026, 11, 2, 9, tzinfo=UTC)
    assert parse_time("--since", None) is None
    with pytest.raises(ValidationError, match="--since"):
        parse_time("--since", "yesterday")

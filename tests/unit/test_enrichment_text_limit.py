"""A megabyte of adversarial text through the real EnrichmentProcessor: every step reads a bounded
prefix, the record keeps the whole text, and every span stays inside what was read.

Ingest refuses texts over EARFUL_INGEST_MAX_TEXT_CHARS, but a record produced straight to the raw
topic, or a file given to `earful enrich`, can carry anything the broker accepts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

import earful.enrichment.processor as processor_module
from earful.core.settings import Settings
from earful.enrichment.processor import DEFAULT_MAX_TEXT_CHARS, EnrichmentProcessor, clip_text
from earful.watchlists import Watchlist, WatchlistSet
from tests.support import raw_record

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
MEGABYTE = 1_000_000
WATCHLISTS = WatchlistSet([Watchlist("acme-air", "Acme Air", "brand", ("Acme Air", "AcmeAir", "@AcmeAir", "#AcmeAir")),
                           Watchlist("late", "Late", "brand", ("Zanzibarian",))], revision="limit-test")


def _megabyte(unit: str) -> str:
    return (unit * (MEGABYTE // len(unit) + 1))[:MEGABYTE]


ADVERSARIAL = {
    "one-repeated-word": _megabyte("acme "),
    "no-spaces": "a" * MEGABYTE,
    "question-marks": _megabyte("why? "),
    "bare-question-marks": "?" * MEGABYTE,
    "at-signs": "@" * MEGABYTE,
    "handles": _megabyte("@AcmeAir "),
    "hashes": "#" * MEGABYTE,
    "hashtags": _megabyte("#AcmeAir "),
    "urls": _megabyte("https://acme.example/a?b=c#d "),
    "one-long-url": "https://acme.example/" + "a" * (MEGABYTE - 21),
    "english-no-sentence-end": _megabyte("my bag is lost and nobody at Acme Air in London will help me "),
    "mixed-no-sentence-end": _megabyte("Acme Air ? @AcmeAir #AcmeAir $ACME https://acme.example/x?y=1 refund "),
}


@pytest.fixture(scope="module")
def processor() -> EnrichmentProcessor:
    return EnrichmentProcessor(WATCHLISTS)


def _record_inputs(monkeypatch: pytest.MonkeyPatch, processor: EnrichmentProcessor) -> dict[str, list[int]]:
    """The length of every text each step is handed, while the real step runs on it."""
    seen: dict[str, list[int]] = defaultdict(list)

    def watch(name: str, step: Callable[..., Any], lengths: Callable[..., list[int]]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            seen[name] += lengths(*args)
            return step(*args, **kwargs)
        return run

    one = lambda text, *rest: [len(text)]  # noqa: E731
    many = lambda texts, *rest: [len(t) for t in texts]  # noqa: E731
    monkeypatch.setattr(processor.language, "detect", watch("language", processor.language.detect, one))
    monkeypatch.setattr(processor.ner, "entities", watch("ner", processor.ner.entities, many))
    monkeypatch.setattr(processor.sentiment_backend, "predict", watch("sentiment", processor.sentiment_backend.predict, many))
    monkeypatch.setattr(processor_module, "social_entities", watch("social", processor_module.social_entities, one))
    monkeypatch.setattr(processor_module, "risk_tags", watch("risk", processor_module.risk_tags, one))
    monkeypatch.setattr(WATCHLISTS, "match", watch("watchlists", WATCHLISTS.match, one))
    return seen


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_a_megabyte_text_is_enriched_from_a_bounded_prefix(processor: EnrichmentProcessor, text: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _record_inputs(monkeypatch, processor)
    mention = raw_record("huge", text, NOW)
    (out,) = processor.enrich([mention], NOW)
    assert out["mention"] is mention and len(out["mention"]["text"]) == MEGABYTE  # stored whole
    assert set(seen) >= {"language", "ner", "sentiment", "social", "risk", "watchlists"}
    for step, lengths in seen.items():
        assert max(lengths, default=0) <= DEFAULT_MAX_TEXT_CHARS, step  # NER sees English texts only
    if out["language"]["code"] == "en":
        assert seen["ner"] and out["sentiment"]["label"] is not None
    spans = [*out["entities"], *out["matches"], *[r for r in out["risks"] if r.get("end") is not None]]
    assert all(s["end"] <= DEFAULT_MAX_TEXT_CHARS for s in spans)


def test_what_lies_beyond_the_limit_is_not_read(processor: EnrichmentProcessor) -> None:
    head = _megabyte("acme ")[:DEFAULT_MAX_TEXT_CHARS]
    text = head + "Zanzibarian @AcmeAir #AcmeAir https://acme.example/late " + "acme " * 10_000
    (out,) = processor.enrich([raw_record("beyond", text, NOW)], NOW)
    assert out["watchlist_ids"] == [] and out["entities"] == []
    (short,) = processor.enrich([raw_record("within", text[DEFAULT_MAX_TEXT_CHARS:], NOW)], NOW)
    assert short["watchlist_ids"] == ["acme-air", "late"] and len(short["entities"]) == 3


def test_a_batch_mixing_huge_and_normal_texts_enriches_the_normal_ones_as_before(processor: EnrichmentProcessor) -> None:
    normal = raw_record("normal", "Acme Air lost my bag again, terrible service #AcmeAir", NOW)
    alone = processor.enrich([normal], NOW)
    mixed = processor.enrich([raw_record("huge", ADVERSARIAL["mixed-no-sentence-end"], NOW), normal], NOW)
    assert mixed[1] == alone[0]
    assert mixed[0]["watchlist_ids"] == ["acme-air"] and mixed[0]["language"]["code"]


@pytest.mark.parametrize(
    "text,limit,expected",
    [
        ("Acme Air rocks", 20, "Acme Air rocks"),  # short enough: the text itself
        ("Acme Air rocks", 8, "Acme Air"),  # the cut falls between words
        ("Acme Air rocks", 9, "Acme Air "),
        ("Acme Air rocks", 11, "Acme Air "),  # inside "rocks": back to its start
        ("#AcmeAir now", 5, "#"),  # never half a hashtag
        ("abc, d", 3, "abc"),
        ("x" * 200, 100, "x" * 100),  # one endless word: cut inside it
        ("ab cd", 1, "a"),
    ],
)
def test_clip_text_ends_on_a_word_boundary(text: str, limit: int, expected: str) -> None:
    assert clip_text(text, limit) == expected
    assert len(clip_text(text, limit)) <= limit


def test_the_limit_is_the_ingest_limit_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EARFUL_ENRICH_MAX_TEXT_CHARS", "EARFUL_INGEST_MAX_TEXT_CHARS"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().enrichment_text_limit() == DEFAULT_MAX_TEXT_CHARS == Settings().ingest_max_text_chars
    assert Settings(ingest_max_text_chars=50_000).enrichment_text_limit() == 50_000
    assert Settings(ingest_max_text_chars=50_000, enrich_max_text_chars=4_000).enrichment_text_limit() == 4_000

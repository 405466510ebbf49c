"""Enrichment: rule-based entities and risk tags, and the processor with its real (shipped) models."""

from __future__ import annotations

import copy
import itertools
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from earful.core.codec import AvroCodec, EmbeddingEncoder, SchemaStore
from earful.core.errors import ConfigError
from earful.core.mention import MentionIn, to_record
from earful.enrichment.ner import SPACY_TO_EARFUL, WNUT_TYPES
from earful.enrichment.processor import EnrichmentProcessor
from earful.enrichment.rules import RISK_RULES_VERSION, risk_tags, social_entities
from earful.enrichment.sentiment import LABELS
from earful.watchlists import Watchlist, WatchlistSet

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NOW = datetime(2025, 3, 14, 9, 30, 2, 5000, tzinfo=timezone.utc)
EARFUL_TYPES = {"person", "location", "corporation", "product", "creative-work", "group",
                "hashtag", "mention", "cashtag", "url"}


# --- social entities --------------------------------------------------------------------------


def _spans(text: str) -> list[tuple[str, str]]:
    return [(e["type"], e["text"]) for e in social_entities(text)]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Loving the new #AcmeAir lounge", [("hashtag", "#AcmeAir")]),
        ("#2024 was rough, #2024goals", [("hashtag", "#2024goals")]),
        ("Ask @AcmeAirHelp or @globex_cares", [("mention", "@AcmeAirHelp"), ("mention", "@globex_cares")]),
        ("mail me at jane@example.com", []),
        ("Bought $ACME and $glbx, not $100 or $TOOLONG", [("cashtag", "$ACME"), ("cashtag", "$glbx")]),
        ("See https://acme.example/status?id=1.", [("url", "https://acme.example/status?id=1")]),
        ("(via http://x.example/a)", [("url", "http://x.example/a")]),
        ("No entities here.", []),
        ("", []),
        ("#Café #東京 are hashtags", [("hashtag", "#Café"), ("hashtag", "#東京")]),
    ],
    ids=["hashtag", "numeric-hashtag", "handles", "email", "cashtags", "url-trailing-dot", "url-in-parens",
         "none", "empty", "unicode-hashtags"],
)
def test_social_entities(text: str, expected: list[tuple[str, str]]) -> None:
    assert _spans(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "read https://acme.example/#pricing now",
        "profile https://social.example/@AcmeAir today",
        "chart https://markets.example/$ACME/quote ok",
    ],
    ids=["hashtag-in-url", "handle-in-url", "cashtag-in-url"],
)
def test_url_wins_overlaps(text: str) -> None:
    entities = social_entities(text)
    assert [e["type"] for e in entities] == ["url"]
    assert entities[0]["text"] == text.split()[1]


def test_social_entity_offsets_are_code_points() -> None:
    text = "🚀✈️ Zürich → @AcmeAir #Café $ACME https://acme.example/ü"
    entities = social_entities(text)
    assert [e["type"] for e in entities] == ["mention", "hashtag", "cashtag", "url"]
    for e in entities:
        assert text[e["start"]:e["end"]] == e["text"]
        assert e["origin"] == "rules"
    assert entities[0]["start"] == text.index("@AcmeAir") == 13  # UTF-16 would say 14, UTF-8 23
    assert [e["start"] for e in entities] == sorted(e["start"] for e in entities)


# --- risk tags --------------------------------------------------------------------------------


def _tags(text: str) -> dict[str, str]:
    out = {}
    for t in risk_tags(text):
        assert text[t["start"]:t["end"]] == t["evidence"]
        out[t["tag"]] = t["evidence"]
    return out


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Massive data breach at Globex", {"legal_privacy": "data breach"}),
        ("Globex fined by the regulator", {"regulatory": "fined"}),
        ("Acme Air app is down again", {"operational": "is down"}),
        ("Best downtown hotel", {}),
        ("Worst airline, never again", {"complaint": "Worst"}),
        ("Boycott Acme Air, worst airline ever", {"reputational": "Boycott", "complaint": "worst"}),
        ("I want to buy the Globex router", {"purchase_intent": "want to buy"}),
        ("Mi vuelo fue cancelado, quiero comprar otro", {"operational": "cancelado", "purchase_intent": "quiero comprar"}),
        ("Riesiges Datenleck bei Globex, Bußgeld droht", {"legal_privacy": "Datenleck", "regulatory": "Bußgeld"}),
        ("Zug gestrichen. Nie wieder!", {"operational": "gestrichen", "complaint": "Nie wieder"}),
        ("Vol annulé, quelle honte", {"operational": "annulé", "complaint": "quelle honte"}),
        ("Vazamento de dados pessoais", {"legal_privacy": "Vazamento de dados"}),
        ("Thanks for the great service!", {}),
        ("I'm fine, thanks! Fine dining tonight", {}),
        ("Feeling down today, taking a crash course in Python", {}),
        ("Our kitchen tap has a leak", {}),
        ("Regulators fined Globex €2m; a fine of that size hurts", {"regulatory": "Regulators"}),
        ("L'Antitrust apre un'indagine su Globex", {"regulatory": "Antitrust"}),
    ],
    ids=["en-breach-longest", "en-regulatory", "en-operational", "whole-words", "en-complaint", "en-boycott",
         "en-purchase", "es", "de", "de-phrase", "fr", "pt", "none", "fine-as-adjective", "down-and-crash-idioms",
         "plumbing-leak", "en-fine-noun", "it"],
)
def test_risk_tags(text: str, expected: dict[str, str]) -> None:
    assert _tags(text) == expected


@pytest.mark.parametrize(
    "text,evidence",
    [
        ("How do I change my seat?", "How do I change my seat?"),
        ("@AcmeAir how do I change my seat?", "@AcmeAir how do I change my seat?"),
        ("@AcmeAir @AcmeAirHelp wo ist mein Koffer?", "@AcmeAir @AcmeAirHelp wo ist mein Koffer?"),
        ("Great flight. Where is the lounge? Thanks", "Where is the lounge?"),
        ("Dónde está mi maleta?", "Dónde está mi maleta?"),
        ("Comment annuler ma réservation ?", "Comment annuler ma réservation ?"),
        ("Onde fica o balcão?", "Onde fica o balcão?"),
    ],
    ids=["en", "en-leading-handle", "de-two-handles", "second-sentence", "es", "fr", "pt"],
)
def test_customer_question(text: str, evidence: str) -> None:
    (tag,) = [t for t in risk_tags(text) if t["tag"] == "customer_question"]
    assert tag["evidence"] == evidence
    assert text[tag["start"]:tag["end"]] == evidence


@pytest.mark.parametrize(
    "text",
    ["I love this airline?!", "Why not.", "@AcmeAir thanks!", "Showing howto docs?"],
    ids=["no-question-word", "no-question-mark", "handle-only", "word-prefix"],
)
def test_not_a_customer_question(text: str) -> None:
    assert "customer_question" not in _tags(text)


def test_spanish_question_with_inverted_mark() -> None:
    assert _tags("¿Dónde está mi maleta?").get("customer_question") == "¿Dónde está mi maleta?"


# --- the processor ----------------------------------------------------------------------------


WATCHLISTS = WatchlistSet(
    [
        Watchlist("acme-air", "Acme Air", "brand", ("Acme Air", "AcmeAir", "@AcmeAir", "#AcmeAir")),
        Watchlist("globex", "Globex", "brand", ("Globex", "#Globex")),
    ],
    revision="test-rev-1",
)


@pytest.fixture(scope="module")
def processor() -> EnrichmentProcessor:
    return EnrichmentProcessor(WATCHLISTS)


def _raw(source_id: str, text: str, **extra: Any) -> dict[str, Any]:
    m = MentionIn.model_validate({"source": "twitter", "source_id": source_id, "text": text,
                                  "created_at": "2025-03-14T09:29:58Z", **extra})
    return to_record(m, datetime(2025, 3, 14, 9, 30, 1, tzinfo=timezone.utc))


ENGLISH = _raw("1", "@AcmeAir lost my bag on the flight from London to New York. Terrible service, "
                    "I want a refund! #AcmeAir https://acme.example/claims", lang="en")
ENGLISH_NER = _raw("2", "Barack Obama and Taylor Swift met in Paris to watch the new Star Wars movie")
GERMAN = _raw("3", "Die App von Globex ist schon wieder down. Seit heute Morgen kein Login möglich! #Globex")
NOTHING = _raw("4", "The weather is lovely today and the garden looks great, I love it!")
BATCH = [ENGLISH, ENGLISH_NER, GERMAN, NOTHING]

# Golden examples per language: (text, language, sentiment label or None with its reason).
GOLDEN = [
    ("I absolutely love the new Acme Air lounge, best airport experience ever! 😍", "en", "positive"),
    ("Worst airline ever. Lost my luggage and nobody cares. Never again.", "en", "negative"),
    ("Me encanta el nuevo servicio de Acme Air, ¡todo perfecto y el personal muy amable!", "es", "positive"),
    ("Qué asco de servicio, me cancelaron el vuelo y nadie responde. Horrible.", "es", "negative"),
    ("Ich bin total begeistert, der Service war super und das Essen lecker!", "de", "positive"),
    ("Schlechtester Service aller Zeiten, ich bin so wütend und enttäuscht.", "de", "negative"),
    ("J'adore cette compagnie, le vol était parfait et l'équipage adorable !", "fr", "positive"),
    ("Service client nul, vol annulé, personne ne répond. Honteux et scandaleux.", "fr", "negative"),
    ("Adorei o atendimento, tudo perfeito, recomendo demais! ❤️", "pt", "positive"),
    ("Péssimo atendimento, voo cancelado e ninguém resolve nada. Que raiva!", "pt", "negative"),
    ("Servizio fantastico, personale gentilissimo, lo consiglio a tutti!", "it", "positive"),
    ("Servizio pessimo, volo cancellato e nessuno risponde. Vergognoso!", "it", "negative"),
    ("أحب هذه الشركة كثيرا، خدمة رائعة وممتازة", "ar", "positive"),
    ("Det här flygbolaget är det sämsta jag har flugit med, aldrig igen.", "sv", "any"),  # read language-agnostic
    ("この航空会社のサービスは本当に素晴らしかったです", "ja", None),
]


@pytest.fixture(scope="module")
def enriched(processor: EnrichmentProcessor) -> list[dict[str, Any]]:
    return processor.enrich(BATCH, NOW)


def test_output_shape(enriched: list[dict[str, Any]]) -> None:
    assert len(enriched) == len(BATCH)
    for raw, out in zip(BATCH, enriched):
        assert out["mention"] is raw or out["mention"] == raw
        assert out["schema_version"] == 4
        assert out["enriched_at"] == NOW


@pytest.mark.parametrize("text,lang,label", GOLDEN, ids=[f"{g[1]}-{g[2]}" for g in GOLDEN])
def test_golden_language_and_sentiment(processor: EnrichmentProcessor, text: str, lang: str, label: str | None) -> None:
    (out,) = processor.enrich([_raw("g", text)], NOW)
    assert out["language"]["code"] == lang
    assert 0.5 <= out["language"]["confidence"] <= 1.0
    sentiment = out["sentiment"]
    if label is None:  # a script the model never saw: no label, and why
        assert sentiment == {"label": None, "score": 0.0, "reason": f"unsupported_script:{lang}", "probabilities": None}
    elif label == "any":  # a language the model was not trained on is read by its language-agnostic half, and says so
        assert sentiment["label"] in LABELS and sentiment["reason"] == f"language_agnostic:{lang}"
    else:
        assert sentiment["label"] == label and sentiment["reason"] is None
        probs = sentiment["probabilities"]
        assert set(probs) == set(LABELS) and sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert max(probs, key=probs.get) == label
        assert sentiment["score"] == pytest.approx(probs["positive"] - probs["negative"], abs=1e-3)
        assert (sentiment["score"] > 0) == (label == "positive")


def test_english_complaint(enriched: list[dict[str, Any]]) -> None:
    out = enriched[0]
    assert out["language"]["code"] == "en"
    assert out["sentiment"]["label"] == "negative" and out["sentiment"]["score"] < 0
    assert {t["tag"]: t["evidence"] for t in out["risks"]} == {"complaint": "lost my bag"}  # the first evidence


def test_model_entities_have_wnut_types(enriched: list[dict[str, Any]], processor: EnrichmentProcessor) -> None:
    ner = processor.models["ner"]
    spans = [(e["type"], e["text"]) for e in enriched[1]["entities"]]
    assert ("location", "Paris") in spans, spans
    # The shipped model reads "Taylor Swift met" as one name here (the span runs one word long);
    # type and start are right, and the other names are exact.
    assert any(t == "person" and text.startswith("Taylor Swift") for t, text in spans), spans
    assert any(t == "person" and "Obama" in text for t, text in spans), spans
    assert all(e["origin"] == ner for e in enriched[1]["entities"])
    assert set(WNUT_TYPES) <= EARFUL_TYPES and set(SPACY_TO_EARFUL.values()) <= EARFUL_TYPES


def test_rule_and_model_entities_merge_without_overlap(enriched: list[dict[str, Any]], processor: EnrichmentProcessor) -> None:
    entities = enriched[0]["entities"]
    spans = [(e["type"], e["text"]) for e in entities]
    assert spans[0] == ("mention", "@AcmeAir") and spans[-2:] == [("hashtag", "#AcmeAir"), ("url", "https://acme.example/claims")]
    assert ("location", "London") in spans
    for out in enriched:
        ents = out["entities"]
        assert [e["start"] for e in ents] == sorted(e["start"] for e in ents)
        for a, b in itertools.pairwise(ents):
            assert a["end"] <= b["start"], (a, b)
        for e in ents:
            assert out["mention"]["text"][e["start"]:e["end"]] == e["text"]
            assert e["type"] in EARFUL_TYPES
            assert e["origin"] in ("rules", processor.models["ner"])


def test_non_english_gets_rule_entities_only(enriched: list[dict[str, Any]]) -> None:
    out = enriched[2]
    assert out["language"]["code"] == "de"
    assert out["sentiment"]["label"] == "negative" and out["sentiment"]["reason"] is None
    assert [(e["text"], e["origin"]) for e in out["entities"]] == [("#Globex", "rules")]
    assert {t["tag"] for t in out["risks"]} == {"operational"}


def test_short_text_is_undetermined(processor: EnrichmentProcessor) -> None:
    (out,) = processor.enrich([_raw("5", "ok")], NOW)
    assert out["language"]["code"] == "und"
    # still read, by the language-agnostic half of the model, with a flatter distribution
    assert out["sentiment"]["reason"] == "language_agnostic:und" and out["sentiment"]["label"] is not None


@pytest.mark.parametrize("text", ["👍👍👍", "@AcmeAir https://acme.example/x $ACME", "12345 !!! ???", " \t "])
def test_texts_without_words_do_not_break_the_batch(processor: EnrichmentProcessor, text: str) -> None:
    good = _raw("8", "Acme Air lost my bag again, terrible service")
    bad = dict(good, text=text, mention_id="x")
    out_bad, out_good = processor.enrich([bad, good], NOW)
    assert out_bad["language"]["code"] == "und"
    if text.strip():  # emoji, handles and punctuation are still read (the lexicon knows emoji)
        assert out_bad["sentiment"]["reason"] == "language_agnostic:und"
    else:
        assert out_bad["sentiment"] == {"label": None, "score": 0.0, "reason": "empty_text", "probabilities": None}
    assert out_good["language"]["code"] == "en" and out_good["sentiment"]["label"] == "negative"


def test_long_text(processor: EnrichmentProcessor) -> None:
    text = "Acme Air cancelled my flight again and I am stuck in Boston. " * 300  # ~18,000 characters
    (out,) = processor.enrich([_raw("9", text)], NOW)
    assert out["language"]["code"] == "en" and out["sentiment"]["label"] == "negative"
    assert {t["tag"] for t in out["risks"]} >= {"operational"}
    assert len(out["matches"]) == 300


def test_watchlist_matches_with_spans(enriched: list[dict[str, Any]]) -> None:
    text = ENGLISH["text"]
    assert enriched[0]["watchlist_ids"] == ["acme-air"]
    assert enriched[0]["matches"] == [
        {"watchlist_id": "acme-air", "start": 0, "end": 8, "term": "@AcmeAir"},
        {"watchlist_id": "acme-air", "start": text.index("#AcmeAir"), "end": text.index("#AcmeAir") + 8, "term": "#AcmeAir"},
    ]
    assert enriched[2]["watchlist_ids"] == ["globex"]
    assert [(m["start"], m["end"]) for m in enriched[2]["matches"]] == [(12, 18), (80, 87)]
    assert enriched[3]["watchlist_ids"] == [] and enriched[3]["matches"] == []


def test_watchlist_ids_are_sorted_and_unique(processor: EnrichmentProcessor) -> None:
    (out,) = processor.enrich([_raw("6", "Globex vs Acme Air vs #Globex vs @AcmeAir")], NOW)
    assert out["watchlist_ids"] == ["acme-air", "globex"]
    assert len(out["matches"]) == 4


def test_swapping_the_watchlists_takes_effect_on_the_next_batch(processor: EnrichmentProcessor) -> None:
    mention = _raw("7", "Initech printers jammed again")
    before = processor.watchlists
    try:
        assert processor.enrich([mention], NOW)[0]["watchlist_ids"] == []
        processor.watchlists = WatchlistSet([Watchlist("initech", "Initech", "brand", ("Initech",))], revision="rev-2")
        (out,) = processor.enrich([mention], NOW)
        assert out["watchlist_ids"] == ["initech"] and out["models"]["watchlists"] == "earful-query/1@rev-2"
    finally:
        processor.watchlists = before


def test_models_are_recorded(enriched: list[dict[str, Any]], processor: EnrichmentProcessor) -> None:
    models = enriched[0]["models"]
    assert set(models) == {"language", "ner", "sentiment", "risk", "watchlists"}
    assert all(isinstance(v, str) and v and "unknown" not in v for v in models.values())
    assert models["language"].startswith("vote(fasttext-lid.176-ftz@") and "py3langid@" in models["language"]
    assert "lingua-low@" in models["language"]
    assert models["ner"].startswith("spacy:en_earful_ner_social@")
    assert models["sentiment"].startswith("earful-linear-sentiment@")
    assert models["risk"] == RISK_RULES_VERSION
    assert models["watchlists"] == "earful-query/1@test-rev-1"
    assert all(out["models"] == models for out in enriched)


def test_same_batch_twice_gives_identical_output(processor: EnrichmentProcessor, enriched: list[dict[str, Any]]) -> None:
    again = processor.enrich(BATCH, NOW)
    assert again == enriched
    assert processor.enrich(list(reversed(BATCH)), NOW) == list(reversed(enriched))


def test_batching_does_not_change_results(processor: EnrichmentProcessor, enriched: list[dict[str, Any]]) -> None:
    one_by_one = [processor.enrich([m], NOW)[0] for m in BATCH]
    assert one_by_one == enriched


def test_empty_batch(processor: EnrichmentProcessor) -> None:
    assert processor.enrich([], NOW) == []


def test_output_encodes_with_the_enriched_mention_codec(enriched: list[dict[str, Any]]) -> None:
    store = SchemaStore(SCHEMAS)
    codec = AvroCodec(store.current("enriched_mention"), store)
    for out in enriched:
        decoded = codec.decode(codec.encode(out))
        assert decoded["mention"] == out["mention"]
        assert decoded["entities"] == out["entities"]
        assert decoded["risks"] == out["risks"]
        assert decoded["matches"] == out["matches"]
        assert decoded["sentiment"]["label"] == out["sentiment"]["label"]
        assert decoded["sentiment"]["score"] == pytest.approx(out["sentiment"]["score"], rel=1e-6)
        assert decoded["language"]["code"] == out["language"]["code"]
        assert decoded["models"] == out["models"]
        assert decoded["enriched_at"] == NOW.replace(microsecond=5000)


def test_missing_spacy_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="EARFUL_SPACY_MODEL"):
        EnrichmentProcessor(WATCHLISTS, spacy_model="earful_no_such_model_xyz")


def test_missing_sentiment_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EARFUL_SENTIMENT_MODEL"):
        EnrichmentProcessor(WATCHLISTS, sentiment_model=str(tmp_path / "nothing-here"))
    (tmp_path / "model.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="missing or unreadable"):
        EnrichmentProcessor(WATCHLISTS, sentiment_model=str(tmp_path))


def test_an_unsure_detector_defers_to_the_declared_language(processor: EnrichmentProcessor) -> None:
    short = "xd xd"  # too little to be sure of any language
    assert processor.detect_language(short)["code"] == "und"
    declared = processor.detect_language(short, "en-GB")
    assert declared["code"] == "en" and 0 <= declared["confidence"] < 0.5
    assert processor.detect_language(short, "xyz")["code"] == "und"  # not an ISO 639-1 code
    confident = processor.detect_language("Acme Air lost my bag in London again. Terrible service, I want a refund", "de")
    assert confident["code"] == "en"  # a confident detector wins over the declaration


def test_language_detection_ignores_handles_urls_and_hashtag_signs(processor: EnrichmentProcessor) -> None:
    text = "@ParisTourisme @MadridGo https://ejemplo.es/viaje #vacaciones Das Hotel war wirklich sehr schön und sauber"
    assert processor.detect_language(text)["code"] == "de"


def test_the_mention_passes_through_untouched_so_its_bytes_can_be_copied(processor: EnrichmentProcessor) -> None:
    """The service copies each raw mention's bytes into its enriched record (EmbeddingEncoder);
    that is only right while the processor hands the decoded mention on as it came."""
    store = SchemaStore(SCHEMAS)
    raw_codec = AvroCodec(store.current("raw_mention"), store)
    enriched_codec = AvroCodec(store.current("enriched_mention"), store)
    encoder = EmbeddingEncoder(enriched_codec, raw_codec)
    wire = [raw_codec.encode(m) for m in BATCH]
    mentions = [raw_codec.decode(b) for b in wire]
    before = copy.deepcopy(mentions)
    outs = processor.enrich(mentions, NOW)
    assert mentions == before
    for out, mention, data in zip(outs, mentions, wire):
        assert out["mention"] is mention
        assert encoder.encode(out, mention, data) == enriched_codec.encode(out)

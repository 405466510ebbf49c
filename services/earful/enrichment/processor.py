"""The enrichment processor: raw mention records in, enriched mention records out.

Pure apart from the models it holds: no Kafka, no clocks (the caller passes `now`), so the
service, the `earful enrich` batch command and the tests all run the same code. Each output
records the model and version behind each field, so results can be re-scored by replay later.

Per batch: language for every text (a three-detector vote), the English texts together through
the spaCy NER (`nlp.pipe`), every supported language together through the sentiment model (one
sparse matrix product), then rules (social entities, risk and intent tags) and watchlist matching
per text.

Every step reads at most the first `max_text_chars` characters of a text (EARFUL_ENRICH_MAX_TEXT_CHARS,
by default the ingest limit), cut at a word boundary: ingest refuses longer texts, but a record
produced straight to the raw topic or a file given to `earful enrich` may carry a megabyte, and the
rules' cost grows faster than the text. The mention itself, text included, passes through whole;
every span refers to the text's first characters, so it stays valid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from earful.core.settings import Settings
from earful.enrichment.language import LanguageDecision, LanguageDetector
from earful.enrichment.ner import SPACY_TO_EARFUL, EntityRecogniser
from earful.enrichment.rules import RISK_RULES_VERSION, risk_tags, social_entities
from earful.enrichment.sentiment import SentimentBackend, SentimentResult, load_backend
from earful.watchlists import Match, WatchlistSet, WatchlistSource
from earful.watchlists.text import clip_text

__all__ = ["NER_LANGUAGES", "SPACY_TO_EARFUL", "EnrichmentProcessor", "clip_text"]

NER_LANGUAGES = frozenset({"en"})
DEFAULT_MAX_TEXT_CHARS = 20_000  # the ingest limit's default


def load_watchlists(settings: Settings) -> WatchlistSet:
    """The watchlists of the folder (the batch command, tests); the service hands in a live store."""
    return WatchlistSet.from_file(settings.watchlists_dir)


class EnrichmentProcessor:
    """Holds the loaded models; `enrich(batch, now)` is the whole per-batch computation.

    `watchlists` is a fixed `WatchlistSet` or a live store; its `current()` set is taken once per
    batch, so a mention is never matched against half an update."""

    def __init__(self, watchlists: WatchlistSource, spacy_model: str = "builtin", sentiment_model: str = "builtin",
                 sentiment_languages: str = "", max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> None:
        self.watchlists = watchlists
        self.max_text_chars = max_text_chars
        self.language = LanguageDetector()
        self.ner = EntityRecogniser(spacy_model)
        self.sentiment_backend: SentimentBackend = load_backend(sentiment_model, sentiment_languages)

    @classmethod
    def from_settings(cls, settings: Settings, watchlists: WatchlistSource | None = None) -> EnrichmentProcessor:
        """The processor the settings describe (watchlists: the folder's, unless a live store is given)."""
        return cls(watchlists if watchlists is not None else load_watchlists(settings), settings.spacy_model,
                   settings.sentiment_model, settings.sentiment_languages, settings.enrichment_text_limit())

    @property
    def models(self) -> dict[str, str]:
        """Model and version behind each field (the ModelVersions record)."""
        return {
            "language": self.language.name,
            "ner": self.ner.name,
            "sentiment": self.sentiment_backend.name,
            "risk": RISK_RULES_VERSION,
            "watchlists": self.watchlists.current().model_version,
        }

    def detect_language(self, text: str, declared: str | None = None) -> dict[str, Any]:
        decision = self.language.detect(text, declared)
        return {"code": decision.code, "confidence": decision.confidence}

    @staticmethod
    def _match_watchlists(watchlists: WatchlistSet, mention: dict[str, Any], text: str, lang: str) -> list[Match]:
        """The one place watchlists are matched: the (clipped) text plus the fields queries may filter on."""
        return watchlists.match(text, lang=lang, source=mention.get("source"),
                                author=(mention.get("author") or {}).get("handle"), country=mention.get("country"),
                                url=mention.get("url"))

    def _title(self, mention: dict[str, Any]) -> str | None:
        """The mention's headline, clipped like its text: the question rules skip a question in it."""
        title = mention.get("title")
        return clip_text(title, self.max_text_chars) if title else None

    def enrich(self, mentions: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        """Enrich a batch; the models see the batch's texts together, each clipped to `max_text_chars`."""
        if not mentions:
            return []
        texts = [clip_text(m["text"], self.max_text_chars) for m in mentions]
        languages: list[LanguageDecision] = [self.language.detect(t, m.get("lang")) for t, m in zip(texts, mentions)]
        codes = [lang.code for lang in languages]

        ner_rows = [i for i, code in enumerate(codes) if code in NER_LANGUAGES]
        ner_spans: dict[int, list[dict[str, Any]]] = dict(
            zip(ner_rows, self.ner.entities([texts[i] for i in ner_rows], batch_size=len(ner_rows))))
        sentiments: list[SentimentResult] = self.sentiment_backend.predict(texts, codes)
        watchlists = self.watchlists.current()  # one complete set for the whole batch, even during an update
        models = {**self.models, "watchlists": watchlists.model_version}

        out = []
        for i, mention in enumerate(mentions):
            text = texts[i]
            entities = social_entities(text)
            taken = [(e["start"], e["end"]) for e in entities]
            entities += [e for e in ner_spans.get(i, []) if not any(e["start"] < b and a < e["end"] for a, b in taken)]
            entities.sort(key=lambda e: e["start"])
            matches = self._match_watchlists(watchlists, mention, text, codes[i])
            s = sentiments[i]
            out.append(
                {
                    "schema_version": 4,
                    "mention": mention,
                    "language": {"code": languages[i].code, "confidence": languages[i].confidence,
                                 "script": languages[i].script},
                    "entities": entities,
                    "sentiment": {"label": s.label, "score": s.score, "reason": s.reason, "probabilities": s.probabilities},
                    "risks": risk_tags(text, title=self._title(mention), source=mention.get("source")),
                    "watchlist_ids": sorted({m.watchlist_id for m in matches}),
                    "matches": [{"watchlist_id": m.watchlist_id, "start": m.start, "end": m.end, "term": m.term}
                                for m in matches],
                    "models": models,
                    "enriched_at": now,
                }
            )
        return out

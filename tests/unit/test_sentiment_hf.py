"""The optional Hugging Face sentiment backend, with a tiny randomly initialised model built here.

Nothing is downloaded: the test writes a 1-layer BERT with a 40-word vocabulary to a temporary
folder and loads it through `EARFUL_SENTIMENT_MODEL` the way a user's own model would be loaded.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the 'hf' extra (torch, transformers) is not installed: pip install 'earful[hf]'")
transformers = pytest.importorskip("transformers", reason="the 'hf' extra is not installed: pip install 'earful[hf]'")

from earful.core.errors import ConfigError  # noqa: E402
from earful.enrichment.sentiment import LABELS, HuggingFaceSentiment, load_backend  # noqa: E402

WORDS = ["the", "flight", "was", "great", "terrible", "ok", "i", "love", "hate", "this", "airline", "service", "bag",
         "lost", "my", "der", "flug", "war", "toll", "@", "user", "http", "!", "?", ".", ",", "a", "an", "and", "not"]


def build_tiny_model(folder: Path, id2label: dict[int, str] | None = None, num_labels: int = 3) -> Path:
    torch.manual_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    labels = id2label or {0: "negative", 1: "neutral", 2: "positive"}
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64, num_labels=num_labels,
                                     id2label=labels, label2id={v: k for k, v in labels.items()})
    model = transformers.BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("hf") / "tiny-sentiment")


def test_local_model_predicts_three_classes(model_dir: Path) -> None:
    backend = load_backend(str(model_dir))
    assert isinstance(backend, HuggingFaceSentiment)
    assert backend.name.startswith("hf:tiny-sentiment@") and len(backend.name.split("@")[1]) == 12
    texts = ["I love this airline!", "the flight was terrible", "der Flug war toll", "ok"]
    results = backend.predict(texts, ["en", "en", "de", "en"])
    assert len(results) == 4
    for r in results:
        assert r.label in LABELS and r.reason is None
        assert set(r.probabilities) == set(LABELS)
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
        assert r.score == pytest.approx(r.probabilities["positive"] - r.probabilities["negative"], abs=1e-3)
        assert r.label == max(r.probabilities, key=r.probabilities.get)
    assert backend.predict(texts, ["en"] * 4) == backend.predict(texts, ["en"] * 4)  # deterministic (eval mode)
    assert backend.predict([], []) == []


def test_languages_limit_gives_a_reason_not_a_label(model_dir: Path) -> None:
    backend = load_backend(str(model_dir), "en, fr")
    german, english, unknown = backend.predict(["der Flug war toll", "great flight", "ok"], ["de", "en", "und"])
    assert german.label is None and german.reason == "unsupported_language:de" and german.probabilities is None
    assert english.label in LABELS
    assert unknown.label is None and unknown.reason == "unknown_language"


def test_class_order_follows_id2label(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path / "reordered", {0: "Positive", 1: "Negative", 2: "Neutral"})
    backend = load_backend(str(folder))
    assert backend.order == [1, 2, 0]  # model output index of negative, neutral, positive


def test_a_two_class_model_is_refused(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path / "binary", {0: "negative", 1: "positive"}, num_labels=2)
    with pytest.raises(ConfigError, match="3-class"):
        load_backend(str(folder))


def test_a_folder_without_a_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EARFUL_SENTIMENT_MODEL"):
        load_backend(str(tmp_path))
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot load"):
        load_backend(str(tmp_path))


def test_the_processor_records_the_local_model(model_dir: Path) -> None:
    from earful.core.mention import MentionIn, to_record
    from earful.enrichment.processor import EnrichmentProcessor
    from earful.watchlists import WatchlistSet

    processor = EnrichmentProcessor(WatchlistSet([], revision="empty"), sentiment_model=str(model_dir),
                                    sentiment_languages="en")
    now = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
    raw = [to_record(MentionIn.model_validate({"source": "twitter", "source_id": str(i), "text": text,
                                               "created_at": "2026-11-02T07:59:00Z"}), now)
           for i, text in enumerate(["I love this airline, the service was great!",
                                     "Der Flug war heute wieder verspätet und niemand hilft."])]
    english, german = processor.enrich(raw, now)
    assert english["models"]["sentiment"] == processor.models["sentiment"] and english["models"]["sentiment"].startswith("hf:")
    assert english["sentiment"]["label"] in LABELS
    assert german["language"]["code"] == "de"
    assert german["sentiment"]["label"] is None and german["sentiment"]["reason"] == "unsupported_language:de"

"""Sentiment: two small linear models shipped in the package, or a local Hugging Face model.

The built-in model is multinomial logistic regression over hashed word 1–2-grams and character
2–5-grams of the normalised text (handles → `@user`, URLs → `http`, letters repeated more than
three times squashed), plus a few lexicon features (VADER's scores, an emoji sentiment score),
once for every language and once more for English only (VADER is an English lexicon: the model
learns how far to trust it in English separately from the emoji signal it gives elsewhere), and
for English texts a summary of the valences of VADER's lexicon words (negation-aware). The n-gram
features of English texts appear twice, shared and English-only, so English gets weights of its
own on top of what all languages share. `earful models train-sentiment --data DIR` trains it twice:
on TweetEval + UMSAB train (it reads English) and, in `multilingual/`, on UMSAB train alone (it
reads the 7 other languages: in the first, English's 45,000 tweets set the regularisation). Each
is stored as two small files: `model.json` (settings, classes, languages, calibration,
provenance) and `weights.npz` (float16 weights, float32 intercepts). Prediction is a sparse matrix
product over a whole batch: tens of microseconds per mention.

A text whose language is undetermined or not one the models were trained on is still read, by the
multilingual model's shared (language-agnostic) weights: its label comes with the reason
`language_agnostic:<code>`. Only a text mostly in a script the models never saw (anything but
Latin and Arabic letters) gets no label, with the reason `unsupported_script:<code>`, and an
empty text `empty_text` — never a silent "neutral".

Two adjustments on the class logits, both chosen on training data: a text with a complaint cue
(`rules.complaint_cue`: a complaint, a disruption, a failed payment, a wait, a threat to leave)
gets `complaint_shift` added to its negative logit, because a brand team counts "the app is down,
can't log in" as negative although no word in it is; and the logits are divided by a temperature
fitted on held-out training data (one for each reading), so a probability means what it says.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import vaderSentiment
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from earful.core.errors import ConfigError
from earful.enrichment.rules import complaint_cue

LABELS = ("negative", "neutral", "positive")
BUILTIN_DIR = Path(__file__).resolve().parent / "models" / "sentiment"

_URL = re.compile(r"https?://\S+|www\.\S+|\bhttp\b")
_HANDLE = re.compile(r"(?<!\w)@\w+")
_REPEAT = re.compile(r"(.)\1{3,}")
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
TOKEN_PATTERN = r"(?u)[@#]?\w+|[^\w\s]"


def normalise(text: str) -> str:
    """What the model sees: lower case, handles and URLs replaced, long letter runs squashed."""
    text = _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = _URL.sub(" http ", text)
    text = _HANDLE.sub(" @user ", text)
    text = _REPEAT.sub(r"\1\1\1", text)
    return text.lower()


@dataclass(frozen=True)
class SentimentResult:
    label: str | None
    score: float  # P(positive) - P(negative), in [-1, 1]
    reason: str | None
    probabilities: dict[str, float] | None


class SentimentBackend(Protocol):
    name: str
    languages: frozenset[str] | None  # None = every language

    def predict(self, texts: Sequence[str], langs: Sequence[str]) -> list[SentimentResult]: ...


def _unsupported(lang: str) -> SentimentResult:
    reason = "unknown_language" if lang == "und" else f"unsupported_language:{lang}"
    return SentimentResult(None, 0.0, reason, None)


def _result(probs: np.ndarray, reason: str | None = None) -> SentimentResult:
    p = {label: round(float(v), 4) for label, v in zip(LABELS, probs)}
    label = LABELS[int(np.argmax(probs))]
    score = max(-1.0, min(1.0, round(p["positive"] - p["negative"], 4)))
    return SentimentResult(label, score, reason, p)


# Letters of the scripts the built-in model learnt from (Latin, with its accented letters, and Arabic).
_KNOWN_SCRIPT = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")
_ANY_LETTER = re.compile(r"[^\W\d_]")


def readable_script(text: str) -> bool:
    """True when at least half of the text's letters are Latin or Arabic (or it has no letters at all:
    emoji and punctuation are read by the lexicon features)."""
    letters = len(_ANY_LETTER.findall(text))
    return letters == 0 or 2 * len(_KNOWN_SCRIPT.findall(text)) >= letters


class Featurizer:
    """Text → sparse features (hashed n-grams, sublinear tf, idf-weighted, L2-normalised) + lexicon
    features. Stateless apart from the idf vector learnt in training."""

    def __init__(self, n_features: int, idf: np.ndarray | None = None, lexicon_scale: float = 1.0,
                 english_lexicon_scale: float = 1.0, language_copies: Sequence[str] = (),
                 copy_scale: float = 1.0, english_word_lexicon: bool = False) -> None:
        self.n_features = n_features
        self.words = HashingVectorizer(n_features=n_features, ngram_range=(1, 2), token_pattern=TOKEN_PATTERN,
                                       alternate_sign=False, norm=None, lowercase=False)
        self.chars = HashingVectorizer(n_features=n_features, analyzer="char_wb", ngram_range=(2, 5),
                                       alternate_sign=False, norm=None, lowercase=False)
        self.idf = idf
        self.lexicon_scale = lexicon_scale
        self.english_lexicon_scale = english_lexicon_scale
        # Languages whose n-gram features appear a second time, only in their own texts: the model
        # then learns weights of its own for that language on top of the shared ones.
        self.language_copies = tuple(language_copies)
        # The copies are multiplied by this: above 1, their weights are regularised less than the shared ones.
        self.copy_scale = copy_scale
        # English texts also get WORD_LEXICON_FEATURES (VADER's word valences, negation-aware).
        self.english_word_lexicon = english_word_lexicon
        self.vader = SentimentIntensityAnalyzer()
        self._emoji = _emoji_scores()

    @property
    def width(self) -> int:
        return (2 * self.n_features * (1 + len(self.language_copies)) + 2 * len(LEXICON_FEATURES)
                + (len(WORD_LEXICON_FEATURES) if self.english_word_lexicon else 0))

    def sparse_counts(self, texts: Sequence[str]) -> Any:
        norm = [normalise(t) for t in texts]
        x = sparse.hstack([self.words.transform(norm), self.chars.transform(norm)], format="csr", dtype=np.float32)
        np.log1p(x.data, out=x.data)
        return x

    def lexicon(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            s = self.vader_scores(text)
            e = [self._emoji[c] for c in text if c in self._emoji] or [0.0]
            rows.append([s["compound"], s["pos"], s["neg"], sum(e) / (1 + len(e)), max(e), min(e)])
        return np.asarray(rows, dtype=np.float32)

    def vader_scores(self, text: str) -> dict[str, float]:
        """VADER's scores; a text longer than VADER_CHUNK_CHARS is scored in chunks of about that size
        (cut at spaces) and the chunks' scores averaged by length. VADER's own cost grows with the
        square of the text's length (16,000 characters: seconds); a post is one chunk, as before."""
        if len(text) <= VADER_CHUNK_CHARS:
            return dict(self.vader.polarity_scores(text))
        chunks, start = [], 0
        while start < len(text):
            end = min(len(text), start + VADER_CHUNK_CHARS)
            if end < len(text):
                space = text.rfind(" ", start + VADER_CHUNK_CHARS // 2, end)
                end = space if space > start else end
            chunks.append(text[start:end])
            start = end
        total = sum(len(c) for c in chunks)
        scores = [(len(c) / total, self.vader.polarity_scores(c)) for c in chunks]
        return {key: sum(w * sc[key] for w, sc in scores) for key in ("compound", "pos", "neg")}

    def word_lexicon(self, texts: Sequence[str]) -> np.ndarray:
        """WORD_LEXICON_FEATURES: the valences of the words of VADER's lexicon in the text (scaled to
        [-1, 1]; flipped and damped as VADER does when one of the three words before is a negation),
        summarised as mean positive and negative valence, the extremes, the share of positive and of
        negative words, and the number of '!' and '?' (up to 3)."""
        lexicon = self.vader.lexicon
        rows = []
        for text in texts:
            tokens = _WORD.findall(text.lower())
            values = []
            for i, token in enumerate(tokens):
                if token in lexicon:
                    value = lexicon[token] / 4.0
                    if any(w in _NEGATIONS or w.endswith("n't") for w in tokens[max(0, i - 3):i]):
                        value *= _NEGATION_SCALAR
                    values.append(value)
            pos = [v for v in values if v > 0]
            neg = [v for v in values if v < 0]
            n = max(1, len(tokens))
            rows.append([sum(pos) / (1 + len(pos)), sum(neg) / (1 + len(neg)), max(values, default=0.0),
                         min(values, default=0.0), len(pos) / n, len(neg) / n,
                         min(text.count("!"), 3) / 3, min(text.count("?"), 3) / 3])
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(WORD_LEXICON_FEATURES))

    def transform(self, texts: Sequence[str], langs: Sequence[str]) -> Any:
        if self.idf is None:
            raise ConfigError("the sentiment featurizer has no idf vector (train it first)")
        x = self.sparse_counts(texts)
        x = x.multiply(self.idf).tocsr()
        x = normalize(x, norm="l2", copy=False)
        lexicon = self.lexicon(texts)
        english = np.asarray([[1.0 if lang == "en" else 0.0] for lang in langs], dtype=np.float32)
        copies = [sparse.diags(np.asarray([self.copy_scale if lang == code else 0.0 for lang in langs],
                                          dtype=np.float32)) @ x
                  for code in self.language_copies]
        blocks = [x, *copies, sparse.csr_matrix(lexicon * self.lexicon_scale),
                  sparse.csr_matrix(lexicon * english * self.english_lexicon_scale)]
        if self.english_word_lexicon:  # computed for the English texts only (zeros elsewhere)
            rows = [i for i, lang in enumerate(langs) if lang == "en"]
            words = np.zeros((len(texts), len(WORD_LEXICON_FEATURES)), dtype=np.float32)
            words[rows] = self.word_lexicon([texts[i] for i in rows])
            blocks.append(sparse.csr_matrix(words * self.english_lexicon_scale))
        return sparse.hstack(blocks, format="csr", dtype=np.float32)


VADER_CHUNK_CHARS = 1000
LEXICON_FEATURES = ("vader_compound", "vader_pos", "vader_neg", "emoji_mean", "emoji_max", "emoji_min")
WORD_LEXICON_FEATURES = ("word_pos_mean", "word_neg_mean", "word_max", "word_min", "word_pos_share",
                         "word_neg_share", "exclamations", "questions")
_WORD = re.compile(r"[a-z']+")
_NEGATIONS = frozenset({"aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt", "ain't",
                        "aren't", "can't", "couldn't", "daren't", "didn't", "doesn't", "dont", "hadnt", "hasnt",
                        "havent", "isnt", "mightnt", "mustnt", "neither", "don't", "hadn't", "hasn't", "haven't",
                        "isn't", "mightn't", "mustn't", "neednt", "needn't", "never", "none", "nope", "nor",
                        "not", "nothing", "nowhere", "oughtnt", "shant", "shouldnt", "uhuh", "wasnt", "werent",
                        "oughtn't", "shan't", "shouldn't", "uh-uh", "wasn't", "weren't", "without", "wont",
                        "wouldnt", "won't", "wouldn't", "rarely", "seldom", "despite", "no", "nobody"})
_NEGATION_SCALAR = -0.74  # VADER's N_SCALAR


def _emoji_scores() -> dict[str, float]:
    """Emoji → sentiment in [-1, 1] from VADER's emoji lexicon (emoji → English description),
    scored with VADER's word lexicon: a language-independent signal."""
    path = Path(vaderSentiment.__file__).parent / "emoji_utf8_lexicon.txt"
    analyzer = SentimentIntensityAnalyzer()
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and len(parts[0]) == 1:
            score = analyzer.polarity_scores(parts[1])["compound"]
            if score:
                out[parts[0]] = score
    return out


class LinearSentiment:
    """The built-in model (see the module docstring)."""

    def __init__(self, model_dir: Path = BUILTIN_DIR) -> None:
        meta_path, weights_path = model_dir / "model.json", model_dir / "weights.npz"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            with np.load(weights_path) as data:
                self.coef = data["coef"].astype(np.float32)  # (features, classes)
                self.intercept = data["intercept"].astype(np.float32)
                idf = data["idf"].astype(np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"sentiment model in {model_dir} is missing or unreadable: {exc}") from exc
        if tuple(meta["classes"]) != LABELS:
            raise ConfigError(f"sentiment model in {model_dir} has classes {meta['classes']}, expected {list(LABELS)}")
        self.meta = meta
        self.languages: frozenset[str] | None = frozenset(meta["languages"])
        self.featurizer = Featurizer(int(meta["n_features"]), idf, float(meta["lexicon_scale"]),
                                     float(meta["english_lexicon_scale"]), meta.get("language_copies", ()),
                                     float(meta.get("copy_scale", 1.0)), bool(meta.get("english_word_lexicon", False)))
        if self.coef.shape != (self.featurizer.width, len(LABELS)):
            raise ConfigError(f"sentiment model in {model_dir}: weights of shape {self.coef.shape} do not fit "
                              f"{self.featurizer.width} features")
        # Per-language additions to the class logits (negative, neutral, positive), chosen in training.
        self.class_offsets = {lang: np.asarray(v, dtype=np.float32).reshape(len(LABELS))
                              for lang, v in meta.get("class_offsets", {}).items()}
        self.complaint_shift = float(meta.get("complaint_shift", 0.0))
        self.temperature = float(meta.get("temperature", 1.0))
        self.agnostic_temperature = float(meta.get("agnostic_temperature", self.temperature))
        self.name = f"earful-linear-sentiment@{meta['version']}"
        # The languages (and the language-agnostic reading) a second model of the same kind reads, trained
        # on those languages alone: in the big model English's 45,000 tweets set the regularisation.
        self.multilingual: LinearSentiment | None = None
        self.routed: frozenset[str] = frozenset(meta.get("multilingual_languages", ()))
        if self.routed:
            self.multilingual = LinearSentiment(model_dir / MULTILINGUAL)
            self.languages = (self.languages or frozenset()) | (self.multilingual.languages or frozenset())
            self.name += f"+{self.multilingual.meta['version']}"

    def logits(self, texts: Sequence[str], langs: Sequence[str]) -> np.ndarray:
        """Uncalibrated class logits: the linear model, the class offsets and the complaint shift."""
        if not texts:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        logits = np.asarray(self.featurizer.transform(texts, langs) @ self.coef + self.intercept)
        if self.class_offsets:
            zero = np.zeros(len(LABELS), dtype=np.float32)
            logits = logits + np.stack([self.class_offsets.get(lang, zero) for lang in langs])
        if self.complaint_shift:
            cued = np.asarray([complaint_cue(t) is not None for t in texts], dtype=np.float32)
            logits[:, 0] += self.complaint_shift * cued
        return logits

    def probabilities(self, texts: Sequence[str], langs: Sequence[str], agnostic: bool = False) -> np.ndarray:
        """Calibrated class probabilities; `agnostic` reads every text with the shared weights only."""
        if agnostic:
            langs = [AGNOSTIC] * len(texts)
        logits = self.logits(texts, langs) / (self.agnostic_temperature if agnostic else self.temperature)
        return softmax(logits)

    def predict(self, texts: Sequence[str], langs: Sequence[str]) -> list[SentimentResult]:
        """Each text by its language's model; a text in another or no language by the shared weights
        (reason `language_agnostic:<code>`); a text in an unknown script gets no label."""
        out = [_unsupported(lang) for lang in langs]
        own, agnostic = [], []
        for i, (text, lang) in enumerate(zip(texts, langs)):
            if not text.strip():
                out[i] = SentimentResult(None, 0.0, "empty_text", None)
            elif not readable_script(text):
                out[i] = SentimentResult(None, 0.0, f"unsupported_script:{lang}", None)
            elif self.languages is None or lang in self.languages:
                own.append(i)
            else:
                agnostic.append(i)
        sub = self.multilingual
        if sub is not None:
            routed = [i for i in own if langs[i] in self.routed]
            own = [i for i in own if langs[i] not in self.routed]
            for i, probs in zip(routed, sub.probabilities([texts[i] for i in routed], [langs[i] for i in routed])):
                out[i] = _result(probs)
        if own:
            for i, probs in zip(own, self.probabilities([texts[i] for i in own], [langs[i] for i in own])):
                out[i] = _result(probs)
        if agnostic:
            reader = sub if sub is not None else self
            for i, probs in zip(agnostic, reader.probabilities([texts[i] for i in agnostic], [], agnostic=True)):
                out[i] = _result(probs, f"language_agnostic:{langs[i]}")
        return out


#: The language code the featurizer is given for a language-agnostic reading (no language's own features).
AGNOSTIC = "und"
#: The sub-folder of the multilingual model (see LinearSentiment.multilingual).
MULTILINGUAL = "multilingual"


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


class HuggingFaceSentiment:
    """A user-supplied local Hugging Face sequence-classification model directory (3 classes).

    Nothing is downloaded: the directory must hold the config, weights and tokenizer
    (`local_files_only`). Class names come from the model's `id2label` when they are negative /
    neutral / positive (any case, or the usual abbreviations); otherwise the ids 0, 1, 2 are read as
    negative, neutral, positive (the convention of the TweetEval / XLM-T models)."""

    def __init__(self, model_dir: Path, languages: frozenset[str] | None = None, max_length: int = 128) -> None:
        try:  # the optional `hf` extra: only a Hugging Face model directory needs it
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise ConfigError("EARFUL_SENTIMENT_MODEL names a Hugging Face model directory, but torch and "
                              "transformers are not installed (pip install 'earful[hf]')") from exc
        if not (model_dir / "config.json").is_file():
            raise ConfigError(f"EARFUL_SENTIMENT_MODEL: {model_dir} is not a Hugging Face model directory (no config.json)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"EARFUL_SENTIMENT_MODEL: cannot load the model in {model_dir}: {exc}") from exc
        self.model.eval()
        self._torch = torch
        labels = {int(i): str(name).lower() for i, name in self.model.config.id2label.items()}
        if len(labels) != 3:
            raise ConfigError(f"EARFUL_SENTIMENT_MODEL: {model_dir} has {len(labels)} classes; a 3-class "
                              "(negative, neutral, positive) model is needed")
        self.order = _class_order(labels)
        self.languages = languages
        self.max_length = max_length
        digest = hashlib.sha256((model_dir / "config.json").read_bytes())
        for weights in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
            digest.update(weights.read_bytes())
        self.name = f"hf:{model_dir.name}@{digest.hexdigest()[:12]}"

    def predict(self, texts: Sequence[str], langs: Sequence[str]) -> list[SentimentResult]:
        return _predict_supported(texts, langs, self.languages, lambda rows: self.probabilities([texts[i] for i in rows]))

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        batch = self.tokenizer([normalise(t) for t in texts], padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        with self._torch.no_grad():
            logits = self.model(**batch).logits
        return self._torch.softmax(logits, dim=-1).numpy()[:, self.order]


def _predict_supported(texts: Sequence[str], langs: Sequence[str], languages: frozenset[str] | None,
                       probabilities: Any) -> list[SentimentResult]:
    """Results in input order: the model's for supported languages (one call for all of them),
    a null label with the reason for the others."""
    rows = [i for i, lang in enumerate(langs) if languages is None or lang in languages]
    out = [_unsupported(lang) for lang in langs]
    if rows:
        for i, probs in zip(rows, probabilities(rows)):
            out[i] = _result(probs)
    return out


_NAMES = {"negative": ("negative", "neg", "label_0"), "neutral": ("neutral", "neu", "label_1"),
          "positive": ("positive", "pos", "label_2")}


def _class_order(id2label: dict[int, str]) -> list[int]:
    """Model output index of negative, neutral, positive."""
    order = []
    for label in LABELS:
        ids = [i for i, name in id2label.items() if name in _NAMES[label]]
        if len(ids) != 1:
            return [0, 1, 2]
        order.append(ids[0])
    return order if sorted(order) == [0, 1, 2] else [0, 1, 2]


def load_backend(spec: str, languages: str = "") -> SentimentBackend:
    """`builtin` (or empty) → the shipped linear model; a directory with model.json → a linear
    model trained by `earful models train-sentiment`; a directory with config.json → Hugging Face."""
    if spec in ("", "builtin"):
        return LinearSentiment()
    path = Path(spec).expanduser()
    if (path / "model.json").is_file():
        return LinearSentiment(path)
    langs = frozenset(x.strip().lower() for x in languages.split(",") if x.strip()) or None
    if (path / "config.json").is_file():
        return HuggingFaceSentiment(path, langs)
    raise ConfigError(f"EARFUL_SENTIMENT_MODEL={spec!r}: neither 'builtin' nor a model directory "
                      "(model.json for a linear model, config.json for a Hugging Face model)")

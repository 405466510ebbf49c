"""Seeded generator of a realistic sample mention stream, and readers for the bundled sample.

Why: demos, load tests and end-to-end tests need a stream that looks like real social listening
traffic (daily rhythm, several languages, replies, reposts, a crisis spike) yet is reproducible
byte for byte, so it can be committed and compared. Nothing here touches the network or the
wall clock; every random choice comes from ``random.Random`` instances derived from the seed.

The model
---------
* **Arrivals.** Each watchlist brand has audiences in up to three regions (Americas UTC-5,
  Europe UTC+1, Asia-Pacific UTC+8). Each (brand, region) pair is an independent
  non-homogeneous Poisson process, simulated by thinning: its rate is the brand's daily peak
  rate times the region's weight times a 24-hour activity curve evaluated at the region's local
  time (low around 03:00-05:00, rising from 06:00, flat through the working day). Summed over
  regions this gives a quiet night and a morning ramp; with the default 00:00-08:00 UTC window,
  acme-air reaches ~2/min, globex ~1.5/min, initech ~0.6/min and skyjet ~0.8/min. General chatter
  that names no watchlist follows the same rhythm: 12% of the baseline, ~10% of the whole stream.
* **Content.** The region picks the language (Europe: en/de/fr/es/pt, Americas: en/es/pt,
  Asia-Pacific: en), the language picks the source (e.g. more Mastodon in German and French),
  and the sector of the brand (airline, telecom, software) picks a kind: praise, complaint,
  question, neutral remark, competitor comparison or a $cashtag post. News items are a headline
  plus lede; blog posts a title plus a paragraph; Reddit posts a title plus body. Texts come
  from hand-written templates per language (text/*.yaml), filled with cities, flight numbers, amounts,
  hashtags, emoji and links. Every brand mention matches its watchlist's query, and the exact
  set of watchlists each text matches is checked with the services' own matcher (chatter
  matches none).
* **Conversation.** Some posts reply to earlier posts of the same source (``in_reply_to``),
  brand help accounts answer a share of customer questions and complaints on Twitter a few
  minutes later, and a few posts quote or repost others (``reposted_from``). Engagement counts
  grow with the author's followers (log-normal, heavy tailed) and are never below the replies
  and reposts visible in the stream.
* **Crisis.** At ``crisis_at_hours`` (default 7.5 h) a security researcher reports that Acme Air
  leaked passenger data; an outage, refund demands, GDPR/regulator and class-action talk and news
  coverage follow in five languages. The crisis is a Poisson process of its own: the rate ramps
  to ~70/min within a minute, holds for a fifth of ``crisis_minutes`` and then decays
  exponentially, giving ~500 mentions over 15 minutes, with many reposts and several times the
  usual engagement. The airline posts a statement and an update, and its help account answers
  some people. Baseline traffic, including acme-air's own, continues meanwhile.

Output lines are ``{"mention": {...}, "scenario": "baseline" | "crisis"}`` where the mention is
exactly the body item ``POST /v1/mentions`` accepts, sorted by ``created_at``.
Run ``python -m earful_dev.sample.generator --help`` (or ``earful sample generate``) to regenerate.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import random
import re
import sys
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from earful.core.errors import ValidationError as EarfulValidationError
from earful.watchlists import Watchlist, WatchlistSet
from earful.watchlists.files import BUNDLED

UTC = timezone.utc
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_WATCHLISTS = BUNDLED  # the services' default watchlists: package data of earful, not of earful-dev
STREAM_FILE = "stream.jsonl.gz"
META_FILE = "stream.meta.json"
GENERATOR = "earful_dev.sample.generator"
VERSION = 1

DEFAULT_SEED = 7
DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)
DEFAULT_HOURS = 8.0
DEFAULT_CRISIS_AT_HOURS = 7.5
DEFAULT_CRISIS_MINUTES = 15.0
CRISIS_WATCHLIST = "acme-air"

SOURCES = ("twitter", "mastodon", "bluesky", "reddit", "news", "blog")
LANGS = ("en", "es", "de", "fr", "pt")
SOCIAL = ("twitter", "bluesky", "mastodon")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000
_TWITTER_EPOCH_MS = 1_288_834_974_657

# ---------------------------------------------------------------------------------------------
# Arrival model
# ---------------------------------------------------------------------------------------------

# Relative activity by local hour of day (1.0 = busiest hour): quiet night, morning ramp.
_DIURNAL = (0.35, 0.22, 0.14, 0.10, 0.08, 0.10, 0.20, 0.42, 0.68, 0.85, 0.93, 0.97,
            1.00, 0.98, 0.95, 0.93, 0.92, 0.93, 0.95, 0.92, 0.85, 0.75, 0.62, 0.48)

_REGIONS: dict[str, dict[str, Any]] = {
    "americas": {"utc_offset": -5, "langs": {"en": 0.76, "es": 0.16, "pt": 0.08}},
    "europe": {"utc_offset": 1, "langs": {"en": 0.46, "de": 0.18, "fr": 0.14, "es": 0.13, "pt": 0.09}},
    "apac": {"utc_offset": 8, "langs": {"en": 1.0}},
}

# Per-brand behaviour; the watchlist (names, handles, query) comes from the watchlists/ folder.
_PROFILES: dict[str, dict[str, Any]] = {
    "acme-air": {
        "sector": "airline", "peak_per_min": 3.9, "competitor": "skyjet", "cashtag": "$ACME",
        "domain": "acmeair.example", "regions": {"europe": 0.62, "americas": 0.33, "apac": 0.05},
        "followers": {"AcmeAir": 482_310, "AcmeAirHelp": 96_415}, "answer": {"question": 0.45, "complaint": 0.22},
    },
    "globex": {
        "sector": "telecom", "peak_per_min": 2.3, "competitor": None, "cashtag": "$GLBX",
        "domain": "globex.example", "regions": {"europe": 0.80, "americas": 0.20},
        "followers": {"Globex": 1_204_877, "GlobexCares": 151_090}, "answer": {"question": 0.35, "complaint": 0.20},
    },
    "initech": {
        "sector": "software", "peak_per_min": 0.95, "competitor": None, "cashtag": None,
        "domain": "initech.example", "regions": {"americas": 0.60, "europe": 0.35, "apac": 0.05},
        "followers": {"Initech": 58_302, "InitechSupport": 9_877}, "answer": {"question": 0.30, "complaint": 0.15},
    },
    "skyjet": {
        "sector": "airline", "peak_per_min": 1.3, "competitor": "acme-air", "cashtag": None,
        "domain": "skyjet.example", "regions": {"europe": 0.75, "americas": 0.25},
        "followers": {"SkyJet": 233_514, "SkyJetHelp": 41_026}, "answer": {"question": 0.25, "complaint": 0.12},
    },
}

_KEEP_REPEAT = 0.15  # chance an exact repeat of an earlier text is kept rather than re-drawn
CHATTER_SHARE = 0.12  # of the baseline (non-crisis) mentions; ~10% of the whole stream with the crisis

_CRISIS_PEAK_PER_MIN = 70.0
_CRISIS_RAMP_MIN = 1.0

_KIND_WEIGHTS = {
    "airline": {"praise": 0.20, "complaint": 0.30, "question": 0.20, "neutral": 0.20, "compare": 0.06, "finance": 0.04},
    "telecom": {"praise": 0.15, "complaint": 0.38, "question": 0.22, "neutral": 0.19, "finance": 0.06},
    "software": {"praise": 0.22, "complaint": 0.27, "question": 0.25, "neutral": 0.26},
}
_KIND_TONE = {"praise": "positive", "complaint": "negative", "question": "neutral", "neutral": "neutral",
              "compare": "neutral", "finance": "neutral", "news": "neutral", "chatter": "neutral"}

_SOURCE_WEIGHTS = {
    "en": {"twitter": 0.44, "bluesky": 0.17, "mastodon": 0.08, "reddit": 0.23, "news": 0.04, "blog": 0.04},
    "es": {"twitter": 0.62, "bluesky": 0.12, "mastodon": 0.06, "reddit": 0.09, "news": 0.06, "blog": 0.05},
    "de": {"twitter": 0.42, "bluesky": 0.14, "mastodon": 0.25, "reddit": 0.08, "news": 0.06, "blog": 0.05},
    "fr": {"twitter": 0.49, "bluesky": 0.14, "mastodon": 0.19, "reddit": 0.07, "news": 0.06, "blog": 0.05},
    "pt": {"twitter": 0.58, "bluesky": 0.20, "mastodon": 0.05, "reddit": 0.07, "news": 0.06, "blog": 0.04},
}
_CRISIS_LANGS = {"en": 0.60, "de": 0.12, "es": 0.11, "fr": 0.10, "pt": 0.07}
_CRISIS_SOURCES = {"twitter": 0.47, "bluesky": 0.15, "mastodon": 0.08, "reddit": 0.13, "news": 0.12, "blog": 0.05}

# ---------------------------------------------------------------------------------------------
# Vocabulary and templates: hand-written text, kept as data in text/*.yaml (see their headers)
# ---------------------------------------------------------------------------------------------

TEXT_DIR = PACKAGE_DIR / "text"


def _load_text(name: str) -> dict[Any, Any]:
    """One file of text/; null keys stand for "no sector" (general chatter), as None does here."""
    with (TEXT_DIR / name).open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


_VOCABULARY = _load_text("vocabulary.yaml")
_CITIES: dict[str, list[str]] = _VOCABULARY["cities"]
_WEEKDAYS: dict[str, list[str]] = _VOCABULARY["weekdays"]
_FIRST: dict[str, list[str]] = _VOCABULARY["first_names"]
_LAST: dict[str, list[str]] = _VOCABULARY["last_names"]
_HANDLE_SUFFIX: list[str] = _VOCABULARY["handle_suffixes"]
_REDDIT_WORDS: list[list[str]] = _VOCABULARY["reddit_words"]  # adjectives, animals
_MASTODON_INSTANCES: list[str] = _VOCABULARY["mastodon_instances"]
_MASTODON_BY_LANG: dict[str, list[str]] = _VOCABULARY["mastodon_by_lang"]
_OUTLETS: dict[str, list[list[Any]]] = _VOCABULARY["outlets"]  # [handle, display name, followers]
_BLOG_SUFFIX: dict[str | None, list[str]] = _VOCABULARY["blog_suffixes"]
_SUBREDDITS: dict[str | None, list[str]] = _VOCABULARY["subreddits"]
_SUBREDDITS_BY_LANG: dict[str, list[str]] = _VOCABULARY["subreddits_by_lang"]
_AGENTS: dict[str, list[str]] = _VOCABULARY["agents"]
_REF: dict[str, dict[str, str]] = _VOCABULARY["reference_names"]
_HASHTAGS: dict[str | None, dict[str, list[str]]] = _VOCABULARY["hashtags"]
_EMOJI: dict[str, list[str]] = _VOCABULARY["emoji"]
_TAILS: dict[str, dict[str, list[str]]] = _VOCABULARY["tails"]
_OPENERS: dict[str, dict[str, list[str]]] = _VOCABULARY["openers"]
_REDDIT_CLOSERS: dict[str, dict[str, list[str]]] = _VOCABULARY["reddit_closers"]  # by mood: question / negative / other

_POSTS = _load_text("posts.yaml")
_SOCIAL: dict[str, dict[str, dict[str, list[str]]]] = _POSTS["social"]
_HEADLINES: dict[str, dict[str, list[str]]] = _POSTS["headlines"]
_LEDES: dict[str, dict[str | None, list[str]]] = _POSTS["ledes"]
_BLOG_TITLES: dict[str, dict[str, list[str]]] = _POSTS["blog_titles"]
_USER_REPLIES: dict[str, dict[str, list[str]]] = _POSTS["user_replies"]
_BRAND_REPLIES: dict[str, dict[str, list[str]]] = _POSTS["brand_replies"]
_CHATTER: dict[str, list[str]] = _POSTS["chatter"]
_CHATTER_HEADLINES: dict[str, list[str]] = _POSTS["chatter_headlines"]

# --- the crisis ------------------------------------------------------------------------------

_CRISIS_TEXT = _load_text("crisis.yaml")
_CRISIS: dict[str, dict[str, list[str]]] = _CRISIS_TEXT["posts"]
_CRISIS_HEADLINES: dict[str, list[str]] = _CRISIS_TEXT["headlines"]
_CRISIS_LEDES: dict[str, list[str]] = _CRISIS_TEXT["ledes"]
_CRISIS_ORIGIN: str = _CRISIS_TEXT["origin"]
_CRISIS_STATEMENTS: list[str] = _CRISIS_TEXT["statements"]
_STATEMENT_MINUTES = ((5.0, 7.0), (11.0, 13.0))  # statement, then update (for a 15-minute crisis)
_CRISIS_REFERENCE_MIN = 15.0
_CRISIS_PHASES = (  # (until minute, weights by kind)
    (3.0, {"breach": 0.45, "outage": 0.25, "anger": 0.25, "question": 0.05}),
    (8.0, {"breach": 0.20, "outage": 0.20, "anger": 0.20, "refund": 0.15, "legal": 0.08, "regulator": 0.07,
           "question": 0.05, "compare": 0.05}),
    (math.inf, {"breach": 0.10, "outage": 0.10, "anger": 0.15, "refund": 0.15, "legal": 0.20, "regulator": 0.15,
                "question": 0.05, "compare": 0.10}),
)

# ---------------------------------------------------------------------------------------------
# Watchlists and term matching
# ---------------------------------------------------------------------------------------------

def load_watchlists(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Read and check a watchlists folder or file (default: the bundled folder) with the services'
    own loader, so the generator and the pipeline can never disagree about what a watchlist is."""
    p = Path(path) if path is not None else DEFAULT_WATCHLISTS
    try:
        loaded = WatchlistSet.from_file(p)
    except EarfulValidationError as exc:
        raise ValueError(str(exc)) from exc
    return [{"id": w.id, "name": w.name, "kind": w.kind, "handles": list(w.handles), "query": w.query}
            for w in loaded.watchlists.values()]


class TermMatcher:
    """Which watchlists a text names (the services' matcher); checks every generated text."""

    def __init__(self, watchlists: Sequence[Mapping[str, Any]]) -> None:
        self._order = [w["id"] for w in watchlists]
        self._set = WatchlistSet([Watchlist(w["id"], w.get("name", w["id"]), w.get("kind", "brand"),
                                            tuple(w.get("terms", ())), tuple(w.get("handles", ())),
                                            query=w.get("query")) for w in watchlists])

    def match(self, text: str) -> list[str]:
        """Ids of the watchlists whose queries match `text`, in watchlist order."""
        found = {m.watchlist_id for m in self._set.match(text)}
        return [wid for wid in self._order if wid in found]


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def _iso(ms: int) -> str:
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _to_ms(dt: datetime) -> int:
    return (dt.astimezone(UTC) - _EPOCH) // _MS


def _diurnal(hour: float) -> float:
    hour %= 24.0
    i = int(hour)
    f = hour - i
    return _DIURNAL[i] * (1.0 - f) + _DIURNAL[(i + 1) % 24] * f


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _ascii(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii")


def _slug(text: str, words: int = 8) -> str:
    parts = re.findall(r"[a-z0-9]+", _ascii(text).lower())
    return "-".join(parts[:words]) or "post"


def _sentence(text: str) -> str:
    """End a template sentence with punctuation (for bodies where it is followed by more text)."""
    return text if text.endswith((".", "!", "?", "…")) else text + "."


_B32_SORTABLE = "234567abcdefghijklmnopqrstuvwxyz"
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


def _thinned(rng: random.Random, t0: float, t1: float, lam_max: float, rate: Any) -> list[int]:
    """Arrival times (ms) of a Poisson process with intensity rate(t) <= lam_max on [t0, t1)."""
    out: list[int] = []
    if lam_max <= 0.0 or t1 <= t0:
        return out
    t = t0
    while True:
        t += rng.expovariate(lam_max)
        if t >= t1:
            return out
        if rng.random() * lam_max < rate(t):
            out.append(int(t))


def _crisis_shape(minutes: float, duration: float) -> float:
    """Relative crisis intensity: linear ramp, plateau for a fifth of the duration, then decay."""
    if minutes < 0.0 or minutes > duration:
        return 0.0
    ramp = min(_CRISIS_RAMP_MIN, duration / 2.0)
    plateau = 0.2 * duration
    tau = max((duration - ramp - plateau) / 3.2, 0.25)
    if minutes < ramp:
        return minutes / ramp
    if minutes < ramp + plateau:
        return 1.0
    return math.exp(-(minutes - ramp - plateau) / tau)


class _Slots(dict):  # type: ignore[type-arg]
    """Template values, drawn lazily on first use so each template only consumes what it needs."""

    def __init__(self, gen: _Generator, lang: str, brand: Mapping[str, Any] | None,
                 other: Mapping[str, Any] | None, formal: bool = False, **fixed: str) -> None:
        super().__init__(fixed)
        self.gen, self.lang, self.brand, self.other, self.formal = gen, lang, brand, other, formal

    def __missing__(self, key: str) -> str:
        value = self.gen._slot(key, self)
        self[key] = value
        return value


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------

class _Generator:
    """One run: arrivals first, then mentions in time order, so replies and reposts can only
    point at posts that already exist; help-desk answers are added last."""

    def __init__(self, seed: int, start_ms: int, end_ms: int, crisis_at_ms: int | None, crisis_minutes: float,
                 rate_scale: float, watchlists: list[dict[str, Any]]) -> None:
        self.seed = seed
        self.start_ms, self.end_ms = start_ms, end_ms
        self.crisis_at_ms, self.crisis_minutes = crisis_at_ms, crisis_minutes
        self.rate_scale = rate_scale
        self.watchlists = watchlists
        self.wl = {w["id"]: w for w in watchlists}
        self.matcher = TermMatcher(watchlists)
        self.rng = random.Random(f"{seed}/content")
        self.brands: dict[str, dict[str, Any]] = {}
        for w in watchlists:
            prof = _PROFILES.get(w["id"])
            if prof is None:
                raise ValueError(f"watchlist {w['id']!r} has no sample profile; known: {', '.join(_PROFILES)}")
            handles = w["handles"] or [w["name"].replace(" ", "")]
            helpdesk = next((h for h in handles[1:] if re.search(r"help|support|care", h, re.I)), handles[-1])
            competitor = prof["competitor"] if prof["competitor"] in self.wl else None
            self.brands[w["id"]] = {**prof, "id": w["id"], "name": w["name"], "handles": handles, "help": helpdesk,
                                    "main": handles[0], "competitor": competitor, "tag": "#" + w["name"].replace(" ", "")}
            own = TermMatcher([w])
            for form in (w["name"], "@" + handles[0], "@" + helpdesk, self.brands[w["id"]]["tag"]):
                if not own.match(form):
                    raise ValueError(f"watchlist {w['id']!r}: its terms must match its name, handles and hashtag ({form!r})")
        self.records: list[dict[str, Any]] = []
        self.by_key: dict[tuple[str, str], dict[str, Any]] = {}
        self.ids: dict[str, set[str]] = {s: set() for s in SOURCES}
        self.posts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.author_ids: dict[str, set[str]] = {s: set() for s in SOURCES}
        self.handles_taken: dict[str, set[str]] = {s: set() for s in SOURCES}
        self.official: dict[tuple[str, str], dict[str, Any]] = {}
        self.seen_texts: set[str] = set()

    # --- slots -----------------------------------------------------------------------------

    def _brand_form(self, b: Mapping[str, Any], formal: bool) -> str:
        if formal:
            return b["name"]
        r = self.rng.random()
        if r < 0.47:
            return b["name"]
        if r < 0.78:
            return "@" + b["main"]
        if r < 0.90:
            return b["tag"]
        return b["name"].lower()

    def _slot(self, key: str, s: _Slots) -> str:
        rng, lang = self.rng, s.lang
        b = s.brand
        if key == "b":
            return self._brand_form(b, s.formal)
        if key == "bn":
            return b["name"]
        if key == "bat":
            return "@" + (b["main"] if rng.random() < 0.6 else b["help"])
        if key == "o":
            return self._brand_form(s.other, s.formal)
        if key == "on":
            return s.other["name"]
        if key == "cash":
            return b["cashtag"]
        if key == "dom":
            return b["domain"]
        if key == "ref":
            return _REF[lang].get(b["sector"], _REF[lang]["airline"])
        if key == "city":
            return rng.choice(_CITIES[lang])
        if key == "city2":
            return rng.choice([c for c in _CITIES[lang] if c != s["city"]])
        if key == "n":
            return str(rng.randrange(100, 3000))
        if key == "gate":
            return f"{rng.choice('ABCDEFGK')}{rng.randrange(1, 60)}"
        if key == "mins":
            return str(rng.randrange(15, 190, 5))
        if key == "hrs":
            return str(rng.randrange(2, 10))
        if key == "days":
            return str(rng.randrange(3, 40))
        if key == "weeks":
            return str(rng.randrange(2, 13))
        if key == "pct":
            return str(rng.randrange(3, 19))
        if key == "pct2":
            return str(rng.randrange(76, 95))
        if key == "k2":
            return str(rng.choice([12, 18, 20, 24, 30, 40, 50, 60, 85, 120]))
        if key == "speed":
            return str(rng.randrange(40, 950, 10))
        if key == "ver":
            return f"{rng.randrange(4, 8)}.{rng.randrange(0, 10)}"
        if key == "day":
            return rng.choice(_WEEKDAYS[lang])
        if key == "agent":
            return rng.choice(_AGENTS[lang])
        if key == "amt":
            v = rng.choice([15, 19, 25, 29, 35, 40, 45, 49, 60, 75, 89, 99, 120, 150, 180, 240])
            if lang == "en":
                return rng.choice(["$", "£", "€"]) + str(v)
            if lang == "pt" and rng.random() < 0.6:
                return f"R$ {v * 5}"
            return f"{v} €" if rng.random() < 0.7 else f"{v}€"
        raise KeyError(key)

    def _fill(self, template: str, slots: _Slots) -> str:
        return template.format_map(slots)

    def _closer(self, lang: str, kind: str, tone: str) -> str:
        mood = "question" if kind == "question" else ("negative" if tone == "negative" else "other")
        return self.rng.choice(_REDDIT_CLOSERS[lang][mood])

    def _lede(self, ledes: Sequence[str], slots: _Slots) -> str:
        """One or two lede sentences, so syndicated-looking items still differ a little."""
        picked = self.rng.sample(list(ledes), k=1 + (len(ledes) > 2 and self.rng.random() < 0.45))
        return " ".join(self._fill(t, slots) for t in picked)

    # --- authors ---------------------------------------------------------------------------

    def _followers(self, source: str) -> int:
        rng = self.rng
        if source == "reddit":
            return int(rng.lognormvariate(1.2, 1.3))
        if source == "blog":
            return int(rng.lognormvariate(6.3, 1.2))
        if rng.random() < 0.012:
            return min(int(rng.paretovariate(1.1) * 25_000), 4_000_000)
        return int(rng.lognormvariate(5.1, 1.6))

    def _new_author_id(self, source: str) -> str:
        while True:
            aid = f"u{self.rng.randrange(10_000, 2_000_000_000)}"
            if aid not in self.author_ids[source]:
                self.author_ids[source].add(aid)
                return aid

    def _unique_handle(self, source: str, handle: str) -> str:
        taken = self.handles_taken[source]
        base, n = handle, 1
        while handle.lower() in taken:
            n += 1
            handle = f"{base}{n}"
        taken.add(handle.lower())
        return handle

    def _make_author(self, source: str, lang: str, sector: str | None) -> dict[str, Any]:
        rng = self.rng
        first, last = rng.choice(_FIRST[lang]), rng.choice(_LAST[lang])
        fa, la = _ascii(first).lower(), _ascii(last).lower()
        style = rng.random()
        if source == "reddit":
            if style < 0.55:
                adj, noun = rng.choice(_REDDIT_WORDS[0]), rng.choice(_REDDIT_WORDS[1])
                handle = f"{adj}_{noun}_{rng.randrange(10, 9999)}"
            else:
                handle = rng.choice([f"{fa}{la[0]}{rng.randrange(1, 99)}", f"throwaway_{rng.randrange(1000, 99999)}",
                                     f"{la}_{fa}", f"not_{fa}_{rng.randrange(10, 99)}"])
            handle = self._unique_handle(source, handle)
            display = handle
        elif source == "blog":
            handle = self._unique_handle(source, f"{fa}{rng.choice(_BLOG_SUFFIX.get(sector, _BLOG_SUFFIX[None]))}")
            display = f"{first} {last}"
        else:
            if style < 0.35:
                raw = f"{fa}_{la}"
            elif style < 0.6:
                raw = f"{fa}{la}{rng.choice(_HANDLE_SUFFIX)}"
            elif style < 0.8:
                raw = f"{fa[0]}{la}{rng.randrange(1, 100)}"
            else:
                raw = f"{fa}{rng.choice(_HANDLE_SUFFIX) or '_'}{rng.randrange(1, 1000)}"
            raw = re.sub(r"[^a-z0-9_]", "", raw)[:15] if source == "twitter" else re.sub(r"[^a-z0-9_.]", "", raw)
            handle = self._unique_handle(source, raw)
            if source == "mastodon":
                instances = _MASTODON_INSTANCES + _MASTODON_BY_LANG.get(lang, [])
                handle = f"{handle}@{rng.choice(instances)}"
            elif source == "bluesky":
                handle = f"{handle.replace('_', '-')}.bsky.example"
            display = rng.choice([f"{first} {last}", f"{first} {last}", first, f"{first} {last[0]}.",
                                  f"{first} ✈️" if sector == "airline" else f"{first} 🌿"])
        author = {"id": self._new_author_id(source), "handle": handle, "display_name": display,
                  "followers": self._followers(source)}
        return {"author": author, "first": first}

    def _author(self, source: str, lang: str, sector: str | None) -> dict[str, Any]:
        """Reuse authors like real streams do: a few post often, most post once (a Chinese restaurant process)."""
        if source == "news":
            handle, display, followers = self.rng.choice(_OUTLETS[lang])
            key = ("news", handle)
            if key not in self.official:
                self.official[key] = {"author": {"id": self._new_author_id("news"), "handle": handle,
                                                 "display_name": display, "followers": followers}, "first": display}
            return self.official[key]
        alpha = {"twitter": 350.0, "bluesky": 150.0, "mastodon": 120.0, "reddit": 250.0, "blog": 25.0}[source]
        posts = self.posts.setdefault((source, lang), [])
        if posts and self.rng.random() >= alpha / (alpha + len(posts)):
            a = self.rng.choice(posts)
        else:
            a = self._make_author(source, lang, sector)
        posts.append(a)
        return a

    def _brand_account(self, brand: Mapping[str, Any], handle: str) -> dict[str, Any]:
        key = ("twitter", handle)
        if key not in self.official:
            author = {"id": self._new_author_id("twitter"), "handle": handle, "display_name": (
                f"{brand['name']} Help" if handle == brand["help"] else brand["name"]),
                "followers": brand["followers"].get(handle, 25_000)}
            self.official[key] = {"author": author, "first": brand["name"]}
        return self.official[key]

    # --- ids and urls ----------------------------------------------------------------------

    def _source_id(self, source: str, ms: int, reddit_comment: bool = False) -> str:
        rng = self.rng
        for _ in range(1000):
            if source == "twitter":
                sid = str(((ms - _TWITTER_EPOCH_MS) << 22) | (rng.randrange(1024) << 12) | rng.randrange(4096))
            elif source == "mastodon":
                sid = str((ms << 16) | rng.getrandbits(16))
            elif source == "bluesky":
                n = ((ms * 1000 + rng.randrange(1000)) << 10) | rng.randrange(1024)
                sid = "".join(_B32_SORTABLE[(n >> (5 * (12 - i))) & 31] for i in range(13))
            elif source == "reddit":
                secs = (ms - self.start_ms) // 1000
                if reddit_comment:
                    sid = "t1_" + _b36(int("m8q0000", 36) + secs * 97 + rng.randrange(97))
                else:
                    sid = "t3_" + _b36(int("1p3a000", 36) + secs * 11 + rng.randrange(11))
            else:
                sid = f"{rng.getrandbits(64):016x}"
            if sid not in self.ids[source]:
                self.ids[source].add(sid)
                return sid
        raise RuntimeError(f"could not draw a unique {source} id")

    def _url(self, source: str, sid: str, author: Mapping[str, Any], ms: int, text: str,
             thread: tuple[str, str] | None) -> str:
        handle = author["handle"]
        if source == "twitter":
            return f"https://twitter.example/{handle}/status/{sid}"
        if source == "mastodon":
            user, _, host = handle.partition("@")
            return f"https://{host or 'mastodon.example'}/@{user}/{sid}"
        if source == "bluesky":
            return f"https://bsky.example/profile/{handle}/post/{sid}"
        if source == "reddit":
            sub, post = thread or ("travel", sid[3:])
            if sid.startswith("t1_"):
                return f"https://reddit.example/r/{sub}/comments/{post}/comment/{sid[3:]}/"
            return f"https://reddit.example/r/{sub}/comments/{post}/{_slug(text)}/"
        day = (_EPOCH + timedelta(milliseconds=ms))
        if source == "news":
            return f"https://{handle}.example/{day:%Y/%m/%d}/{_slug(text)}"
        return f"https://{handle}.example/{day:%Y/%m}/{_slug(text)}/"

    # --- text shaping ----------------------------------------------------------------------

    def _decorate(self, text: str, source: str, lang: str, tone: str, sector: str | None,
                  brand: Mapping[str, Any] | None, question: bool = False) -> str:
        """Social-media garnish: an opener, a tail remark, hashtags, emoji, a link, casual lower case."""
        rng = self.rng
        if source not in SOCIAL:
            return text
        if rng.random() < (0.35 if sector == "crisis" else 0.22):
            text = f"{rng.choice(_OPENERS[lang]['question' if question else tone])} {text}"
        if not question and rng.random() < 0.22:
            tail = rng.choice(_TAILS[lang][tone])
            sep = " " if text.endswith((".", "!", "?")) else ". "
            text = f"{text}{sep}{tail}"
        tags: list[str] = []
        p_tags = {"mastodon": 0.6, "twitter": 0.3, "bluesky": 0.15}[source]
        if rng.random() < p_tags:
            pool = _HASHTAGS[sector if sector in _HASHTAGS else None][lang]
            tags = rng.sample(pool, k=min(len(pool), 1 + (rng.random() < 0.35)))
        if brand is not None and rng.random() < 0.08 and brand["tag"].lower() not in text.lower():
            tags.append(brand["tag"])
        if tags:
            text = f"{text} {' '.join(tags)}"
        if lang == "en" and source != "mastodon" and rng.random() < 0.06:
            text = text.lower()
        if rng.random() < 0.3:
            text = f"{text} {rng.choice(_EMOJI[tone])}"
            if rng.random() < 0.25:
                text += rng.choice(_EMOJI[tone])
        if rng.random() < 0.07:
            code = "".join(rng.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(10))
            text = f"{text} https://t.example/{code}"
        return text

    def _engagement(self, source: str, followers: int, tone: str, crisis: bool, boost: float = 1.0) -> dict[str, int]:
        rng = self.rng
        base = (0.4 + (max(followers, 0) ** 0.55) * 0.08) * boost
        if tone == "negative":
            base *= 1.3
        if crisis:
            base *= rng.uniform(4.0, 12.0)
        likes = int(rng.lognormvariate(math.log(base), 1.0))
        if source == "reddit":
            return {"likes": likes, "reposts": 0, "replies": int(likes * rng.uniform(0.1, 0.6))}
        share = rng.uniform(0.3, 0.9) if crisis else rng.uniform(0.05, 0.35)
        return {"likes": likes, "reposts": int(likes * share), "replies": int(likes * rng.uniform(0.03, 0.25))}

    # --- records ---------------------------------------------------------------------------

    def _add(self, *, ms: int, source: str, lang: str, text: str, who: Mapping[str, Any], scenario: str,
             watchlists: list[str], tone: str, kind: str, parent: dict[str, Any] | None = None,
             repost_of: dict[str, Any] | None = None, boost: float = 1.0, sub: str | None = None) -> dict[str, Any]:
        found = self.matcher.match(text)
        if found != [w for w in self.wl if w in watchlists]:
            raise AssertionError(f"text names {found}, expected {watchlists}: {text!r}")
        target = parent or repost_of
        comment = source == "reddit" and target is not None
        sid = self._source_id(source, ms, reddit_comment=comment)
        if source == "reddit":
            thread = target["thread"] if target is not None else (sub or "travel", sid[3:])
        else:
            thread = None
        author = who["author"]
        if source in ("twitter", "bluesky"):
            declared: str | None = lang
        elif source == "mastodon":
            declared = lang if self.rng.random() < 0.85 else None
        else:
            declared = None
        mention = {
            "source": source, "source_id": sid, "text": text, "created_at": _iso(ms),
            "url": self._url(source, sid, author, ms, text, thread), "lang": declared,
            "author": dict(author),
            "in_reply_to": parent["mention"]["source_id"] if parent is not None else None,
            "reposted_from": repost_of["mention"]["source_id"] if repost_of is not None else None,
            "engagement": self._engagement(source, author["followers"], tone, scenario == "crisis", boost),
        }
        rec = {"ms": ms, "mention": mention, "scenario": scenario, "thread": thread, "who": who,
               "ann": {"watchlists": found, "lang": lang, "tone": tone, "kind": kind},
               "n_replies": 0, "n_reposts": 0}
        if parent is not None:
            parent["n_replies"] += 1
        if repost_of is not None:
            repost_of["n_reposts"] += 1
        self.records.append(rec)
        self.by_key[(source, sid)] = rec
        return rec

    def _compose(self, build: Any, expected: list[str], attempts: int = 40) -> str:
        """Draw texts until one names exactly the expected watchlists (templates almost always do).

        Exact repeats of earlier texts are mostly re-drawn: real streams repeat themselves a little
        (copy-paste complaints, syndicated news), not as often as a finite set of templates would.
        """
        want = [w for w in self.wl if w in expected]
        fallback = None
        for _ in range(attempts):
            text = build()
            if self.matcher.match(text) != want:
                continue
            if text not in self.seen_texts or self.rng.random() < _KEEP_REPEAT:
                self.seen_texts.add(text)
                return text
            fallback = fallback or text
        if fallback is not None:
            return fallback
        raise RuntimeError(f"could not compose a text naming exactly {want}")

    def _choose_parent(self, ms: int, source: str, pred: Any, horizon_ms: int = 2 * _HOUR_MS,
                       weighted: bool = False) -> dict[str, Any] | None:
        cands = []
        for rec in reversed(self.records):
            if ms - rec["ms"] > horizon_ms:
                break
            if rec["ms"] < ms and rec["mention"]["source"] == source and pred(rec):
                cands.append(rec)
            if len(cands) >= 150:
                break
        if not cands:
            return None
        if weighted:
            return self.rng.choices(cands, weights=[c["mention"]["author"]["followers"] + 50 for c in cands])[0]
        return self.rng.choice(cands)

    # --- baseline brand mentions -----------------------------------------------------------

    def brand_mention(self, ms: int, wid: str, region: str) -> None:
        rng = self.rng
        b = self.brands[wid]
        sector = b["sector"]
        lang = _pick(rng, _REGIONS[region]["langs"])
        source = _pick(rng, _SOURCE_WEIGHTS[lang])
        other = self.brands.get(b["competitor"]) if b["competitor"] else None

        # A reply to someone's earlier post about the same brand.
        if source in (*SOCIAL, "reddit") and rng.random() < 0.07:
            parent = self._choose_parent(ms, source, lambda r: r["scenario"] == "baseline"
                                         and wid in r["ann"]["watchlists"] and r["ann"]["kind"] not in ("news", "brand_reply"))
            if parent is not None:
                ptone = parent["ann"]["tone"]
                plang = parent["ann"]["lang"]
                pool = _USER_REPLIES[plang][ptone]
                at = "" if source == "reddit" else "@" + parent["mention"]["author"]["handle"] + " "

                def build_reply() -> str:
                    return at + self._fill(rng.choice(pool), _Slots(self, plang, b, None))
                text = self._compose(build_reply, [wid])
                self._add(ms=ms, source=source, lang=plang, text=text, who=self._author(source, plang, sector),
                          scenario="baseline", watchlists=[wid], tone=ptone, kind="reply", parent=parent)
                return

        if source == "news":
            def build_news() -> str:
                heads = _HEADLINES[lang][sector]
                ledes = _LEDES[lang].get(sector, []) + _LEDES[lang][None]
                s = _Slots(self, lang, b, other, formal=True)
                return f"{self._fill(rng.choice(heads), s)}\n\n{self._lede(ledes, s)}"
            text = self._compose(build_news, [wid])
            self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, sector),
                      scenario="baseline", watchlists=[wid], tone="neutral", kind="news")
            return

        kinds = dict(_KIND_WEIGHTS[sector])
        available = _SOCIAL[lang][sector]
        for k in list(kinds):
            if k not in available or (k == "compare" and other is None) or (k == "finance" and not b["cashtag"]):
                del kinds[k]
        kind = _pick(rng, kinds)
        tone = _KIND_TONE[kind]
        names = [wid] + ([other["id"]] if kind == "compare" and other else [])

        if source == "blog":
            titles = [t for t in _BLOG_TITLES[lang][sector] if ("{o" in t) == (kind == "compare")]
            if not titles:  # no comparison titles in this language: write a plain review
                kind, names = "neutral", [wid]
                titles = [t for t in _BLOG_TITLES[lang][sector] if "{o" not in t]
            tone = _KIND_TONE[kind]

            def build_blog() -> str:
                head = self._fill(rng.choice(titles), _Slots(self, lang, b, other, formal=True))
                body = self._fill(rng.choice(available[kind]), _Slots(self, lang, b, other))
                return f"{head}\n\n{_sentence(body)}"
            text = self._compose(build_blog, names)
            self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, sector),
                      scenario="baseline", watchlists=names, tone=tone, kind=kind)
            return

        if source == "reddit":
            subs = _SUBREDDITS[sector] + (_SUBREDDITS_BY_LANG.get(lang, []) * 3)

            def build_reddit() -> str:
                s = _Slots(self, lang, b, other)  # shared, so the body's city/brand agree with the title
                pool = available[kind]
                picked = rng.sample(pool, k=2) if len(pool) > 1 and rng.random() < 0.6 else [rng.choice(pool)]
                title = self._fill(picked[0], s)
                closer = self._closer(lang, kind, tone)
                if len(picked) == 1:
                    return f"{title}\n\n{closer}"
                return f"{title}\n\n{_sentence(self._fill(picked[1], s))} {closer}"
            text = self._compose(build_reddit, names)
            self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, sector),
                      scenario="baseline", watchlists=names, tone=tone, kind=kind, sub=rng.choice(subs))
            return

        # Twitter / Bluesky / Mastodon; now and then a quote of an earlier post.
        quoted = None
        if source in ("twitter", "bluesky") and rng.random() < 0.015:
            quoted = self._choose_parent(ms, source, lambda r: r["scenario"] == "baseline" and wid in r["ann"]["watchlists"],
                                         weighted=True)

        def build_social() -> str:
            text = self._fill(rng.choice(available[kind]), _Slots(self, lang, b, other))
            text = self._decorate(text, source, lang, tone, sector, b, question=kind == "question")
            if quoted is not None and source == "twitter":
                text = f"{text} {quoted['mention']['url']}"
            return text
        text = self._compose(build_social, names)
        self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, sector),
                  scenario="baseline", watchlists=names, tone=tone, kind=kind, repost_of=quoted)

    # --- chatter ---------------------------------------------------------------------------

    def chatter(self, ms: int, region: str) -> None:
        rng = self.rng
        lang = _pick(rng, _REGIONS[region]["langs"])
        source = _pick(rng, _SOURCE_WEIGHTS[lang])
        if source in ("news", "blog"):
            def build() -> str:
                s = _Slots(self, lang, None, None)
                return f"{rng.choice(_CHATTER_HEADLINES[lang])}\n\n{self._lede(_LEDES[lang][None][1:], s)}"
        elif source == "reddit":
            def build() -> str:
                first = self._fill(rng.choice(_CHATTER[lang]), _Slots(self, lang, None, None))
                return f"{first}\n\n{self._closer(lang, 'chatter', 'neutral')}"
        else:
            def build() -> str:
                text = self._fill(rng.choice(_CHATTER[lang]), _Slots(self, lang, None, None))
                return self._decorate(text, source, lang, "neutral", None, None)
        text = self._compose(build, [])
        kind = "news" if source == "news" else "chatter"
        subs = _SUBREDDITS[None] + _SUBREDDITS_BY_LANG.get(lang, [])
        self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, None),
                  scenario="baseline", watchlists=[], tone="neutral", kind=kind, sub=rng.choice(subs))

    # --- crisis ----------------------------------------------------------------------------

    def crisis_mention(self, ms: int, first: bool) -> None:
        rng = self.rng
        b = self.brands[CRISIS_WATCHLIST]
        other = self.brands.get(b["competitor"]) if b["competitor"] else None
        minute = (ms - self.crisis_at_ms) / _MINUTE_MS
        if first:
            who = self.official.get(("twitter", "breachwatch_kat"))
            if who is None:
                who = {"author": {"id": self._new_author_id("twitter"), "handle": "breachwatch_kat",
                                  "display_name": "Kat Ramos | infosec", "followers": 84_213}, "first": "Kat"}
                self.official[("twitter", "breachwatch_kat")] = who
            text = self._fill(_CRISIS_ORIGIN, _Slots(self, "en", b, None, formal=True))
            self._add(ms=ms, source="twitter", lang="en", text=text, who=who, scenario="crisis",
                      watchlists=[CRISIS_WATCHLIST], tone="negative", kind="origin", boost=3.0)
            return

        lang = _pick(rng, _CRISIS_LANGS)
        source = _pick(rng, _CRISIS_SOURCES)
        texts = _CRISIS[lang]
        is_crisis = lambda r: r["scenario"] == "crisis"  # noqa: E731

        # Reposts: plain retweets and quote posts of earlier crisis posts with reach.
        if source in ("twitter", "bluesky") and rng.random() < 0.16:
            parent = self._choose_parent(ms, source, lambda r: is_crisis(r) and r["ann"]["kind"] != "repost",
                                         horizon_ms=_HOUR_MS, weighted=True)
            if parent is not None:
                if source == "twitter" and rng.random() < 0.25:
                    ph = parent["mention"]["author"]["handle"]
                    text = f"RT @{ph}: {parent['mention']['text']}"
                    if len(text) > 280:
                        text = text[:279] + "…"
                    self._add(ms=ms, source=source, lang=parent["ann"]["lang"], text=text,
                              who=self._author(source, parent["ann"]["lang"], "airline"), scenario="crisis",
                              watchlists=parent["ann"]["watchlists"], tone=parent["ann"]["tone"], kind="repost",
                              repost_of=parent)
                    return

                def build_quote() -> str:
                    t = self._fill(rng.choice(texts["quote"]), _Slots(self, lang, b, other))
                    t = self._decorate(t, source, lang, "negative", "crisis", b)
                    return f"{t} {parent['mention']['url']}" if source == "twitter" else t
                text = self._compose(build_quote, [CRISIS_WATCHLIST])
                self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, "airline"),
                          scenario="crisis", watchlists=[CRISIS_WATCHLIST], tone="negative", kind="quote",
                          repost_of=parent)
                return

        if source == "news":
            def build_news() -> str:
                s = _Slots(self, lang, b, other, formal=True)
                return f"{self._fill(rng.choice(_CRISIS_HEADLINES[lang]), s)}\n\n{self._lede(_CRISIS_LEDES[lang], s)}"
            text = self._compose(build_news, [CRISIS_WATCHLIST])
            self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, "airline"),
                      scenario="crisis", watchlists=[CRISIS_WATCHLIST], tone="negative", kind="news", boost=2.0)
            return

        weights = next(w for until, w in _CRISIS_PHASES if minute < until)
        if other is None:
            weights = {k: v for k, v in weights.items() if k != "compare"}
        kind = _pick(rng, weights)
        names = [CRISIS_WATCHLIST] + ([other["id"]] if kind == "compare" and other else [])
        tone = "neutral" if kind == "question" else "negative"

        parent = None
        if source != "blog" and rng.random() < 0.09:
            parent = self._choose_parent(ms, source, lambda r: is_crisis(r) and r["ann"]["kind"] not in ("repost", "news"),
                                         horizon_ms=_HOUR_MS, weighted=True)
        prefix = ""
        if parent is not None and source != "reddit":
            prefix = "@" + parent["mention"]["author"]["handle"] + " "

        def build() -> str:
            body = self._fill(rng.choice(texts[kind]), _Slots(self, lang, b, other))
            if source == "reddit":
                if parent is None:
                    return f"{body}\n\n{self._closer(lang, kind, tone)}"
                return body
            if source == "blog":
                title = self._fill(rng.choice(_CRISIS_HEADLINES[lang]), _Slots(self, lang, b, other, formal=True))
                return f"{title}\n\n{_sentence(body)}"
            return prefix + self._decorate(body, source, lang, tone, "crisis", b, question=kind == "question")
        text = self._compose(build, names)
        self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, "airline"),
                  scenario="crisis", watchlists=names, tone=tone, kind=kind, parent=parent,
                  sub=rng.choice(_SUBREDDITS["crisis"]))

    def crisis_statement(self, ms: int, index: int) -> None:
        """The airline's own statement a few minutes in, and an update later."""
        b = self.brands[CRISIS_WATCHLIST]
        text = self._fill(_CRISIS_STATEMENTS[index], _Slots(self, "en", b, None, formal=True))
        self._add(ms=ms, source="twitter", lang="en", text=text, who=self._brand_account(b, b["main"]),
                  scenario="crisis", watchlists=[CRISIS_WATCHLIST], tone="neutral", kind="statement")

    # --- brand help desks ------------------------------------------------------------------

    def brand_replies(self) -> None:
        """Help accounts answer some questions and complaints on Twitter, minutes later."""
        rng = self.rng
        for rec in list(self.records):
            m, ann = rec["mention"], rec["ann"]
            if m["source"] != "twitter" or not ann["watchlists"]:
                continue
            crisis = rec["scenario"] == "crisis"
            if crisis:
                if ann["kind"] not in ("refund", "question", "outage", "anger") or rng.random() >= 0.14:
                    continue
                wid, key, delay_median = CRISIS_WATCHLIST, "crisis", 6.0
            else:
                if ann["kind"] not in ("question", "complaint"):
                    continue
                wid = ann["watchlists"][0]
                if rng.random() >= self.brands[wid]["answer"][ann["kind"]]:
                    continue
                key, delay_median = ann["kind"], 14.0
            b = self.brands[wid]
            ms = rec["ms"] + max(20_000, int(rng.lognormvariate(math.log(delay_median), 0.7) * _MINUTE_MS))
            if ms >= self.end_ms:
                continue
            lang = ann["lang"]
            who = self._brand_account(b, b["help"])
            user = m["author"]["handle"]
            first = rec["who"]["first"].split()[0]
            s = _Slots(self, lang, b, None, formal=True, first=first)
            text = f"@{user} " + self._fill(rng.choice(_BRAND_REPLIES[lang][key]), s)
            self._add(ms=ms, source="twitter", lang=lang, text=text, who=who, scenario=rec["scenario"],
                      watchlists=[wid], tone="neutral", kind="brand_reply", parent=rec, boost=0.3)

    # --- the whole run ---------------------------------------------------------------------

    def arrivals(self) -> list[tuple[int, int, str, str, str]]:
        """All Poisson arrivals: (ms, order, type, watchlist, region), each process with its own RNG."""
        events: list[tuple[int, int, str, str, str]] = []
        t0, t1 = float(self.start_ms), float(self.end_ms)
        chatter_weight: dict[str, float] = {}
        for wid, b in self.brands.items():
            for region, weight in b["regions"].items():
                peak = b["peak_per_min"] * weight * self.rate_scale / _MINUTE_MS
                chatter_weight[region] = chatter_weight.get(region, 0.0) + peak
                off = _REGIONS[region]["utc_offset"]
                def rate(t, p=peak, o=off):
                    return (p * _diurnal(t / _HOUR_MS + o))
                rng = random.Random(f"{self.seed}/arrivals/{wid}/{region}")
                events += [(ms, 0, "brand", wid, region) for ms in _thinned(rng, t0, t1, peak, rate)]
        factor = CHATTER_SHARE / (1.0 - CHATTER_SHARE)
        for region, peak in sorted(chatter_weight.items()):
            peak *= factor
            off = _REGIONS[region]["utc_offset"]
            def rate(t, p=peak, o=off):
                return (p * _diurnal(t / _HOUR_MS + o))
            rng = random.Random(f"{self.seed}/arrivals/chatter/{region}")
            events += [(ms, 1, "chatter", "", region) for ms in _thinned(rng, t0, t1, peak, rate)]
        if self.crisis_at_ms is not None and CRISIS_WATCHLIST in self.brands:
            cpeak = _CRISIS_PEAK_PER_MIN * max(self.rate_scale, 0.25) / _MINUTE_MS
            c0 = float(self.crisis_at_ms)
            c1 = min(t1, c0 + self.crisis_minutes * _MINUTE_MS)
            dur = self.crisis_minutes
            def rate(t):
                return (cpeak * _crisis_shape((t - c0) / _MINUTE_MS, dur))
            rng = random.Random(f"{self.seed}/arrivals/crisis")
            events += [(ms, 2, "crisis", CRISIS_WATCHLIST, "") for ms in _thinned(rng, c0, c1, cpeak, rate)]
            for i, (lo, hi) in enumerate(_STATEMENT_MINUTES):
                ms = int(c0 + rng.uniform(lo, hi) * _MINUTE_MS * min(1.0, dur / _CRISIS_REFERENCE_MIN))
                if ms < c1:
                    events.append((ms, 3, "statement", CRISIS_WATCHLIST, str(i)))
        events.sort()
        return events

    def run(self) -> None:
        first_crisis = True
        for ms, _, kind, wid, region in self.arrivals():
            if kind == "brand":
                self.brand_mention(ms, wid, region)
            elif kind == "chatter":
                self.chatter(ms, region)
            elif kind == "crisis":
                self.crisis_mention(ms, first_crisis)
                first_crisis = False
            elif not first_crisis:  # the airline only reacts once the story is out
                self.crisis_statement(ms, int(region))
        self.brand_replies()
        for rec in self.records:  # engagement can't be below what the stream itself shows
            eng = rec["mention"]["engagement"]
            eng["replies"] = max(eng["replies"], rec["n_replies"])
            eng["reposts"] = max(eng["reposts"], rec["n_reposts"])
        self.records.sort(key=lambda r: (r["ms"], r["mention"]["source"], r["mention"]["source_id"]))


def _validate(seed: int, start: datetime, hours: float, crisis_at_hours: float | None, crisis_minutes: float,
              rate_scale: float) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (UTC)")
    if not (isinstance(hours, (int, float)) and math.isfinite(hours) and 0 < hours <= 24 * 14):
        raise ValueError(f"hours must be > 0 and at most 336, got {hours}")
    if not (math.isfinite(rate_scale) and 0 < rate_scale <= 20):
        raise ValueError(f"rate scale must be > 0 and at most 20, got {rate_scale}")
    if crisis_at_hours is not None:
        if not (math.isfinite(crisis_at_hours) and 0 <= crisis_at_hours < hours):
            raise ValueError(f"crisis must start within the stream: 0 <= crisis-at-hours < {hours:g}, got {crisis_at_hours:g}")
        if not (math.isfinite(crisis_minutes) and 0 < crisis_minutes <= 24 * 60):
            raise ValueError(f"crisis minutes must be > 0 and at most 1440, got {crisis_minutes:g}")


def generate_annotated(seed: int = DEFAULT_SEED, start: datetime = DEFAULT_START, hours: float = DEFAULT_HOURS,
                       crisis_at_hours: float | None = DEFAULT_CRISIS_AT_HOURS,
                       crisis_minutes: float = DEFAULT_CRISIS_MINUTES, rate_scale: float = 1.0,
                       watchlists: list[dict[str, Any]] | None = None,
                       ) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """Like `generate`, plus the ground truth per line (watchlists named, true language, tone, kind).

    Why: the stream itself carries only what a source would send; tests and evaluations of the
    enrichment need to know what each line was meant to be.
    """
    _validate(seed, start, hours, crisis_at_hours, crisis_minutes, rate_scale)
    wls = load_watchlists() if watchlists is None else watchlists
    if crisis_at_hours is not None and CRISIS_WATCHLIST not in {w["id"] for w in wls}:
        raise ValueError(f"the crisis needs the {CRISIS_WATCHLIST!r} watchlist")
    start_ms = _to_ms(start)
    end_ms = start_ms + round(hours * _HOUR_MS)
    crisis_ms = None if crisis_at_hours is None else start_ms + round(crisis_at_hours * _HOUR_MS)
    gen = _Generator(seed, start_ms, end_ms, crisis_ms, crisis_minutes, rate_scale, wls)
    gen.run()
    lines = [{"mention": r["mention"], "scenario": r["scenario"]} for r in gen.records]
    annotations = [r["ann"] for r in gen.records]
    crisis_recs = [r for r in gen.records if r["scenario"] == "crisis"]
    crisis: dict[str, Any] | None = None
    if crisis_ms is not None:
        crisis = {"watchlist_id": CRISIS_WATCHLIST,
                  "start": crisis_recs[0]["mention"]["created_at"] if crisis_recs else None,
                  "end": crisis_recs[-1]["mention"]["created_at"] if crisis_recs else None,
                  "count": len(crisis_recs)}
    meta = {"seed": seed, "start": _iso(start_ms), "end": _iso(end_ms), "count": len(lines),
            "watchlists": [w["id"] for w in wls], "crisis": crisis, "generator": GENERATOR, "version": VERSION}
    return lines, meta, annotations


def generate(seed: int = DEFAULT_SEED, start: datetime = DEFAULT_START, hours: float = DEFAULT_HOURS,
             crisis_at_hours: float | None = DEFAULT_CRISIS_AT_HOURS, crisis_minutes: float = DEFAULT_CRISIS_MINUTES,
             rate_scale: float = 1.0, watchlists: list[dict[str, Any]] | None = None,
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate the sample stream: lines ``{"mention", "scenario"}`` sorted by time, and the meta dict.

    Why: one seeded function is the single source of the bundled sample, so anyone can rebuild or
    vary it (longer, busier, without the crisis) and get byte-identical results for the same input.
    ``crisis_at_hours=None`` leaves the crisis out; ``rate_scale`` scales baseline rates (the
    crisis scales too, but never below a quarter, so it stays visible in small test streams).
    """
    lines, meta, _ = generate_annotated(seed, start, hours, crisis_at_hours, crisis_minutes, rate_scale, watchlists)
    return lines, meta


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def _dump_line(line: Mapping[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def write(lines: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], out_dir: str | Path) -> None:
    """Write stream.jsonl.gz and stream.meta.json; gzip mtime is 0 so equal input gives equal bytes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        for line in lines:
            gz.write((_dump_line(line) + "\n").encode("utf-8"))
    (out / STREAM_FILE).write_bytes(buf.getvalue())
    (out / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def read_stream(path: str | Path | None = None) -> Iterator[dict[str, Any]]:
    """Yield the lines of a .jsonl or .jsonl.gz stream (default: the bundled sample), lazily."""
    p = Path(path) if path is not None else PACKAGE_DIR / STREAM_FILE
    opener = gzip.open if p.name.endswith(".gz") else open
    with opener(p, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for raw in fh:
            if raw.strip():
                yield json.loads(raw)


def read_meta(path: str | Path | None = None) -> dict[str, Any]:
    """The meta dict written next to a stream (default: the bundled sample's)."""
    p = Path(path) if path is not None else PACKAGE_DIR / META_FILE
    return json.loads(p.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

class _UsageError(Exception):
    pass


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse that reports instead of exiting, so `main` always returns a status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


def _parse_start(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {value!r}") from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _parser(prog: str | None = None) -> _Parser:
    p = _Parser(prog=prog or "earful sample generate",
                description="Generate the seeded sample mention stream (stream.jsonl.gz + stream.meta.json).")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    p.add_argument("--start", type=_parse_start, default=DEFAULT_START,
                   help="start of the stream, RFC 3339 (default 2026-11-02T00:00:00Z)")
    p.add_argument("--hours", type=float, default=DEFAULT_HOURS, help="hours of history (default %(default)s)")
    p.add_argument("--crisis-at-hours", type=float, default=DEFAULT_CRISIS_AT_HOURS,
                   help="when the acme-air crisis starts, hours after start (default %(default)s)")
    p.add_argument("--no-crisis", action="store_true", help="leave the crisis out")
    p.add_argument("--crisis-minutes", type=float, default=DEFAULT_CRISIS_MINUTES,
                   help="how long the crisis lasts (default %(default)s)")
    p.add_argument("--rate-scale", type=float, default=1.0, help="multiply all baseline rates (default %(default)s)")
    p.add_argument("--out", type=Path, default=PACKAGE_DIR, help="output directory (default: the bundled sample's folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: generate and write the stream; 0 on success, 2 on bad arguments or I/O errors."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except _Exit as exc:
        return exc.status
    crisis_at = None if args.no_crisis else args.crisis_at_hours
    try:
        lines, meta = generate(seed=args.seed, start=args.start, hours=args.hours, crisis_at_hours=crisis_at,
                               crisis_minutes=args.crisis_minutes, rate_scale=args.rate_scale)
        write(lines, meta, args.out)
    except (ValueError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    crisis = meta["crisis"]
    crisis_note = f", crisis {crisis['count']} from {crisis['start']}" if crisis else ", no crisis"
    print(f"{parser.prog}: wrote {meta['count']} mentions {meta['start']}..{meta['end']} (seed {meta['seed']}"
          f"{crisis_note}) to {Path(args.out) / STREAM_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The words an alert's explanation and the dashboard's distinctive terms are made of: terms and
phrases of posts, what never counts as one (stop words, the watchlist's own names, handles,
links), and which of them are distinctive (the alerting and storage services share these rules).

* `terms_of`: the distinct words, hashtags and two-word phrases of a text, cut by the same
  tokenizer as watchlist queries (`earful.watchlists.text`), without stop words of the post's
  language (and English, which social posts mix in), handles, links and numbers. A phrase is two
  adjacent words with nothing but white space between them.
* `BrandTerms`: the watchlist's query terms, brand names and handles, and every token of them
  (with and without # and @), which a term must not contain: a brand's own name is never what
  its alert is about.
* `telling_terms`: what an explanation (and the dashboard) shows of them: the watchlist's own names left out, a prior
  scaled to the counts compared, a word dropped when a phrase containing it covers most of its posts.
* `distinctive`: the log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi and
  Quinn 2008, "Fightin' Words", section 3.5) of each term in the alert window against the
  watchlist's own recent history (or in a period against the one before), as a z-score.

Stop lists are spaCy's (`spacy/lang/<code>/stop_words.py`, MIT licence), read from the installed
package without importing spaCy (which would cost the alerting service seconds at start-up); a
language spaCy has no list for uses English only.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from earful.watchlists import Watchlist
from earful.watchlists.query import And, Field, Near, Node, Not, Or, Words
from earful.watchlists.text import fold, scan

log = logging.getLogger(__name__)

#: Languages whose stop words are removed from a post whose language is unknown ('und').
CORE_LANGUAGES = ("en", "es", "de", "fr", "pt", "it")
#: Words of social posts that say nothing in any language (retweet markers, HTML leftovers, link parts).
SOCIAL_STOP_WORDS = frozenset("rt via amp gt lt http https www com html htm co cc ok oh lol lmao omg pls plz".split())
#: Romanised Hindi function words (spaCy's Hindi list is in Devanagari).
ROMANISED_HINDI = frozenset("""
hai hain ka ki ke ko se me mein main aur bhi nahi nahin nhi kya ye yeh wo woh tha thi the to hi ho raha rahi
rahe kar karo kiya gaya gayi ek koi kuch ab abhi bhai yaar
""".split())
MAX_TERMS_PER_POST = 60  # distinct terms kept of one post (a long blog post is one voice, not hundreds)
MIN_WORD_CHARS = 2


def _spacy_lang_dir() -> Path | None:
    """spaCy's `lang` folder, found without importing spaCy; None when spaCy is not installed."""
    try:
        spec = importlib.util.find_spec("spacy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lang"


@functools.cache
def stop_words(lang: str) -> frozenset[str]:
    """spaCy's stop words of `lang` (ISO 639-1), folded as terms are; empty when there is no list.

    The file is a plain assignment (``STOP_WORDS = set(\"\"\"...\"\"\".split())``, English adds
    contractions); it runs with nothing but `set` available, so it can only build a set.
    """
    folder = _spacy_lang_dir()
    if folder is None or not lang.isalpha() or len(lang) > 3:
        return frozenset()
    path = folder / lang / "stop_words.py"
    try:
        source = path.read_text(encoding="utf-8")
    except OSError:
        return frozenset()
    namespace: dict[str, object] = {"__builtins__": {"set": set, "list": list}}
    try:
        exec(compile(source, str(path), "exec"), namespace)  # an installed package's data file, without builtins
    except Exception as exc:  # a future spaCy may write its lists differently: fall back to none
        log.warning("cannot read spaCy stop words", extra={"lang": lang, "error": str(exc)[:200]})
        return frozenset()
    words = namespace.get("STOP_WORDS")
    if not isinstance(words, set):
        return frozenset()
    return frozenset(fold(w) for w in words if isinstance(w, str))


@functools.cache
def _stops_for(lang: str) -> frozenset[str]:
    """Everything that is no term in a post of `lang`: its stop words, English ones, social noise."""
    code = (lang or "und").split("-")[0].lower()
    if code in ("und", ""):
        words: set[str] = set()
        for core in CORE_LANGUAGES:
            words |= stop_words(core)
    else:
        words = set(stop_words(code)) | stop_words("en")
    if code == "hi":
        words |= ROMANISED_HINDI
    return frozenset(words | SOCIAL_STOP_WORDS)


def _is_word(key: str) -> bool:
    if key.isalpha():  # most words: no digit to rule out
        return len(key) >= MIN_WORD_CHARS
    return len(key) >= MIN_WORD_CHARS and not key.isdigit() and not key.replace(".", "").replace(",", "").isdigit()


def terms_of(text: str, lang: str = "und") -> tuple[str, ...]:
    """Distinct terms of a text in order: words, hashtags, cashtags and two-word phrases, without
    stop words (of `lang`, English and social noise), handles, links or numbers."""
    stops = _stops_for(lang)
    seen: dict[str, None] = {}
    prev_word: str | None = None
    prev_end = -1
    for key, start, end, _pos, kind in scan(text):
        if key is None or kind in ("url", "handle", "glued"):
            prev_word = None
            continue
        if kind in ("hashtag", "cashtag"):
            if _is_word(key[1:]):
                seen.setdefault(key, None)
            prev_word = None
            continue
        if key in stops or not _is_word(key):
            prev_word = None
            continue
        if prev_word is not None and text[prev_end:start].isspace():
            seen.setdefault(f"{prev_word} {key}", None)
        seen.setdefault(key, None)
        prev_word, prev_end = key, end
        if len(seen) >= MAX_TERMS_PER_POST:
            break
    return tuple(seen)


# --- the watchlist's own words ---------------------------------------------------------------


@dataclass(frozen=True)
class BrandTerms:
    """What a watchlist listens for: no term containing one of these tokens (or starting with a
    wildcard's prefix) is distinctive of its alerts."""

    tokens: frozenset[str]
    prefixes: tuple[str, ...] = ()

    def excludes(self, term: str) -> bool:
        """Whether `term` (a word, a #tag or $tag, or a two-word phrase) names the watchlist itself."""
        for part in term.split(" "):
            bare = part[1:] if part[:1] in "#@$" else part
            if part in self.tokens or bare in self.tokens:
                return True
            if self.prefixes and bare.startswith(self.prefixes):
                return True
        return False


def _query_words(node: Node) -> Iterable[tuple[str, bool]]:
    """(key, is_prefix) of every positive term of a query (what it listens for, not what it excludes)."""
    if isinstance(node, Words):
        for key, prefix, _ in node.parts:
            yield key, prefix
    elif isinstance(node, Field):
        if node.name == "author":
            yield fold(node.value.lstrip("@")), False
    elif isinstance(node, (And, Or)):
        for child in node.children:
            yield from _query_words(child)
    elif isinstance(node, Near):
        yield from _query_words(node.left)
        yield from _query_words(node.right)
    elif isinstance(node, Not):
        return


def _tokens_of(phrase: str) -> set[str]:
    """A name's tokens, their sigil-less forms and the whole name run together ("Acme Air" → acmeair)."""
    keys = [k for k, *_ in scan(phrase) if k]
    bare = [k[1:] if k[:1] in "#@$" else k for k in keys]
    out = set(keys) | set(bare)
    if len(bare) > 1:
        out.add("".join(bare))
    return out


def brand_terms(watchlist: Watchlist | None, watchlist_id: str = "") -> BrandTerms:
    """The tokens of a watchlist's name, id, terms, handles and query terms (see `BrandTerms`)."""
    tokens: set[str] = set()
    prefixes: list[str] = []
    names: list[str] = [watchlist_id.replace("-", " ")] if watchlist_id else []
    if watchlist is not None:
        names += [watchlist.name, watchlist.id.replace("-", " "), *watchlist.terms, *watchlist.handles]
        try:
            tree = watchlist.compiled.nnf
        except Exception:  # a query that does not compile here listens for nothing we could exclude
            tree = None
        if tree is not None:
            for key, prefix in _query_words(tree):
                bare = key[1:] if key[:1] in "#@$" else key
                if prefix:
                    prefixes.append(bare)
                else:
                    tokens.update((key, bare))
    for name in names:
        tokens |= _tokens_of(name)
    return BrandTerms(frozenset(t for t in tokens if t), tuple(sorted(set(prefixes))))


# --- distinctive terms -----------------------------------------------------------------------


@dataclass(frozen=True)
class Distinctive:
    term: str
    count: int  # posts of the window containing it
    background: int  # posts of the history containing it
    z: float  # log-odds ratio over its standard error


def distinctive(window: Mapping[str, int], background: Mapping[str, int], background_total: int, *,
                window_total: int | None = None, prior_strength: float = 500.0, min_count: int = 2,
                min_z: float = 1.96, limit: int = 10) -> list[Distinctive]:
    """The window's terms that are over-represented against the background, most distinctive first.

    Counts are of posts containing the term; `background_total` is the sum of the background's
    counts, `window_total` the window's (default: the sum of `window`; larger when terms that may
    not be reported were taken out of `window`, so both totals count the same kinds of term). The prior is informative: each term's pseudo-count is
    `prior_strength` times its share of window and background together, so a term seen twice in a
    small window is not distinctive merely because the history never had it, while a term the
    history uses all the time needs far more than its usual share. z = δ / sqrt(1/(y_i+α) +
    1/(y_j+α)) (Monroe et al. 2008, eq. 22). Terms below `min_count` posts or `min_z` are left out.
    """
    n_i, n_j = (sum(window.values()) if window_total is None else window_total), background_total
    total = n_i + n_j
    if n_i == 0 or total == 0:
        return []
    a0 = prior_strength
    out: list[Distinctive] = []
    for term, y_i in window.items():
        if y_i < min_count:
            continue
        y_j = background.get(term, 0)
        alpha = a0 * (y_i + y_j) / total
        delta = (math.log((y_i + alpha) / max(n_i + a0 - y_i - alpha, 1e-9))
                 - math.log((y_j + alpha) / max(n_j + a0 - y_j - alpha, 1e-9)))
        z = delta / math.sqrt(1.0 / (y_i + alpha) + 1.0 / (y_j + alpha))
        if z >= min_z:
            out.append(Distinctive(term, y_i, y_j, z))
    out.sort(key=lambda d: (-round(d.z, 9), -d.count, " " not in d.term, d.term))  # on a tie, a phrase says more
    return out[:limit]


# Pseudo-counts of the log-odds prior: a tenth of the counts compared, within bounds, so a long
# history does not make every word of a small window distinctive, nor a short one drown a clear
# signal in the prior.
PRIOR_SHARE, PRIOR_MIN, PRIOR_MAX = 0.1, 50.0, 5000.0
MIN_Z = 1.96
PHRASE_COVER = 0.75  # a word whose posts a shown phrase mostly covers adds nothing to the phrase


def telling_terms(window: Mapping[str, int], background: Mapping[str, int], background_total: int,
                  brand: BrandTerms, *, limit: int, min_count: int = 2) -> list[Distinctive]:
    """The window's most distinctive terms against the background, as an explanation shows them.

    Brand terms are left out of the window but counted in its total (the background's total counts
    them too); a word is dropped when a distinctive phrase containing it is in at least
    `PHRASE_COVER` of its posts ("booking fee" says more than "fee").
    """
    window_total = sum(window.values())
    kept_window = {t: c for t, c in window.items() if not brand.excludes(t)}
    prior = min(max(PRIOR_SHARE * (background_total + window_total), PRIOR_MIN), PRIOR_MAX)
    found = distinctive(kept_window, background, background_total, window_total=window_total, prior_strength=prior,
                        min_count=min_count, min_z=MIN_Z, limit=limit * 3)
    phrases = [d for d in found if " " in d.term]
    kept = [d for d in found
            if " " in d.term or not any(d.term in ph.term.split(" ") and ph.count >= PHRASE_COVER * d.count
                                        for ph in phrases)]
    return kept[:limit]

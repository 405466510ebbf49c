"""Tokenising mention texts (and query terms) into what queries can match.

A text is cut once into tokens, each with a position (its word number), its character span and a
key: words are case-folded (Unicode-aware: ``Straße`` and ``STRASSE`` are the same key),
hashtags, handles and cashtags keep their sigil (``#acmeair``, ``@acmeair``, ``$acme``) so a bare
word never matches inside them, and links become URL tokens that only ``site:`` looks at.
Punctuation separates words and is not a token itself; a sentence end (``.``, ``!``, ``?``, ``;``
followed by white space, or a line break) counts as one extra position, so phrases never span
two sentences. Query terms and phrases are cut by this same function, which is what makes "a
phrase matches exactly the texts that contain its words in order" hold.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass

SIGILS = "#@$"


def _combining_marks() -> str:
    """A character-class body of every combining mark (Mn, Mc, Me): part of a word, not a break."""
    ranges: list[tuple[int, int]] = []
    for cp in range(0x300, min(sys.maxunicode, 0x2FFFF) + 1):
        if unicodedata.category(chr(cp)).startswith("M"):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\U{a:08x}-\\U{b:08x}" if a != b else f"\\U{a:08x}" for a, b in ranges)


# A word: word characters, with combining marks (Indic vowel signs, decomposed accents) inside.
_MARKS = _combining_marks()
WORD = rf"\w+(?:[{_MARKS}]+\w*)*"
_TOKEN = re.compile(
    r"((?:https?://|www\.)[^\s<>\"'“”‘’«»]+)"  # 1: url
    rf"|(#{WORD})"  # 2: hashtag
    rf"|(@{WORD}(?:\.{WORD})*)"  # 3: handle (dots inside: name.bsky.social)
    rf"|(\$[^\W\d_]\w*(?:\.\w+)?)"  # 4: cashtag ($ACME, $BRK.B)
    rf"|({WORD})"  # 5: word
)
_GROUP_KINDS = ("", "url", "hashtag", "handle", "cashtag", "word")  # by _TOKEN group number
_SENTENCE_BREAK = re.compile(r"[.!?;…]\s|[\n\r\u2028\u2029]|[。！？]")
_URL_TRAILING = ".,;:!?)]}>'\"…"


def fold(word: str) -> str:
    """The matching form of a word: case-folded and NFC-composed (so é typed either way is é)."""
    if word.isascii():
        return word.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", word).casefold())


def url_parts(url: str) -> tuple[str, str] | None:
    """(host without www., lower-case path) of a link, or None when it has no host."""
    rest = url.split("://", 1)[1] if "://" in url else url
    end = len(rest)
    for stop in "/?#":
        i = rest.find(stop)
        if 0 <= i < end:
            end = i
    netloc = rest[:end].rpartition("@")[2]
    if netloc.startswith("["):  # [IPv6]:port
        host = netloc[1:].partition("]")[0]
    else:
        host = netloc.partition(":")[0]
    host = host.lower().rstrip(".").removeprefix("www.")
    if not host:
        return None
    path = rest[end:]
    for stop in "?#":
        path = path.partition(stop)[0]
    return host, (path or "/").lower()


@dataclass(frozen=True, slots=True)
class Token:
    """One token: `key` is None for tokens nothing can match (links, words glued to a # or @)."""

    key: str | None
    start: int
    end: int
    pos: int
    kind: str  # word | hashtag | handle | cashtag | url | glued


def tokens(text: str) -> list[Token]:
    """Every token of `text`, in order (the readable form; matching uses `scan`)."""
    out = []
    for key, start, end, pos, kind in scan(text):
        out.append(Token(key, start, end, pos, kind))
    return out


def scan(text: str) -> list[tuple[str | None, int, int, int, str]]:
    """(key, start, end, position, kind) of every token; see the module docstring."""
    return index(text, with_keys=False)[0]


def index(text: str, *, with_keys: bool = True) -> tuple[list[tuple[str | None, int, int, int, str]], dict[str, list[int]]]:
    """The tokens of `text` (as `scan`) and, for each matchable key, the indexes of its tokens
    (an empty map without `with_keys`: counting terms needs none, and building it cost a third)."""
    out: list[tuple[str | None, int, int, int, str]] = []
    keys: dict[str, list[int]] = {}
    if text.isascii():
        source, folded_source = text.lower(), True
    else:
        # Case-folding is per character: when it keeps every character one character (no ß → ss)
        # and the text is composed, fold once and slice; else fold token by token.
        folded = text.casefold()
        folded_source = len(folded) == len(text) and unicodedata.is_normalized("NFC", text)
        source = folded if folded_source else text
    pos = -1
    prev_end = -1
    breaks = _SENTENCE_BREAK.search
    for m in _TOKEN.finditer(source):
        start, end = m.span()
        group = m.lastindex
        assert group is not None  # every alternative of _TOKEN is a group
        if prev_end < 0:
            pos = 0
        elif start == prev_end + 1 and source[prev_end] == " ":
            pos += 1
        else:
            pos += 2 if breaks(source, prev_end, start) else 1
        prev_end = end
        if group == 1:
            stripped = text[start:end].rstrip(_URL_TRAILING)
            if text[end - 1] == ")" and stripped.count("(") > stripped.count(")"):
                stripped += ")"  # a link to a page named like Foo_(bar)
            prev_end = start + len(stripped)  # the trailing ")." belongs to the text: it may end a sentence
            out.append((None, start, prev_end, pos, "url"))
            continue
        if group == 5:
            kind = "word"
        else:
            kind = _GROUP_KINDS[group]
            if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
                out.append((None, start, end, pos, "glued"))  # x#tag, name@host: neither a tag nor a word
                continue
        key = source[start:end] if folded_source else fold(source[start:end])
        if with_keys:
            hit = keys.get(key)
            if hit is None:
                keys[key] = [len(out)]
            else:
                hit.append(len(out))
        out.append((key, start, end, pos, kind))
    return out, keys


WORD_BACKOFF = 64  # characters a cut moves back to end on a word boundary (a longer "word" is cut inside)


def clip_text(text: str, limit: int) -> str:
    """The first `limit` characters of `text`, ending before a word the cut would split (so a
    half word never matches a watchlist term), or `text` itself when it is no longer. Enrichment
    matches the clipped text, and a back-fill must match exactly the same."""
    if len(text) <= limit:
        return text
    if not (text[limit - 1].isalnum() and text[limit].isalnum()):
        return text[:limit]
    floor, end = max(limit - WORD_BACKOFF, 0), limit
    while end > floor and text[end - 1].isalnum():
        end -= 1
    return text[:end] if end > floor else text[:limit]

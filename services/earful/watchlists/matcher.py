"""A compiled, immutable set of watchlists and the per-mention matcher.

Cost per mention does not grow with the number of watchlists: the text is tokenised once, each
distinct token is looked up in an inverted index from trigger keys (see `query.triggers`) to the
queries that need them, and only those candidate queries are evaluated. A live update builds a
new set and swaps it in whole; a set is never changed after it is built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from earful.watchlists.files import load_watchlists
from earful.watchlists.model import Watchlist
from earful.watchlists.query import Doc

MATCHER_VERSION = "earful-query/1"

# Words too common in mention texts to stand for a phrase in the index ("The North Face" is found
# by "north" or "face"): the most frequent function words of the languages Earful sees most.
COMMON_WORDS = frozenset("""
a an and are as at be by de for from has have i in is it its my new no not of on or our so that the this to was we
with you your le la les des du un une et en pour sur au aux est der die das und ein eine zu von mit für ist den dem
des im el los las y del con por para una al lo se il di da che per e o
""".split())


@dataclass(frozen=True)
class Match:
    """One matched span of one watchlist.

    `term` is the query term or phrase that matched, as written in the query. A watchlist that
    matched only through a filter on the mention's link (`site:`) has one empty span (0, 0)
    whose term is that filter.
    """

    watchlist_id: str
    start: int
    end: int
    term: str = ""


def set_revision(watchlists: Iterable[Watchlist]) -> str:
    """Revision of a whole set: a hash of its members' ids and revisions."""
    digest = hashlib.sha256()
    for w in sorted(watchlists, key=lambda w: w.id):
        digest.update(f"{w.id}\x1f{w.revision}\x1e".encode())
    return digest.hexdigest()[:12]


class WatchlistSource(Protocol):
    """Anything with a current set: a fixed `WatchlistSet`, or a live `WatchlistStore` whose
    set changes while the service runs (take `current()` once per unit of work)."""

    def current(self) -> WatchlistSet: ...


class WatchlistSet:
    """Watchlists compiled for matching. `match(text, ...)` returns every matched span."""

    def __init__(self, watchlists: Iterable[Watchlist] = (), revision: str | None = None) -> None:
        members = list(watchlists)
        self.watchlists: dict[str, Watchlist] = {}
        for w in members:
            self.watchlists[w.id] = w  # a later one with the same id replaces the earlier
        self.revision = revision if revision is not None else set_revision(self.watchlists.values())
        self._ids: list[str] = []
        self._queries = []
        exact: dict[str, list[int]] = {}
        prefixes: dict[str, list[int]] = {}
        sites: dict[str, list[int]] = {}
        for w in self.watchlists.values():
            self._ids.append(w.id)
            self._queries.append(w.compiled)
        # A phrase is indexed under its rarest word in this set: "Acme Pharma" under "acme" when
        # a hundred other watchlists also say "pharma" (never under a word like "the").
        uses: dict[str, int] = {}
        for compiled in self._queries:
            assert compiled.triggers is not None, "compile_query refuses queries without triggers"
            for group in compiled.triggers.exact:
                for key in group:
                    uses[key] = uses.get(key, 0) + 1
        for i, compiled in enumerate(self._queries):
            trig = compiled.triggers
            assert trig is not None
            for group in trig.exact:
                key = min(group, key=lambda k: (k in COMMON_WORDS or len(k) < 3, uses[k], -len(k), k))
                exact.setdefault(key, []).append(i)
            for key in trig.prefixes:
                prefixes.setdefault(key, []).append(i)
            for host in trig.sites:
                sites.setdefault(host, []).append(i)
        self._exact = {k: tuple(v) for k, v in exact.items()}
        self._exact_keys = frozenset(self._exact)
        # Wildcard stems by their first three characters (a tag's sigil counts): each text key is
        # compared only with the stems of its own bucket.
        buckets: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
        for stem, ids in sorted(prefixes.items()):
            buckets.setdefault(stem[:3], []).append((stem, tuple(ids)))
        self._stems = {k: tuple(v) for k, v in buckets.items()}
        self._sites = {k: tuple(v) for k, v in sites.items()}

    def __len__(self) -> int:
        return len(self.watchlists)

    def __contains__(self, watchlist_id: object) -> bool:
        return watchlist_id in self.watchlists

    def get(self, watchlist_id: str) -> Watchlist | None:
        return self.watchlists.get(watchlist_id)

    def current(self) -> WatchlistSet:
        """This set (a fixed set is its own current version; see `WatchlistStore.current`)."""
        return self

    @property
    def model_version(self) -> str:
        """What enriched mentions record as the watchlist model: matcher and set revision."""
        return f"{MATCHER_VERSION}@{self.revision}"

    def candidates(self, doc: Doc) -> list[int]:
        """Indexes of the queries whose trigger keys occur in `doc` (the others cannot match)."""
        found: set[int] = set()
        keys = doc.keys
        exact = self._exact
        for key in self._exact_keys.intersection(keys):  # iterates the text's few keys, not the index
            found.update(exact[key])
        if self._stems:
            stems = self._stems
            for key in keys:
                bucket = stems.get(key[:3])
                if bucket is not None:
                    for stem, ids in bucket:
                        if key.startswith(stem):
                            found.update(ids)
        if self._sites and doc.urls:
            sites = self._sites
            for host, *_ in doc.urls:
                labels = host.split(".")
                for i in range(len(labels) - 1):
                    hit = sites.get(".".join(labels[i:]))
                    if hit is not None:
                        found.update(hit)
        return sorted(found)

    def match(self, text: str, *, lang: str | None = None, source: str | None = None, author: str | None = None,
              country: str | None = None, url: str | None = None) -> list[Match]:
        """Every span of every watchlist whose query matches this mention, in text order.

        The keyword arguments are what the mention's query filters see: `lang` (ISO 639-1),
        `source`, `author` (handle), `country` (ISO 3166-1 alpha-2) and the mention's `url`
        (for site:); unknown values never satisfy a filter on them.
        """
        if not self._queries:
            return []
        doc = Doc(text, lang=lang, source=source, author=author, country=country, url=url)
        candidates = self.candidates(doc)
        if not candidates:
            return []
        out: list[tuple[int, int, int, str]] = []
        for i in candidates:
            query = self._queries[i]
            if query.matches(doc):
                out.extend((span.start, span.end, i, span.term) for span in query.spans(doc))
        out.sort()
        ids = self._ids
        return [Match(ids[i], start, end, term) for start, end, i, term in out]

    def matched_ids(self, matches: list[Match]) -> list[str]:
        """The distinct watchlist ids of `matches`, sorted."""
        return sorted({m.watchlist_id for m in matches})

    @classmethod
    def from_file(cls, path: Path) -> WatchlistSet:
        """Load and validate a folder of watchlist YAML files, or one file with a `watchlists:` list."""
        return cls(load_watchlists(path))

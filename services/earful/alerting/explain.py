"""Why an alert fired: the evidence people see with it, computed from the posts of the alert's
window and the watchlist's own recent history.

Per watchlist the alerting service keeps (`Evidence`):

* the recent posts (the lateness window and the longest rule window, bounded in number), each
  with its terms, tags, sentiment, reach and engagement;
* the watchlist's term history: for each event-time hour of the last `HISTORY_HOURS`, how many
  posts contained each term: exact for a quiet hour, in a sketch of fixed size for a busy one
  (`TermHistory`).

An explanation (`explain`, the Explanation record of schemas/alert_event.avsc) holds: the
window's distinctive terms and phrases against that history (`earful.watchlists.terms`), never the
watchlist's own names or stop words; the risk and intent tags with counts, evidence phrases and
mention ids; the cause (the dominant tag when a substantial share of the posts carry it, else
the most distinctive phrase); top posts ranked by relevance to the alert (cause, distinctive
terms, risk tags, then reach), plus the first post and the loudest one; sources, languages,
sentiment with mean confidence, reach and engagement. Both posts and history are also written to
PostgreSQL (`earful.alerting.evidence_store`), so a restarted service explains alerts with what
it saw before the restart.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from earful.core.vocabulary import INTENT_TAGS, RISK_TAGS
from earful.watchlists.terms import BrandTerms, telling_terms, terms_of

TOP_POSTS = 3  # posts ranked by relevance (the first and the loudest post come on top, when not among them)
TOP_TERMS = 8
TEXT_CHARS = 280
MAX_IDS = 100  # mention ids kept per claim, tag or term
HISTORY_HOURS = 24
SPILL_TERMS = 512  # distinct terms an hour of the term history counts exactly (TermHistory)
SKETCH_WIDTH = 1 << 14  # cells per row of a busy hour's sketch
SKETCH_DEPTH = 2  # rows per hour: a term's count is the least of its cells
CELL_MAX = 0xFFFF  # a cell stops here (posts of one hour and watchlist sharing a cell)
_HASH_MASK = (1 << 64) - 1
_HASH_SHIFT = 24  # each row takes its cell from other bits of the term's hash
# Terms waiting to be written to PostgreSQL, per hour: past this (PostgreSQL unreachable for long)
# only the frequent half is kept, so an outage does not grow the service.
MAX_PENDING_TERMS = 40_000
MAX_PENDING = 20_000  # posts waiting to be written to PostgreSQL (older ones are not needed after a restart)
LOW_CONFIDENCE = 0.6  # a sentiment label whose probability is below this is counted as unsure
MIN_CAUSE_SHARE = 0.3  # share of the window's posts a tag needs to be the cause
MIN_CAUSE_POSTS = 2
HOUR_MS = 3_600_000
#: How tags read in sentences.
TAG_LABELS = {"legal_privacy": "legal/privacy", "customer_question": "customer question",
              "purchase_intent": "purchase intent"}


def tag_label(tag: str) -> str:
    return TAG_LABELS.get(tag, tag.replace("_", " "))


def tag_kind(tag: str) -> str:
    return "risk" if tag in RISK_TAGS else ("intent" if tag in INTENT_TAGS else "other")


@dataclass(frozen=True, slots=True)
class Post:
    """What is kept of one enriched mention, for explanations. Thousands are kept per watchlist:
    slots, and its repeated strings (terms, source, language) interned, so a post costs a few
    hundred bytes and a full cache no more than a fraction of the service's memory."""

    mention_id: str
    source: str
    url: str | None
    author_handle: str | None
    reach: int | None  # the author's followers
    text: str
    created_ms: int
    lang: str
    sentiment: str  # negative | neutral | positive | unknown
    terms: tuple[str, ...]
    engagement: int | None = None  # likes + reposts + replies
    confidence: float | None = None  # the probability of the sentiment label, when the model gives one
    negative: float | None = None  # the probability of negative, when the model gives one
    tags: tuple[tuple[str, str], ...] = ()  # (tag, evidence text)

    @property
    def loudness(self) -> float:
        """Reach × engagement: how many people the post is likely to have reached."""
        return (1.0 + (self.reach or 0)) * (1.0 + (self.engagement or 0))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.mention_id, "src": self.source, "url": self.url, "by": self.author_handle, "reach": self.reach,
                "eng": self.engagement, "text": self.text, "at": self.created_ms, "lang": self.lang, "s": self.sentiment,
                "conf": self.confidence, "neg": self.negative, "tags": [list(t) for t in self.tags], "terms": list(self.terms)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Post:
        return cls(mention_id=d["id"], source=d["src"], url=d.get("url"), author_handle=d.get("by"), reach=d.get("reach"),
                   text=d["text"], created_ms=int(d["at"]), lang=d.get("lang") or "und", sentiment=d.get("s") or "unknown",
                   terms=_interned(d.get("terms") or ()), engagement=d.get("eng"), confidence=d.get("conf"),
                   negative=d.get("neg"), tags=tuple((str(t[0]), str(t[1])) for t in d.get("tags") or ()))


def _interned(terms: Iterable[str]) -> tuple[str, ...]:
    """One copy of each term however many posts and history hours hold it."""
    return tuple(sys.intern(t) for t in terms)


def post_of(record: dict[str, Any]) -> Post:
    """The evidence kept of one enriched mention."""
    m = record["mention"]
    author = m.get("author") or {}
    sentiment = record.get("sentiment") or {}
    label = sentiment.get("label") or "unknown"
    probabilities = sentiment.get("probabilities") or {}
    confidence = probabilities.get(label) if label != "unknown" else None
    engagement = m.get("engagement") or {}
    lang = (record.get("language") or {}).get("code") or "und"
    eng = sum(int(engagement.get(k) or 0) for k in ("likes", "reposts", "replies")) if engagement else None
    return Post(
        mention_id=m["mention_id"], source=sys.intern(m["source"]), url=m.get("url"), author_handle=author.get("handle"),
        reach=author.get("followers"), text=m["text"][:TEXT_CHARS], created_ms=int(m["created_at"].timestamp() * 1000),
        lang=sys.intern(lang), sentiment=sys.intern(str(label)), terms=_interned(terms_of(m["text"], lang)), engagement=eng,
        confidence=None if confidence is None else float(confidence),
        negative=float(probabilities["negative"]) if "negative" in probabilities else None,
        tags=tuple((str(r["tag"]), str(r.get("evidence") or "")) for r in record.get("risks") or ()),
    )


# --- the watchlist's term history -------------------------------------------------------------


class TermHistory:
    """Posts containing each term, per event-time hour, over the last `hours` hours, in bounded memory.

    A quiet hour keeps exact counts; once it has seen `SPILL_TERMS` distinct terms its counts move
    into a count-min sketch of `SKETCH_DEPTH` rows of `width` 16-bit cells (64 KB with the defaults,
    about the cost of 600 exact counts), allocated whole at that moment. So a quiet watchlist costs a
    few KB, a busy one at most 24 rows (1.5 MB) however varied its posts, and a busy hour stops
    growing the moment it spills. An hour's sketch count of a term is the least of its cells: never
    below the true count, above it by about the hour's term occurrences / width on average (terms
    sharing cells), which only makes a term look less distinctive. `total_count` and `posts` are
    exact. `delta` is what was added since it was last written to PostgreSQL, by term (bounded
    while PostgreSQL is unreachable)."""

    def __init__(self, hours: int = HISTORY_HOURS, width: int = SKETCH_WIDTH) -> None:
        if width & (width - 1) or not 0 < width <= 1 << 24:
            raise ValueError(f"the sketch width must be a power of two up to 2**24, not {width}")
        self.hours = hours
        self.width = width
        self._counts: dict[int, Counter[str]] = {}  # quiet hours: exact counts
        self._sketches: dict[int, list[array[int]]] = {}  # busy hours: SKETCH_DEPTH rows of cells
        self.posts_by_hour: dict[int, int] = {}
        self.terms_by_hour: dict[int, int] = {}  # term occurrences
        self.delta: dict[int, tuple[int, Counter[str]]] = {}
        self.newest: int | None = None

    def add(self, hour: int, terms: Iterable[str], posts: int = 1, pending: bool = True) -> None:
        """Count one post's terms (or, restoring, an hour's counts) into `hour`."""
        if self.newest is not None and hour <= self.newest - self.hours:
            return  # older than the history keeps
        if self.newest is None or hour > self.newest:
            self.newest = hour
            self._expire()
        counts = Counter(terms) if not isinstance(terms, Counter) else terms
        occurrences = sum(counts.values())
        rows = self._sketches.get(hour)
        if rows is not None:
            self._count(rows, counts)
        else:
            exact = self._counts.setdefault(hour, Counter())
            exact.update(counts)
            if len(exact) > SPILL_TERMS:
                self._sketches[hour] = rows = self._new_rows()
                self._count(rows, self._counts.pop(hour))
        self.posts_by_hour[hour] = self.posts_by_hour.get(hour, 0) + posts
        self.terms_by_hour[hour] = self.terms_by_hour.get(hour, 0) + occurrences
        if pending:
            n, d = self.delta.get(hour, (0, Counter()))
            d.update(counts)
            if len(d) > MAX_PENDING_TERMS:
                d = _most_frequent(d, MAX_PENDING_TERMS // 2)
            self.delta[hour] = (n + posts, d)

    @property
    def posts(self) -> int:
        return sum(self.posts_by_hour.values())

    @property
    def total_count(self) -> int:
        """Term occurrences over the kept hours."""
        return sum(self.terms_by_hour.values())

    def estimate(self, term: str) -> int:
        """Posts containing `term` over the kept hours (an upper bound: see the class)."""
        found = sum(c.get(term, 0) for c in self._counts.values())
        if self._sketches:
            h = hash(term) & _HASH_MASK
            mask = self.width - 1
            cells = [(h >> (d * _HASH_SHIFT)) & mask for d in range(SKETCH_DEPTH)]
            found += sum(min(row[cell] for row, cell in zip(rows, cells, strict=True))
                         for rows in self._sketches.values())
        return found

    def memory_bytes(self) -> int:
        """What the busy hours' sketches take (the quiet hours' exact counts are small)."""
        return sum(row.itemsize * len(row) for rows in self._sketches.values() for row in rows)

    def _new_rows(self) -> list[array[int]]:
        # written whole: the row's memory is taken at once, not as its cells fill
        return [array("H", [0]) * self.width for _ in range(SKETCH_DEPTH)]

    def _count(self, rows: list[array[int]], counts: Counter[str]) -> None:
        # Item by item: for the tens of terms of one post this is several times faster than numpy's
        # calls. A cell stops at CELL_MAX.
        mask = self.width - 1
        for term, n in counts.items():
            h = hash(term) & _HASH_MASK
            for d, row in enumerate(rows):
                cell = (h >> (d * _HASH_SHIFT)) & mask
                row[cell] = min(row[cell] + n, CELL_MAX)

    def _expire(self) -> None:
        assert self.newest is not None
        for hour in [h for h in self.posts_by_hour if h <= self.newest - self.hours]:
            self._counts.pop(hour, None)
            self._sketches.pop(hour, None)
            del self.posts_by_hour[hour], self.terms_by_hour[hour]

    def span_hours(self) -> int:
        """How many hours the history covers (from its oldest hour to its newest)."""
        return 0 if not self.posts_by_hour or self.newest is None else self.newest - min(self.posts_by_hour) + 1

    def take_delta(self) -> dict[int, tuple[int, Counter[str]]]:
        delta, self.delta = self.delta, {}
        return delta


def _most_frequent(counts: Counter[str], limit: int) -> Counter[str]:
    """The terms seen in two posts or more, at most `limit` of them."""
    return Counter(dict(Counter({t: n for t, n in counts.items() if n >= 2}).most_common(limit)))


# --- evidence per watchlist -------------------------------------------------------------------


class Evidence:
    """Recent posts and term history per watchlist, for explanations."""

    def __init__(self, horizon_ms: int, max_posts: int = 2000, history_hours: int = HISTORY_HOURS) -> None:
        self.horizon_ms = horizon_ms
        self.max_posts = max_posts
        self.history_hours = history_hours
        self._posts: dict[str, deque[Post]] = {}
        self._seen: dict[str, set[str]] = {}
        self._newest: dict[str, int] = {}
        self.history: dict[str, TermHistory] = {}
        self.pending: deque[tuple[str, Post]] = deque(maxlen=MAX_PENDING)  # posts not yet in PostgreSQL

    def add(self, watchlist_id: str, post: Post, *, restored: bool = False) -> bool:
        """Keep a post (False: already kept, e.g. re-delivered). A new post is counted into the
        history and queued for PostgreSQL, unless it is `restored` from there."""
        posts = self._posts.setdefault(watchlist_id, deque(maxlen=self.max_posts))
        seen = self._seen.setdefault(watchlist_id, set())
        if post.mention_id in seen:  # a re-delivered mention is one post
            return False
        if len(posts) == posts.maxlen:
            seen.discard(posts[0].mention_id)
        posts.append(post)  # roughly in event-time order: a late post goes last, and leaves a little late
        seen.add(post.mention_id)
        newest = max(self._newest.get(watchlist_id, post.created_ms), post.created_ms)
        self._newest[watchlist_id] = newest
        while posts and posts[0].created_ms < newest - self.horizon_ms:
            seen.discard(posts.popleft().mention_id)
        if not restored:
            self.history_of(watchlist_id).add(post.created_ms // HOUR_MS, post.terms)
            self.pending.append((watchlist_id, post))
        return True

    def history_of(self, watchlist_id: str) -> TermHistory:
        found = self.history.get(watchlist_id)
        if found is None:
            found = self.history[watchlist_id] = TermHistory(self.history_hours)
        return found

    def posts(self, watchlist_id: str, start_ms: int, end_ms: int) -> list[Post]:
        """The kept posts of [start_ms, end_ms), oldest first."""
        return sorted((p for p in self._posts.get(watchlist_id, ()) if start_ms <= p.created_ms < end_ms),
                      key=lambda p: p.created_ms)

    def explain(self, watchlist_id: str, start_ms: int, end_ms: int, dashboard_url: str | None,
                brand: BrandTerms | None = None, focus_tag: str | None = None) -> dict[str, Any]:
        """The Explanation record (schemas/alert_event.avsc) for the posts in [start_ms, end_ms);
        `focus_tag` is the tag the alert is about, when its rule is about one (risk_mention)."""
        brand = brand or BrandTerms(frozenset())
        posts = self.posts(watchlist_id, start_ms, end_ms)
        history = self.history.get(watchlist_id)
        later = [p for p in self._posts.get(watchlist_id, ()) if p.created_ms >= start_ms]
        terms = top_terms(posts, later, history, brand)
        tags = tag_breakdown(posts)
        cause = cause_of(posts, tags, terms, focus_tag)
        ranked = rank_posts(posts, terms, cause)
        return {
            "top_posts": [post_json(p, roles, relevance, matched) for p, roles, relevance, matched in ranked],
            "top_terms": terms,
            "sources": dict(Counter(p.source for p in posts)),
            "languages": dict(Counter(p.lang for p in posts)),
            "sentiment": dict(Counter(p.sentiment for p in posts)),
            "window_start": start_ms,
            "window_end": end_ms,
            "dashboard_url": dashboard_url,
            "total": len(posts),
            "mention_ids": [p.mention_id for p in posts][:MAX_IDS],
            "tags": tags,
            "cause": cause,
            "sentiment_confidence": sentiment_confidence(posts),
            "negative_share": negative_share(posts),
            "reach": sum(reach_by_author(posts).values()),
            "engagement": sum(p.engagement or 0 for p in posts),
            "history_posts": max(0, history.posts - len(later)) if history is not None else 0,
            "history_hours": history.span_hours() if history is not None else 0,
            "claims": [],
        }


def top_terms(posts: list[Post], later: list[Post], history: TermHistory | None,
              brand: BrandTerms) -> list[dict[str, Any]]:
    """The window's distinctive terms against the history without the window (and what came after
    it), brand terms left out; a word is dropped when a phrase containing it covers most of its posts."""
    window: Counter[str] = Counter()
    for p in posts:
        window.update(p.terms)
    recent: Counter[str] = Counter()
    for p in later:
        recent.update(p.terms)
    background_total = max(0, history.total_count - sum(recent.values())) if history is not None else 0
    background = {t: max(0, history.estimate(t) - recent.get(t, 0)) if history is not None else 0 for t in window}
    out = []
    for d in telling_terms(window, background, background_total, brand, limit=TOP_TERMS):
        ids = [p.mention_id for p in posts if d.term in p.terms]
        out.append({"term": d.term, "count": d.count, "score": round(d.z, 3), "mention_ids": ids[:MAX_IDS]})
    return out


def _phrase(evidence: str) -> str:
    return " ".join(evidence.casefold().split())[:80]


def tag_breakdown(posts: list[Post]) -> list[dict[str, Any]]:
    """Each risk and intent tag of the window: how many posts carry it, which, and the evidence
    phrases that triggered it (most frequent first, with an example post)."""
    ids: dict[str, list[str]] = {}
    phrases: dict[str, Counter[str]] = {}
    example: dict[tuple[str, str], str] = {}
    for p in posts:
        for tag in dict.fromkeys(t for t, _ in p.tags):
            ids.setdefault(tag, []).append(p.mention_id)
        for tag, evidence in p.tags:
            phrase = _phrase(evidence)
            if phrase:
                phrases.setdefault(tag, Counter())[phrase] += 1
                example.setdefault((tag, phrase), p.mention_id)
    order = sorted(ids, key=lambda tag: (tag_kind(tag) != "risk", -len(ids[tag]), tag))
    out: list[dict[str, Any]] = []
    for tag in order:
        counted = sorted((phrases.get(tag) or Counter()).items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        out.append({"tag": tag, "kind": tag_kind(tag), "count": len(ids[tag]),
                    "evidence": [{"phrase": ph, "count": n, "mention_id": example[(tag, ph)]} for ph, n in counted],
                    "mention_ids": ids[tag][:MAX_IDS]})
    return out


def cause_of(posts: list[Post], tags: list[dict[str, Any]], terms: list[dict[str, Any]],
             focus_tag: str | None = None) -> dict[str, Any] | None:
    """What the alert is about: the tag its rule is about (`focus_tag`), else the most carried risk
    tag (else intent tag) when at least MIN_CAUSE_SHARE of the posts (and MIN_CAUSE_POSTS) carry
    it, with its most frequent evidence phrase; else the most distinctive term; None when the
    window has neither."""
    total = len(posts)
    if not total:
        return None
    for kind in ("focus", "risk", "intent"):
        if kind == "focus":
            strong = [t for t in tags if t["tag"] == focus_tag]
        else:
            strong = [t for t in tags if t["kind"] == kind and t["count"] >= MIN_CAUSE_POSTS
                      and t["count"] >= MIN_CAUSE_SHARE * total]
        if strong:
            best = max(strong, key=lambda t: (t["count"], t["tag"] in ("legal_privacy", "regulatory")))
            tagged = [p for p in posts if any(tag == best["tag"] for tag, _ in p.tags)]
            return {"kind": f"{best['kind']}_tag" if best["kind"] != "other" else "risk_tag", "tag": best["tag"], "label": tag_label(best["tag"]),
                    "phrase": _cause_phrase(best["tag"], tagged), "count": best["count"], "total": total,
                    "mention_ids": [p.mention_id for p in tagged][:MAX_IDS]}
    if terms:
        top = terms[0]
        return {"kind": "term", "tag": None, "label": top["term"], "phrase": top["term"], "count": top["count"],
                "total": total, "mention_ids": list(top["mention_ids"])}
    return None


def _cause_phrase(tag: str, tagged: list[Post]) -> str | None:
    """The tag's most frequent evidence phrase; between equally frequent ones, the one most of the
    tagged posts' texts contain, then the longer one."""
    candidates = Counter(_phrase(ev) for p in tagged for t, ev in p.tags if t == tag and _phrase(ev))
    if not candidates:
        return None
    texts = [" ".join(p.text.casefold().split()) for p in tagged]

    def support(phrase: str) -> tuple[int, int, int, str]:
        return (candidates[phrase], sum(1 for text in texts if phrase in text), len(phrase), phrase)

    best = max(candidates, key=support)
    return best if len(best) <= 40 else best[:40].rsplit(" ", 1)[0] + "…"


def carries(post: Post, cause: dict[str, Any] | None) -> bool:
    if cause is None:
        return False
    if cause["kind"] == "term":
        return bool(cause["phrase"] in post.terms)
    return any(tag == cause["tag"] for tag, _ in post.tags)


def rank_posts(posts: list[Post], terms: list[dict[str, Any]], cause: dict[str, Any] | None
               ) -> list[tuple[Post, list[str], float, list[str]]]:
    """(post, roles, relevance, distinctive terms it carries): the TOP_POSTS most relevant posts
    (the cause counts 2, each distinctive term and each other risk tag 1; then reach, then time),
    with the first post carrying the cause (else the first post) and the loudest post added."""
    if not posts:
        return []
    top = {t["term"] for t in terms}

    def score(p: Post) -> tuple[float, list[str]]:
        matched = [t for t in p.terms if t in top]
        risks = {tag for tag, _ in p.tags if tag in RISK_TAGS and not (cause and cause.get("tag") == tag)}
        return 2.0 * carries(p, cause) + len(matched) + len(risks), matched

    scored = {p.mention_id: score(p) for p in posts}
    ranked = sorted(posts, key=lambda p: (-scored[p.mention_id][0], -(p.reach or 0), p.created_ms))[:TOP_POSTS]
    first = next((p for p in posts if carries(p, cause)), posts[0])
    loudest = max(posts, key=lambda p: (p.loudness, -p.created_ms))
    roles: dict[str, list[str]] = {}
    order: list[Post] = []
    for role, chosen in (("first", [first]), ("loudest", [loudest]), ("relevant", ranked)):
        for p in chosen:
            if p.mention_id not in roles:
                roles[p.mention_id] = []
                order.append(p)
            roles[p.mention_id].append(role)
    return [(p, roles[p.mention_id], scored[p.mention_id][0], scored[p.mention_id][1]) for p in order]


def post_json(p: Post, roles: list[str], relevance: float, matched: list[str]) -> dict[str, Any]:
    """A SamplePost record."""
    return {"mention_id": p.mention_id, "source": p.source, "url": p.url, "author_handle": p.author_handle,
            "reach": p.reach, "text": p.text, "created_at": p.created_ms, "engagement": p.engagement, "roles": roles,
            "relevance": relevance, "matched_terms": matched, "tags": list(dict.fromkeys(t for t, _ in p.tags)),
            "sentiment": p.sentiment}


def sentiment_confidence(posts: list[Post]) -> list[dict[str, Any]]:
    """Per sentiment label: posts, mean confidence (the label's probability; null when no post of
    it has one) and how many were unsure (below LOW_CONFIDENCE)."""
    out = []
    by_label: dict[str, list[Post]] = {}
    for p in posts:
        by_label.setdefault(p.sentiment, []).append(p)
    for label, group in sorted(by_label.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        confidences = [p.confidence for p in group if p.confidence is not None]
        out.append({"label": label, "count": len(group),
                    "mean_confidence": round(sum(confidences) / len(confidences), 4) if confidences else None,
                    "low_confidence": sum(1 for c in confidences if c < LOW_CONFIDENCE)})
    return out


def negative_share(posts: list[Post]) -> float | None:
    """The expected share of negative posts: the mean probability of negative where the model
    gives one, 1 or 0 by label otherwise; None for an empty window."""
    if not posts:
        return None
    values = [p.negative if p.negative is not None else float(p.sentiment == "negative") for p in posts]
    return round(sum(values) / len(values), 4)


def reach_by_author(posts: list[Post]) -> dict[str, int]:
    """Followers per author (each author counted once) of the window."""
    out: dict[str, int] = {}
    for p in posts:
        key = f"{p.source}:{(p.author_handle or p.mention_id).casefold()}"
        out[key] = max(out.get(key, 0), p.reach or 0)
    return out


def compact_number(n: float) -> str:
    """84213 → 84k, 1250000 → 1.2M, 950 → 950."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            value = n / size
            return f"{value:.1f}{suffix}".replace(".0", "") if value < 10 else f"{math.floor(value)}{suffix}"
    return f"{n:.0f}"


def evidence_horizon_ms(bucket_ms: int, lateness_buckets: int, settings: Any) -> int:
    """How far back (event time) posts are kept: the buckets that can still fire (the lateness
    window) and the longest trailing window a volume rule judges."""
    windows = [int(getattr(settings, name, 0) or 0) for name in ("alert_window_s", "alert_window_medium_s", "alert_window_long_s")]
    return (lateness_buckets + 1) * bucket_ms + max(windows, default=0) * 1000

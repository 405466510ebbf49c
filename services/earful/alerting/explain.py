"""Why an alert fired: the evidence people see with it (top posts by reach, top terms, sources,
languages, sentiment share, a dashboard link).

Recent mentions of each watchlist are kept in memory for the lateness window (bounded per
watchlist). They are not part of the changelogged detector state, so an alert that fires right
after a restart explains itself from the mentions seen since the restart.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

TOP_POSTS = 3
TOP_TERMS = 8
TEXT_CHARS = 280
_TOKEN = re.compile(r"#?\w[\w'-]*\w|#?\w", re.UNICODE)
_URL = re.compile(r"https?://\S+")
_STOP = frozenset("""
a an and are as at be been but by can could did do does for from had has have how i if in into is it its just me my
no not of on or our so than that the their them then there these they this to up us was we were what when where which
who why will with would you your i'm it's i've don't can't im ive dont cant via amp rt
el la los las de del que y en un una por para con es no se lo al su sus mi muy más pero como ya
der die das und ist nicht ein eine mit auf für von zu den dem im ich es sie wir aber auch noch wie
le la les des et est pas un une pour dans sur au aux du qui que ce je il elle nous vous mais avec
o a os as de do da dos das e é em um uma para com não que se por mais mas como no na
""".split())


@dataclass(frozen=True)
class Post:
    mention_id: str
    source: str
    url: str | None
    author_handle: str | None
    reach: int | None
    text: str
    created_ms: int
    lang: str
    sentiment: str
    terms: tuple[str, ...]


def terms_of(text: str) -> tuple[str, ...]:
    """Distinct case-folded words and hashtags of a text, without links, handles or stop words."""
    text = _URL.sub(" ", text)
    seen: dict[str, None] = {}
    for token in _TOKEN.findall(text):
        term = token.casefold()
        if term.startswith("#") or (len(term) >= 3 and term not in _STOP and not term.isdigit()):
            seen.setdefault(term, None)
    return tuple(seen)[:20]


def post_of(record: dict[str, Any]) -> Post:
    """The evidence kept of one enriched mention."""
    m = record["mention"]
    label = (record.get("sentiment") or {}).get("label") or "unknown"
    return Post(
        mention_id=m["mention_id"], source=m["source"], url=m.get("url"), author_handle=(m.get("author") or {}).get("handle"),
        reach=(m.get("author") or {}).get("followers"), text=m["text"][:TEXT_CHARS],
        created_ms=int(m["created_at"].timestamp() * 1000), lang=(record.get("language") or {}).get("code") or "und",
        sentiment=str(label), terms=terms_of(m["text"]),
    )


class Evidence:
    """Recent posts per watchlist, for explanations."""

    def __init__(self, horizon_ms: int, max_posts: int = 2000) -> None:
        self.horizon_ms = horizon_ms
        self.max_posts = max_posts
        self._posts: dict[str, deque[Post]] = {}
        self._seen: dict[str, set[str]] = {}

    def add(self, watchlist_id: str, post: Post) -> None:
        posts = self._posts.setdefault(watchlist_id, deque(maxlen=self.max_posts))
        seen = self._seen.setdefault(watchlist_id, set())
        if post.mention_id in seen:  # a re-delivered mention is one post
            return
        if len(posts) == posts.maxlen:
            seen.discard(posts[0].mention_id)
        posts.append(post)
        seen.add(post.mention_id)
        newest = max(p.created_ms for p in (posts[-1], post))
        while posts and posts[0].created_ms < newest - self.horizon_ms:
            seen.discard(posts.popleft().mention_id)

    def explain(self, watchlist_id: str, start_ms: int, end_ms: int, dashboard_url: str | None) -> dict[str, Any]:
        """The Explanation record (schemas/alert_event.avsc) for the posts in [start_ms, end_ms)."""
        posts = [p for p in self._posts.get(watchlist_id, ()) if start_ms <= p.created_ms < end_ms]
        top = sorted(posts, key=lambda p: (-(p.reach or 0), p.created_ms))[:TOP_POSTS]
        terms = Counter(t for p in posts for t in p.terms)
        return {
            "top_posts": [{"mention_id": p.mention_id, "source": p.source, "url": p.url, "author_handle": p.author_handle,
                           "reach": p.reach, "text": p.text, "created_at": p.created_ms} for p in top],
            "top_terms": [{"term": t, "count": n} for t, n in sorted(terms.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TERMS]],
            "sources": dict(Counter(p.source for p in posts)),
            "languages": dict(Counter(p.lang for p in posts)),
            "sentiment": dict(Counter(p.sentiment for p in posts)),
            "window_start": start_ms,
            "window_end": end_ms,
            "dashboard_url": dashboard_url,
        }

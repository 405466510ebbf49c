"""Who wrote a post: a person, a media outlet, a brand account or staff, from the source's metadata
and a few simple rules (the advocates of a brand are people: not outlets, not brands).

The rules, first match wins:

1. **staff**: a watchlist of kind `staff` lists the account.
2. **brand**: any other watchlist lists it in `handles` (a brand's or a competitor's own accounts),
   or `EARFUL_OWNED_HANDLES` does.
3. **media**:
   * the post comes from a news source (`source` is `news`, `press` or `rss`), or from the feed
     connector (RSS/Atom items are publications) unless its source is `blog`;
   * the handle contains an outlet word (`news`, `times`, `daily`, `herald`, `gazette`, `tribune`,
     `magazine`, `noticias`, `nachrichten`, `zeitung`, `diario`, `jornal`), e.g. `dailyledger`;
   * the display name has an outlet word as a word of its own (those, and `journal`, `press`,
     `wire`, `post`, `radio`, `tv`, `media`, `kurier`, `quotidien`), e.g. "Metro Wire";
   * the source marks the account as a verified organisation. No source Earful reads gives such a
     flag today (the mention schema has no field for it), so this rule is not applied yet.
4. **person**: everyone else (a blogger writing under their own name is a person).

The words err on the side of calling an account an outlet: someone whose handle is
`goodtimes_jen` is left out of the advocates rather than an outlet being put in.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from earful.watchlists.owned import OwnedHandles

AuthorType = Literal["person", "media", "brand", "staff"]
AUTHOR_TYPES: tuple[str, ...] = get_args(AuthorType)

NEWS_SOURCES = frozenset({"news", "press", "rss"})
FEED_CONNECTOR = "feed"
PERSONAL_FEED_SOURCES = frozenset({"blog"})
HANDLE_WORDS = ("news", "times", "daily", "herald", "gazette", "tribune", "magazine", "noticias", "nachrichten",
                "zeitung", "diario", "jornal")
NAME_WORDS = frozenset(HANDLE_WORDS) | {"journal", "press", "wire", "post", "radio", "tv", "media", "kurier", "quotidien"}
_WORD = re.compile(r"[^\W_]+")


def outlet_like(handle: str | None, name: str | None) -> bool:
    """Does the handle or the display name read like a media outlet's (see rule 3)?"""
    plain = (handle or "").lower()
    if any(word in plain for word in HANDLE_WORDS):
        return True
    return any(word in NAME_WORDS for word in _WORD.findall((name or "").casefold()))


def author_type(source: str, author_handle: str | None, author_id: str | None, author_name: str | None,
                connector: str | None, accounts: OwnedHandles = OwnedHandles()) -> AuthorType:
    """The author type of a post's author by the rules above; `accounts`: the brand and staff accounts in force."""
    kind = accounts.account_kind(source, author_handle, author_id)
    if kind == "staff":
        return "staff"
    if kind == "brand":
        return "brand"
    if source in NEWS_SOURCES or (connector == FEED_CONNECTOR and source not in PERSONAL_FEED_SOURCES):
        return "media"
    if outlet_like(author_handle, author_name):
        return "media"
    return "person"

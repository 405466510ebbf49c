"""Owned and earned: which posts a watchlist's brand wrote itself.

A post is *owned* for a watchlist when its author is one of the brand's own accounts: an account
the watchlist lists in `handles`, an employee listed by a watchlist of kind `staff`, or an account
in `EARFUL_OWNED_HANDLES` (owned for every watchlist). Everything else is *earned*: what people
say. Owned posts are stored and still answer customer questions (a care handle's reply is a
reply), but a brand talking about itself is not a mention of it: its volume, sentiment, share of
voice, top authors, advocates and entity counts leave them out.

A watchlist of kind `staff` owns nothing: what the staff post is exactly what it watches.

An entry (in `handles` or the setting) names an account, optionally at one source:

    AcmeAirHelp              the handle at any source (case-insensitive; a leading @ is ignored)
    twitter:AcmeAirHelp      the handle at source `twitter` only
    id:did:plc:4f2a          the account id (exact), at any source: Bluesky posts carry a DID, not a handle
    bluesky:id:did:plc:4f2a  the account id at source `bluesky` only

Pure: `OwnedHandles` is the precomputed form for the hot path (a few set lookups per mention),
built once per watchlist set; `is_owned` answers for one watchlist without building anything to keep.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: (source or "" for any, "h" handle (lower case) or "i" account id (exact), value)
Key = tuple[str, str, str]

STAFF_KIND = "staff"
_SOURCE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")


def parse_entry(entry: str) -> Key:
    """One entry (see the module docstring) as a lookup key; ValueError for a blank account."""
    text = entry.strip()
    source = ""
    head, sep, rest = text.partition(":")
    if sep and head != "id" and _SOURCE.match(head):
        source, text = head, rest
    if text.startswith("id:"):
        value = text[3:].strip()
        if not value:
            raise ValueError(f"owned account {entry!r}: no account id after 'id:'")
        return source, "i", value
    value = text.strip().lstrip("@").lower()
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"owned account {entry!r}: expected a handle, source:handle, id:ID or source:id:ID")
    return source, "h", value


def parse_entries(entries: Iterable[str]) -> frozenset[Key]:
    """Every entry parsed (blank ones skipped); ValueError names the first bad one."""
    return frozenset(parse_entry(e) for e in entries if e.strip())


def author_keys(source: str, author_handle: str | None, author_id: str | None) -> tuple[Key, ...]:
    """The keys an author can be listed under: handle and id, at this source or at any."""
    keys: list[Key] = []
    if author_handle:
        handle = author_handle.lstrip("@").lower()
        keys += [("", "h", handle), (source, "h", handle)]
    if author_id:
        keys += [("", "i", author_id), (source, "i", author_id)]
    return tuple(keys)


@dataclass(frozen=True)
class OwnedHandles:
    """Which accounts are owned for which watchlist, precomputed from a watchlist set and the setting."""

    shared: frozenset[Key] = frozenset()  # staff accounts and EARFUL_OWNED_HANDLES: owned for every watchlist
    own: Mapping[str, frozenset[Key]] = field(default_factory=dict)  # watchlist id → its own `handles`
    exempt: frozenset[str] = frozenset()  # watchlists of kind staff: nothing is owned for them
    staff: frozenset[Key] = frozenset()  # accounts listed by staff watchlists
    brand: frozenset[Key] = frozenset()  # every brand account: any other watchlist's `handles`, and the setting

    @classmethod
    def of(cls, watchlists: Iterable[Any], extra: Iterable[str] = ()) -> OwnedHandles:
        """From watchlists (anything with `id`, `kind` and `handles`) and EARFUL_OWNED_HANDLES."""
        members = list(watchlists)
        staff = parse_entries(h for w in members if w.kind == STAFF_KIND for h in w.handles)
        setting = parse_entries(extra)
        own = {w.id: parse_entries(w.handles) for w in members if w.kind != STAFF_KIND and w.handles}
        brand = frozenset().union(setting, *own.values())
        return cls(staff | setting, own, frozenset(w.id for w in members if w.kind == STAFF_KIND), staff, brand)

    def is_owned(self, watchlist_id: str, source: str, author_handle: str | None, author_id: str | None) -> bool:
        """Is this author's post owned for the watchlist (one of its brand's own accounts)?"""
        if watchlist_id in self.exempt:
            return False
        keys = author_keys(source, author_handle, author_id)
        own = self.own.get(watchlist_id, frozenset())
        return any(k in self.shared or k in own for k in keys)

    def owned_ids(self, watchlist_ids: Sequence[str], source: str, author_handle: str | None,
                  author_id: str | None) -> list[str]:
        """The watchlists among `watchlist_ids` for which this author's post is owned (in their order)."""
        if not watchlist_ids or not (self.shared or self.own):
            return []
        keys = author_keys(source, author_handle, author_id)
        if not keys:
            return []
        shared = any(k in self.shared for k in keys)
        return [w for w in watchlist_ids if w not in self.exempt
                and (shared or any(k in self.own.get(w, ()) for k in keys))]

    def account_kind(self, source: str, author_handle: str | None, author_id: str | None) -> str | None:
        """'staff' or 'brand' when any watchlist or the setting lists the account, else None."""
        keys = author_keys(source, author_handle, author_id)
        if any(k in self.staff for k in keys):
            return "staff"
        if any(k in self.brand for k in keys):
            return "brand"
        return None


def is_owned(watchlist: Any, source: str, author_handle: str | None, author_id: str | None, *,
             watchlists: Iterable[Any] = (), extra: Iterable[str] = ()) -> bool:
    """Is a post by this author owned for `watchlist`? `watchlists`: the others in force (their staff
    accounts count); `extra`: EARFUL_OWNED_HANDLES. For many mentions build `OwnedHandles` once."""
    return OwnedHandles.of([watchlist, *(w for w in watchlists if w.id != watchlist.id)], extra).is_owned(
        watchlist.id, source, author_handle, author_id)

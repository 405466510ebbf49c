"""The detector's rules per watchlist, derived from the watchlists in force.

The service hands in the live store fed by `earful.watchlists.v1` (backtests and tests a fixed
`WatchlistSet`); `RuleBook` re-derives the rules whenever the source's set changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from earful.alerting.detection.rules import RuleConfig, RuleDefaults, WatchlistRules, rules_for
from earful.watchlists import Watchlist, WatchlistSet, WatchlistSource
from earful.watchlists.owned import OwnedHandles


class RuleBook:
    """Per-watchlist rules and the handle → watchlists index, derived from the source's current set."""

    def __init__(self, source: WatchlistSource, defaults: RuleDefaults, owned_handles: Iterable[str] = ()) -> None:
        """`owned_handles`: EARFUL_OWNED_HANDLES (accounts owned for every watchlist)."""
        self.source = source
        self.defaults = defaults
        self.owned_handles = tuple(owned_handles)
        self._for: WatchlistSet | None = None
        self._rules: dict[str, WatchlistRules] = {}
        self._handles: dict[str, tuple[str, ...]] = {}
        self._owned = OwnedHandles()

    def _refresh(self) -> None:
        current = self.source.current()
        if current is self._for:
            return
        self._for, self._rules = current, {}
        self._owned = OwnedHandles.of(current.watchlists.values(), self.owned_handles)
        handles: dict[str, list[str]] = {}
        for w in current.watchlists.values():
            for h in w.handles:
                handles.setdefault(h.casefold().lstrip("@"), []).append(w.id)
        self._handles = {h: tuple(ids) for h, ids in handles.items()}

    def rules(self, watchlist_id: str) -> WatchlistRules:
        """The rules of a watchlist; one that is not (or no longer) known gets the default rules."""
        self._refresh()
        if watchlist_id not in self._rules:
            w = self.source.current().get(watchlist_id) or Watchlist(watchlist_id, watchlist_id, "brand", ())
            self._rules[watchlist_id] = rules_for(w, self.defaults)
        return self._rules[watchlist_id]

    def rule(self, watchlist_id: str, rule: str) -> RuleConfig | None:
        return self.rules(watchlist_id).get(rule)

    def owned(self, watchlist_id: str, mention: dict[str, Any]) -> bool:
        """Is this enriched record's `mention` written by one of the watchlist's brand's own accounts
        (its handles, a staff watchlist's, EARFUL_OWNED_HANDLES)? Such posts are not counted."""
        self._refresh()
        author = mention.get("author") or {}
        return self._owned.is_owned(watchlist_id, mention["source"], author.get("handle"), author.get("id"))

    def live(self, watchlist_id: str) -> bool:
        """Whether the watchlist exists now (a deleted one stops counting at once)."""
        return watchlist_id in self.source.current()

    def watchlists_of_handle(self, handle: str | None) -> tuple[str, ...]:
        """The watchlists whose own accounts include `handle` (its replies answer their customers)."""
        if not handle:
            return ()
        self._refresh()
        return self._handles.get(handle.casefold().lstrip("@"), ())

"""How alerting obtains watchlists: through ONE seam, `WatchlistSource`.

Today the source is the watchlists file (`EARFUL_WATCHLISTS_FILE`); the live store fed by the
compacted topic `earful.watchlists.v1` offers the same `current()` / `get(id)` and replaces it
in `build(settings, watchlists=...)`. `RuleBook` turns whatever the source holds into the
detector's per-watchlist rules, re-deriving them whenever the source's set changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from earful.alerting.rules import RuleConfig, RuleDefaults, WatchlistRules, rules_for
from earful.watchlists import Watchlist, WatchlistSet


class WatchlistSource(Protocol):
    def current(self) -> WatchlistSet: ...

    def get(self, watchlist_id: str) -> Watchlist | None: ...


class FileWatchlists:
    """Watchlists from a YAML file, loaded once (a bad file fails the start with a clear error)."""

    def __init__(self, path: Path) -> None:
        self._set = WatchlistSet.from_file(path)

    def current(self) -> WatchlistSet:
        return self._set

    def get(self, watchlist_id: str) -> Watchlist | None:
        return self._set.watchlists.get(watchlist_id)


class RuleBook:
    """Per-watchlist rules and the handle → watchlists index, derived from the source's current set."""

    def __init__(self, source: WatchlistSource, defaults: RuleDefaults) -> None:
        self.source = source
        self.defaults = defaults
        self._for: WatchlistSet | None = None
        self._rules: dict[str, WatchlistRules] = {}
        self._handles: dict[str, tuple[str, ...]] = {}

    def _refresh(self) -> None:
        current = self.source.current()
        if current is self._for:
            return
        self._for, self._rules = current, {}
        handles: dict[str, list[str]] = {}
        for w in current.watchlists.values():
            for h in w.handles:
                handles.setdefault(h.casefold().lstrip("@"), []).append(w.id)
        self._handles = {h: tuple(ids) for h, ids in handles.items()}

    def rules(self, watchlist_id: str) -> WatchlistRules:
        """The rules of a watchlist; one that is not (or no longer) known gets the default rules."""
        self._refresh()
        if watchlist_id not in self._rules:
            w = self.source.get(watchlist_id) or Watchlist(watchlist_id, watchlist_id, "brand", ())
            self._rules[watchlist_id] = rules_for(w, self.defaults)
        return self._rules[watchlist_id]

    def rule(self, watchlist_id: str, rule: str) -> RuleConfig | None:
        return self.rules(watchlist_id).get(rule)

    def watchlists_of_handle(self, handle: str | None) -> tuple[str, ...]:
        """The watchlists whose own accounts include `handle` (its replies answer their customers)."""
        if not handle:
            return ()
        self._refresh()
        return self._handles.get(handle.casefold().lstrip("@"), ())

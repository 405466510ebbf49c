"""Watchlists: what each brand team listens for.

A watchlist names a brand (or competitor, campaign, topic), its own handles, and the terms that
identify a mention of it. Terms match case-insensitively on whole words, Unicode-aware; all
terms of all watchlists compile into one regular expression, so matching is one scan per text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from earful.core.errors import ValidationError

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
KINDS = ("brand", "competitor", "campaign", "topic")


@dataclass(frozen=True)
class QuietHours:
    """A daily local-time range in which non-critical notifications of a rule are held back."""

    start: str  # HH:MM
    end: str  # HH:MM; before start = the range crosses midnight
    timezone: str = "UTC"


@dataclass(frozen=True)
class AlertRule:
    """One alert rule of a watchlist (the AlertRule record of schemas/watchlist.avsc)."""

    rule: str  # volume_spike | negative_surge | risk_mention | viral_post | unanswered_question | volume_drop
    enabled: bool = True
    severity: str = "warning"
    receivers: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    pending_s: int = 0
    cooldown_s: int | None = None
    quiet_hours: QuietHours | None = None


@dataclass(frozen=True)
class Watchlist:
    """What one team listens for (the Watchlist record of schemas/watchlist.avsc)."""

    id: str
    name: str
    kind: str
    terms: tuple[str, ...]
    handles: tuple[str, ...] = ()
    owner_team: str | None = None
    query: str | None = None
    response_sla_s: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    alert_rules: tuple[AlertRule, ...] = ()


@dataclass(frozen=True)
class Match:
    watchlist_id: str
    start: int
    end: int


class WatchlistSet:
    """A compiled set of watchlists; `match(text)` returns every matched span."""

    def __init__(self, watchlists: list[Watchlist], revision: str = "inline") -> None:
        self.watchlists = {w.id: w for w in watchlists}
        self.revision = revision
        self._owner: dict[str, list[str]] = {}
        spellings: set[str] = set()
        for w in watchlists:
            for term in w.terms:
                owners = self._owner.setdefault(term.casefold(), [])
                if w.id not in owners:
                    owners.append(w.id)
                # re.IGNORECASE does not fold 'ß' to 'ss': match the term as written and its case-fold.
                spellings.update((term, term.casefold()))
        alternatives = sorted(spellings, key=len, reverse=True)  # longest term wins at a position
        if alternatives:
            body = "|".join(re.escape(t) for t in alternatives)
            # (?<!\w) / (?!\w): whole words, but terms may start with # or @ themselves.
            self._regex: re.Pattern[str] | None = re.compile(rf"(?<![\w#@$])(?:{body})(?!\w)", re.IGNORECASE)
        else:
            self._regex = None

    def match(self, text: str) -> list[Match]:
        if self._regex is None:
            return []
        out = []
        for m in self._regex.finditer(text):
            for wid in self._owner.get(m.group(0).casefold(), ()):
                out.append(Match(wid, m.start(), m.end()))
        return out

    @classmethod
    def from_file(cls, path: Path) -> "WatchlistSet":
        """Load and validate a watchlists YAML file; problems raise ValidationError naming the entry."""
        try:
            raw = path.read_bytes()
            doc = yaml.safe_load(raw) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValidationError(f"cannot read watchlists {path}: {exc}") from exc
        items = doc.get("watchlists") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise ValidationError(f"{path}: expected a top-level 'watchlists:' list")
        out: list[Watchlist] = []
        for i, item in enumerate(items):
            where = f"{path}: watchlists[{i}]"
            if not isinstance(item, dict):
                raise ValidationError(f"{where}: expected a mapping")
            wid = str(item.get("id", ""))
            if not _ID.match(wid):
                raise ValidationError(f"{where}: id {wid!r} must match {_ID.pattern}")
            kind = item.get("kind", "brand")
            if kind not in KINDS:
                raise ValidationError(f"{where} ({wid}): kind {kind!r} is not one of {', '.join(KINDS)}")
            raw_terms = item.get("terms") or []
            if not isinstance(raw_terms, list):
                raise ValidationError(f"{where} ({wid}): terms must be a list, e.g. terms: [\"{raw_terms}\"]")
            terms = tuple(str(t) for t in raw_terms if str(t).strip())
            if not terms:
                raise ValidationError(f"{where} ({wid}): needs at least one term")
            out.append(Watchlist(wid, str(item.get("name", wid)), kind, terms,
                                 tuple(str(h).lstrip("@") for h in item.get("handles") or ())))
        ids = [w.id for w in out]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValidationError(f"{path}: duplicate watchlist ids {', '.join(dupes)}")
        return cls(out, revision=hashlib.sha256(raw).hexdigest()[:12])

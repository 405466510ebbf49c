"""The social-media policy staff posts are checked against, and who the staff are.

A business writes its policy once, as a YAML file (`EARFUL_POLICY_FILE`, format in
docs/staff-policy.md), with rules of three kinds:

* `confidential`: terms that must not be posted ("Project Falcon", "internal only");
* `legal`: legal or regulatory claims staff must not make ("guaranteed returns", "cure");
* `missing_disclosure`: a promotional post (promotional language, discount codes, a link to the
  brand's shop) without a disclosure (#ad, #sponsored, #employee, "I work at").

Every post whose author is among the handles of a watchlist of kind `staff` is evaluated; a
rule that matches is a `Flag` with the rule, its kind and the evidence spans. Matching is the
watchlist query language (earful.watchlists.query): the text is tokenised once and each rule is a
compiled query over those tokens, so the work grows linearly with the text: no rule is a
regular expression that could backtrack over what a post says. Everything here is pure but
`load_policy`, which reads one file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from earful.core.errors import ConfigError, QueryError
from earful.watchlists.model import Watchlist, describe_errors, terms_query
from earful.watchlists.owned import STAFF_KIND, Key, author_keys, parse_entry
from earful.watchlists.query import CompiledQuery, Doc, compile_query

PolicyKind = Literal["confidential", "missing_disclosure", "legal"]
Severity = Literal["info", "warning", "critical"]
POLICY_KINDS: tuple[str, ...] = get_args(PolicyKind)
RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

#: What makes a post promotional when a missing_disclosure rule names nothing else.
PROMOTIONAL = ("use code", "use my code", "discount code", "promo code", "coupon code", "off with code", "shop now",
               "buy now", "order now", "book now", "link in bio", "limited time offer", "#giveaway", "#promo")
#: What discloses the author's tie to the brand when a missing_disclosure rule names nothing else.
DISCLOSURES = ("#ad", "#advert", "#sponsored", "#partner", "#employee", "#teammember", "i work at", "i work for",
               "my employer", "paid partnership")
_HOST = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*(/[^\s()\"]*)?$")


@dataclass(frozen=True)
class Evidence:
    """One span of a post that made a rule match (code-point offsets; `term` as the rule wrote it)."""

    text: str
    start: int
    end: int
    term: str


@dataclass(frozen=True)
class Flag:
    """A rule a post breaks, with the spans that show it."""

    rule_id: str
    kind: str
    severity: str
    description: str | None
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class PolicyRule:
    """One compiled rule. `query` is what the post must match (for missing_disclosure it already
    excludes the disclosures); `watchlists` limits it to the staff of those watchlists (empty: all)."""

    id: str
    kind: str
    query: CompiledQuery
    severity: str = "warning"
    description: str | None = None
    watchlists: frozenset[str] = frozenset()

    def applies_to(self, staff_watchlists: Iterable[str]) -> bool:
        return not self.watchlists or not self.watchlists.isdisjoint(staff_watchlists)


@dataclass(frozen=True)
class Policy:
    """The rules of a policy file, in file order."""

    rules: tuple[PolicyRule, ...] = ()

    def evaluate(self, text: str, *, staff_watchlists: Iterable[str] = (), url: str | None = None,
                 lang: str | None = None, source: str | None = None, author: str | None = None) -> list[Flag]:
        """The rules a staff post breaks (tokenised once for all of them)."""
        if not self.rules:
            return []
        wids = tuple(staff_watchlists)
        doc = Doc(text, lang=lang, source=source, author=author, url=url)
        flags = []
        for rule in self.rules:
            if rule.applies_to(wids) and rule.query.matches(doc):
                evidence = tuple(Evidence(text[s.start:s.end] if s.end > s.start else (url or s.term), s.start, s.end, s.term)
                                 for s in rule.query.spans(doc))
                flags.append(Flag(rule.id, rule.kind, rule.severity, rule.description, evidence))
        return flags


# --- the file --------------------------------------------------------------------------------


def _phrases(values: list[str] | None, name: str) -> list[str] | None:
    if values is None:
        return None
    out = [str(v).strip() for v in values if str(v).strip()]
    if not out:
        raise PydanticCustomError("policy", "{name} needs at least one non-blank term", {"name": name})
    return list(dict.fromkeys(out))


class PolicyRuleSpec(BaseModel):
    """One rule as written in the policy file."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=RULE_ID_PATTERN, description="Stable id: lower case a-z, 0-9, - and _, at most 64 characters.")
    kind: PolicyKind = Field(description="confidential, missing_disclosure or legal.")
    description: str | None = Field(None, max_length=500, description="What the rule protects, shown with its flags.")
    severity: Severity = Field("warning", description="info, warning or critical.")
    terms: list[str] | None = Field(None, description="confidential, legal: any of these terms or phrases.")
    query: str | None = Field(None, description="confidential, legal: instead of terms, a query (docs/query-language.md).")
    promotional: list[str] | None = Field(None, description="missing_disclosure: what makes a post promotional;"
                                          " default: discount-code and call-to-action phrases.")
    shop_sites: list[str] = Field(default_factory=list, description="missing_disclosure: the brand's shop domains"
                                  " (a link to one is promotional), e.g. shop.acme.example.")
    disclosures: list[str] | None = Field(None, description="missing_disclosure: what discloses the tie to the brand;"
                                          " default: #ad, #sponsored, #employee, \"I work at\", ...")
    watchlists: list[str] = Field(default_factory=list, description="Staff watchlist ids the rule applies to; empty: all.")

    @field_validator("terms", "promotional", "disclosures")
    @classmethod
    def _non_blank(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        return _phrases(value, info.field_name or "terms")

    @field_validator("shop_sites")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = []
        for site in value:
            host = str(site).strip().lower().removeprefix("https://").removeprefix("http://").removeprefix("www.")
            if not _HOST.match(host):
                raise PydanticCustomError("policy", "shop_sites: {site} is not a domain like shop.acme.example",
                                          {"site": repr(site)})
            out.append(host.rstrip("/"))
        return out

    @model_validator(mode="after")
    def _shape(self) -> PolicyRuleSpec:
        if self.kind == "missing_disclosure":
            if self.terms is not None or self.query is not None:
                raise PydanticCustomError("policy", "missing_disclosure takes promotional, shop_sites and disclosures,"
                                          " not terms or query", {})
        else:
            if self.promotional is not None or self.shop_sites or self.disclosures is not None:
                raise PydanticCustomError("policy", "{kind} takes terms or query, not promotional, shop_sites or"
                                          " disclosures", {"kind": self.kind})
            if (self.terms is None) == (self.query is None):
                raise PydanticCustomError("policy", "{kind} needs terms or a query (one of them)", {"kind": self.kind})
        try:
            compile_query(self.query_text())
        except QueryError as exc:
            raise PydanticCustomError("query_error", "query: {detail}", {"detail": str(exc)}) from exc
        return self

    def query_text(self) -> str:
        """The rule as one query of the watchlist query language."""
        if self.kind != "missing_disclosure":
            return self.query if self.query is not None else terms_query(self.terms or [])
        promo = terms_query(self.promotional if self.promotional is not None else PROMOTIONAL)
        sites = " OR ".join(f"site:{s}" for s in self.shop_sites)
        disclosed = terms_query(self.disclosures if self.disclosures is not None else DISCLOSURES)
        return f"({promo}{' OR ' + sites if sites else ''}) AND NOT ({disclosed})"

    def to_rule(self) -> PolicyRule:
        return PolicyRule(self.id, self.kind, compile_query(self.query_text()), self.severity, self.description,
                          frozenset(self.watchlists))


class PolicySpec(BaseModel):
    """A policy file: `rules:`, a list of rules with distinct ids."""

    model_config = ConfigDict(extra="forbid")
    rules: list[PolicyRuleSpec] = Field(default_factory=list, description="The rules, checked in this order.")

    @field_validator("rules")
    @classmethod
    def _distinct(cls, value: list[PolicyRuleSpec]) -> list[PolicyRuleSpec]:
        seen: set[str] = set()
        for rule in value:
            if rule.id in seen:
                raise PydanticCustomError("policy", "rule id {id} is used twice", {"id": repr(rule.id)})
            seen.add(rule.id)
        return value


def parse_policy(data: Any, where: str = "policy") -> Policy:
    """Validate a policy mapping; ConfigError lists every problem, each prefixed with `where`."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a rules: list, not {type(data).__name__}")
    try:
        spec = PolicySpec.model_validate(dict(data))
    except PydanticValidationError as exc:
        raise ConfigError("\n".join(f"{where}: {line}" for line in describe_errors(exc))) from exc
    return Policy(tuple(r.to_rule() for r in spec.rules))


def load_policy(path: Path) -> Policy:
    """The policy in a YAML file (ConfigError saying why when it cannot be used)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the policy file {path}: {exc}") from exc
    return parse_policy(data, str(path))


# --- staff ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Staff:
    """Who the staff are: each account a `staff` watchlist lists in `handles` (written as
    earful.watchlists.owned reads them: handle, source:handle, id:ID), with the ids of those watchlists."""

    by_key: Mapping[Key, tuple[str, ...]]

    @classmethod
    def of(cls, watchlists: Iterable[Watchlist]) -> Staff:
        keys: dict[Key, set[str]] = {}
        for w in watchlists:
            if w.kind != STAFF_KIND:
                continue
            for entry in w.handles:
                try:
                    keys.setdefault(parse_entry(entry), set()).add(w.id)
                except ValueError:
                    continue  # validation refuses such a handle; a record from elsewhere may still hold one
        return cls({k: tuple(sorted(ids)) for k, ids in keys.items()})

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def watchlists_of(self, source: str, author_handle: str | None, author_id: str | None) -> tuple[str, ...]:
        """The staff watchlists that list this author (empty: not staff)."""
        if not self.by_key:
            return ()
        found: set[str] = set()
        for key in author_keys(source, author_handle, author_id):
            found.update(self.by_key.get(key, ()))
        return tuple(sorted(found))

"""The watchlist model: what one team listens for, its alert rules, and how it is checked.

One validation path serves every way a watchlist arrives (a YAML file, the HTTP API, a record
on `earful.watchlists.v1`): the pydantic `WatchlistSpec`, whose errors name the field and, for a
query, the column. `Watchlist` is the immutable result every service uses; its `revision` is a
hash of its content, so equal revisions mean equal watchlists wherever they came from.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from earful.core.errors import ValidationError
from earful.watchlists.query import CompiledQuery, QueryError, compile_query

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
Kind = Literal["brand", "competitor", "campaign", "executive", "product", "topic", "staff"]
Rule = Literal["volume_spike", "negative_surge", "risk_mention", "viral_post", "unanswered_question", "volume_drop",
               "case_sla_warning", "case_sla_breach"]
Severity = Literal["info", "warning", "critical"]
KINDS: tuple[str, ...] = get_args(Kind)
RULES: tuple[str, ...] = get_args(Rule)
SEVERITIES: tuple[str, ...] = get_args(Severity)
RESERVED_LABELS = ("watchlist", "rule", "severity")
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class QuietHours:
    """A daily local-time range in which non-critical notifications of a rule are held back."""

    start: str  # HH:MM
    end: str  # HH:MM; before start = the range crosses midnight
    timezone: str = "UTC"


@dataclass(frozen=True)
class AlertRule:
    """One alert rule of a watchlist (the AlertRule record of schemas/watchlist.avsc)."""

    rule: str  # one of RULES
    enabled: bool = True
    severity: str = "warning"
    receivers: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    pending_s: int = 0
    cooldown_s: int | None = None
    quiet_hours: QuietHours | None = None


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class BusinessHours:
    """When the care team answers: daily ranges per weekday in a time zone, minus holidays.

    `days` maps a weekday (mon..sun) to its (start, end) HH:MM ranges; a day not listed is closed.
    """

    timezone: str = "UTC"
    days: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    holidays: tuple[str, ...] = ()  # ISO dates (local), closed all day


@dataclass(frozen=True)
class Care:
    """How a watchlist's customer questions are answered: SLA clock hours and when to warn."""

    business_hours: BusinessHours | None = None  # None: the SLA runs around the clock
    warn_at: float = 0.75  # share of the SLA after which an open case gets a warning


@dataclass(frozen=True)
class Kpis:
    """Targets a watchlist is judged against (None: no target for that figure)."""

    net_sentiment: float | None = None  # (positive - negative) / (positive + negative), in -1..1
    share_of_voice: float | None = None  # 0..1 against the compared brands and competitors
    first_response_s: int | None = None  # median seconds to a first reply
    answered_within_sla: float | None = None  # 0..1 share of questions answered within the SLA


@dataclass(frozen=True)
class Campaign:
    """A campaign's launch and optional end (UTC); its lift is judged against the period before launch."""

    launch_at: datetime
    ends_at: datetime | None = None


def terms_query(terms: tuple[str, ...] | list[str]) -> str:
    """The query a plain list of terms stands for: any of them (phrases quoted, tags as written)."""
    out = []
    for term in terms:
        term = term.strip()
        if re.fullmatch(r"[#@$][^\s()\"*]+", term):
            out.append(term)
        else:
            out.append('"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " OR ".join(out)


@dataclass(frozen=True)
class Watchlist:
    """What one team listens for (the Watchlist record of schemas/watchlist.avsc).

    `query` is always set after construction: a watchlist given only `terms` gets the query
    "any of these terms" (see `terms_query`).
    """

    id: str
    name: str
    kind: str
    terms: tuple[str, ...] = ()
    handles: tuple[str, ...] = ()
    owner_team: str | None = None
    query: str | None = None
    response_sla_s: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    alert_rules: tuple[AlertRule, ...] = ()
    care: Care | None = None
    kpis: Kpis | None = None
    campaign: Campaign | None = None

    def __post_init__(self) -> None:
        if self.query is None:
            object.__setattr__(self, "query", terms_query(self.terms) if self.terms else "")

    @property
    def compiled(self) -> CompiledQuery:
        """The compiled query (raises QueryError when it is not a valid query)."""
        return compile_query(self.query or "")

    @functools.cached_property
    def revision(self) -> str:
        """Content hash: equal for equal content, whatever the source or publication time."""
        canonical = json.dumps(to_document(self, full=True), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    def rule(self, name: str) -> AlertRule | None:
        """The first enabled rule called `name`, or None when there is none (or it is disabled)."""
        return next((r for r in self.alert_rules if r.rule == name and r.enabled), None)


# --- validation ------------------------------------------------------------------------------


def _scalar_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


LabelValue = Annotated[str, BeforeValidator(_scalar_to_str)]


def _clock(value: Any) -> Any:
    """YAML 1.1 reads an unquoted 22:00 as the number 1320 (base 60): turn it back into 22:00."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    return value


Clock = Annotated[str, BeforeValidator(_clock)]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PydanticCustomError("timezone", "unknown time zone {zone} (use an IANA name like Europe/Berlin)",
                                  {"zone": repr(value)}) from exc
    return value


class QuietHoursSpec(BaseModel):
    """A daily time range in a time zone."""

    model_config = ConfigDict(extra="forbid")
    start: Clock = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="Start, HH:MM local time.")
    end: Clock = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="End, HH:MM (before start: crosses midnight).")
    timezone: str = Field("UTC", description="IANA time zone name, e.g. Europe/Berlin.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _known_zone(value)


class AlertRuleSpec(BaseModel):
    """One alert rule of a watchlist."""

    model_config = ConfigDict(extra="forbid")
    rule: Rule = Field(description="Which detector: " + ", ".join(RULES) + ".")
    enabled: bool = Field(True, description="false keeps the rule written down but never evaluates it.")
    severity: Severity = Field("warning", description="info, warning or critical.")
    receivers: list[str] = Field(default_factory=list, description="Receivers notified; empty: the default route's.")
    thresholds: dict[str, float] = Field(default_factory=dict,
                                         description="Rule parameters by name (e.g. min_count, min_ratio).")
    pending_s: int = Field(0, ge=0, description="Seconds the condition must hold before the alert fires.")
    cooldown_s: int | None = Field(None, ge=0, description="Seconds after a resolution before it can fire again.")
    quiet_hours: QuietHoursSpec | None = Field(None, description="Daily period in which non-critical notifications wait.")

    @field_validator("thresholds")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        for name, number in value.items():
            if not math.isfinite(number):
                raise PydanticCustomError("threshold", "threshold {name} must be a finite number", {"name": name})
        return value


_RANGE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)$")


class BusinessHoursSpec(BaseModel):
    """Opening hours per weekday, e.g. {timezone: Europe/London, days: {mon-fri: "09:00-17:30"}}."""

    model_config = ConfigDict(extra="forbid")
    timezone: str = Field("UTC", description="IANA time zone name, e.g. Europe/Berlin.")
    days: dict[str, str | list[str]] = Field(
        description="Weekday (mon..sun) or range (mon-fri) to HH:MM-HH:MM ranges (a string or a list);"
                    " days not named are closed.")
    holidays: list[date] = Field(default_factory=list, description="Local dates closed all day (YYYY-MM-DD).")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _known_zone(value)

    @field_validator("days")
    @classmethod
    def _days(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        if not value:
            raise PydanticCustomError("business_hours", "needs at least one open day", {})
        for key, ranges in value.items():
            _weekdays(key)
            for item in [ranges] if isinstance(ranges, str) else ranges:
                m = _RANGE.match(str(item))
                if not m or str(item)[6:] <= str(item)[:5]:
                    raise PydanticCustomError(
                        "business_hours", "{key}: {item} is not an HH:MM-HH:MM range ending after it starts",
                        {"key": key, "item": repr(item)})
        return value

    def to_business_hours(self) -> BusinessHours:
        days: dict[str, list[tuple[str, str]]] = {}
        for key, ranges in self.days.items():
            for day in _weekdays(key):
                for item in [ranges] if isinstance(ranges, str) else ranges:
                    days.setdefault(day, []).append((item[:5], item[6:]))
        return BusinessHours(self.timezone, {d: tuple(sorted(days[d])) for d in WEEKDAYS if d in days},
                             tuple(sorted(d.isoformat() for d in self.holidays)))


def _weekdays(key: str) -> list[str]:
    """mon -> [mon]; mon-fri -> [mon, tue, wed, thu, fri]; unknown names are a validation error."""
    first, _, last = key.strip().lower().partition("-")
    if first not in WEEKDAYS or (last and last not in WEEKDAYS):
        raise PydanticCustomError("business_hours", "{key} is not a weekday or range of weekdays (mon..sun, mon-fri)",
                                  {"key": repr(key)})
    i, j = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
    return [WEEKDAYS[k % 7] for k in range(i, (j if j >= i else j + 7) + 1)]


class CareSpec(BaseModel):
    """How customer questions are answered: business hours for the SLA clock, and when to warn."""

    model_config = ConfigDict(extra="forbid")
    business_hours: BusinessHoursSpec | None = Field(None, description="The SLA clock runs only in these hours;"
                                                     " unset: around the clock.")
    warn_at: float = Field(0.75, gt=0, lt=1, description="Share of the SLA after which an open case gets a warning.")


class KpiSpec(BaseModel):
    """Targets shown on the dashboard and in reports."""

    model_config = ConfigDict(extra="forbid")
    net_sentiment: float | None = Field(None, ge=-1, le=1, description="(positive - negative) / (positive + negative): "
                                        "neutral and unknown mentions left out; 0 when none is either.")
    share_of_voice: float | None = Field(None, ge=0, le=1, description="Share of voice against compared watchlists.")
    first_response_s: int | None = Field(None, gt=0, description="Median seconds to a first reply.")
    answered_within_sla: float | None = Field(None, ge=0, le=1, description="Share of questions answered within SLA.")


class CampaignSpec(BaseModel):
    """A campaign's launch and optional end."""

    model_config = ConfigDict(extra="forbid")
    launch_at: datetime = Field(description="Launch time, ISO 8601 with a zone (e.g. 2026-11-02T09:00:00Z).")
    ends_at: datetime | None = Field(None, description="End time; unset: still running.")

    @field_validator("launch_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise PydanticCustomError("campaign", "give a time zone (e.g. 2026-11-02T09:00:00Z)", {})
        return value.astimezone(timezone.utc) if value is not None else None

    @model_validator(mode="after")
    def _order(self) -> CampaignSpec:
        if self.ends_at is not None and self.ends_at <= self.launch_at:
            raise PydanticCustomError("campaign", "ends_at must be after launch_at", {})
        return self


class WatchlistSpec(BaseModel):
    """A watchlist as written in a YAML file or sent to the API (`query`, or `terms` as a shorthand)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "apple-inc", "name": "Apple (the company)", "kind": "competitor",
        "query": "(Apple OR $AAPL OR iPhone* OR MacBook) AND NOT (pie OR juice OR orchard OR cider) lang:en",
    }]})
    id: str = Field(pattern=ID_PATTERN, description="Stable id: lower case a-z, 0-9 and -, at most 64 characters.")
    name: str | None = Field(None, min_length=1, max_length=200, description="Display name; default: the id.")
    kind: Kind = Field("brand", description="brand, competitor, campaign, executive, product or topic (the kind picks"
                       " the default alert rules: see docs/alerting.md#rule-packs).")
    owner_team: str | None = Field(None, min_length=1, max_length=200, description="The team that owns it.")
    query: str | None = Field(None, description="What to listen for, in Earful's query language (see docs/query-language.md).")
    terms: list[str] | None = Field(None, description="Shorthand for a query matching any of these terms/phrases.")
    handles: list[str] = Field(default_factory=list, description="The brand's own accounts (without @).")
    response_sla_s: int | None = Field(None, gt=0, description="Seconds within which questions should get a reply.")
    labels: dict[str, LabelValue] = Field(default_factory=dict, description="Free labels, copied onto alerts.")
    alert_rules: list[AlertRuleSpec] = Field(default_factory=list, description="Alert rules; empty: the defaults.")
    care: CareSpec | None = Field(None, description="Customer care: business hours of the SLA clock, warning share.")
    kpis: KpiSpec | None = Field(None, description="Targets for the dashboard and reports.")
    campaign: CampaignSpec | None = Field(None, description="Launch and end of a campaign (kind campaign only).")

    @field_validator("handles")
    @classmethod
    def _handles(cls, value: list[str]) -> list[str]:
        out = []
        for handle in value:
            plain = str(handle).strip().lstrip("@")
            if not plain or any(c.isspace() for c in plain):
                raise PydanticCustomError("handle", "handle {handle} must be a non-empty name without spaces",
                                          {"handle": repr(handle)})
            out.append(plain)
        return out

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise PydanticCustomError("label", "label name {key} must match [A-Za-z_][A-Za-z0-9_]*", {"key": repr(key)})
            if key in RESERVED_LABELS:
                raise PydanticCustomError("label", "label name {key} is reserved for alerts", {"key": repr(key)})
        return value

    @field_validator("terms")
    @classmethod
    def _terms(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        terms = [str(t).strip() for t in value if str(t).strip()]
        if not terms:
            raise PydanticCustomError("terms", "needs at least one non-blank term", {})
        return list(dict.fromkeys(terms))

    @model_validator(mode="after")
    def _query(self) -> WatchlistSpec:
        if self.query is not None and self.terms is not None:
            raise PydanticCustomError("query", "give either query or terms, not both", {})
        if self.query is None and self.terms is None:
            raise PydanticCustomError("query", "needs a query (or a list of terms) saying what to listen for", {})
        if self.campaign is not None and self.kind != "campaign":
            raise PydanticCustomError("campaign", "campaign: only a watchlist of kind campaign has a launch", {})
        query = self.query if self.query is not None else terms_query(self.terms or [])
        try:
            compile_query(query)
        except QueryError as exc:
            raise PydanticCustomError(
                "query_error", "query: {detail}", {"detail": str(exc), "position": exc.position}) from exc
        return self

    def to_watchlist(self) -> Watchlist:
        rules = tuple(
            AlertRule(r.rule, r.enabled, r.severity, tuple(r.receivers), dict(r.thresholds), r.pending_s, r.cooldown_s,
                      QuietHours(r.quiet_hours.start, r.quiet_hours.end, r.quiet_hours.timezone) if r.quiet_hours else None)
            for r in self.alert_rules
        )
        care = None
        if self.care is not None:
            hours = self.care.business_hours.to_business_hours() if self.care.business_hours else None
            care = Care(hours, self.care.warn_at)
        kpis = Kpis(**self.kpis.model_dump()) if self.kpis is not None else None
        campaign = Campaign(self.campaign.launch_at, self.campaign.ends_at) if self.campaign is not None else None
        return Watchlist(self.id, self.name or self.id, self.kind, tuple(self.terms or ()), tuple(self.handles),
                         self.owner_team, self.query, self.response_sla_s, dict(self.labels), rules,
                         care, kpis, campaign)


def describe_errors(exc: PydanticValidationError) -> list[str]:
    """One readable line per problem: `alert_rules[0].severity: ...`."""
    lines = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see docs/query-language.md for the keys a watchlist has)"
        elif err["type"] == "missing":
            message = "required"
        lines.append(f"{loc}: {message}" if loc else message)
    return lines


def parse_watchlist(data: Any, where: str) -> Watchlist:
    """Validate one watchlist mapping; ValidationError lists every problem, prefixed with `where`."""
    if not isinstance(data, Mapping):
        raise ValidationError(f"{where}: expected a mapping of watchlist keys (id, name, query, ...),"
                              f" not {type(data).__name__}")
    try:
        spec = WatchlistSpec.model_validate(dict(data))
    except PydanticValidationError as exc:
        wid = data.get("id")
        label = f"{where} ({wid})" if isinstance(wid, str) and wid else where
        lines = [f"{label}: {line}" for line in describe_errors(exc)]
        for err in exc.errors():
            if err["type"] == "query_error" and isinstance(data.get("query"), str):
                pointer = QueryError("", err["ctx"]["position"], data["query"]).pointer()
                lines.append(pointer)
        raise ValidationError("\n".join(lines)) from exc
    return spec.to_watchlist()


# --- documents and Avro records --------------------------------------------------------------


def _rule_document(rule: AlertRule, full: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"rule": rule.rule}
    defaults = AlertRule(rule.rule)
    for name in ("enabled", "severity", "receivers", "thresholds", "pending_s", "cooldown_s", "quiet_hours"):
        value = getattr(rule, name)
        if full or value != getattr(defaults, name):
            if name == "receivers":
                value = list(value)
            elif name == "thresholds":
                value = dict(sorted(value.items()))
            elif name == "quiet_hours" and value is not None:
                value = {"start": value.start, "end": value.end, "timezone": value.timezone}
            doc[name] = value
    return doc


def to_document(w: Watchlist, full: bool = False) -> dict[str, Any]:
    """The watchlist as a plain mapping (YAML files, API bodies); `full` keeps default values too."""
    doc: dict[str, Any] = {"id": w.id, "name": w.name, "kind": w.kind}
    if full or w.owner_team is not None:
        doc["owner_team"] = w.owner_team
    doc["query"] = w.query
    if full or w.handles:
        doc["handles"] = list(w.handles)
    if full or w.response_sla_s is not None:
        doc["response_sla_s"] = w.response_sla_s
    if full or w.labels:
        doc["labels"] = dict(sorted(w.labels.items()))
    if full or w.alert_rules:
        doc["alert_rules"] = [_rule_document(r, full) for r in w.alert_rules]
    # Written only when set, even in full: a watchlist without them keeps the revision it had before they existed.
    if w.care is not None:
        care: dict[str, Any] = {"warn_at": w.care.warn_at}
        if w.care.business_hours is not None:
            hours = w.care.business_hours
            care["business_hours"] = {"timezone": hours.timezone,
                                      "days": {d: [f"{a}-{b}" for a, b in r] for d, r in hours.days.items()},
                                      "holidays": list(hours.holidays)}
        doc["care"] = care
    if w.kpis is not None:
        doc["kpis"] = {k: v for k, v in vars(w.kpis).items() if v is not None}
    if w.campaign is not None:
        doc["campaign"] = {"launch_at": _iso(w.campaign.launch_at),
                           "ends_at": _iso(w.campaign.ends_at) if w.campaign.ends_at else None}
    return doc


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def to_record(w: Watchlist, updated_at: datetime, updated_by: str | None) -> dict[str, Any]:
    """The Avro record (schemas/watchlist.avsc) of `w`."""
    doc = to_document(w, full=True)
    care = doc.pop("care", None)
    if care is not None:
        care = {"business_hours": care.get("business_hours"), "warn_at": care["warn_at"]}
    kpis = doc.pop("kpis", None)
    if kpis is not None:
        kpis = {name: kpis.get(name) for name in ("net_sentiment", "share_of_voice", "first_response_s",
                                                  "answered_within_sla")}
    campaign = None
    if w.campaign is not None:
        campaign = {"launch_at": w.campaign.launch_at, "ends_at": w.campaign.ends_at}
    doc.pop("campaign", None)
    return {"schema_version": 2, **doc, "care": care, "kpis": kpis, "campaign": campaign,
            "revision": w.revision, "updated_at": updated_at, "updated_by": updated_by}


def from_record(record: Mapping[str, Any]) -> Watchlist:
    """A watchlist from its Avro record, validated like any other input."""
    data = {k: record[k] for k in ("id", "name", "kind", "owner_team", "query", "handles", "response_sla_s", "labels",
                                   "alert_rules", "care", "kpis", "campaign") if record.get(k) is not None}
    if isinstance(data.get("kpis"), Mapping):
        data["kpis"] = {k: v for k, v in data["kpis"].items() if v is not None}
    if isinstance(data.get("care"), Mapping) and data["care"].get("business_hours") is None:
        data["care"] = {k: v for k, v in data["care"].items() if k != "business_hours"}
    return parse_watchlist(data, f"record {record.get('id')!r}")

"""Alert rules per watchlist: which rules run, with which thresholds, severity and timing.

A watchlist runs the rule pack of its kind (`earful.watchlists.packs`: brand, competitor,
campaign, executive, product) merged with its own `alert_rules`, which override the pack's rule
by rule; a `topic` (or every kind, with `EARFUL_ALERT_RULE_PACKS=false`) runs its own rules, or the
service's default rules (`EARFUL_ALERT_DEFAULT_RULES`) when it lists none. Every threshold a rule
does not set takes the service default from the settings, so a team only writes down what it
wants to differ.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from earful.core.errors import ConfigError
from earful.watchlists import AlertRule, QuietHours, Watchlist, pack_rules

log = logging.getLogger(__name__)

VOLUME_SPIKE = "volume_spike"
NEGATIVE_SURGE = "negative_surge"
RISK_MENTION = "risk_mention"
VIRAL_POST = "viral_post"
UNANSWERED_QUESTION = "unanswered_question"
VOLUME_DROP = "volume_drop"
CASE_SLA_WARNING = "case_sla_warning"  # judged by earful.alerting.case_sla, not the detector
CASE_SLA_BREACH = "case_sla_breach"
RULES = (VOLUME_SPIKE, NEGATIVE_SURGE, RISK_MENTION, VIRAL_POST, UNANSWERED_QUESTION, VOLUME_DROP, CASE_SLA_WARNING,
         CASE_SLA_BREACH)
SEVERITIES = ("info", "warning", "critical")

# Each rule's thresholds and what they mean (names are the keys of AlertRule.thresholds).
THRESHOLDS: dict[str, dict[str, str]] = {
    VOLUME_SPIKE: {
        "min_count": "mentions a bucket or window needs at the very least (the real floor comes from the baseline)",
        "min_ratio": "how many times the expected count a bucket or window must reach",
        "max_p_value": "Poisson tail probability below which a count is a spike, divided by the number of windows judged",
        "min_z": "robust z-score (count minus expected, over the observed spread) a count must reach where the baseline "
                 "is more spread than Poisson",
        "window_s": "a trailing window of this many seconds is judged too (a surge no single bucket shows); 0: off",
        "window_medium_s": "a second, longer trailing window (seconds); 0: off",
        "window_long_s": "a third, longest trailing window (seconds; at most the buckets the detector keeps); 0: off",
    },
    NEGATIVE_SURGE: {
        "min_count": "mentions in the window before the negative share is judged",
        "min_share": "negative share of the window that alerts",
        "min_ratio": "how many times the usual negative share the window must reach",
        "max_p_value": "binomial tail probability of that many negatives at the usual share",
        "window_buckets": "buckets the share is measured over",
    },
    RISK_MENTION: {
        "min_count": "risk-tagged mentions within quiet_s before the alert fires",
        "min_reach": "author followers a risk-tagged mention needs to count",
        "quiet_s": "seconds without a new risk-tagged mention before the alert resolves",
        "min_ratio": "the count must also reach this many times the tag's usual count per quiet_s (news, not routine); 0: off",
        "min_history_s": "seconds of the watchlist's history before a tag's usual count is known and it may alert",
    },
    VIRAL_POST: {
        "min_growth": "new reshares + replies of one post within window_s that alert",
        "window_s": "seconds the growth is measured over",
    },
    UNANSWERED_QUESTION: {
        "min_count": "customer questions or complaints past the SLA before the alert fires",
        "sla_s": "seconds within which one of the watchlist's handles should reply (default: the watchlist's response_sla_s)",
        "max_age_s": "questions older than this stop counting (seconds)",
        "min_reach": "author followers a question needs to count (0: every question)",
        "own_sources": "1: only questions on a source where the watchlist's own handles have replied (where it answers)",
    },
    VOLUME_DROP: {
        "window_s": "the trailing window (seconds) whose mentions are compared with the usual level before it "
                    "(at most baseline + lateness - warm-up buckets; a longer one is shortened to that)",
        "min_expected": "mentions the window usually has before a drop can alert (a quiet watchlist's silence is normal)",
        "max_ratio": "the window's share of its usual volume at or below which it is a drop",
        "max_p_value": "Poisson probability of so few mentions below which the drop alerts",
        "recover_ratio": "share of the usual volume (as it was when the alert fired) that resolves the alert",
    },
    CASE_SLA_WARNING: {"min_priority": "cases with a lower priority (0-100) do not alert"},
    CASE_SLA_BREACH: {"min_priority": "cases with a lower priority (0-100) do not alert"},
}

DEFAULT_SEVERITY = {VOLUME_SPIKE: "critical", NEGATIVE_SURGE: "warning", RISK_MENTION: "warning",
                    VIRAL_POST: "warning", UNANSWERED_QUESTION: "warning", VOLUME_DROP: "warning",
                    CASE_SLA_WARNING: "warning", CASE_SLA_BREACH: "critical"}


@dataclass(frozen=True)
class RuleConfig:
    """One rule as it runs for one watchlist: every threshold resolved."""

    rule: str
    severity: str
    thresholds: Mapping[str, float]
    receivers: tuple[str, ...] = ()
    pending_s: int = 0
    cooldown_s: int = 300
    quiet_hours: QuietHours | None = None

    def __getitem__(self, name: str) -> float:
        return self.thresholds[name]


@dataclass(frozen=True)
class WatchlistRules:
    """Everything the detector needs to know about one watchlist."""

    watchlist_id: str
    rules: Mapping[str, RuleConfig]
    handles: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str = ""

    def get(self, rule: str) -> RuleConfig | None:
        return self.rules.get(rule)


@dataclass(frozen=True)
class RuleDefaults:
    """Service-wide defaults (from the settings) for every rule's thresholds and timing."""

    thresholds: Mapping[str, Mapping[str, float]]
    default_rules: tuple[str, ...] = ("volume_spike", "negative_surge", "unanswered_question")
    cooldown_s: int = 300
    pending_s: int = 0
    packs: bool = True  # watchlists of a kind with a rule pack run it (merged with their own rules)

    @classmethod
    def from_settings(cls, settings: Any) -> RuleDefaults:
        s = settings
        thresholds = {
            VOLUME_SPIKE: {"min_count": float(s.alert_min_count), "min_ratio": s.alert_min_ratio,
                           "max_p_value": s.alert_max_p_value, "min_z": s.alert_min_z,
                           "window_s": float(s.alert_window_s), "window_medium_s": float(s.alert_window_medium_s),
                           "window_long_s": float(s.alert_window_long_s)},
            NEGATIVE_SURGE: {"min_count": float(s.alert_negative_min_count), "min_share": s.alert_negative_min_share,
                             "min_ratio": s.alert_negative_min_ratio, "max_p_value": s.alert_negative_max_p_value,
                             "window_buckets": float(s.alert_negative_window_buckets)},
            RISK_MENTION: {"min_count": float(s.alert_risk_min_count), "min_reach": float(s.alert_risk_min_reach),
                           "quiet_s": float(s.alert_risk_quiet_s), "min_ratio": s.alert_risk_min_ratio,
                           "min_history_s": float(s.alert_risk_min_history_s)},
            VIRAL_POST: {"min_growth": float(s.alert_viral_min_growth), "window_s": float(s.alert_viral_window_s)},
            UNANSWERED_QUESTION: {"min_count": float(s.alert_question_min_count), "sla_s": 0.0,
                                  "max_age_s": float(s.alert_question_max_age_s), "min_reach": 0.0, "own_sources": 0.0},
            VOLUME_DROP: {"window_s": float(s.alert_drop_window_s), "min_expected": float(s.alert_drop_min_expected),
                          "max_ratio": s.alert_drop_max_ratio, "max_p_value": s.alert_drop_max_p_value,
                          "recover_ratio": s.alert_drop_recover_ratio},
            CASE_SLA_WARNING: {"min_priority": float(s.alert_case_sla_min_priority)},
            CASE_SLA_BREACH: {"min_priority": float(s.alert_case_sla_min_priority)},
        }
        unknown = [r for r in s.alert_default_rules if r not in RULES]
        if unknown:
            raise ConfigError(f"EARFUL_ALERT_DEFAULT_RULES: unknown rule(s) {', '.join(unknown)}; known: {', '.join(RULES)}")
        return cls(thresholds=thresholds, default_rules=tuple(s.alert_default_rules),
                   cooldown_s=s.alert_cooldown_buckets * s.alert_bucket_s, pending_s=s.alert_pending_s,
                   packs=s.alert_rule_packs)


def rules_for(watchlist: Watchlist, defaults: RuleDefaults) -> WatchlistRules:
    """The rules that run for `watchlist`: its kind's pack merged with its own (enabled ones), or
    for a kind without a pack its own, or the defaults when it has none.

    A rule this service does not know, or a threshold it does not know, is skipped with a warning
    (a newer watchlist must not stop an older service); a bad severity becomes the rule's default.
    """
    packed = pack_rules(watchlist) if defaults.packs else None
    wanted: list[AlertRule] = list(packed if packed is not None else watchlist.alert_rules) or [
        AlertRule(rule=r, severity=DEFAULT_SEVERITY[r]) for r in defaults.default_rules
    ]
    out: dict[str, RuleConfig] = {}
    for ar in wanted:
        if not ar.enabled:
            continue
        if ar.rule not in RULES:
            log.warning("unknown alert rule skipped", extra={"watchlist": watchlist.id, "rule": ar.rule})
            continue
        thresholds = dict(defaults.thresholds[ar.rule])
        for name, value in (ar.thresholds or {}).items():
            if name not in thresholds:
                log.warning("unknown threshold ignored", extra={"watchlist": watchlist.id, "rule": ar.rule, "threshold": name})
                continue
            thresholds[name] = float(value)
        if ar.rule == UNANSWERED_QUESTION and not thresholds["sla_s"]:
            thresholds["sla_s"] = float(watchlist.response_sla_s or 0)
        severity = ar.severity if ar.severity in SEVERITIES else DEFAULT_SEVERITY[ar.rule]
        out[ar.rule] = RuleConfig(
            rule=ar.rule, severity=severity, thresholds=MappingProxyType(thresholds), receivers=tuple(ar.receivers),
            pending_s=int(ar.pending_s or defaults.pending_s),
            cooldown_s=int(defaults.cooldown_s if ar.cooldown_s is None else ar.cooldown_s),
            quiet_hours=ar.quiet_hours,
        )
    return WatchlistRules(watchlist.id, MappingProxyType(out), frozenset(h.casefold().lstrip("@") for h in watchlist.handles),
                          MappingProxyType(dict(watchlist.labels)), watchlist.name)

"""Case SLA alerts, pure: which alerts a case should have at a moment, when the timer must wake,
what the alerts say, and how a rebuilt process agrees with the alerts already firing."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from earful.alerting.case_sla import (
    CASE_SLA_BREACH,
    CASE_SLA_WARNING,
    Announced,
    Case,
    CaseAlert,
    CaseBook,
    CaseRule,
    case_of,
    case_rule,
    group_key,
    span,
)
from earful.alerting.detection.rules import RuleDefaults, rules_for
from earful.alerting.notification.routing import load_notify_config
from earful.core.settings import Settings
from earful.watchlists import AlertRule, Watchlist
from earful.watchlists.model import BusinessHours, Care
from tests.support import example

MIN = 60_000
T0 = 1_793_982_600_000  # 2026-11-06 ... UTC, a case's opened_at
SLA = 60 * MIN
RULES = {CASE_SLA_WARNING: CaseRule(CASE_SLA_WARNING, "warning", watchlist_name="Acme Air", labels={"team": "care"}),
         CASE_SLA_BREACH: CaseRule(CASE_SLA_BREACH, "critical", watchlist_name="Acme Air", labels={"team": "care"})}


def rules(watchlist_id: str, rule: str) -> CaseRule | None:
    return RULES[rule] if watchlist_id == "acme-air" else None


def case(version: int = 1, *, state: str = "assigned", event: str = "opened", owner: str | None = "ann", at: int = T0,
         opened: int = T0, sla: int | None = SLA, priority: int = 82, answered: int | None = None,
         case_id: str = "acme-air:twitter:1", actor: str | None = "stream", **rest: Any) -> Case:
    return Case(case_id=case_id, watchlist_id=case_id.split(":")[0], state=state, event=event, owner=owner,
                priority=priority, opened_ms=opened, deadline_ms=None if sla is None else opened + sla,
                warn_ms=None if sla is None else opened + sla * 3 // 4, occurred_ms=at, version=version,
                priority_reasons=("reach: 12400 followers +20",), source="twitter", source_id=case_id.split(":")[-1],
                mention_id="m-1", author_handle="jane_flies", actor=actor, answered_ms=answered,
                since_ms=opened if event == "opened" else at, **rest)


def fired(out: list[CaseAlert]) -> list[tuple[str, str]]:
    return [(a.decision.rule, a.decision.status) for a in out]


def test_a_case_event_decodes_into_a_case() -> None:
    c = case_of(example("case_event/v1/01_question_opened_and_assigned"))
    assert (c.case_id, c.watchlist_id, c.state, c.owner, c.priority, c.version) == \
        ("acme-air:twitter:1890412233", "acme-air", "assigned", "ann", 45, 1)
    assert c.warn_ms == 1794216600000 and c.deadline_ms == 1794218400000 and c.opened_ms == 1793982600000
    assert c.waiting and c.thread_id == "1890400001" and c.author_handle == "jane_flies"
    assert c.since_ms == c.opened_ms  # ann has had it since it was asked
    answered = case_of(example("case_event/v1/02_answered_by_a_brand_reply"))
    assert not answered.waiting and answered.closed_ms == 1794215523000 and answered.version == 2
    no_sla = case_of(example("case_event/v1/03_dismissed_without_an_sla"))
    assert no_sla.deadline_ms is None and no_sla.warn_ms is None


def test_the_warning_fires_at_warn_at_and_the_breach_at_the_deadline_not_before() -> None:
    book = CaseBook()
    assert book.update(case(), rules, T0) == []
    warn = T0 + 45 * MIN
    assert book.next_due_ms() == warn  # the timer sleeps until then
    assert book.due(rules, warn - 1) == []
    out = book.due(rules, warn)
    assert fired(out) == [(CASE_SLA_WARNING, "firing")]
    d = out[0].decision
    assert d.starts_at_ms == warn and d.alert_id == f"{d.fingerprint}-{warn}" and d.score == 82
    assert d.labels == {"team": "care", "watchlist": "acme-air", "rule": CASE_SLA_WARNING, "severity": "warning",
                        "case": "acme-air:twitter:1", "owner": "ann"}
    assert d.summary == "Acme Air: Question from @jane_flies waiting 45 min of its 1 h SLA (75 %), owner ann, priority 82"
    assert out[0].annotations["case_id"] == "acme-air:twitter:1" and out[0].annotations["warn_share"] == "0.75"
    assert book.next_due_ms() == T0 + SLA
    assert book.due(rules, T0 + SLA - 1) == []
    out = book.due(rules, T0 + SLA + 5)
    assert fired(out) == [(CASE_SLA_BREACH, "firing")]
    assert out[0].decision.starts_at_ms == T0 + SLA and out[0].decision.labels["severity"] == "critical"
    assert out[0].decision.summary == "Acme Air: Question from @jane_flies not answered within its 1 h SLA, owner ann, priority 82"
    assert book.next_due_ms() is None
    assert book.due(rules, T0 + 10 * SLA) == [] and book.judge_all(rules, T0 + 10 * SLA) == []  # once each


def test_a_case_opened_late_alerts_from_its_thresholds() -> None:
    """Storage opened the case long after the customer asked (a late mention): the warning and the
    breach start at their thresholds, as they would have for a case seen at once."""
    book = CaseBook()
    now = T0 + 3 * SLA
    out = book.update(case(at=now), rules, now)
    assert [(a.decision.rule, a.decision.starts_at_ms) for a in out] == [(CASE_SLA_WARNING, T0 + 45 * MIN),
                                                                         (CASE_SLA_BREACH, T0 + SLA)]


def test_an_answer_resolves_both_alerts_at_the_answer_and_says_how_long_it_took() -> None:
    book = CaseBook()
    book.update(case(), rules, T0)
    book.due(rules, T0 + 70 * MIN)
    answered_at = T0 + 80 * MIN
    out = book.update(case(2, state="answered", event="answered", at=answered_at + 900, answered=answered_at), rules,
                      answered_at + 1000)
    assert fired(out) == [(CASE_SLA_WARNING, "resolved"), (CASE_SLA_BREACH, "resolved")]
    assert {a.decision.ends_at_ms for a in out} == {answered_at}
    assert out[1].decision.summary == ("Acme Air: Question from @jane_flies answered by a brand reply after 1 h 20 min, "
                                       "20 min past its deadline (case_sla_breach resolved)")
    assert book.announced == {} and len(book) == 0


def test_a_case_answered_before_its_warning_never_alerts() -> None:
    book = CaseBook()
    book.update(case(), rules, T0)
    assert book.update(case(2, state="answered", event="answered", at=T0 + 10 * MIN, answered=T0 + 10 * MIN), rules,
                       T0 + 10 * MIN) == []
    assert book.due(rules, T0 + 45 * MIN) == [] and book.due(rules, T0 + 2 * SLA) == []
    assert book.judge_all(rules, T0 + 2 * SLA) == []


def test_dismissed_resolves_and_a_reopened_case_alerts_again_as_a_new_episode() -> None:
    book = CaseBook()
    book.update(case(), rules, T0)
    (first,) = book.due(rules, T0 + 50 * MIN)
    out = book.update(case(2, state="dismissed", event="dismissed", at=T0 + 55 * MIN, actor="bob"), rules, T0 + 55 * MIN)
    assert fired(out) == [(CASE_SLA_WARNING, "resolved")] and "dismissed by bob" in out[0].decision.summary
    reopened = T0 + 2 * SLA
    book.update(case(3, state="open", event="reopened", owner=None, at=reopened, opened=reopened), rules, reopened)
    (again,) = book.due(rules, reopened + 45 * MIN)
    assert again.decision.labels["owner"] == "unassigned" and again.decision.alert_id != first.decision.alert_id


def test_reassigning_a_firing_case_moves_its_alert_to_the_new_owner() -> None:
    book = CaseBook()
    book.update(case(), rules, T0)
    (old,) = book.due(rules, T0 + 46 * MIN)
    moved = T0 + 50 * MIN
    out = book.update(case(2, event="assigned", owner="bob", at=moved, actor="lead"), rules, moved)
    assert fired(out) == [(CASE_SLA_WARNING, "resolved"), (CASE_SLA_WARNING, "firing")]
    assert out[0].decision.alert_id == old.decision.alert_id and out[0].decision.ends_at_ms == moved
    assert "re-assigned to bob" in out[0].decision.summary
    new = out[1].decision
    assert new.labels["owner"] == "bob" and new.starts_at_ms == moved and new.fingerprint != old.decision.fingerprint
    # An update that keeps the owner (escalated) changes nothing.
    assert book.update(case(3, state="escalated", event="escalated", owner="bob", at=moved + MIN), rules, moved + MIN) == []


def test_a_duplicate_or_older_event_is_ignored() -> None:
    book = CaseBook()
    book.update(case(), rules, T0)
    book.update(case(2, state="answered", event="answered", at=T0 + MIN, answered=T0 + MIN), rules, T0 + MIN)
    assert book.apply(case(1)) is False  # the opening again, re-delivered after the answer
    assert len(book) == 0 and book.due(rules, T0 + SLA) == []


def test_a_rebuild_publishes_only_what_the_firing_alerts_lack() -> None:
    """The same events live and replayed later give the same alert ids; alerts PostgreSQL says fire
    are adopted, not announced again; one of a case closed meanwhile resolves at the close."""
    live = CaseBook()
    live.update(case(case_id="acme-air:twitter:1"), rules, T0)
    live.update(case(case_id="acme-air:twitter:2"), rules, T0)
    live_out = live.due(rules, T0 + 50 * MIN)
    assert len(live_out) == 2
    firing = {(a.decision.labels["case"], a.decision.rule): a.decision for a in live_out}

    rebuilt = CaseBook()
    rebuilt.apply(case(case_id="acme-air:twitter:1"))
    rebuilt.apply(case(case_id="acme-air:twitter:2"))
    rebuilt.apply(case(2, case_id="acme-air:twitter:2", state="answered", event="answered", at=T0 + 52 * MIN,
                       answered=T0 + 52 * MIN))
    rebuilt.apply(case(case_id="acme-air:twitter:3"))
    for (case_id, rule), d in firing.items():
        rebuilt.adopt(case_id, rule, Announced(d.alert_id, d.fingerprint, d.labels, d.starts_at_ms))
    out = rebuilt.judge_all(rules, T0 + 61 * MIN)
    assert sorted((a.decision.labels["case"], a.decision.rule, a.decision.status) for a in out) == [
        ("acme-air:twitter:1", CASE_SLA_BREACH, "firing"),  # the breach came while nobody ran: late, not never
        ("acme-air:twitter:2", CASE_SLA_WARNING, "resolved"),  # answered while nobody ran
        ("acme-air:twitter:3", CASE_SLA_BREACH, "firing"),
        ("acme-air:twitter:3", CASE_SLA_WARNING, "firing"),
    ]
    resolved = next(a.decision for a in out if a.decision.status == "resolved")
    assert resolved.alert_id == firing[("acme-air:twitter:2", CASE_SLA_WARNING)].alert_id
    assert resolved.ends_at_ms == T0 + 52 * MIN
    # Case 3's warning is the one a process running all along would have fired: same id.
    other = CaseBook()
    other.update(case(case_id="acme-air:twitter:3"), rules, T0)
    (on_time,) = other.due(rules, T0 + 45 * MIN)
    assert on_time.decision.alert_id in {a.decision.alert_id for a in out}


def test_rules_that_do_not_apply_fire_nothing_and_resolve_what_fired() -> None:
    book = CaseBook()
    book.update(case(case_id="globex:twitter:9"), rules, T0)  # a watchlist without the rules
    assert book.due(rules, T0 + 2 * SLA) == []
    book.update(case(priority=10), rules, T0)
    assert fired(book.due(rules, T0 + 45 * MIN)) == [(CASE_SLA_WARNING, "firing")]
    high_bar = {r: replace(c, min_priority=50) for r, c in RULES.items()}
    out = book.judge_all(lambda w, r: high_bar[r] if w == "acme-air" else None, T0 + 46 * MIN)
    assert fired(out) == [(CASE_SLA_WARNING, "resolved")] and "no longer alerted" in out[0].decision.summary


def test_a_deleted_case_resolves() -> None:
    book = CaseBook()
    book.update(case(), rules, T0)
    book.due(rules, T0 + 46 * MIN)
    book.forget("acme-air:twitter:1", T0 + 47 * MIN)
    out = book.judge("acme-air:twitter:1", rules, T0 + 47 * MIN)
    assert fired(out) == [(CASE_SLA_WARNING, "resolved")] and out[0].decision.ends_at_ms == T0 + 47 * MIN


def test_business_hours_are_named_when_the_clock_stopped() -> None:
    """Opened Friday 16:30, one hour SLA in hours 09:00-17:00: the warning comes Monday 09:15."""
    friday = int(datetime(2026, 11, 6, 16, 30, tzinfo=timezone.utc).timestamp() * 1000)
    monday_warn = int(datetime(2026, 11, 9, 9, 15, tzinfo=timezone.utc).timestamp() * 1000)
    c = replace(case(opened=friday, at=friday), warn_ms=monday_warn, deadline_ms=monday_warn + 15 * MIN)
    hours = {r: replace(cfg, sla_s=3600, warn_share=0.75, business_hours=True) for r, cfg in RULES.items()}
    book = CaseBook()
    book.update(c, lambda w, r: hours[r], friday)
    (warning,) = book.due(lambda w, r: hours[r], monday_warn)
    assert warning.decision.summary == ("Acme Air: Question from @jane_flies waiting 45 min of its 1 h SLA in business hours"
                                        " (75 %; asked 2 d 16 h ago), owner ann, priority 82")


def test_a_complaint_is_called_one_and_a_case_without_author_names_its_source() -> None:
    c = replace(case(), priority_reasons=("risk: complaint +10",), author_handle=None)
    book = CaseBook()
    book.update(c, rules, T0)
    (warning,) = book.due(rules, T0 + 45 * MIN)
    assert warning.decision.summary.startswith("Acme Air: Complaint on twitter waiting 45 min")


def test_cases_without_an_sla_are_not_kept() -> None:
    """Every case without an SLA was remembered for a day as closed: at the rate questions come,
    alerting grew by megabytes a minute. Such a case is now not kept at all, waiting or answered."""
    book = CaseBook()
    assert book.update(case(sla=None), rules, T0) == []
    assert book.update(case(2, sla=None, state="answered", event="answered", answered=T0 + MIN), rules, T0 + MIN) == []
    assert len(book) == 0 and book.next_due_ms() is None and book.closed == {} and book.cases == {}
    book.update(case(case_id="acme-air:twitter:2"), rules, T0)  # one with an SLA, answered: remembered a day
    book.update(case(2, case_id="acme-air:twitter:2", state="answered", event="answered", answered=T0 + MIN), rules,
                T0 + MIN)
    assert list(book.closed) == ["acme-air:twitter:2"]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (8, "8 s"), (90, "1 min 30 s"), (2700, "45 min"), (3600, "1 h"), (3660, "1 h 1 min"),
    (9000, "2 h 30 min"), (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"), (86400 + 30, "1 d"),
])
def test_durations_read_naturally(seconds: int, text: str) -> None:
    assert span(seconds) == text


def test_a_watchlist_switches_a_case_rule_off_or_sets_its_severity_and_bar() -> None:
    defaults = RuleDefaults.from_settings(Settings(_env_file=None))
    plain = Watchlist("acme-air", "Acme Air", "brand", ("acme",), response_sla_s=3600, labels={"team": "care"},
                      care=Care(BusinessHours("Europe/London", {"mon": (("09:00", "17:00"),)}), 0.8))
    cfg = case_rule(plain, CASE_SLA_BREACH, rules_for(plain, defaults).get(CASE_SLA_BREACH), 0.0)
    assert cfg is not None and cfg.severity == "critical" and cfg.min_priority == 0.0
    assert (cfg.sla_s, cfg.warn_share, cfg.business_hours, dict(cfg.labels)) == (3600, 0.8, True, {"team": "care"})
    tuned = replace(plain, alert_rules=(AlertRule(CASE_SLA_BREACH, severity="warning", thresholds={"min_priority": 60}),
                                        AlertRule(CASE_SLA_WARNING, enabled=False)))
    cfg = case_rule(tuned, CASE_SLA_BREACH, rules_for(tuned, defaults).get(CASE_SLA_BREACH), 0.0)
    assert cfg is not None and cfg.severity == "warning" and cfg.min_priority == 60
    assert case_rule(tuned, CASE_SLA_WARNING, rules_for(tuned, defaults).get(CASE_SLA_WARNING), 0.0) is None
    assert case_rule(None, CASE_SLA_WARNING, None, 0.0) is None


def test_case_alerts_are_grouped_per_watchlist_and_owner() -> None:
    config = load_notify_config(Settings(_env_file=None))
    labels = {"watchlist": "acme-air", "rule": CASE_SLA_WARNING, "owner": "ann"}
    assert group_key(config, labels) == "watchlist=acme-air,owner=ann"
    by_owner = replace(config, default=replace(config.default, group_by=("watchlist", "owner")))
    assert group_key(by_owner, labels) == "watchlist=acme-air,owner=ann"


def test_a_threshold_passed_long_ago_is_not_announced_but_a_recent_one_is() -> None:
    """A replayed month-old question (the sample, a back-fill) pages nobody; one whose deadline
    passed minutes ago still does, and an alert already announced is kept."""
    late = {r: replace(c, max_late_s=3600.0) for r, c in RULES.items()}

    def lookup(watchlist_id: str, rule: str) -> CaseRule | None:
        return late[rule] if watchlist_id == "acme-air" else None

    weeks_later = T0 + SLA + 21 * 24 * 60 * MIN
    assert CaseBook().update(case(), lookup, weeks_later) == []
    minutes_later = T0 + SLA + 10 * MIN  # the warning passed 25 min ago, the deadline 10 min ago
    assert fired(CaseBook().update(case(), lookup, minutes_later)) == [(CASE_SLA_WARNING, "firing"), (CASE_SLA_BREACH, "firing")]
    book = CaseBook()
    book.update(case(), lookup, T0)
    assert fired(book.due(lookup, T0 + SLA)) == [(CASE_SLA_WARNING, "firing"), (CASE_SLA_BREACH, "firing")]
    assert book.judge_all(lookup, weeks_later) == []  # still waiting, still firing: nothing to say

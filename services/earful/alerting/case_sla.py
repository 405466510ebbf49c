"""Customer-care SLA alerts: one per case that waits too long, fired on time and resolved by the answer.

Every change of a case (a customer question or complaint that needs an answer) is an event on
``earful.cases.v1`` (schemas/case_event.avsc, keyed by case id), carrying the case's state, owner,
priority and its SLA times, business hours already counted in: ``warn_at`` (the watchlist's
``care.warn_at`` share of its ``response_sla_s``) and ``deadline_at``. For every case still
waiting (open, assigned or escalated) this module fires

* ``case_sla_warning`` once the case is still waiting at its ``warn_at``;
* ``case_sla_breach`` once it is still waiting at its ``deadline_at``;

and resolves both when the case is answered or dismissed. A case re-assigned while an alert fires
resolves the old owner's alert and fires one for the new owner (the owner is a label: alerts are
grouped per watchlist and owner). The alerts are AlertEvents on ``earful.alerts.v1`` like every
other rule's, so they are recorded, grouped, routed, silenced and delivered by the same lifecycle.

Which alerts fire is a function of the cases and the clock alone: an alert starts at its threshold
(or when the current owner took the case, if later), so its id is the same whichever process
decides it, and a process that was down at the threshold fires it late rather than never.

The topic is the state. A process reads its partitions of the topic from the beginning whenever
it is assigned them (the consumer group spreads the partitions over replicas and never commits),
keeps the waiting cases in memory, and only then reconciles with the alerts PostgreSQL says are
firing: it publishes the difference (what fires and should not, what should fire and does not),
so a restart notifies nobody twice. After that a timer wakes at the next threshold due, not
before (and every `RECHECK_S` to apply changed rules).

Pure part, tested without Kafka: `Case`, `case_of`, `CaseRule`, `case_rule`, `CaseBook` (the cases,
the alerts they should have, every decision with the clock passed in) and the sentences. I/O part:
`CaseSla`, started with the Faust app.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

import asyncpg
import mode
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import Counter, Gauge

from earful.alerting import SERVICE
from earful.alerting.detection.model import Decision, fingerprint
from earful.alerting.detection.rulebook import RuleBook
from earful.alerting.detection.rules import CASE_SLA_BREACH, CASE_SLA_WARNING, DEFAULT_SEVERITY, RuleConfig
from earful.alerting.events import alert_record, dashboard_link
from earful.alerting.notification.grouping import Alert
from earful.alerting.notification.routing import NotifyConfig
from earful.alerting.notification.store import AlertStore
from earful.core.errors import BrokerError, CodecError, StorageError
from earful.core.kafka import Codecs, make_consumer, millis_now
from earful.core.kafka_security import start_client
from earful.core.metrics import ERRORS
from earful.core.retry import Backoff, retry
from earful.core.settings import Settings
from earful.core.topics import ALERTS, CASES, load_topics
from earful.watchlists import Watchlist

log = logging.getLogger(__name__)

GROUP_ID = "earful-alerting-cases"
CASE_RULES = (CASE_SLA_WARNING, CASE_SLA_BREACH)
WAITING = frozenset({"open", "assigned", "escalated"})  # states that still need an answer
UNASSIGNED = "unassigned"  # the owner label of a case nobody owns
RECHECK_S = 30.0  # every case is judged again this often: a rule switched off or on takes effect
CLOSED_MEMORY_MS = 86_400_000  # closed cases are remembered a day: a late duplicate event cannot reopen them

CASE_EVENTS = Counter("earful_case_sla_events_total", "Case events read from earful.cases.v1 by alerting, by outcome"
                      " (applied, stale, rejected).", ["outcome"])
WAITING_CASES = Gauge("earful_case_sla_waiting_cases", "Cases with an SLA still waiting for an answer, in this process.")
CASE_DECISIONS = Counter("earful_case_sla_decisions_total", "Case SLA alert state changes published, by rule and status.",
                         ["rule", "status"])
TOO_LATE = Counter("earful_case_sla_too_late_total", "Case SLA thresholds not announced: passed longer ago than "
                   "EARFUL_ALERT_CASE_SLA_MAX_LATE_S (history replayed, a long outage), by rule.", ["rule"])


# --- cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One case as its latest event describes it (times in epoch milliseconds)."""

    case_id: str
    watchlist_id: str
    state: str  # open | assigned | answered | dismissed | escalated
    event: str  # what changed: opened | assigned | answered | dismissed | escalated | reopened
    owner: str | None
    priority: int
    opened_ms: int
    deadline_ms: int | None  # None: no SLA
    warn_ms: int | None
    occurred_ms: int
    version: int | None = None  # from event_id "<case_id>:<version>"; None when it has none
    priority_reasons: tuple[str, ...] = ()
    source: str = ""
    source_id: str = ""
    mention_id: str = ""
    thread_id: str | None = None
    author_handle: str | None = None
    actor: str | None = None
    answered_ms: int | None = None
    since_ms: int = 0  # since when the current owner has had the case (opened_at, or when it was re-assigned or
    # reopened): its alerts start no earlier, so an alert handed back and forth gets a new id each time

    @property
    def waiting(self) -> bool:
        return self.state in WAITING

    @property
    def owner_label(self) -> str:
        return self.owner or UNASSIGNED

    @property
    def closed_ms(self) -> int:
        """When it stopped waiting (the answer's time when known)."""
        return self.answered_ms if self.state == "answered" and self.answered_ms is not None else self.occurred_ms

    def threshold(self, rule: str) -> int | None:
        return self.warn_ms if rule == CASE_SLA_WARNING else self.deadline_ms


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def _version(event_id: str, case_id: str) -> int | None:
    prefix, _, suffix = event_id.rpartition(":")
    return int(suffix) if prefix == case_id and suffix.isdigit() else None


def case_of(record: Mapping[str, Any]) -> Case:
    """A case event (schemas/case_event.avsc, as the codec decodes it) → `Case`; KeyError/TypeError/
    ValueError when a required field is missing or malformed."""
    case_id = str(record["case_id"])
    occurred = _ms(record["occurred_at"])
    opened = _ms(record["opened_at"])
    assert occurred is not None and opened is not None
    return Case(
        case_id=case_id, watchlist_id=str(record["watchlist_id"]), state=str(record["state"]), event=str(record["event"]),
        owner=record.get("owner") or None, priority=int(record.get("priority") or 0), opened_ms=opened,
        deadline_ms=_ms(record.get("deadline_at")), warn_ms=_ms(record.get("warn_at")), occurred_ms=occurred,
        version=_version(str(record.get("event_id") or ""), case_id),
        priority_reasons=tuple(str(r) for r in record.get("priority_reasons") or ()), source=str(record.get("source") or ""),
        source_id=str(record.get("source_id") or ""), mention_id=str(record.get("mention_id") or ""),
        thread_id=record.get("thread_id"), author_handle=record.get("author_handle"), actor=record.get("actor"),
        answered_ms=_ms(record.get("answered_at")),
        since_ms=opened if record["event"] == "opened" else occurred,  # the case is the owner's since it opened
    )


# --- which rule applies ------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseRule:
    """A case rule as it applies to one watchlist's cases now."""

    rule: str
    severity: str
    min_priority: float = 0.0
    max_late_s: float | None = None  # a threshold passed longer ago than this is not announced (None: always)
    labels: Mapping[str, str] = field(default_factory=dict)  # the watchlist's own labels, copied onto its alerts
    watchlist_name: str = ""
    sla_s: int | None = None  # the watchlist's response_sla_s (business time when it has business hours)
    warn_share: float | None = None  # its care.warn_at
    business_hours: bool = False


RuleLookup = Callable[[str, str], "CaseRule | None"]  # (watchlist id, rule) → the rule, None when it does not apply


def case_rule(watchlist: Watchlist | None, rule: str, configured: RuleConfig | None, min_priority: float,
              max_late_s: float | None = None) -> CaseRule | None:
    """How `rule` applies to `watchlist`'s cases: on for every watchlist that exists (its SLA, hence the
    cases' deadlines, is the opt-in) unless one of its `alert_rules` switches it off; an entry of its
    own (`configured`, from the rulebook) sets severity and min_priority (receivers and quiet hours
    apply when the alert is recorded). None: no alerts."""
    if watchlist is None or any(r.rule == rule and not r.enabled for r in watchlist.alert_rules):
        return None
    care = watchlist.care
    return CaseRule(
        rule=rule, severity=configured.severity if configured else DEFAULT_SEVERITY[rule],
        min_priority=float(configured.thresholds.get("min_priority", min_priority)) if configured else min_priority,
        max_late_s=max_late_s, labels=dict(watchlist.labels), watchlist_name=watchlist.name, sla_s=watchlist.response_sla_s,
        warn_share=care.warn_at if care else None, business_hours=bool(care and care.business_hours),
    )


# --- what the alerts say -----------------------------------------------------------------------


def span(seconds: float) -> str:
    """A duration in at most two units, zeros left out: 8 s, 1 min 30 s, 45 min, 1 h, 2 h 30 min, 3 d 4 h."""
    rest = max(0, round(seconds))
    parts: list[tuple[int, str]] = []
    for name, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        amount, rest = divmod(rest, size)
        if amount or parts:
            parts.append((amount, name))
        if len(parts) == 2:
            break
    return " ".join(f"{amount} {name}" for amount, name in parts if amount) or "0 s"


def _who(case: Case) -> str:
    noun = "Complaint" if any("complaint" in r for r in case.priority_reasons) else "Question"
    if case.author_handle:
        return f"{noun} from @{case.author_handle.lstrip('@')}"
    return f"{noun} on {case.source}" if case.source else noun


def _sla(case: Case, cfg: CaseRule) -> tuple[float, float]:
    """(the SLA in seconds, the warning's share of it). Around the clock, the case's own times say both;
    with business hours the wall-clock span is longer, so the watchlist's SLA and share are named."""
    wall = ((case.deadline_ms or case.opened_ms) - case.opened_ms) / 1000
    wall_share = (case.warn_ms - case.opened_ms) / 1000 / wall if case.warn_ms is not None and wall > 0 else None
    if cfg.business_hours and cfg.sla_s:
        return float(cfg.sla_s), cfg.warn_share or wall_share or 0.75
    return wall, wall_share or cfg.warn_share or 0.75


def firing_summary(case: Case, rule: str, cfg: CaseRule) -> str:
    """'Acme Air: Question from @x waiting 45 min of its 1 h SLA (75 %), owner ann, priority 82'."""
    sla, share = _sla(case, cfg)
    wall = ((case.threshold(rule) or case.opened_ms) - case.opened_ms) / 1000
    waited = sla * share if rule == CASE_SLA_WARNING else sla
    hours = cfg.business_hours and abs(wall - waited) >= 60  # the SLA clock stopped while the team was away
    in_hours = " in business hours" if hours else ""
    if rule == CASE_SLA_WARNING:
        asked = f"; asked {span(wall)} ago" if hours else ""
        text = f"{_who(case)} waiting {span(waited)} of its {span(sla)} SLA{in_hours} ({round(share * 100)} %{asked})"
    else:
        asked = f" (asked {span(wall)} ago)" if hours else ""
        text = f"{_who(case)} not answered within its {span(sla)} SLA{in_hours}{asked}"
    text += f", owner {case.owner or 'none'}, priority {case.priority}"
    return f"{cfg.watchlist_name}: {text}" if cfg.watchlist_name else text


def resolved_summary(case: Case | None, rule: str, case_id: str, why: str, name: str = "") -> str:
    """Why the alert is over: answered (and whether within the SLA), dismissed, re-assigned, not alerted."""
    if case is None:
        text = f"case {case_id} {why}"
    else:
        text = f"{_who(case)} {why}"
        if why.startswith("answered") and case.deadline_ms is not None:
            waited = (case.closed_ms - case.opened_ms) / 1000
            late = (case.closed_ms - case.deadline_ms) / 1000
            text += f" after {span(waited)}" + (f", {span(late)} past its deadline" if late > 0 else ", within its SLA")
    text += f" ({rule} resolved)"
    return f"{name}: {text}" if name else text


def description(case: Case) -> str:
    """The facts behind the alert, for the description annotation."""
    def iso(ms: int | None) -> str:
        return "none" if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds").replace(
            "+00:00", "Z")

    reasons = f" ({', '.join(case.priority_reasons)})" if case.priority_reasons else ""
    text = (f"Case {case.case_id} ({case.state}) opened {iso(case.opened_ms)}, warning at {iso(case.warn_ms)}, "
            f"deadline {iso(case.deadline_ms)}; priority {case.priority}{reasons}; owner {case.owner or 'none'}")
    return text + (f"; thread {case.thread_id}" if case.thread_id else "")


def annotations_of(case: Case) -> dict[str, str]:
    """Annotations every case alert carries (strings: the event's map), for receivers that build tickets."""
    out = {"case_id": case.case_id, "owner": case.owner or "", "priority": str(case.priority),
           "priority_reasons": ",".join(case.priority_reasons), "case_state": case.state,
           "mention_id": case.mention_id, "source": case.source, "source_id": case.source_id}
    for name, ms in (("opened_at", case.opened_ms), ("warn_at", case.warn_ms), ("deadline_at", case.deadline_ms)):
        if ms is not None:
            out[name] = datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if case.thread_id:
        out["thread_id"] = case.thread_id
    if case.author_handle:
        out["author_handle"] = case.author_handle
    return out


# --- the state and its decisions ---------------------------------------------------------------


@dataclass(frozen=True)
class Announced:
    """An alert published as firing (by this process, or found firing in PostgreSQL at a start)."""

    alert_id: str
    fingerprint: str
    labels: Mapping[str, str]
    starts_ms: int


@dataclass(frozen=True)
class CaseAlert:
    """A decision with the annotations of its case (empty for a case no longer known)."""

    decision: Decision
    annotations: Mapping[str, str] = field(default_factory=dict)


class CaseBook:
    """The waiting cases with their thresholds, and the alerts they have; every method takes the clock.

    `apply` takes a case event without deciding anything (a rebuild); `update` applies and decides;
    `due` decides what the clock made due; `judge_all` decides for every case and known alert.
    """

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}  # waiting cases with an SLA
        self.closed: dict[str, Case] = {}  # recently closed cases (their last event)
        self.announced: dict[tuple[str, str], Announced] = {}  # (case id, rule) → the alert firing
        self._heap: list[tuple[int, str]] = []  # (due ms, case id); stale entries are judged harmlessly
        self._queued: dict[str, int] = {}  # case id → the due time last pushed

    def __len__(self) -> int:
        return len(self.cases)

    def clear(self) -> None:
        """Forget everything (a rebuild starts from the topic's beginning)."""
        self.cases.clear()
        self.closed.clear()
        self.announced.clear()
        self._heap.clear()
        self._queued.clear()

    def apply(self, case: Case) -> bool:
        """Take a case event; False when it is older than what is known (a duplicate or a late one)."""
        known = self.cases.get(case.case_id) or self.closed.get(case.case_id)
        if known is not None and case.version is not None and known.version is not None and case.version <= known.version:
            return False
        if known is not None and known.waiting and case.waiting and known.owner == case.owner:
            case = replace(case, since_ms=known.since_ms)  # still the same owner's since then
        if case.waiting and case.deadline_ms is not None:
            self.cases[case.case_id] = case
            self.closed.pop(case.case_id, None)
        elif known is None and case.deadline_ms is None and not self._has_alerts(case.case_id):
            pass  # never had an SLA: nothing to fire or resolve, so not remembered (a day of them grew the service)
        else:
            self.cases.pop(case.case_id, None)
            self.closed[case.case_id] = case
        return True

    def _has_alerts(self, case_id: str) -> bool:
        return any((case_id, rule) in self.announced for rule in CASE_RULES)

    def forget(self, case_id: str, now_ms: int) -> None:
        """The case was deleted (a tombstone): it no longer waits."""
        case = self.cases.pop(case_id, None)
        if case is not None:
            self.closed[case_id] = replace(case, state="deleted", occurred_ms=now_ms, actor=None)

    def adopt(self, case_id: str, rule: str, alert: Announced) -> None:
        """An alert PostgreSQL says is firing: known, so not announced again."""
        self.announced[(case_id, rule)] = alert

    def update(self, case: Case, rules: RuleLookup, now_ms: int) -> list[CaseAlert]:
        return self.judge(case.case_id, rules, now_ms) if self.apply(case) else []

    def judge(self, case_id: str, rules: RuleLookup, now_ms: int) -> list[CaseAlert]:
        """Bring the alerts of one case in line with what it should have at `now_ms`."""
        case = self.cases.get(case_id)
        known = case or self.closed.get(case_id)
        out: list[CaseAlert] = []
        for rule in CASE_RULES:
            cfg = rules(known.watchlist_id, rule) if known is not None else None
            want = _wanted(case, rule, cfg, now_ms) if case is not None and cfg is not None else None
            have = self.announced.get((case_id, rule))
            if have is not None and (want is None or fingerprint(want[0]) != have.fingerprint):
                out.append(self._resolve(case_id, rule, have, case, now_ms, cfg.watchlist_name if cfg else ""))
                have = None
            if want is not None and have is None and case is not None and cfg is not None:
                if _too_late(case, rule, cfg, now_ms):
                    TOO_LATE.labels(rule).inc()
                    continue
                out.append(self._fire(case, rule, cfg, *want))
        if case is not None:
            self._queue(case, now_ms)
        return out

    def due(self, rules: RuleLookup, now_ms: int) -> list[CaseAlert]:
        """Judge the cases whose next threshold has come."""
        out: list[CaseAlert] = []
        while self._heap and self._heap[0][0] <= now_ms:
            at, case_id = heapq.heappop(self._heap)
            if self._queued.get(case_id) == at:
                del self._queued[case_id]
            out += self.judge(case_id, rules, now_ms)
        return out

    def judge_all(self, rules: RuleLookup, now_ms: int) -> list[CaseAlert]:
        """Judge every waiting case and every alert known to fire (e.g. of a case closed since)."""
        out: list[CaseAlert] = []
        for case_id in sorted(set(self.cases) | {c for c, _ in self.announced}):
            out += self.judge(case_id, rules, now_ms)
        for case_id in [c for c, case in self.closed.items() if case.occurred_ms < now_ms - CLOSED_MEMORY_MS]:
            del self.closed[case_id]
        return out

    def next_due_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def _queue(self, case: Case, now_ms: int) -> None:
        upcoming = [t for t in (case.warn_ms, case.deadline_ms) if t is not None and t > now_ms]
        if not upcoming:
            return
        at = min(upcoming)
        if self._queued.get(case.case_id) != at:
            self._queued[case.case_id] = at
            heapq.heappush(self._heap, (at, case.case_id))

    def _fire(self, case: Case, rule: str, cfg: CaseRule, labels: dict[str, str], starts_ms: int) -> CaseAlert:
        fp = fingerprint(labels)
        alert_id = f"{fp}-{starts_ms}"
        self.announced[(case.case_id, rule)] = Announced(alert_id, fp, labels, starts_ms)
        sla, share = _sla(case, cfg)
        threshold = case.threshold(rule) or case.opened_ms
        waited_s = (threshold - case.opened_ms) / 1000  # observed: the wait at the threshold; baseline: the SLA
        sla_wall_s = ((case.deadline_ms or threshold) - case.opened_ms) / 1000
        decision = Decision(
            status="firing", rule=rule, watchlist_id=case.watchlist_id, fingerprint=fp, alert_id=alert_id,
            labels=dict(labels), observed=waited_s, baseline=sla_wall_s, score=float(case.priority),
            starts_at_ms=starts_ms, ends_at_ms=None, sample_mention_ids=[case.mention_id] if case.mention_id else [],
            first_received_at_ms=None, summary=firing_summary(case, rule, cfg),
        )
        annotations = {**annotations_of(case), "description": description(case),
                       "sla_s": f"{sla:g}", "warn_share": f"{share:g}"}
        return CaseAlert(decision, annotations)

    def _resolve(self, case_id: str, rule: str, have: Announced, case: Case | None, now_ms: int, name: str) -> CaseAlert:
        del self.announced[(case_id, rule)]
        closed = self.closed.get(case_id) if case is None else None
        if closed is not None:
            ends, why = closed.closed_ms, _closing_words(closed)
        elif case is not None and case.owner_label != have.labels.get("owner") and case.since_ms > have.starts_ms:
            ends, why = case.since_ms, f"re-assigned to {case.owner_label}"
        elif case is not None:
            ends, why = now_ms, f"no longer alerted ({rule} off or below its min_priority)"
        else:
            ends, why = now_ms, "no longer waiting"
        shown = closed or case
        decision = Decision(
            status="resolved", rule=rule, watchlist_id=have.labels.get("watchlist", ""), fingerprint=have.fingerprint,
            alert_id=have.alert_id, labels=dict(have.labels), observed=0.0, baseline=0.0, score=0.0,
            starts_at_ms=have.starts_ms, ends_at_ms=max(ends, have.starts_ms), sample_mention_ids=[],
            first_received_at_ms=None, summary=resolved_summary(shown, rule, case_id, why, name),
        )
        return CaseAlert(decision, annotations_of(shown) if shown is not None else {"case_id": case_id})


def _wanted(case: Case, rule: str, cfg: CaseRule, now_ms: int) -> tuple[dict[str, str], int] | None:
    """The labels and start of the alert `case` should have for `rule` at `now_ms`, or None."""
    threshold = case.threshold(rule)
    if not case.waiting or threshold is None or now_ms < threshold or case.priority < cfg.min_priority:
        return None
    labels = dict(cfg.labels)
    labels.update({"watchlist": case.watchlist_id, "rule": rule, "severity": cfg.severity, "case": case.case_id,
                   "owner": case.owner_label})
    return labels, max(threshold, case.since_ms)


def _too_late(case: Case, rule: str, cfg: CaseRule, now_ms: int) -> bool:
    """Was the threshold passed longer ago than the rule announces? History replayed (a month-old
    sample, a back-fill of old questions) or a long outage: the case waits in the inbox as
    breached, but nobody is paged for a deadline weeks gone. An alert already announced stays."""
    threshold = case.threshold(rule)
    return cfg.max_late_s is not None and threshold is not None and now_ms - threshold > cfg.max_late_s * 1000


def _closing_words(case: Case) -> str:
    """answered by ann, dismissed, escalated...; a case that still waits but lost its SLA says so."""
    if case.waiting:
        return "no longer has an SLA"
    if case.actor == "stream":  # storage's own change: a reply from one of the watchlist's handles was seen
        return f"{case.state} by a brand reply" if case.state == "answered" else case.state
    return f"{case.state} by {case.actor}" if case.actor else case.state


def group_key(config: NotifyConfig, labels: Mapping[str, str]) -> str:
    """The route's group key with the owner added: a case alert is grouped per watchlist and owner
    (with the default group_by), so each owner hears of their own cases."""
    key = config.group_key(labels)
    if "owner" in config.route_for(labels).group_by:
        return key
    return f"{key},owner={labels.get('owner', UNASSIGNED)}"


# --- running it --------------------------------------------------------------------------------


class AlertIntake(Protocol):
    """The notification side (the service's NotificationRuntime): its store says which alerts fire."""

    ready: asyncio.Event
    store: AlertStore | None


class _Assignments(ConsumerRebalanceListener):
    """Every (re)assignment starts a rebuild of the partitions now owned, from their beginning."""

    def __init__(self, owner: CaseSla) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.owner.assigned(None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.owner.assigned(set(assigned))


class CaseSla(mode.Service):
    """Follows earful.cases.v1 in its own consumer group, rebuilds its partitions' cases at every
    assignment, and publishes case SLA alerts on earful.alerts.v1 when they are due."""

    def __init__(self, settings: Settings, codecs: Codecs, *, rulebook: RuleBook, notify_config: NotifyConfig,
                 notifications: AlertIntake, alerts_topic: Any, **kwargs: Any) -> None:
        """`alerts_topic`: the Faust topic alert events are sent to (the agents' earful.alerts.v1)."""
        super().__init__(**kwargs)
        self.settings = settings
        self.codec = codecs.for_topic(CASES)
        self.alert_codec = codecs.for_topic(ALERTS)
        self.rulebook = rulebook
        self.notify_config = notify_config
        self.notifications = notifications
        self.alerts_topic = alerts_topic
        self.book = CaseBook()
        self.consumer: AIOKafkaConsumer | None = None
        self.loaded = asyncio.Event()  # set once the first assignment was read and reconciled
        self._assignment: set[TopicPartition] | None = None  # None: in a rebalance (or not joined yet)
        self._rebuild = False
        self._partitioner = DefaultPartitioner()

    # --- the rules in force --------------------------------------------------------------------

    def rule(self, watchlist_id: str, rule: str) -> CaseRule | None:
        """`case_rule` for a live watchlist (a deleted one's cases do not alert)."""
        if not self.rulebook.live(watchlist_id):
            return None
        return case_rule(self.rulebook.source.current().get(watchlist_id), rule, self.rulebook.rule(watchlist_id, rule),
                         float(self.settings.alert_case_sla_min_priority), float(self.settings.alert_case_sla_max_late_s))

    # --- lifecycle -----------------------------------------------------------------------------

    def assigned(self, partitions: set[TopicPartition] | None) -> None:
        """The group gave this process `partitions` (None: they are being taken away)."""
        self._assignment = partitions
        self._rebuild = True

    async def check(self) -> None:
        """Readiness: the cases of the first assignment are loaded and reconciled."""
        if not self.loaded.is_set():
            raise RuntimeError("cases not loaded yet")

    async def on_start(self) -> None:
        consumer = make_consumer(self.settings, GROUP_ID, client_id=f"earful-{SERVICE}-cases")
        consumer.subscribe([CASES], listener=_Assignments(self))
        await start_client(consumer, self.settings, "the alerting case consumer")
        self.consumer = consumer
        self.add_future(self._run(consumer))

    async def on_shutdown(self) -> None:
        """After the loop was cancelled (on_stop would pull the consumer from under a waiting read)."""
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        """Read, rebuild, reconcile, then decide on every event and whenever a threshold comes due."""
        await self.notifications.ready.wait()  # reconciling needs PostgreSQL's firing alerts
        backoff = Backoff(1.0, 10.0)
        ends: dict[TopicPartition, int] | None = None  # while rebuilding: where each partition's history ends
        last_full = time.monotonic()
        while not self.should_stop:
            if self._rebuild and self._assignment is not None:
                self._rebuild = False
                self.book.clear()
                mine = sorted(self._assignment, key=lambda tp: tp.partition)
                ends = {}
                if mine:  # from the beginning: the topic is the state (no offsets are ever committed)
                    await consumer.seek_to_beginning(*mine)
                    ends = await retry(functools.partial(consumer.end_offsets, mine), retry_on=(KafkaError,),
                                       backoff=backoff, on_retry=_read_failed)
            now = millis_now()
            wait_ms = 200 if ends is not None or self._assignment is None else self._wait_ms(now, last_full)
            records = await retry(functools.partial(consumer.getmany, timeout_ms=wait_ms), retry_on=(KafkaError,),
                                  backoff=backoff, on_retry=_read_failed)
            backoff.reset()
            if self._rebuild or self._assignment is None:
                continue  # a rebalance meanwhile: what was read is read again from the beginning
            now = millis_now()
            decide = ends is None
            decided = [alert for batch in records.values() for msg in batch for alert in self._take(msg, now, decide)]
            if ends is not None:
                if not await self._caught_up(consumer, ends):
                    continue
                ends = None
                decided += await self._reconcile(consumer, now)
                last_full = time.monotonic()
                self.loaded.set()
                log.info("cases loaded", extra={"waiting": len(self.book), "firing": len(self.book.announced),
                                                "partitions": sorted(tp.partition for tp in self._assignment)})
            else:
                decided += self.book.due(self.rule, now)
                if time.monotonic() - last_full >= RECHECK_S:
                    last_full = time.monotonic()
                    decided += self.book.judge_all(self.rule, now)
            WAITING_CASES.set(len(self.book))
            await self._publish(decided, now)

    def _wait_ms(self, now_ms: int, last_full: float) -> int:
        """How long the next read may wait for a record: until the next threshold or the next re-check."""
        wait_s = RECHECK_S - (time.monotonic() - last_full)
        due = self.book.next_due_ms()
        if due is not None:
            wait_s = min(wait_s, (due - now_ms) / 1000)
        return max(0, min(int(wait_s * 1000) + 1, int(RECHECK_S * 1000)))

    @staticmethod
    async def _caught_up(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
        """Whether every partition was read up to where its history ended when the rebuild began."""
        for tp, end in ends.items():
            try:
                if await consumer.position(tp) < end:
                    return False
            except IllegalStateError:  # revoked meanwhile: the next round rebuilds anyway
                return False
        return True

    def _take(self, msg: Any, now_ms: int, decide: bool) -> list[CaseAlert]:
        """One record of earful.cases.v1 into the book; decisions only once the rebuild is over."""
        if msg.value is None:  # a tombstone: the case is gone
            if not msg.key:
                return []
            case_id = msg.key.decode("utf-8", "replace")
            self.book.forget(case_id, now_ms)
            return self.book.judge(case_id, self.rule, now_ms) if decide else []
        try:
            case = case_of(self.codec.decode(msg.value))
        except (CodecError, KeyError, TypeError, ValueError, AssertionError) as exc:
            CASE_EVENTS.labels("rejected").inc()
            ERRORS.labels(SERVICE, CodecError.kind).inc()
            log.error("ignored a case event that does not decode",
                      extra={"partition": msg.partition, "offset": msg.offset, "error": str(exc)[:300]})
            return []
        applied = self.book.apply(case)
        CASE_EVENTS.labels("applied" if applied else "stale").inc()
        return self.book.judge(case.case_id, self.rule, now_ms) if applied and decide else []

    async def _reconcile(self, consumer: AIOKafkaConsumer, now_ms: int) -> list[CaseAlert]:
        """Adopt the case alerts PostgreSQL says fire for our partitions, then decide the difference."""
        store = self.notifications.store
        assert store is not None, "ready means connected"
        firing: list[Alert] = await retry(store.firing, retry_on=(OSError, asyncpg.PostgresError),
                                          backoff=Backoff(0.5, 10.0), on_retry=_store_failed)
        ours = {tp.partition for tp in self._assignment or ()}
        partitions = sorted(consumer.partitions_for_topic(CASES) or ours)
        for alert in firing:
            rule, case_id = alert.labels.get("rule", ""), alert.labels.get("case")
            if rule not in CASE_RULES or not case_id or not partitions:
                continue
            if self._partitioner(case_id.encode(), partitions, partitions) not in ours:
                continue  # another replica's case
            labels = {k: v for k, v in alert.labels.items() if k != "alertname"}
            self.book.adopt(case_id, rule, Announced(alert.alert_id, alert.fingerprint, labels,
                                                     int(alert.starts_at.timestamp() * 1000)))
        return self.book.judge_all(self.rule, now_ms)

    async def _publish(self, decided: Iterable[CaseAlert], now_ms: int) -> None:
        """Each decision as an AlertEvent on earful.alerts.v1 (waiting for the broker's acknowledgement)."""
        for item in decided:
            d = item.decision
            link = dashboard_link(self.settings.alert_dashboard_url, d.watchlist_id)
            record = alert_record(d, bucket_s=self.settings.alert_bucket_s, detected_at_ms=now_ms,
                                  group_key=group_key(self.notify_config, d.labels), dashboard_url=link)
            record["annotations"].update(item.annotations)
            key, value = d.fingerprint.encode(), self.alert_codec.encode(record)

            async def send(key: bytes = key, value: bytes = value) -> None:
                await (await self.alerts_topic.send(key=key, value=value))

            await retry(send, retry_on=(KafkaError, BrokerError, OSError), backoff=Backoff(0.5, 10.0), on_retry=_send_failed)
            CASE_DECISIONS.labels(d.rule, d.status).inc()
            log.warning("alert %s", d.status, extra={"watchlist": d.watchlist_id, "rule": d.rule, "alert_id": d.alert_id,
                                                     "summary": record["summary"], "case": d.labels.get("case"),
                                                     "owner": d.labels.get("owner")})


def _read_failed(exc: BaseException, delay: float) -> None:
    ERRORS.labels(SERVICE, BrokerError.kind).inc()
    log.warning("reading %s failed; retrying", CASES, extra={"error": str(exc)[:300], "delay_s": round(delay, 2)})


def _send_failed(exc: BaseException, delay: float) -> None:
    ERRORS.labels(SERVICE, BrokerError.kind).inc()
    log.warning("cannot publish a case alert; retrying", extra={"error": str(exc)[:300], "delay_s": round(delay, 2)})


def _store_failed(exc: BaseException, delay: float) -> None:
    ERRORS.labels(SERVICE, StorageError.kind).inc()
    log.warning("cannot read the firing alerts; retrying", extra={"error": str(exc)[:300], "delay_s": round(delay, 2)})


def follow_cases(app: Any, settings: Settings, codecs: Codecs, health: Any, **kwargs: Any) -> CaseSla | None:
    """A `CaseSla` started and stopped with the Faust app, with a readiness check; None when
    `EARFUL_ALERT_CASE_SLA` is off or this installation declares no earful.cases.v1."""
    if not settings.alert_case_sla:
        return None
    if CASES not in load_topics(settings.schema_dir):
        log.warning("no case SLA alerts: %s is not declared in topics.yaml", CASES)
        return None
    cases = CaseSla(settings, codecs, **kwargs)
    app.service(cases)
    health.add_check("cases", cases.check)
    return cases

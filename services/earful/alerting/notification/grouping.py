"""Grouping: the notification pipeline's decisions, as pure functions with the clock passed in.

Modelled on Alertmanager's notify pipeline: a group's alerts go through the inhibit, silence,
quiet-hours and acknowledgement stages (each mute carries a named reason), then the dedup stage
compares what is left with the notification log entry of (group, receiver) — what this receiver
was last told — and decides whether to send, again with a named reason:

* ``new_alerts``: an alert fires that the receiver was not told about;
* ``resolved`` / ``all_resolved``: an alert the receiver was told about has resolved (resolved is
  always sent, even when the alert is muted by then);
* ``repeat_interval_elapsed``: alerts still fire, unacknowledged, and the last notification is
  older than the route's repeat interval;
* ``resend_interval_elapsed``: alerts still fire and the receiver (an Alertmanager, which lets an
  alert expire when no client re-sends it) was last told half its resend interval ago or more;
  acknowledged or not: to Alertmanager, an acknowledged alert still fires;
* ``deduplicated``: nothing the receiver does not already know; ``acknowledged``: only repeats of
  acknowledged alerts were due; ``nothing_firing``: no alert to tell about.

Group timing (group_wait / group_interval) is in `next_flush_after_change`.

Regular-expression matchers (Alertmanager's `=~` and `!~`, anchored at both ends) come from API
users, so they run in RE2, whose matching time is linear in the label value: no pattern can make
the notifier backtrack for minutes. RE2 has no backreferences or lookaround; such a pattern is
refused when the silence is created.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import re2

from earful.alerting.notification.routing import InhibitRule, Route
from earful.watchlists import QuietHours

Clock = Callable[[], datetime]

MAX_MATCHER_CHARS = 1000  # a label value or pattern longer than this is no label value


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is the API's answer, not a line on stderr
    return options


_RE2_OPTIONS = _re2_options()


@functools.lru_cache(maxsize=1024)
def regex(pattern: str) -> Any:
    """`pattern` compiled by RE2 (linear-time matching); re2.error when RE2 cannot compile it."""
    return re2.compile(pattern, _RE2_OPTIONS)


def utc_now() -> datetime:
    """The real clock (tests pass their own `Clock`)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Alert:
    """The current state of one alert (one fingerprint), as the notifier sees it."""

    fingerprint: str
    alert_id: str
    status: str  # firing | resolved
    labels: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None
    group_key: str
    receivers: tuple[str, ...]
    event: Mapping[str, Any] = field(default_factory=dict)  # the AlertEvent, JSON-able
    acked_by: str | None = None

    @property
    def firing(self) -> bool:
        return self.status == "firing"


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the label matches (a regex the whole value); a stored pattern RE2 cannot compile
        matches nothing, negated or not, so its silence mutes nothing."""
        actual = labels.get(self.name, "")
        if not self.is_regex:
            return (actual == self.value) == self.is_equal
        try:
            compiled = regex(self.value)
        except re2.error:
            return False
        return (compiled.fullmatch(actual) is not None) == self.is_equal


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str = ""
    comment: str = ""

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        return self.active(now) and bool(self.matchers) and all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class NflogEntry:
    """What one receiver was last told about one group."""

    announced: frozenset[str]  # alert ids it was told are firing (and not yet told resolved)
    seq: int  # notifications sent so far
    sent_at: datetime


@dataclass(frozen=True)
class Plan:
    send: bool
    reason: str
    firing: tuple[Alert, ...] = ()
    resolved: tuple[Alert, ...] = ()
    muted: Mapping[str, str] = field(default_factory=dict)  # alert id → why it is not notified

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return self.firing + self.resolved


def inhibited_by(alert: Alert, firing: Iterable[Alert], rules: Sequence[InhibitRule]) -> str | None:
    """The inhibit rule muting `alert`, as 'inhibited:<source>', or None."""
    for rule in rules:
        for source in firing:
            if source.fingerprint != alert.fingerprint and source.firing and rule.inhibits(
                    alert.labels, source.labels, alert.event.get("annotations")):
                return f"inhibited:{rule.name}"
    return None


def silenced_by(alert: Alert, silences: Iterable[Silence], now: datetime) -> str | None:
    for s in silences:
        if s.mutes(alert.labels, now):
            return f"silenced:{s.id}"
    return None


def in_quiet_hours(quiet: QuietHours | None, severity: str, now: datetime) -> bool:
    """Whether a non-critical notification falls in the rule's daily quiet hours (local time)."""
    if quiet is None or severity == "critical":
        return False
    try:
        local = now.astimezone(ZoneInfo(quiet.timezone)).time()
        start, end = dtime.fromisoformat(quiet.start), dtime.fromisoformat(quiet.end)
    except (ZoneInfoNotFoundError, ValueError):
        return False  # a bad quiet-hours definition never swallows alerts
    return start <= local < end if start <= end else (local >= start or local < end)


def mute_reason(alert: Alert, *, now: datetime, silences: Iterable[Silence], inhibit_rules: Sequence[InhibitRule],
                firing_alerts: Iterable[Alert], in_quiet_hours: Callable[[Alert, datetime], bool]) -> str | None:
    """Why a firing alert is not notified now (inhibit → silence → quiet hours), or None."""
    return (inhibited_by(alert, firing_alerts, inhibit_rules) or silenced_by(alert, silences, now)
            or ("quiet_hours" if in_quiet_hours(alert, now) else None))


def plan(group: Sequence[Alert], receiver: str, entry: NflogEntry | None, *, now: datetime, route: Route,
         silences: Iterable[Silence] = (), inhibit_rules: Sequence[InhibitRule] = (),
         firing_alerts: Iterable[Alert] = (), send_resolved: bool = True,
         in_quiet_hours: Callable[[Alert, datetime], bool] = lambda a, t: False,
         resend_s: float | None = None) -> Plan:
    """What (if anything) `receiver` should be told about `group` now, and why; `resend_s`: the
    receiver wants firing alerts re-sent that often (Alertmanager)."""
    mine = [a for a in group if receiver in a.receivers]
    firing_all = list(firing_alerts) or [a for a in group if a.firing]
    silences = list(silences)
    announced = entry.announced if entry else frozenset()
    muted: dict[str, str] = {}
    firing: list[Alert] = []
    for a in mine:
        if not a.firing:
            continue
        why = mute_reason(a, now=now, silences=silences, inhibit_rules=inhibit_rules, firing_alerts=firing_all,
                          in_quiet_hours=in_quiet_hours)
        if why:
            muted[a.alert_id] = why
        else:
            firing.append(a)
    resolved = [a for a in mine if not a.firing and a.alert_id in announced] if send_resolved else []
    order = lambda a: (a.starts_at, a.alert_id)  # noqa: E731
    firing.sort(key=order)
    resolved.sort(key=order)
    new = [a for a in firing if a.alert_id not in announced]
    if entry is None or new:
        if not firing:
            return Plan(False, _quiet_reason(muted), muted=muted)
        return Plan(True, "new_alerts", tuple(firing), tuple(resolved), muted)
    if resolved:
        return Plan(True, "resolved" if firing else "all_resolved", tuple(firing), tuple(resolved), muted)
    if not firing:
        return Plan(False, _quiet_reason(muted), muted=muted)
    # Half the interval: the dispatcher flushes every resend_s, and the last send ended a moment after its flush.
    if resend_s is not None and now - entry.sent_at >= timedelta(seconds=resend_s / 2):
        return Plan(True, "resend_interval_elapsed", tuple(firing), (), muted)
    if now - entry.sent_at >= timedelta(seconds=route.repeat_interval_s):
        if all(a.acked_by for a in firing):
            return Plan(False, "acknowledged", muted={**muted, **{a.alert_id: "acknowledged" for a in firing}})
        return Plan(True, "repeat_interval_elapsed", tuple(firing), (), muted)
    return Plan(False, "deduplicated", muted=muted)


def _quiet_reason(muted: Mapping[str, str]) -> str:
    """'nothing_firing', or the mute reason when every firing alert was muted for the same kind of reason."""
    kinds = {why.split(":")[0] for why in muted.values()}
    return next(iter(kinds)) if len(kinds) == 1 else ("muted" if kinds else "nothing_firing")


def after_send(entry: NflogEntry | None, sent: Plan, now: datetime) -> NflogEntry:
    """The receiver's log entry once `sent` was delivered."""
    announced = set(entry.announced if entry else ())
    announced -= {a.alert_id for a in sent.resolved}
    announced |= {a.alert_id for a in sent.firing}
    return NflogEntry(frozenset(announced), (entry.seq if entry else 0) + 1, now)


def next_flush_after_change(last_flush_at: datetime | None, scheduled: datetime | None, now: datetime,
                            route: Route) -> datetime:
    """When a group whose alerts just changed should be flushed (Alertmanager's timing).

    A new group (or one idle for longer than group_interval) waits group_wait, so alerts that
    start together go out together; a group that notified recently waits until group_interval
    after its last flush; an already scheduled flush is kept.
    """
    if scheduled is not None:
        return scheduled
    first = now + timedelta(seconds=route.group_wait_s)
    if last_flush_at is None:
        return first
    return max(first, last_flush_at + timedelta(seconds=route.group_interval_s))


def idempotency_key(receiver: str, group_key: str, seq: int, alerts: Sequence[Alert]) -> str:
    """Same notification (same receiver, group, sequence number and alert states) → same key."""
    content = "|".join([receiver, group_key, str(seq), *sorted(f"{a.alert_id}:{a.status}" for a in alerts)])
    return hashlib.sha256(content.encode()).hexdigest()[:32]


def parse_matchers(raw: Any) -> tuple[Matcher, ...]:
    """Matchers from the API: [{"name", "value", "is_regex"?, "is_equal"?}, ...]; ValueError if bad."""
    if not isinstance(raw, list) or not raw:
        raise ValueError("matchers must be a non-empty list of {name, value, is_regex, is_equal}")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, Mapping) or not isinstance(m.get("name"), str) or not isinstance(m.get("value"), str):
            raise ValueError(f"matchers[{i}] needs a string name and value")
        matcher = Matcher(m["name"], m["value"], bool(m.get("is_regex", False)), bool(m.get("is_equal", True)))
        if len(matcher.value) > MAX_MATCHER_CHARS:
            raise ValueError(f"matchers[{i}]: value longer than {MAX_MATCHER_CHARS} characters")
        if matcher.is_regex:
            try:
                regex(matcher.value)
            except re2.error as exc:
                raise ValueError(f"matchers[{i}]: bad or unsupported regular expression: {_re2_reason(exc)} (RE2 syntax:"
                                 " no backreferences, no lookahead or lookbehind)") from exc
        out.append(matcher)
    return tuple(out)


def _re2_reason(exc: Exception) -> str:
    """RE2's message (the binding hands it over as bytes)."""
    reason = exc.args[0] if exc.args else exc
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)

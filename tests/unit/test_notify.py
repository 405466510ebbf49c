"""The notification pipeline's decisions with an injected clock: group, dedup, repeat, resolve,
silence, inhibit, quiet hours and acknowledgement — each with its named reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from earful.alerting.detection import fingerprint
from earful.alerting.notification.grouping import (
    Alert,
    Matcher,
    NflogEntry,
    Silence,
    after_send,
    idempotency_key,
    in_quiet_hours,
    next_flush_after_change,
    parse_matchers,
    plan,
    regex,
)
from earful.alerting.notification.routing import DEFAULT_INHIBIT, InhibitRule, Route
from earful.watchlists import QuietHours

T = datetime(2026, 11, 2, 7, 30, tzinfo=timezone.utc)
ROUTE = Route("default", ("oncall",), ("watchlist",), group_wait_s=0.5, group_interval_s=60, repeat_interval_s=3600)


def alert(rule: str = "volume_spike", wid: str = "acme-air", severity: str = "critical", status: str = "firing",
          at: datetime = T, receivers: tuple[str, ...] = ("oncall",), acked_by: str | None = None) -> Alert:
    labels = {"watchlist": wid, "rule": rule, "severity": severity}
    fp = fingerprint(labels)
    return Alert(fp, f"{fp}-{int(at.timestamp() * 1000)}", status, labels, at,
                 None if status == "firing" else at + timedelta(minutes=5), f"watchlist={wid}", receivers,
                 {"summary": f"{wid} {rule}"}, acked_by)


def resolved(a: Alert) -> Alert:
    return replace(a, status="resolved", ends_at=a.starts_at + timedelta(minutes=5))


def decide(group: list[Alert], entry: NflogEntry | None, now: datetime = T, **kw: object):
    return plan(group, "oncall", entry, now=now, route=ROUTE, **kw)  # type: ignore[arg-type]


def sent(group: list[Alert], entry: NflogEntry | None = None, now: datetime = T, **kw: object) -> NflogEntry:
    p = decide(group, entry, now, **kw)
    assert p.send, p.reason
    return after_send(entry, p, now)


# --- grouping ---------------------------------------------------------------------------------


def test_group_wait_batches_alerts_that_start_together() -> None:
    """A new group waits group_wait; what arrives meanwhile goes out in the same notification."""
    due = next_flush_after_change(None, None, T, ROUTE)
    assert due == T + timedelta(seconds=0.5)
    assert next_flush_after_change(None, due, T + timedelta(seconds=0.2), ROUTE) == due  # second alert: same flush
    spike, surge = alert(), alert("negative_surge", severity="critical")
    p = decide([spike, surge], None, due)
    assert (p.send, p.reason, [a.alert_id for a in p.firing]) == (True, "new_alerts", [spike.alert_id, surge.alert_id])


def test_group_interval_delays_news_of_a_group_that_just_notified() -> None:
    last = T
    assert next_flush_after_change(last, None, T + timedelta(seconds=10), ROUTE) == T + timedelta(seconds=60)
    # A group idle for longer than group_interval is treated as new: group_wait again.
    assert next_flush_after_change(last, None, T + timedelta(hours=2), ROUTE) == T + timedelta(hours=2, seconds=0.5)


# --- dedup, repeat, resolve ---------------------------------------------------------------------


def test_the_same_alerts_again_are_deduplicated() -> None:
    a = alert()
    entry = sent([a])
    p = decide([a], entry, T + timedelta(minutes=1))
    assert (p.send, p.reason) == (False, "deduplicated")


def test_a_new_alert_in_the_group_is_sent_with_the_others() -> None:
    a, b = alert(), alert("negative_surge", severity="critical", at=T + timedelta(minutes=1))
    entry = sent([a])
    p = decide([a, b], entry, T + timedelta(minutes=2))
    assert (p.send, p.reason, len(p.firing)) == (True, "new_alerts", 2)


def test_repeat_interval() -> None:
    a = alert()
    entry = sent([a])
    assert decide([a], entry, T + timedelta(minutes=59)).reason == "deduplicated"
    p = decide([a], entry, T + timedelta(minutes=60))
    assert (p.send, p.reason, p.firing) == (True, "repeat_interval_elapsed", (a,))
    assert after_send(entry, p, T + timedelta(minutes=60)).seq == 2


def test_acknowledged_alerts_are_not_repeated() -> None:
    a = alert()
    entry = sent([a])
    p = decide([replace(a, acked_by="jane")], entry, T + timedelta(hours=2))
    assert (p.send, p.reason, p.muted) == (False, "acknowledged", {a.alert_id: "acknowledged"})


def test_an_alertmanager_receiver_is_re_sent_firing_alerts_every_resend_interval() -> None:
    """Alertmanager lets an alert expire unless re-sent: firing alerts go again once half the resend
    interval has passed since the last send (the dispatcher flushes every interval), acknowledged or not."""
    a, b = alert(), alert("negative_surge")
    entry = sent([a, b])
    assert decide([a, b], entry, T + timedelta(seconds=29), resend_s=60).reason == "deduplicated"
    p = decide([a, b], entry, T + timedelta(seconds=30), resend_s=60)
    assert (p.send, p.reason, p.firing, p.resolved) == (True, "resend_interval_elapsed", (a, b), ())
    acked = decide([replace(a, acked_by="jane"), b], entry, T + timedelta(hours=2), resend_s=60)
    assert acked.send and acked.reason == "resend_interval_elapsed"
    p = decide([resolved(a), b], entry, T + timedelta(seconds=10), resend_s=60)  # news still goes at once
    assert (p.reason, [x.alert_id for x in p.resolved]) == ("resolved", [a.alert_id])
    assert decide([a], entry, T + timedelta(minutes=30)).reason == "deduplicated"  # other receivers: repeat_interval


def test_resolved_is_always_sent_once() -> None:
    a = alert()
    entry = sent([a])
    p = decide([resolved(a)], entry, T + timedelta(minutes=5))
    assert (p.send, p.reason, p.status, [x.alert_id for x in p.resolved]) == (True, "all_resolved", "resolved", [a.alert_id])
    entry = after_send(entry, p, T + timedelta(minutes=5))
    assert entry.announced == frozenset()
    assert decide([resolved(a)], entry, T + timedelta(minutes=6)).reason == "nothing_firing"


def test_one_of_two_resolves() -> None:
    a, b = alert(), alert("risk_mention", severity="critical")
    entry = sent([a, b])
    p = decide([resolved(a), b], entry, T + timedelta(minutes=5))
    assert (p.send, p.reason, p.status) == (True, "resolved", "firing")
    assert [x.alert_id for x in p.resolved] == [a.alert_id] and p.firing == (b,)


def test_a_resolution_nobody_was_told_about_is_not_sent() -> None:
    """Fired and resolved before the group's first flush: the receiver hears nothing."""
    p = decide([resolved(alert())], None)
    assert (p.send, p.reason) == (False, "nothing_firing")


def test_no_resolved_for_receivers_that_do_not_want_them() -> None:
    a = alert()
    entry = sent([a])
    assert decide([resolved(a)], entry, send_resolved=False).reason == "nothing_firing"


def test_a_new_episode_of_the_same_fingerprint_is_new() -> None:
    first = alert()
    entry = after_send(sent([first]), decide([resolved(first)], sent([first])), T)
    again = alert(at=T + timedelta(hours=1))
    assert again.fingerprint == first.fingerprint and again.alert_id != first.alert_id
    assert decide([again], entry, T + timedelta(hours=1)).reason == "new_alerts"


def test_alerts_for_other_receivers_are_not_mine() -> None:
    p = decide([alert(receivers=("slack",))], None)
    assert (p.send, p.reason) == (False, "nothing_firing")


# --- silences, inhibition, quiet hours -----------------------------------------------------------


def test_silence_mutes_and_its_end_notifies() -> None:
    a = alert()
    s = Silence("s1", (Matcher("watchlist", "acme-air"),), T - timedelta(minutes=1), T + timedelta(hours=1), "jane", "known")
    p = decide([a], None, silences=[s])
    assert (p.send, p.reason, p.muted) == (False, "silenced", {a.alert_id: "silenced:s1"})
    p = decide([a], None, T + timedelta(hours=1), silences=[s])
    assert (p.send, p.reason) == (True, "new_alerts")


def test_a_silence_never_swallows_the_resolution_of_what_was_told() -> None:
    a = alert()
    entry = sent([a])
    s = Silence("s1", (Matcher("rule", "volume_spike"),), T, T + timedelta(days=1))
    p = decide([resolved(a)], entry, T + timedelta(minutes=5), silences=[s])
    assert (p.send, p.reason) == (True, "all_resolved")


def test_matchers() -> None:
    labels = {"watchlist": "acme-air", "rule": "volume_spike", "severity": "critical"}
    assert Matcher("watchlist", "acme-.*", is_regex=True).matches(labels)
    assert not Matcher("watchlist", "acme", is_regex=True).matches(labels)  # whole-value match
    assert Matcher("severity", "warning", is_equal=False).matches(labels)
    assert not Matcher("team", "ops").matches(labels)
    with pytest.raises(ValueError, match="non-empty"):
        parse_matchers([])
    with pytest.raises(ValueError, match="regular expression"):
        parse_matchers([{"name": "rule", "value": "(", "is_regex": True}])
    empty = Silence("s", (), T, T + timedelta(hours=1))
    assert not empty.mutes(labels, T)  # a silence without matchers mutes nothing


def test_regex_matchers_run_in_a_linear_time_engine() -> None:
    """`(a+)+$` against 'aaaa...b' backtracks for ages in Python's re; RE2 answers in linear time."""
    catastrophic = Matcher("watchlist", "(a+)+$", is_regex=True)
    assert type(regex(catastrophic.value)).__module__ == "re2"
    assert not catastrophic.matches({"watchlist": "a" * 50_000 + "b"})
    assert catastrophic.matches({"watchlist": "a" * 50_000})
    assert Matcher("watchlist", "(a+)+$", is_regex=True, is_equal=False).matches({"watchlist": "a" * 50_000 + "b"})


@pytest.mark.parametrize("pattern,value,hit", [
    ("acme-.*", "acme-air", True), ("acme", "acme-air", False), ("air|acme-air", "acme-air", True),
    ("acme-(air|rail)", "acme-rail", True), ("[a-z]+-[a-z]{3}", "acme-air", True), (".*", "", True),
    ("z[üu]rich", "zürich", True), ("zürich|zurich", "zurich", True), ("(?i)ACME-AIR", "acme-air", True),
    ("acme.air", "acme\nair", False),
])
def test_regex_matcher_semantics_are_anchored_like_alertmanager(pattern: str, value: str, hit: bool) -> None:
    assert Matcher("watchlist", pattern, is_regex=True).matches({"watchlist": value}) is hit
    assert Matcher("watchlist", pattern, is_regex=True, is_equal=False).matches({"watchlist": value}) is not hit


@pytest.mark.parametrize("pattern,why", [
    ("(a)\\1", "invalid escape sequence"), ("(?=a)b", "invalid perl operator"), ("(", "missing"),
    ("a{1001}", "repetition"), ("x" * 1001, "longer than"),
])
def test_patterns_the_engine_refuses_are_named(pattern: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"matchers\\[0\\]: .*{why}"):
        parse_matchers([{"name": "rule", "value": pattern, "is_regex": True}])


def test_a_stored_pattern_the_engine_refuses_matches_nothing() -> None:
    """Silences stored before RE2 may hold a backreference: the notifier never raises over one, and
    such a matcher (negated or not) matches no alert, so its silence mutes nothing."""
    assert not Matcher("rule", "(a)\\1", is_regex=True).matches({"rule": "aa"})
    assert not Matcher("rule", "(a)\\1", is_regex=True, is_equal=False).matches({"rule": "aa"})


def test_inhibition_by_a_firing_source_in_the_same_watchlist() -> None:
    spike = alert()
    surge = alert("negative_surge", severity="warning")
    other = alert("negative_surge", wid="globex", severity="warning")
    p = decide([spike, surge], None, inhibit_rules=DEFAULT_INHIBIT)
    assert p.reason == "new_alerts" and p.firing == (spike,)
    assert p.muted == {surge.alert_id: "inhibited:rule=volume_spike"}
    p = decide([other], None, inhibit_rules=DEFAULT_INHIBIT, firing_alerts=[spike, other])
    assert (p.send, p.firing) == (True, (other,))  # another watchlist: not inhibited
    p = decide([surge], None, inhibit_rules=DEFAULT_INHIBIT, firing_alerts=[resolved(spike), surge])
    assert p.firing == (surge,)  # the source resolved: no longer inhibited


def test_source_outage_inhibits_volume_drop() -> None:
    rule = InhibitRule({"rule": "source_outage"}, {"rule": "volume_drop"}, ())
    outage = alert("source_outage", wid="(all)")
    drop = alert("volume_drop", severity="warning")
    p = decide([drop], None, inhibit_rules=(rule,), firing_alerts=[outage, drop])
    assert (p.send, p.reason, p.muted) == (False, "inhibited", {drop.alert_id: "inhibited:rule=source_outage"})


def test_quiet_hours_hold_back_non_critical_notifications() -> None:
    quiet = QuietHours("22:00", "07:00", "Europe/Berlin")
    night = datetime(2026, 11, 2, 23, 30, tzinfo=timezone.utc)  # 00:30 in Berlin
    day = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    assert in_quiet_hours(quiet, "warning", night) and not in_quiet_hours(quiet, "warning", day)
    assert not in_quiet_hours(quiet, "critical", night)
    assert not in_quiet_hours(QuietHours("22:00", "07:00", "Not/AZone"), "warning", night)
    assert in_quiet_hours(QuietHours("12:00", "14:00"), "info", datetime(2026, 1, 1, 13, tzinfo=timezone.utc))
    warn = alert("risk_mention", severity="warning")
    p = decide([warn], None, night, in_quiet_hours=lambda a, t: in_quiet_hours(quiet, a.labels["severity"], t))
    assert (p.send, p.reason) == (False, "quiet_hours")
    p = decide([warn], None, day, in_quiet_hours=lambda a, t: in_quiet_hours(quiet, a.labels["severity"], t))
    assert p.reason == "new_alerts"


# --- idempotency --------------------------------------------------------------------------------


def test_idempotency_key_is_the_same_for_the_same_notification_only() -> None:
    a, b = alert(), alert("risk_mention")
    key = idempotency_key("oncall", "watchlist=acme-air", 1, [a, b])
    assert key == idempotency_key("oncall", "watchlist=acme-air", 1, [b, a]) and len(key) == 32
    assert key != idempotency_key("oncall", "watchlist=acme-air", 2, [a, b])  # a repeat is a new notification
    assert key != idempotency_key("slack", "watchlist=acme-air", 1, [a, b])
    assert key != idempotency_key("oncall", "watchlist=acme-air", 1, [resolved(a), b])

"""Detection at every scale of brand, rule packs by watchlist kind, and source health with the
inhibition of volume_drop by a source outage (time-ordered input through the real detector)."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

from earful.alerting.detection import DetectorConfig, Mention, new_state, observe, source_health, tick
from earful.alerting.detection.rules import RuleDefaults, rules_for
from earful.alerting.detection.source_health import SOURCE_OUTAGE, SourceHealthConfig
from earful.alerting.notification.grouping import Alert, inhibited_by
from earful.alerting.notification.routing import DEFAULT_INHIBIT
from earful.core.settings import Settings
from earful.watchlists import AlertRule, Watchlist

SETTINGS = Settings(_env_file=None)
CFG = DetectorConfig.from_settings(SETTINGS)
DEFAULTS = RuleDefaults.from_settings(SETTINGS)
T0 = 1_780_000_000_000


def _arrivals(rng: random.Random, phases: list[tuple[float, float]], start_s: float = 0.0) -> list[float]:
    """Poisson arrival times (s) over consecutive (duration_s, rate per minute) phases."""
    out, t = [], start_s
    for duration, per_min in phases:
        end = t + duration
        while per_min > 0:
            t += rng.expovariate(per_min / 60)
            if t >= end:
                break
            out.append(t)
        t = end
    return out


def _first_alert(times: list[float], rules: Any) -> tuple[float | None, list[str]]:
    state = new_state()
    first, summaries = None, []
    for i, t in enumerate(times):
        ms = T0 + int(t * 1000)
        for d in observe(state, rules, Mention(f"m{i}", ms, ms), CFG, wall_ms=ms):
            if d.status == "firing":
                summaries.append(d.summary)
                first = t if first is None else first
    return first, summaries


def test_a_small_brands_slow_crisis_alerts_within_minutes_and_its_quiet_hours_never() -> None:
    """Under one mention a minute for three hours, then nine angry ones a minute for six minutes
    (no bucket, no single minute reaches the old fixed floor of 10): alerts within 3 minutes."""
    rules = rules_for(Watchlist("small", "Small", "topic", ("small",)), DEFAULTS)
    crisis_at = 3 * 3600.0
    delays = []
    for seed in range(8):
        times = _arrivals(random.Random(seed), [(crisis_at, 0.5), (360, 9.0)])
        first, summaries = _first_alert(times, rules)
        assert first is not None and first >= crisis_at, (seed, summaries)  # nothing before the crisis
        delays.append(first - crisis_at)
    assert max(delays) <= 180, delays


def test_a_big_brands_noise_does_not_alert_at_any_window() -> None:
    """A busy, bursty brand (40 a minute with bursts of reshares) for six hours: no alert."""
    rng = random.Random(3)
    times: list[float] = []
    t = 0.0
    while t < 6 * 3600:
        t += rng.expovariate(40 / 60)
        times += [t + k * 0.3 for k in range(rng.choice([1, 1, 1, 2, 3]))]  # clustered, over-dispersed
    rules = rules_for(Watchlist("big", "Big", "topic", ("big",)), DEFAULTS)
    assert _first_alert(sorted(times), rules) == (None, [])


# --- rule packs ------------------------------------------------------------------------------


def test_a_brand_runs_its_pack_and_may_override_any_rule() -> None:
    brand = Watchlist("acme", "Acme", "brand", ("acme",), handles=("AcmeHelp",), response_sla_s=1800)
    rules = rules_for(brand, DEFAULTS).rules
    assert set(rules) == {"volume_spike", "negative_surge", "risk_mention", "viral_post", "unanswered_question"}
    assert rules["volume_spike"].severity == "critical" and rules["unanswered_question"]["sla_s"] == 1800
    assert rules["unanswered_question"]["min_reach"] == 50000 and rules["unanswered_question"]["own_sources"] == 1
    mine = Watchlist("acme", "Acme", "brand", ("acme",), alert_rules=(
        AlertRule("risk_mention", severity="critical", thresholds={"min_reach": 1000}),
        AlertRule("viral_post", enabled=False), AlertRule("volume_drop")))
    rules = rules_for(mine, DEFAULTS).rules
    assert "viral_post" not in rules and "volume_drop" in rules
    assert rules["risk_mention"].severity == "critical" and rules["risk_mention"]["min_reach"] == 1000
    topic = Watchlist("t", "T", "topic", ("t",), alert_rules=(AlertRule("viral_post"),))
    assert set(rules_for(topic, DEFAULTS).rules) == {"viral_post"}
    assert set(rules_for(Watchlist("t", "T", "topic", ("t",)), DEFAULTS).rules) == set(SETTINGS.alert_default_rules)
    off = RuleDefaults.from_settings(Settings(_env_file=None, alert_rule_packs=False))
    assert set(rules_for(mine, off).rules) == {"risk_mention", "volume_drop"}
    for kind in ("competitor", "campaign", "executive", "product"):
        assert "volume_spike" in rules_for(Watchlist("k", "K", kind, ("k",)), DEFAULTS).rules


def test_a_risk_tag_alerts_when_it_is_news_not_when_it_is_routine() -> None:
    rules = rules_for(Watchlist("acme", "Acme", "brand", ("acme",)), DEFAULTS)
    routine, news = new_state(), new_state()
    decisions: dict[str, list[str]] = {"routine": [], "news": []}
    for i in range(2 * 360):  # two hours, a mention every 10 s; the routine brand hears of a data breach every minute
        ms = T0 + i * 10_000
        for name, state in (("routine", routine), ("news", news)):
            risky = name == "routine" and i % 6 == 0
            m = Mention(f"{name}{i}", ms, ms, source="twitter", source_id=f"{name}{i}", followers=20_000,
                        risks=("legal_privacy",) if risky else ())
            decisions[name] += [d.rule for d in observe(state, rules, m, CFG, wall_ms=ms) if d.status == "firing"]
    assert "risk_mention" not in decisions["routine"]  # an hour of history: once a minute is routine
    ms = T0 + 2 * 3600_000
    leak = Mention("leak", ms, ms, source="twitter", source_id="leak", followers=84_213, risks=("legal_privacy",))
    assert [d.labels["risk"] for d in observe(news, rules, leak, CFG, wall_ms=ms)] == ["legal_privacy"]


# --- source health ---------------------------------------------------------------------------


def _alert(d: Any, annotations: dict[str, str] | None = None) -> Alert:
    return Alert(d.fingerprint, d.alert_id, d.status, d.labels, datetime.now(timezone.utc), None, "g", ("webhook",),
                 {"annotations": annotations or {}})


def test_a_source_stops_its_outage_fires_the_drop_is_inhibited_and_recovery_resolves_both() -> None:
    """Acme is mentioned on twitter (6 a minute) and mastodon (1 a minute), in time order. Twitter's
    connector stops for ten minutes, then delivers again."""
    hcfg = SourceHealthConfig.from_settings(SETTINGS)
    health = source_health.new_health()
    acme = rules_for(Watchlist("acme", "Acme", "brand", ("acme",), alert_rules=(
        AlertRule("volume_drop", thresholds={"min_expected": 15}),)), DEFAULTS)
    state = new_state()
    rng = random.Random(7)
    twitter = _arrivals(rng, [(3600, 6.0), (600, 0.0), (900, 6.0)])
    mastodon = _arrivals(rng, [(5100, 1.0)])
    events = sorted([(t, "twitter") for t in twitter] + [(t, "mastodon") for t in mastodon])
    outage: list[Any] = []
    drops: list[Any] = []
    decided_at: dict[str, int] = {}
    degraded_when_dropped: list[str] = []
    second = 0
    for i, (t, source) in enumerate(events):
        ms = T0 + int(t * 1000)
        while second * 1000 < t * 1000:  # time passes: the timer judges the sources and lets the detector tick
            now = T0 + second * 1000
            for d in source_health.judge(health, now, hcfg):
                outage.append(d)
                decided_at.setdefault(f"outage-{d.status}", now)
            for d in tick(state, acme, CFG, now):
                if d.rule == "volume_drop":
                    drops.append(d)
                    decided_at.setdefault(f"drop-{d.status}", now)
                    if d.status == "firing":
                        degraded_when_dropped = source_health.degraded_for(health, "acme")
            second += 10
        source_health.observe(health, source, ms - 2000, ms, ["acme"], hcfg)
        for d in observe(state, acme, Mention(f"m{i}", ms, ms, source=source, source_id=f"m{i}"), CFG, wall_ms=ms):
            if d.rule == "volume_drop":
                drops.append(d)
                decided_at.setdefault(f"drop-{d.status}", ms)
                if d.status == "firing":  # what the service annotates the alert with
                    degraded_when_dropped = source_health.degraded_for(health, "acme")
    assert [(d.status, d.labels["source"]) for d in outage] == [("firing", "twitter"), ("resolved", "twitter")]
    fired = outage[0]
    assert 3600 < (decided_at["outage-firing"] - T0) / 1000 < 3600 + hcfg.window_s and fired.rule == SOURCE_OUTAGE
    assert [d.status for d in drops] == ["firing", "resolved"]
    drop = drops[0]
    assert decided_at["outage-firing"] <= decided_at["drop-firing"] and degraded_when_dropped == ["twitter"]
    # While the outage fires, the drop (which says twitter is degraded) is inhibited by default; not without it.
    target = _alert(drop, {"degraded_sources": ",".join(degraded_when_dropped)})
    assert inhibited_by(target, [_alert(fired)], DEFAULT_INHIBIT) == "inhibited:rule=source_outage"
    assert inhibited_by(_alert(drop), [_alert(fired)], DEFAULT_INHIBIT) is None
    assert decided_at["drop-resolved"] <= decided_at["outage-resolved"]  # the drop resolves first: never notified later


def test_a_late_source_is_degraded_and_a_quiet_one_is_not_judged() -> None:
    hcfg = SourceHealthConfig.from_settings(SETTINGS)
    health = source_health.new_health()
    for s in range(0, 3600, 5):  # news on time for an hour, then 20 minutes late
        delay = 2_000 if s < 3000 else 1_200_000
        ms = T0 + s * 1000
        source_health.observe(health, "news", ms - delay, ms, ["acme"], hcfg)
        source_health.observe(health, "blog", ms - 1000, ms, ["acme"], hcfg) if s % 600 == 0 else None
        source_health.judge(health, ms, hcfg)
    assert source_health.degraded(health) == {"news": "late"}
    assert source_health.degraded_for(health, "acme") == ["news"] and source_health.degraded_for(health, "other") == []


def test_the_source_monitor_keeps_its_state_in_the_table_across_a_restart() -> None:
    from earful.alerting.source_monitor import STATE_KEY, SourceMonitor

    table: dict[bytes, Any] = {}
    hcfg = SourceHealthConfig.from_settings(SETTINGS)
    monitor = SourceMonitor(table, hcfg)
    for s in range(0, 1800, 2):  # half an hour of twitter, then it stops
        ms = T0 + s * 1000
        created = datetime.fromtimestamp((ms - 1000) / 1000, timezone.utc)
        monitor.observe({"mention": {"source": "twitter", "created_at": created,
                                     "received_at": datetime.fromtimestamp(ms / 1000, timezone.utc)},
                         "watchlist_ids": ["acme"]})
        assert monitor.tick(ms) == []
    assert STATE_KEY in table
    fired = [d for s in range(1800, 2400, 10) for d in monitor.tick(T0 + s * 1000)]
    assert [d.status for d in fired] == ["firing"] and monitor.degraded_for("acme") == ["twitter"]
    restarted = SourceMonitor(table, hcfg)  # a new process over the recovered table
    assert restarted.degraded_for("acme") == ["twitter"]
    assert SourceMonitor(table, hcfg, enabled=False).degraded_for("acme") == []


def test_an_inhibit_rule_with_within_is_read_from_the_receivers_file(tmp_path: Any) -> None:
    from earful.alerting.notification.routing import load_notify_config

    path = tmp_path / "receivers.yaml"
    path.write_text("inhibit_rules:\n  - {source_match: {rule: source_outage}, target_match: {rule: volume_drop},"
                    " within: {source: degraded_sources}}\n")
    cfg = load_notify_config(Settings(_env_file=None, alert_receivers_file=path))
    assert [dict(r.within) for r in cfg.inhibit_rules] == [{"source": "degraded_sources"}]
    rule = cfg.inhibit_rules[0]
    outage = {"rule": "source_outage", "source": "twitter"}
    assert rule.inhibits({"rule": "volume_drop"}, outage, {"degraded_sources": "news,twitter"})
    assert not rule.inhibits({"rule": "volume_drop"}, outage, {"degraded_sources": "news"})
    assert not rule.inhibits({"rule": "volume_drop"}, outage, {})


def test_the_binomial_tail_beyond_the_mean_equals_the_exact_sum() -> None:
    """The fast path (ratios summed from k up) against exact rationals, far into the tail too."""
    import math
    from fractions import Fraction

    from earful.alerting.detection.stats import log_binomial_tail

    for k, n, p in [(5, 10, 0.1), (30, 40, 0.2), (120, 142, 0.5), (12, 400, 0.005), (300, 330, 0.3), (3, 3, 0.5)]:
        exact = sum(Fraction(math.comb(n, j)) * Fraction(p) ** j * (1 - Fraction(p)) ** (n - j) for j in range(k, n + 1))
        log_exact = math.log(exact.numerator) - math.log(exact.denominator)  # below the smallest float too
        assert math.isclose(log_binomial_tail(k, n, p), log_exact, rel_tol=1e-9), (k, n, p)

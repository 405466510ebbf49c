"""KPIs, the pure parts: status against a target (met / at risk / missed), trend against the
previous period, display texts, and SLA outcomes on wall-clock and business time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from earful.storage.kpis import KPIS, Window, figure, judge, sla_outcomes, trend_of
from earful.storage.sentiment import net_sentiment, of_period
from earful.watchlists.model import BusinessHours

UTC = timezone.utc


@pytest.mark.parametrize(("name", "value", "target", "trend", "status"), [
    ("net_sentiment", 0.20, 0.10, "steady", "met"),
    ("net_sentiment", 0.12, 0.10, "worsening", "at_risk"),  # meets it by less than the 0.05 band, getting worse
    ("net_sentiment", 0.12, 0.10, "improving", "met"),
    ("net_sentiment", 0.07, 0.10, "improving", "at_risk"),  # misses by less than the band
    ("net_sentiment", 0.01, 0.10, "steady", "missed"),
    ("net_sentiment", -0.20, -0.25, "steady", "met"),  # a negative target works the same way
    ("share_of_voice", 0.37, 0.40, "steady", "at_risk"),  # band: 10 % of the target
    ("share_of_voice", 0.35, 0.40, "steady", "missed"),
    ("first_response_s", 1500, 1800, "steady", "met"),  # lower is better
    ("first_response_s", 2000, 1800, "steady", "at_risk"),  # band: 25 % of the target
    ("first_response_s", 2400, 1800, "steady", "missed"),
    ("answered_within_sla", 0.91, 0.90, "worsening", "at_risk"),
    ("answered_within_sla", 0.80, 0.90, "steady", "missed"),
    ("net_sentiment", 0.5, None, "steady", "no_target"),
    ("net_sentiment", None, 0.1, "n/a", "no_data"),
])
def test_status_against_the_target(name: str, value: float | None, target: float | None, trend: str, status: str) -> None:
    assert judge(name, value, target, trend) == status


def test_trend_follows_the_good_direction() -> None:
    assert trend_of("net_sentiment", 0.2, 0.1) == "improving"
    assert trend_of("net_sentiment", 0.105, 0.1) == "steady"
    assert trend_of("first_response_s", 1200, 1800) == "improving"  # faster is better
    assert trend_of("first_response_s", 1850, 1800) == "steady"  # within 5 % of the previous
    assert trend_of("first_response_s", 2400, 1800) == "worsening"
    assert trend_of("share_of_voice", 0.30, 0.32) == "worsening"
    assert trend_of("answered_within_sla", None, 0.9) == "n/a"
    assert list(KPIS) == ["net_sentiment", "share_of_voice", "first_response_s", "answered_within_sla"]


def test_figures_read_like_people_write_them() -> None:
    f = figure("first_response_s", 12000, 1500, 1800)
    assert (f.display, f.previous_display, f.target_display, f.delta_display) == ("3 h 20 min", "25 min", "≤ 30 min", "+2 h 55 min")
    assert (f.status, f.trend) == ("missed", "worsening")
    s = figure("share_of_voice", 0.234, 0.222, 0.2)
    assert (s.display, s.target_display, s.delta_display, s.status, s.trend) == ("23.4 %", "≥ 20.0 %", "+1.2 pp", "met", "improving")
    assert figure("net_sentiment", 0.101, 0.104, None).delta_display == "±0.00"  # not "-0.00"
    n = figure("net_sentiment", -0.05, None, 0.1)
    assert (n.display, n.target_display, n.delta_display, n.trend, n.status) == ("-0.05", "≥ +0.10", "n/a", "n/a", "missed")


def test_the_previous_window_is_as_long_and_just_before() -> None:
    w = Window(datetime(2026, 11, 2, 9, 0, 20, tzinfo=UTC), datetime(2026, 11, 9, 8, 59, 10, tzinfo=UTC)).aligned()
    assert w == Window(datetime(2026, 11, 2, 9, tzinfo=UTC), datetime(2026, 11, 9, 9, tzinfo=UTC))
    assert w.previous == Window(datetime(2026, 10, 26, 9, tzinfo=UTC), w.start)


def test_sla_outcomes_on_wall_clock_and_business_time() -> None:
    hours = BusinessHours("Europe/London", dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), (("09:00", "17:30"),)))
    friday = datetime(2026, 11, 6, 16, 30, tzinfo=UTC)  # London is on UTC in November
    monday_0930 = datetime(2026, 11, 9, 9, 30, tzinfo=UTC)
    questions = [(friday, monday_0930),  # 1 h 30 min of business time, 65 h of wall-clock time
                 (friday, friday + timedelta(minutes=20)),
                 (friday, None)]  # still open
    now = datetime(2026, 11, 9, 9, 45, tzinfo=UTC)
    assert sla_outcomes(questions, 7200, hours, now) == (2, 1)  # the open one is due Monday 10:00
    assert sla_outcomes(questions, 7200, None, now) == (1, 0)  # around the clock it breached on Friday


def test_net_sentiment_counts_the_mentions_that_take_a_side() -> None:
    """(positive − negative) / (positive + negative): neutral and unknown mentions do not dilute it."""
    assert net_sentiment(30, 10) == 0.5
    assert net_sentiment(0, 4) == -1.0
    assert net_sentiment(0, 0) == 0.0  # mentions, none positive or negative
    assert of_period(100, 30, 10) == 0.5  # 60 neutral mentions change nothing
    assert of_period(100, 0, 0) == 0.0
    assert of_period(0, 0, 0) is None  # no mentions: no data

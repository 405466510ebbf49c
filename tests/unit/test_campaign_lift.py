"""Campaign lift, the pure parts: the interval maths (known values, coverage by simulation, the
overdispersion correction), the matched baseline period, verdicts, display and the SVG charts."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from earful.storage.campaigns import (
    CampaignLift,
    Estimate,
    SeriesPoint,
    bucket_step,
    campaign_charts,
    campaign_state,
    campaign_windows,
    compact,
    make_lift,
    net_sentiment_difference,
    overdispersion,
    proportion_difference,
    rate_ratio,
    sum_ratio,
    verdict,
)
from earful.storage.charts import Interval, intervals
from earful.storage.kpis import Window
from earful.watchlists.model import Campaign

UTC = timezone.utc
SVG = "{http://www.w3.org/2000/svg}"
Z = 1.959963984540054
HOSTILE = '</text><script>alert(1)</script>"\' & <b>x</b>\x00\x07'


# --- known values -------------------------------------------------------------------------------------


def test_rate_ratio_is_a_log_scale_wald_interval() -> None:
    e = rate_ratio(300, 100)
    half = Z * math.sqrt(1 / 300 + 1 / 100)
    assert e.estimate == pytest.approx(3.0)
    assert e.low == pytest.approx(3 * math.exp(-half)) and e.high == pytest.approx(3 * math.exp(half))
    assert e.low == pytest.approx(2.392, abs=1e-3) and e.high == pytest.approx(3.762, abs=1e-3)
    # Unequal exposures compare rates, not counts.
    assert rate_ratio(300, 100, exposure1=3.0).estimate == pytest.approx(1.0)
    # Overdispersion widens the interval by sqrt(phi) on the log scale, never narrows it.
    wide = rate_ratio(300, 100, dispersion=4.0)
    assert wide.high is not None and e.high is not None
    assert math.log(wide.high / 3) == pytest.approx(2 * math.log(e.high / 3))
    assert rate_ratio(300, 100, dispersion=0.2) == e


def test_rate_ratio_from_nothing_has_an_interval_but_no_ratio() -> None:
    e = rate_ratio(40, 0)
    assert e.estimate is None and e.low is not None and e.low > 1  # 40 vs 0 is a rise, however measured
    assert rate_ratio(0, 0) == Estimate(None, None, None)
    drop = rate_ratio(0, 40)
    assert drop.estimate == 0 and drop.high is not None and drop.high < 1
    with pytest.raises(ValueError):
        rate_ratio(-1, 3)


def test_reach_interval_reduces_to_the_volume_interval_when_every_author_has_one_follower() -> None:
    reach, volume = sum_ratio(300, 300, 100, 100), rate_ratio(300, 100)
    assert (reach.estimate, reach.low, reach.high) == (pytest.approx(volume.estimate), pytest.approx(volume.low),
                                                       pytest.approx(volume.high))
    # One huge account dominates: the interval is much wider than the count's.
    heavy = sum_ratio(1_000_000 + 299, 1e12 + 299, 100, 100)
    assert heavy.low is not None and heavy.high is not None and volume.low is not None and volume.high is not None
    assert heavy.high / heavy.low > 20 * volume.high / volume.low  # about e^(±1.96): the one account is all of it
    assert sum_ratio(0, 0, 5, 5) == Estimate(None, None, None)


def test_net_sentiment_difference() -> None:
    e = net_sentiment_difference(60, 20, 100, 30, 30, 100)
    assert e.estimate == pytest.approx(0.4)
    # The interval is centred on the adjusted means (one + and one − pseudo-mention per window).
    m1, m0 = (61 - 21) / 102, (31 - 31) / 102
    v1 = ((61 + 21) / 102 - m1 ** 2) / 102
    v0 = ((31 + 31) / 102 - m0 ** 2) / 102
    assert e.low == pytest.approx(m1 - m0 - Z * math.sqrt(v1 + v0))
    assert e.high == pytest.approx(m1 - m0 + Z * math.sqrt(v1 + v0))
    # All negative before and after: still an interval of some width, around no change.
    same = net_sentiment_difference(0, 10, 10, 0, 10, 10)
    assert same.low is not None and same.high is not None and same.low < 0 < same.high
    assert net_sentiment_difference(1, 0, 1, 0, 0, 0) == Estimate(None, None, None)


def test_proportion_difference_is_agresti_caffo() -> None:
    e = proportion_difference(30, 100, 10, 100)
    a, b = 31 / 102, 11 / 102
    half = Z * math.sqrt(a * (1 - a) / 102 + b * (1 - b) / 102)
    assert e.estimate == pytest.approx(0.2)
    assert (e.low, e.high) == (pytest.approx(a - b - half), pytest.approx(a - b + half))
    assert proportion_difference(0, 0, 3, 10) == Estimate(None, None, None)


def test_verdicts() -> None:
    assert verdict(Estimate(3.0, 2.4, 3.8), 1.0) == "increase"
    assert verdict(Estimate(0.5, 0.3, 0.8), 1.0) == "decrease"
    assert verdict(Estimate(1.1, 0.9, 1.3), 1.0) == "no significant change"
    assert verdict(Estimate(0.02, -0.01, 0.05), 0.0) == "no significant change"
    assert verdict(Estimate(None, None, None), 0.0) == "not enough data"


# --- coverage: the intervals hold what they promise ----------------------------------------------------


def _coverage(intervals_: list[Estimate], truth: float) -> float:
    return sum(1 for e in intervals_ if e.low is not None and e.high is not None and e.low <= truth <= e.high) / len(intervals_)


def test_rate_ratio_covers_the_true_ratio_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    runs = [rate_ratio(int(rng.poisson(120)), int(rng.poisson(40))) for _ in range(2000)]
    assert 0.93 <= _coverage(runs, 3.0) <= 0.97


def test_bursty_traffic_is_caught_by_the_overdispersion_estimate() -> None:
    """Negative-binomial buckets with a daily rhythm and no lift: the plain Poisson interval claims
    a change far too often; with the dispersion estimated from paired buckets it does not."""
    rng = np.random.default_rng(2)
    hours = np.arange(48)
    mean = 6 + 5 * np.sin(hours / 24 * 2 * np.pi)  # a daily rhythm, the same in both windows

    def bursty() -> np.ndarray:
        return rng.negative_binomial(2, 2 / (2 + mean))  # mean `mean`, variance mean + mean²/2

    plain, corrected, phis = [], [], []
    for _ in range(600):
        a, b = bursty(), bursty()
        phi = overdispersion(list(zip(a.tolist(), b.tolist())))
        phis.append(phi)
        plain.append(rate_ratio(int(a.sum()), int(b.sum())))
        corrected.append(rate_ratio(int(a.sum()), int(b.sum()), dispersion=phi))
    assert _coverage(plain, 1.0) < 0.85
    assert _coverage(corrected, 1.0) >= 0.92
    assert np.median(phis) > 2


def test_overdispersion_is_one_for_poisson_counts_with_a_shared_rhythm() -> None:
    rng = np.random.default_rng(3)
    mean = 2 + 20 * (np.arange(72) % 24 > 8)  # quiet nights, busy days: not overdispersion once paired
    phis = [overdispersion(list(zip(rng.poisson(3 * mean).tolist(), rng.poisson(mean).tolist()))) for _ in range(200)]
    assert np.median(phis) < 1.3
    assert overdispersion([]) == 1.0 and overdispersion([(3, 0), (5, 0)]) == 1.0 and overdispersion([(4, 4)]) == 1.0


def test_net_sentiment_and_share_intervals_cover() -> None:
    rng = np.random.default_rng(4)
    ns, sov = [], []
    for _ in range(1500):
        pos1, _, neg1 = rng.multinomial(150, [0.4, 0.4, 0.2])
        pos0, _, neg0 = rng.multinomial(120, [0.3, 0.4, 0.3])
        ns.append(net_sentiment_difference(int(pos1), int(neg1), 150, int(pos0), int(neg0), 120))
        sov.append(proportion_difference(int(rng.binomial(400, 0.25)), 400, int(rng.binomial(300, 0.15)), 300))
    assert 0.93 <= _coverage(ns, 0.2 - 0.0) <= 0.975
    assert 0.93 <= _coverage(sov, 0.10) <= 0.975


# --- the matched baseline ------------------------------------------------------------------------------


def test_the_baseline_covers_the_same_hours_of_the_week() -> None:
    monday = datetime(2026, 11, 2, 9, 0, 30, tzinfo=UTC)
    assert monday.strftime("%a") == "Mon"
    c = Campaign(monday)
    found = campaign_windows(c, datetime(2026, 11, 4, 15, 0, 45, tzinfo=UTC))
    assert found is not None
    win, base = found
    assert win == Window(datetime(2026, 11, 2, 9, 0, tzinfo=UTC), datetime(2026, 11, 4, 15, 0, tzinfo=UTC))
    assert base == Window(datetime(2026, 10, 26, 9, 0, tzinfo=UTC), datetime(2026, 10, 28, 15, 0, tzinfo=UTC))
    # Ten days so far: two weeks back, still ten days long, ending four days before launch.
    found = campaign_windows(c, monday + timedelta(days=10))
    assert found is not None
    win, base = found
    assert base.start == win.start - timedelta(days=14) and base.length == win.length == timedelta(days=10)
    # Next to launch instead.
    found = campaign_windows(c, monday + timedelta(days=10), "adjacent")
    assert found is not None
    win, base = found
    assert base.end == win.start and base.length == win.length


def test_an_ended_campaign_is_measured_over_its_whole_run_and_a_future_one_not_at_all() -> None:
    launch = datetime(2026, 11, 2, 9, tzinfo=UTC)
    c = Campaign(launch, launch + timedelta(days=3))
    found = campaign_windows(c, launch + timedelta(days=40))
    assert found is not None
    win, base = found
    assert win.end == launch + timedelta(days=3)
    assert base.start == launch - timedelta(days=7)
    assert campaign_windows(c, launch - timedelta(hours=1)) is None
    assert campaign_windows(c, launch + timedelta(seconds=30)) is None  # not one whole minute yet
    assert [campaign_state(c, launch - timedelta(hours=1)), campaign_state(c, launch), campaign_state(c, launch + timedelta(days=3)),
            campaign_state(None, launch)] == ["scheduled", "running", "ended", "unscheduled"]


@pytest.mark.parametrize(("length", "step"), [(timedelta(minutes=30), 60), (timedelta(hours=6), 300),
                                              (timedelta(days=2), 3600), (timedelta(days=30), 43200),
                                              (timedelta(days=400), 7 * 86400)])
def test_bucket_steps(length: timedelta, step: int) -> None:
    assert bucket_step(length) == step


# --- display and charts -------------------------------------------------------------------------------


def test_lift_display_texts() -> None:
    vol = make_lift("volume", "Mentions", "ratio", 300, 100, rate_ratio(300, 100), ("300", "100"))
    assert vol.verdict == "increase" and vol.change_display == "×3.00 (+200 %)" and vol.interval_display == "×2.39 to ×3.76"
    new = make_lift("volume", "Mentions", "ratio", 40, 0, rate_ratio(40, 0), ("40", "0"))
    assert new.change_display == "new (none before launch)" and new.verdict == "increase"
    sov = make_lift("share_of_voice", "Share of voice", "difference", 0.3, 0.1, proportion_difference(30, 100, 10, 100),
                    ("30.0 %", "10.0 %"))
    assert sov.change_display == "+20 pp" and sov.interval_display.endswith(" pp")
    flat = make_lift("net_sentiment", "Net sentiment", "difference", 0.101, 0.104, net_sentiment_difference(50, 40, 100, 51, 41, 100),
                     ("+0.10", "+0.10"))
    assert flat.change_display == "±0.00" and flat.campaign_display == "+0.10"
    assert compact(1234) == "1,234" and compact(3_456_789) == "3.5 M" and compact(None) == "n/a"


def _lift() -> CampaignLift:
    start = datetime(2026, 11, 2, 9, tzinfo=UTC)
    win = Window(start, start + timedelta(hours=4))
    base = Window(start - timedelta(days=7), start - timedelta(days=7) + timedelta(hours=4))
    lifts = (make_lift("volume", "Mentions", "ratio", 300, 100, rate_ratio(300, 100), ("300", "100")),
             make_lift("reach", "Reach (followers)", "ratio", 0, 0, sum_ratio(0, 0, 0, 0), ("0", "0")),
             make_lift("net_sentiment", "Net sentiment", "difference", 0.1, 0.05,
                       net_sentiment_difference(40, 10, 300, 15, 10, 100), ("+0.10", "+0.05")),
             make_lift("share_of_voice", "Share of voice", "difference", 0.3, 0.1, proportion_difference(30, 100, 10, 100),
                       ("30.0 %", "10.0 %")))
    series = tuple(SeriesPoint(i, (win.start + timedelta(minutes=5 * i)).isoformat(),
                               (base.start + timedelta(minutes=5 * i)).isoformat(), 6, 2) for i in range(48))
    return CampaignLift(HOSTILE, HOSTILE, "running", start, None, win.end, "week", win, base, 300, 1.0, lifts, (), series)


def test_campaign_charts_are_well_formed_linked_and_escaped() -> None:
    charts = campaign_charts(_lift(), ZoneInfo("Europe/Berlin"))
    assert set(charts) == {"lift", "series"}
    lift = ET.fromstring(charts["lift"])
    rows = lift.findall(f".//{SVG}g[@class='interval']")
    assert [r.attrib["data-label"] for r in rows] == ["Mentions", "Reach (followers)", "Net sentiment", "Share of voice"]
    assert float(rows[0].attrib["data-estimate"]) == pytest.approx(math.log(3), abs=1e-3)  # ratios on a log scale
    assert "data-estimate" not in rows[1].attrib  # no reach at all: nothing drawn but the verdict
    assert "not enough data" in "".join(rows[1].itertext())
    series = ET.fromstring(charts["series"])
    points = series.findall(f".//{SVG}circle")
    assert len(points) == 96
    hrefs = [a.attrib["href"] for a in series.iter(SVG + "a")]
    assert all(h.startswith("#mentions?") for h in hrefs) and "2026-10-26T09%3A00%3A00Z" in hrefs[48]  # baseline bucket
    assert "baseline (1 week earlier)" in "".join(series.itertext())
    assert campaign_charts(CampaignLift("x", "x", "scheduled", None, None, datetime.now(UTC), "week"), ZoneInfo("UTC")) == {}


def test_interval_chart_escapes_and_marks_no_change() -> None:
    svg = intervals([Interval(HOSTILE, 0.5, 0.2, 0.9, 0.0, HOSTILE, "#000", "#mentions?x=" + HOSTILE),
                     Interval("none", None, None, None)], title=HOSTILE)
    root = ET.fromstring(svg)
    assert "<script>" not in svg and root.find(f".//{SVG}script") is None
    assert len(root.findall(f".//{SVG}line[@class='null']")) == 2
    ci = root.find(f".//{SVG}rect[@class='ci']")
    dot = root.find(f".//{SVG}circle[@class='estimate']")
    assert ci is not None and dot is not None
    mid = float(root.findall(f".//{SVG}line[@class='null']")[0].attrib["x1"])
    assert float(ci.attrib["x"]) > mid  # the whole interval lies above no change
    assert "nothing to compare yet" in "".join(ET.fromstring(intervals([], title="t")).itertext())

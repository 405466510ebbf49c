"""The dashboard's pure parts: SVG charts (well-formed, escaped, linked), humane formats, the period
picked by default, drill-down links, highlighted spans, and the page's Content-Security-Policy."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from urllib.parse import parse_qsl

import pytest

from earful.storage.api.dashboard import _hashes, _page
from earful.storage.charts import Bar, Column, Line, Marker, Segment, hbars, lines, nice_max, stacked_columns
from earful.storage.dashboard_views import (
    alert_markers,
    change,
    choose_watchlist,
    compared_watchlists,
    count,
    distinctive_terms,
    duration,
    highlight,
    local,
    mention_marks,
    mentions_link,
    pick_period,
    point_change,
    sampled_buckets,
    term_link,
    term_sample,
    zone,
)
from earful.watchlists import Watchlist, WatchlistSet
from earful.watchlists.model import WatchlistSpec
from earful.watchlists.terms import brand_terms

UTC = timezone.utc
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '</text><script>alert(1)</script>"\' & <b>x</b>\x00\x07\ufffe'


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # strict XML, as the page's DOMParser reads it
    assert root.tag == SVG + "svg"
    return root


def test_stacked_columns_link_every_segment_and_scale_to_the_tallest() -> None:
    cols = [Column(f"c{i}", [Segment("negative", i, "#f00", f"#mentions?i={i}&s=n", f"{i} negative"),
                             Segment("positive", 2, "#0f0", f"#mentions?i={i}&s=p")]) for i in range(5)]
    root = parse(stacked_columns(cols, title="t", legend=[("negative", "#f00")], markers=[Marker(2, "alert", href="#mentions?a=1")]))
    bars = [a for a in root.iter(SVG + "a") if next(iter(a)).tag == SVG + "rect"]
    assert len(bars) == 9  # the zero segment of column 0 is not drawn
    assert {a.attrib["href"] for a in bars} >= {"#mentions?i=4&s=n", "#mentions?i=0&s=p"}
    heights = {a.attrib["href"]: float(next(iter(a)).attrib["height"]) for a in bars}
    assert heights["#mentions?i=4&s=n"] == pytest.approx(2 * heights["#mentions?i=0&s=p"])
    assert len(root.findall(f".//{SVG}g[@class='marker']")) == 1
    empty = parse(stacked_columns([Column("a", [Segment("x", 0, "#000")])], title="t"))
    assert "no mentions in this period" in "".join(empty.itertext())


def test_every_text_is_escaped_and_xml_safe() -> None:
    svgs = [
        stacked_columns([Column(HOSTILE, [Segment(HOSTILE, 3, HOSTILE, "#mentions?x=" + HOSTILE, HOSTILE)])], title=HOSTILE,
                        legend=[(HOSTILE, "#000")], markers=[Marker(0, HOSTILE, href=HOSTILE)]),
        lines([HOSTILE, "b"], [Line(HOSTILE, "#000", [0.5, 0.25], [HOSTILE, None], [HOSTILE, HOSTILE])], title=HOSTILE),
        hbars([Bar(HOSTILE, 3, 1, HOSTILE, note=HOSTILE)], title=HOSTILE),
    ]
    for svg in svgs:
        assert "<script" not in svg and "<b>" not in svg and "\x00" not in svg and "\ufffe" not in svg
        root = parse(svg)
        assert not list(root.iter("script")) and not list(root.iter(SVG + "script"))
        assert "</text><script>alert(1)</script>" in "".join(root.itertext())  # shown as text


def test_lines_skip_missing_points_and_emphasise_the_selected() -> None:
    root = parse(lines(["a", "b", "c"], [Line("us", "#00f", [0.5, None, 0.6], ["#1", "#2", "#3"], emphasis=True),
                                         Line("them", "#f00", [0.5, 1.0, 0.4])], title="share"))
    points = root.findall(f".//{SVG}circle")
    assert len(points) == 5 and {p.attrib["data-series"] for p in points} == {"us", "them"}
    assert [p.attrib["r"] for p in points if p.attrib["data-series"] == "us"] == ["3.5", "3.5"]


def test_hbars_show_the_previous_period_as_a_tick() -> None:
    root = parse(hbars([Bar("twitter", 10, 20, "#mentions?source=twitter", note="−50 %"), Bar("news", 5)], title="Sources"))
    groups = root.findall(f".//{SVG}g[@class='hbar']")
    assert [g.attrib["data-label"] for g in groups] == ["twitter", "news"]
    assert len(root.findall(f".//{SVG}line")) == 1 and "−50 %" in "".join(root.itertext())


@pytest.mark.parametrize("value,top", [(0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (2950, 5000), (50, 50)])
def test_nice_max(value: float, top: float) -> None:
    assert nice_max(value) == top


@pytest.mark.parametrize("seconds,text", [(None, "n/a"), (0, "0 s"), (59.6, "1 min"), (45, "45 s"), (720, "12 min"),
                                          (3600, "1 h"), (12000, "3 h 20 min"), (49230 * 60, "34 d 4 h"), (86400, "1 d")])
def test_durations_are_humane(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_changes_and_counts() -> None:
    assert count(1234567) == "1,234,567"
    assert [change(112, 100), change(95, 100), change(0, 0), change(5, 0), change(100, 100)] == \
        ["+12 %", "−5 %", "±0 %", "new", "±0 %"]
    assert [point_change(0.25, 0.2), point_change(0.1, 0.131), point_change(None, 0.1)] == ["+5 pp", "−3.1 pp", "n/a"]


def test_local_time_names_its_zone() -> None:
    t = datetime(2026, 11, 2, 7, 30, tzinfo=UTC)
    assert local(t, zone("Europe/Paris"), with_zone=True) == "2 Nov 08:30 CET"
    assert local(t, zone("America/New_York"), 86400) == "2 Nov"
    assert local(t, zone(None), with_zone=True) == "2 Nov 07:30 UTC"
    with pytest.raises(ValueError):
        zone("Mars/Olympus")


def test_the_default_period_ends_with_the_newest_data_not_now() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    newest = datetime(2026, 11, 2, 7, 55, tzinfo=UTC)  # a month-old sample
    day = pick_period("24h", None, newest, now)
    assert (day.lo, day.hi, day.step) == (datetime(2026, 11, 1, 8, tzinfo=UTC), datetime(2026, 11, 2, 8, tzinfo=UTC), 3600)
    assert day.prev_lo == datetime(2026, 10, 31, 8, tzinfo=UTC) and len(day.buckets()) == 24
    assert pick_period("24h", None, None, now).hi == now  # no data: ends now
    asked = pick_period("7d", datetime(2026, 11, 20, 1, tzinfo=UTC), newest, now)
    assert asked.hi == datetime(2026, 11, 20, 6, tzinfo=UTC) and asked.hi - asked.lo == timedelta(days=7)
    assert pick_period("30d", None, newest, now).hi == datetime(2026, 11, 3, tzinfo=UTC)


def test_drill_down_links_carry_the_mentions_api_filters() -> None:
    href = mentions_link(watchlist="acme-air", from_=datetime(2026, 11, 2, 7, tzinfo=UTC), to=None, sentiment="negative",
                         entity="#Acme&Co")
    assert href.startswith("#mentions?")
    assert dict(parse_qsl(href.split("?", 1)[1])) == {"watchlist": "acme-air", "from": "2026-11-02T07:00:00Z",
                                                      "sentiment": "negative", "entity": "#Acme&Co"}


def test_highlight_cuts_text_at_every_span_and_keeps_it_whole() -> None:
    text = "Worst flight ✈ ever @AcmeAir"
    m = {"risks": [{"tag": "complaint", "start": 0, "end": 5}], "entities": [{"type": "mention", "start": 20, "end": 28}],
         "matches": [{"watchlist_id": "acme-air", "start": 21, "end": 99}]}
    pieces = highlight(text, [*mention_marks(m), (7, 3, "empty")])
    assert "".join(p["text"] for p in pieces) == text
    assert pieces[0] == {"text": "Worst", "marks": ["tag:complaint"]}
    assert pieces[-1] == {"text": "AcmeAir", "marks": ["entity:mention", "match:acme-air"]}
    assert highlight("", [(0, 3, "x")]) == []


def _set(*specs: tuple[str, str]) -> WatchlistSet:
    return WatchlistSet([WatchlistSpec.model_validate({"id": i, "name": i.title(), "kind": k, "terms": [i]}).to_watchlist()
                         for i, k in specs])


def test_which_watchlists_are_shown_and_compared() -> None:
    wls = _set(("acme", "brand"), ("sky", "competitor"), ("topic", "topic"))
    totals = [{"watchlist_id": w} for w in ("(none)", "topic", "sky", "acme", "old")]
    assert choose_watchlist(None, totals, wls) == "acme"  # the most mentioned brand
    assert choose_watchlist("sky", totals, wls) == "sky"
    assert choose_watchlist(None, [{"watchlist_id": "old"}], WatchlistSet([])) == "old"
    assert compared_watchlists("acme", totals, wls) == ["acme", "sky"]
    assert compared_watchlists("topic", totals, wls) == ["topic", "sky", "acme"]
    assert compared_watchlists("old", totals, WatchlistSet([])) == ["old", "topic", "sky", "acme"]


def test_the_page_allows_only_its_own_inline_script_and_style() -> None:
    html, headers = _page()
    csp = headers["Content-Security-Policy"]
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'; style-src 'sha256-", csp) and "unsafe" not in csp
    assert _hashes("<p>no script</p>", "script") == "'none'"
    assert "innerHTML" not in html and "outerHTML" not in html and "insertAdjacentHTML" not in html
    assert "DOMParser" in html and "image/svg+xml" in html
    assert headers["Referrer-Policy"] == "no-referrer"


def test_alert_markers_stand_where_the_episode_started_not_where_it_was_detected() -> None:
    span = pick_period("24h", datetime(2026, 11, 3, tzinfo=UTC), None, datetime(2026, 12, 9, tzinfo=UTC))
    start = span.lo + timedelta(hours=5, minutes=10)

    def alert(summary: str, starts: datetime, detected: datetime, ends: datetime | None = None) -> dict[str, object]:
        return {"summary": summary, "severity": "critical", "starts_at": starts, "ends_at": ends, "detected_at": detected}

    replayed = alert("replayed", start, datetime(2026, 12, 9, tzinfo=UTC), start + timedelta(minutes=20))
    live = alert("live", span.lo + timedelta(hours=9), span.lo + timedelta(hours=9, minutes=2))
    old = alert("old episode", span.lo - timedelta(days=10), span.lo + timedelta(hours=1))
    marks = alert_markers([replayed, live, old], span, zone("UTC"), "acme")
    assert [m.index for m in marks] == [5, 9]
    assert marks[0].label.startswith("critical alert from 2 Nov 05:10 UTC: replayed") and "detected 9 Dec" in marks[0].label
    assert "detected" not in marks[1].label  # detected at once: nothing to add
    link = dict(parse_qsl(str(marks[0].href).split("?", 1)[1]))
    assert link == {"watchlist": "acme", "from": "2026-11-02T05:10:00Z", "to": "2026-11-02T05:30:00Z"}


def test_distinctive_terms_are_what_the_period_says_more_than_the_one_before() -> None:
    before = [("The flight was fine, good crew", "en")] * 60 + [("Acme Air lounge coffee was cold", "en")] * 20
    now = ([("Acme Air: lost luggage, no one at the desk", "en")] * 25 + [("The flight was fine, good crew", "en")] * 50
           + [("#Refund please, acme air", "en")] * 15)
    own = brand_terms(Watchlist(id="acme-air", name="Acme Air", query="\"acme air\"", kind="brand"), "acme-air")
    found = distinctive_terms(now, before, own)
    terms = [t["term"] for t in found]
    assert terms[0] == "lost luggage" and "#refund" in terms
    assert not any("acme" in t for t in terms)  # the brand's own name is never what a period is about
    assert "luggage" not in terms  # the phrase containing it covers all of its posts
    assert "flight" not in terms and "good crew" not in terms  # as common before as now
    top = found[0]
    assert top["posts"] == 25 and top["share"] == 25 / 90 and top["previous_share"] == 0.0
    assert distinctive_terms([], before, own) == []


def test_term_links_search_words_and_phrases_and_filter_hashtags() -> None:
    lo, hi = datetime(2026, 3, 1, tzinfo=timezone.utc), datetime(2026, 3, 2, tzinfo=timezone.utc)
    assert dict(parse_qsl(term_link("lost luggage", watchlist="w", from_=lo, to=hi).split("?", 1)[1])) == {
        "watchlist": "w", "from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z", "q": '"lost luggage"'}
    assert dict(parse_qsl(term_link("refund", watchlist="w").split("?", 1)[1]))["q"] == "refund"
    assert dict(parse_qsl(term_link("#refund", watchlist="w").split("?", 1)[1]))["entity"] == "#refund"


def test_the_term_sample_reads_at_most_so_many_buckets_spread_over_the_period() -> None:
    days = [datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=i) for i in range(30)]
    picked = sampled_buckets(days, 12)
    assert len(picked) == 12 and picked[0] == days[0] and picked[-1] == days[-1]
    assert picked == sorted(set(picked))
    gaps = {(b - a).days for a, b in pairwise(picked)}
    assert gaps <= {2, 3}  # evenly spread
    assert sampled_buckets(days[:5], 12) == days[:5]
    assert sampled_buckets(days, 1) == [days[-1]]


def test_the_term_sample_bounds_each_bucket_by_values_of_its_own() -> None:
    """Each bucket is a branch with its own bound values (clipped to the period), so PostgreSQL plans
    it for its one partition; a bound from a joined list made it read every post of the day."""
    lo = datetime(2026, 11, 1, 12, tzinfo=UTC)
    starts = [datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC)]
    sql, args = term_sample("acme'air", lo, datetime(2026, 11, 6, tzinfo=UTC), starts, 86_400, 50)
    assert sql.count(" UNION ALL ") == 1 and sql.count("LIMIT") == 2 and "acme'air" not in sql
    assert {int(n) for n in re.findall(r"\$(\d+)", sql)} == set(range(1, len(args) + 1))
    assert lo in args and datetime(2026, 11, 2, tzinfo=UTC) in args and starts[0] not in args  # clipped to the period
    assert term_sample("w", lo, lo, [], 3600, 50)[0].endswith("WHERE false")

"""The executive report's pure parts: the period chosen (the latest complete week with data by
default), option errors, links into the dashboard, the weekly schedule, the PDF's charts and text,
the HTML page (self-contained, escaped), the email and the webhook's metadata."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader

from earful.core.settings import Settings
from earful.storage.charts import Bar, Column, Line, Marker, Segment, hbars, lines, stacked_columns
from earful.storage.report import ReportError, ReportUsageError, check_writable, choose_period, dashboard_base, output_format
from earful.storage.report_data import (
    Chart,
    Figure,
    KpiRow,
    Period,
    Report,
    absolute_links,
    alert_rules,
    custom_period,
    dashboard_length,
    last_month,
    last_week,
    latest_week_with_data,
    mentions_url,
    notable_alerts,
    parse_time,
    period_title,
    step_for,
    view_url,
    week_of,
)
from earful.storage.report_render import pdf_svg, plain, render_html, render_pdf
from earful.storage.report_schedule import Made, Schedule, build_email, metadata, targets
from earful.watchlists import WatchlistSet
from earful.watchlists.model import WatchlistSpec

UTC = timezone.utc
SVG = "{http://www.w3.org/2000/svg}"
NOW = datetime(2026, 12, 9, 15, 30, tzinfo=UTC)  # a Wednesday
HOSTILE = '<script>alert(1)</script> "Acme" & <b>Co</b>'


# --- periods ------------------------------------------------------------------------------------------------


def test_the_default_period_is_the_latest_complete_week_with_data() -> None:
    # Data up to last Friday: that week (Monday to Sunday, UTC), not the current one.
    p = choose_period(None, None, None, NOW, datetime(2026, 12, 4, tzinfo=UTC))
    assert p == Period(datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC), "week")
    # Data that ended a month ago: the week it ended in, however old.
    old = choose_period(None, None, None, NOW, datetime(2026, 11, 2, tzinfo=UTC))
    assert old is not None and (old.lo, old.hi) == (datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 9, tzinfo=UTC))
    assert old.lo.weekday() == 0 and old.length == timedelta(days=7)
    # Newest day a Sunday: its own week (Sunday is the week's last day).
    sunday = latest_week_with_data(datetime(2026, 11, 8, tzinfo=UTC))
    assert sunday is not None and sunday.lo == datetime(2026, 11, 2, tzinfo=UTC)
    # No data before this week: no default (the command says so).
    assert choose_period(None, None, None, NOW, None) is None


def test_named_and_custom_periods() -> None:
    assert last_week(NOW) == Period(datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC), "week")
    assert last_week(datetime(2026, 12, 7, 0, 0, tzinfo=UTC)).hi == datetime(2026, 12, 7, tzinfo=UTC)  # Monday 00:00: last week just ended
    assert last_month(NOW) == Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), "month")
    assert last_month(datetime(2027, 1, 3, tzinfo=UTC)).lo == datetime(2026, 12, 1, tzinfo=UTC)
    assert choose_period(None, None, "last-week", NOW, None) == last_week(NOW)
    p = choose_period("2026-11-02", "2026-11-04T12:00:00+01:00", None, NOW, None)
    assert p == Period(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 4, 11, tzinfo=UTC), "custom")
    assert p.prev_lo == datetime(2026, 10, 30, 13, tzinfo=UTC)
    assert parse_time("--from", "2026-11-02T09:00:00Z") == datetime(2026, 11, 2, 9, tzinfo=UTC)


@pytest.mark.parametrize(("start", "end", "name", "says"), [
    ("2026-11-02", None, None, "--from and --to go together"),
    (None, "2026-11-02", None, "--from and --to go together"),
    ("2026-11-02", "2026-11-09", "last-week", "not both"),
    ("yesterday", "2026-11-09", None, "--from 'yesterday' is not a time"),
    ("2026-11-09", "2026-11-02", None, "must be after --from"),
    ("2024-01-01", "2026-01-01", None, "at most 366 days"),
    (None, None, "last-year", "choose from last-week, last-month"),
])
def test_option_errors_say_what_is_wrong(start: str | None, end: str | None, name: str | None, says: str) -> None:
    with pytest.raises(ReportUsageError, match=re.escape(says)):
        choose_period(start, end, name, NOW, None)


def test_chart_columns_follow_the_dashboard() -> None:
    assert step_for(timedelta(hours=6)) == 900 and step_for(timedelta(days=1)) == 3600
    assert step_for(timedelta(days=7)) == 6 * 3600 and step_for(timedelta(days=31)) == 86400
    assert step_for(timedelta(days=200)) == 7 * 86400
    week = week_of(datetime(2026, 11, 4, tzinfo=UTC))
    assert len(week.buckets()) == 28 and week.buckets()[0] == week.lo
    odd = custom_period(datetime(2026, 11, 2, 7, 10, tzinfo=UTC), datetime(2026, 11, 2, 9, 50, tzinfo=UTC))
    assert odd.buckets()[0] == datetime(2026, 11, 2, 7, tzinfo=UTC) and odd.buckets()[-1] == datetime(2026, 11, 2, 9, 45, tzinfo=UTC)


def test_titles() -> None:
    utc = ZoneInfo("UTC")
    assert period_title(week_of(datetime(2026, 11, 4, tzinfo=UTC)), utc) == "Week 45, 2026 (2 Nov – 8 Nov 2026, UTC)"
    assert period_title(last_month(NOW), utc) == "November 2026 (UTC)"
    custom = custom_period(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    assert period_title(custom, ZoneInfo("Europe/Paris")) == "2 Nov 2026 01:00 – 3 Nov 2026 01:00 CET"


# --- links ----------------------------------------------------------------------------------------------------


def test_links_name_the_dashboard_view_and_the_mentions_behind_a_figure() -> None:
    week = week_of(datetime(2026, 11, 4, tzinfo=UTC))
    assert dashboard_length(week) == "7d"
    view = view_url("https://earful.example.com/", "acme-air", week)
    parts = urlsplit(view)
    assert parts.netloc == "earful.example.com" and dict(parse_qsl(parts.query)) == {
        "watchlist": "acme-air", "length": "7d", "to": "2026-11-09T00:00:00Z"}
    href = mentions_url(view, watchlist="acme-air", from_=week.lo, to=week.hi, sentiment="negative")
    base, fragment = href.split("#", 1)
    assert base == view and fragment.startswith("mentions?")
    assert dict(parse_qsl(fragment.split("?", 1)[1])) == {"watchlist": "acme-air", "from": "2026-11-02T00:00:00Z",
                                                          "to": "2026-11-09T00:00:00Z", "sentiment": "negative"}
    # November is the dashboard's 30 days; October is no dashboard period: the shortest length
    # holding it, ending at its end.
    assert dashboard_length(last_month(NOW)) == "30d"
    month = last_month(datetime(2026, 11, 5, tzinfo=UTC))
    assert dashboard_length(month) is None and month.length == timedelta(days=31)
    assert dict(parse_qsl(urlsplit(view_url("https://x/", "a", month)).query))["length"] == "90d"
    # The base: EARFUL_DASHBOARD_URL, else the alerts' dashboard URL, else the local storage service.
    assert dashboard_base(Settings(dashboard_url="https://d.example/earful?x=1#y")) == "https://d.example/earful/"
    assert dashboard_base(Settings(alert_dashboard_url="https://a.example")) == "https://a.example/"
    assert dashboard_base(Settings()) == "http://127.0.0.1:8083/"


# --- output ---------------------------------------------------------------------------------------------------


def test_output_format_and_writability(tmp_path: Path) -> None:
    assert output_format(None, "r.HTML") == "html" and output_format(None, "r.pdf") == "pdf"
    assert output_format(None, "report") == "pdf" and output_format("html", "r.pdf") == "html"
    check_writable(str(tmp_path / "r.pdf"))
    check_writable("-")
    with pytest.raises(ReportError, match="does not exist"):
        check_writable(str(tmp_path / "missing" / "r.pdf"))
    with pytest.raises(ReportError, match="is a folder"):
        check_writable(str(tmp_path))


# --- schedule -------------------------------------------------------------------------------------------------


def test_the_next_run_is_the_next_scheduled_local_time() -> None:
    s = Schedule.parse("mon 08:00 Europe/London")
    # Wednesday: next Monday 08:00 London (GMT in December).
    assert s.next_run(NOW) == datetime(2026, 12, 14, 8, tzinfo=UTC)
    # Exactly at a run: the one after it.
    assert s.next_run(datetime(2026, 12, 14, 8, tzinfo=UTC)) == datetime(2026, 12, 21, 8, tzinfo=UTC)
    # Monday before 08:00: the same day. In summer London is UTC+1.
    assert s.next_run(datetime(2026, 12, 14, 7, 59, tzinfo=UTC)) == datetime(2026, 12, 14, 8, tzinfo=UTC)
    assert s.next_run(datetime(2026, 7, 1, tzinfo=UTC)) == datetime(2026, 7, 6, 7, tzinfo=UTC)
    # Across the change to summer time (29 Mar 2026): 08:00 local both weeks.
    assert s.next_run(datetime(2026, 3, 24, tzinfo=UTC)) == datetime(2026, 3, 30, 7, tzinfo=UTC)
    assert Schedule.parse("sunday 23:30").next_run(NOW) == datetime(2026, 12, 13, 23, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="DAY HH:MM ZONE"):
        Schedule.parse("every monday")


def test_targets_are_the_listed_watchlists_or_every_brand() -> None:
    ws = WatchlistSet([WatchlistSpec(id="b", kind="brand", terms=["b"]).to_watchlist(),
                       WatchlistSpec(id="a", kind="brand", terms=["a"]).to_watchlist(),
                       WatchlistSpec(id="c", kind="competitor", terms=["c"]).to_watchlist()])
    assert targets(Settings(), ws) == ["a", "b"]
    assert targets(Settings(report_watchlists="c,b"), ws) == ["c", "b"]


# --- rendering ------------------------------------------------------------------------------------------------


def sample_report(name: str = "Acme Air") -> Report:
    week = week_of(datetime(2026, 11, 4, tzinfo=UTC))
    view = view_url("https://earful.example.com/", "acme-air", week)
    cols = [Column(f"{d} Nov", [Segment("negative", d, "#d92d20", "#mentions?sentiment=negative", "t"),
                                Segment("positive", 10 - d, "#12b76a", "#mentions?sentiment=positive")]) for d in range(2, 9)]
    svgs = [("volume", stacked_columns(cols, title="Volume", legend=[("negative", "#d92d20")], markers=[Marker(2, "alert", href="#m")])),
            ("share_of_voice", lines([c.label for c in cols], [Line("Acme Air", "#2e6be6", [0.5] * 7, ["#s"] * 7)], title="SoV")),
            ("sources", hbars([Bar("twitter", 40, 30, "#src", note="+33 %"), Bar(HOSTILE, 5, 9)], title="Sources"))]
    r = Report(watchlist_id="acme-air", watchlist_name=name, watchlist_kind="brand", period=week, tz="UTC",
               title=period_title(week, ZoneInfo("UTC")), period_label="2 Nov 2026 00:00 – 9 Nov 2026 00:00 UTC",
               previous_label="26 Oct 2026 00:00 – 2 Nov 2026 00:00 UTC", generated_at=NOW, view=view, exact_view=True,
               mentions=2233)
    r.figures = [Figure("mentions", "Mentions", "2,233", "1,000", "+123 %", view + "#mentions?watchlist=acme-air", 2233, 1000),
                 Figure("net_sentiment", "Net sentiment", "−0.42", "+0.10", "−0.52", view)]
    r.kpis = [KpiRow("Net sentiment", "−0.42", "≥ +0.10", "off track", "falling", view)]
    r.charts = [Chart(k, k.replace("_", " ").title(), absolute_links(s, view), view, "caption") for k, s in svgs]
    r.alerts = [{"when": "2 Nov 07:30 UTC", "severity": "critical", "rule": "volume_spike", "summary": HOSTILE, "href": view}]
    r.alert_rules = [{"rule": "volume_spike", "alerts": 1, "severity": "critical", "first": "2 Nov 07:30 UTC", "summary": HOSTILE}]
    r.alerts_total = 1
    r.risks = [{"tag": "legal_privacy", "label": "legal / privacy", "mentions": 9, "previous": 0, "delta": "new", "href": view,
                "loudest": {"text": "data breach at Acme Air", "author": "breachwatch", "followers": 84000, "url": None,
                            "source": "twitter", "href": view + "#mention?id=1"}}]
    r.entities = [{"text": "Acme Air", "type": "organization", "mentions": 40, "previous": 3, "delta": "+1233 %", "href": view}]
    r.campaigns = [{"id": "spring-sale", "name": "Spring sale", "state": "running", "window": "5 Nov – 9 Nov",
                    "baseline": "29 Oct – 2 Nov", "href": view + "#campaign?id=spring-sale", "notes": ["a note"], "chart": None,
                    "lifts": [{"label": "Mentions", "campaign": "184", "baseline": "90", "change": "×2.04 (+104 %)",
                               "interval": "×1.60 to ×2.60", "verdict": "increase"}]}]
    r.questions = {"asked": 5, "answered": 3, "open": 2, "median_first_reply": "12 min", "p90_first_reply": "1 h",
                   "sla": "30 min", "sla_breached": 1}
    return r


def test_alerts_are_summed_by_rule_and_the_rare_ones_listed() -> None:
    t0 = datetime(2026, 11, 2, 7, tzinfo=UTC)
    care = [{"rule": "case_sla_breach", "severity": "critical", "starts_at": t0 + timedelta(minutes=i), "summary": f"q{i}"}
            for i in range(200)]
    crisis = [{"rule": "volume_spike", "severity": "critical", "starts_at": t0 + timedelta(hours=1), "summary": "spike"}]
    risks = [{"rule": "risk_mention", "severity": "warning", "starts_at": t0 + timedelta(hours=h), "summary": f"risk {h}"}
             for h in (2, 3)]
    alerts = care + crisis + risks
    rules = alert_rules(alerts, ZoneInfo("UTC"))
    assert [(r["rule"], r["alerts"]) for r in rules] == [("volume_spike", 1), ("risk_mention", 2), ("case_sla_breach", 200)]
    assert rules[2]["summary"] == "q0" and rules[2]["first"] == "2 Nov 07:00 UTC"
    listed = notable_alerts(alerts, per_rule=3, limit=5)
    assert [a["summary"] for a in listed] == ["q0", "q1", "spike", "risk 2", "risk 3"]  # in time order
    assert notable_alerts([], 3, 5) == []


def test_pdf_charts_keep_their_marks_without_links_or_tooltips() -> None:
    svg = stacked_columns([Column("a", [Segment("negative", 3, "#d92d20", "#x", "tip")])], title="T", markers=[Marker(0, "m", href="#y")])
    root = ET.fromstring(pdf_svg(svg, "helvetica", unicode=False))
    assert not list(root.iter(SVG + "a")) and not list(root.iter(SVG + "title"))
    assert len([r for r in root.iter(SVG + "rect") if r.get("class") == "bar"]) == 1  # the linked bar is still drawn
    assert root.get("font-family") == "helvetica"
    assert plain("−5 % → ≈ ▼ 日本 …") == "-5 % -> ~ v ?? …"
    assert plain("2 – 8 Nov…", "latin-1") == "2 - 8 Nov..."


def test_the_pdf_has_pages_outline_links_and_text() -> None:
    data = render_pdf(sample_report())
    assert data.startswith(b"%PDF-")
    pdf = PdfReader(io.BytesIO(data))
    assert len(pdf.pages) >= 4
    text = "\n".join(p.extract_text() for p in pdf.pages)
    for expected in ("Acme Air", "Week 45, 2026", "Headline figures", "KPIs against targets", "off track", "Top risks",
                     "Alerts of the period", "Campaign lift", "Spring sale", "×1.60 to ×2.60", "Top entities",
                     "Customer questions", "breachwatch"):
        assert expected in text, expected
    outline = [item.title for item in _flat(pdf.outline)]
    assert len([t for t in outline if t.startswith("Chart ")]) == 3
    uris = [a.get_object()["/A"]["/URI"] for p in pdf.pages for a in p.get("/Annots", []) if "/URI" in a.get_object().get("/A", {})]
    assert any("#mentions?watchlist=acme-air" in u for u in uris) and all(u.startswith("https://earful.example.com/?") for u in uris)
    assert pdf.metadata is not None and "Acme Air" in (pdf.metadata.title or "")


def test_the_pdf_prints_other_scripts_with_a_unicode_font(tmp_path: Path) -> None:
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not dejavu.exists():
        pytest.skip("no DejaVu font on this machine (Debian's fonts-dejavu-core)")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(render_pdf(sample_report("Ακμή Air"), [dejavu]))).pages)
    assert "Ακμή Air" in text
    plain_text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(render_pdf(sample_report("Ακμή Air")))).pages)
    assert "???? Air" in plain_text  # the built-in font holds Windows-1252 only


def test_the_html_page_is_self_contained_and_escaped() -> None:
    html = render_html(sample_report(HOSTILE))
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert not re.search(r"<(link|img|iframe|object)\b", html) and " src=" not in html  # nothing fetched
    assert len(re.findall(r'<figure data-chart="[a-z_]+"><h3>Chart \d: [^<]+</h3><svg ', html)) == 3
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert hrefs and all(h.startswith("https://earful.example.com/?") for h in hrefs)  # every link into the dashboard
    for expected in ("Week 45, 2026", "Headline figures", "KPIs against targets", "off track", "Top risks", "legal / privacy",
                     "Alerts of the period", "Campaign lift", "Spring sale", "×1.60 to ×2.60", "Top entities", "Customer questions",
                     "earful report --watchlist acme-air"):
        assert expected in html, expected


def test_the_email_attaches_the_report_and_says_the_figures() -> None:
    made = Made(sample_report(), b"%PDF-1.4 fake", "pdf")
    msg = build_email(made, "earful@example.com", ("ceo@example.com", "cmo@example.com"), NOW)
    parsed = message_from_bytes(msg.as_bytes())
    assert parsed["To"] == "ceo@example.com, cmo@example.com" and "Acme Air" in parsed["Subject"]
    parts = list(parsed.walk())
    attached = [p for p in parts if p.get_filename()]
    assert [p.get_filename() for p in attached] == ["earful-acme-air-2026-11-02.pdf"]
    assert attached[0].get_content_type() == "application/pdf" and attached[0].get_payload(decode=True) == b"%PDF-1.4 fake"
    body = next(p for p in parts if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    assert "Mentions: 2,233 (+123 % vs previous period)" in body and "https://earful.example.com/?" in body
    meta = metadata(made)
    assert meta["period"] == {"from": "2026-11-02T00:00:00Z", "to": "2026-11-09T00:00:00Z", "title": "Week 45, 2026 (2 Nov – 8 Nov 2026, UTC)"}
    assert meta["figures"][0]["value"] == 2233 and meta["content_type"] == "application/pdf"


def _flat(outline: list[object]) -> list[object]:
    out: list[object] = []
    for item in outline:
        out += _flat(item) if isinstance(item, list) else [item]
    return out

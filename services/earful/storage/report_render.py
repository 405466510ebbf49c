"""The executive report laid out: a self-contained HTML page, or a PDF.

Both are pure functions of a `Report` (earful.storage.report_data). The HTML page carries its
charts as inline SVG and its style inline: no script, nothing fetched, readable offline and
printable. The PDF is drawn with fpdf2 (pure Python; its SVG support draws the dashboard's
charts as vectors), with an outline entry per section and chart, and a link on every figure.

fpdf2's built-in fonts hold Windows-1252 only: without EARFUL_REPORT_FONTS, other characters print
as '?' in the PDF (the HTML shows every character). With a TrueType font (and fallbacks for other
scripts) the PDF shows what those fonts hold.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import timezone
from html import escape
from pathlib import Path
from typing import Any

from fpdf import FPDF, XPos, YPos
from fpdf.fonts import FontFace

from earful.storage.report_data import Chart, Report

SVG_NS = "http://www.w3.org/2000/svg"
_SVG = "{" + SVG_NS + "}"
FORMATS = ("pdf", "html")
ET.register_namespace("", SVG_NS)  # charts serialised again keep SVG as the default namespace


def command_line(report: Report) -> str:
    """The command that makes this report again."""
    from earful.storage.api.responses import iso

    return (f"earful report --watchlist {report.watchlist_id} --from {iso(report.period.lo)} --to {iso(report.period.hi)}"
            f" --tz {report.tz} --format pdf --out report.pdf")


def _when(report: Report) -> str:
    return report.generated_at.astimezone(timezone.utc).strftime("%d %b %Y %H:%M UTC").lstrip("0")


# --- HTML ---------------------------------------------------------------------------------------------------

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330; margin: 0; background: #f6f7f9; }
main { max-width: 980px; margin: 0 auto; padding: 24px; }
header.title { background: #1d2330; color: #fff; padding: 32px 24px; border-radius: 8px; }
header.title a { color: #9ec5ff; }
.kicker { text-transform: uppercase; letter-spacing: .08em; font-size: 12px; opacity: .8; margin: 0; }
h1 { font-size: 32px; margin: 4px 0 8px; } h2 { font-size: 20px; margin: 0 0 12px; }
section { background: #fff; border-radius: 8px; padding: 20px 24px; margin: 16px 0; box-shadow: 0 1px 2px rgba(16,24,40,.06); }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e4e7ec; vertical-align: top; }
th { font-size: 12px; color: #667085; font-weight: 600; } td.num, th.num { text-align: right; white-space: nowrap; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
.figure { border: 1px solid #e4e7ec; border-radius: 8px; padding: 12px; }
.figure .v { font-size: 24px; font-weight: 650; } .muted, .figure .d { color: #667085; font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 8px 24px; }
figure { margin: 0 0 16px; } figure svg { width: 100%; height: auto; } figcaption { color: #667085; font-size: 12px; }
h3 { font-size: 15px; margin: 12px 0 6px; }
.status-on-track { color: #067647; } .status-off-track { color: #b42318; } .status-at-risk { color: #b54708; }
a { color: #1849a9; } blockquote { margin: 4px 0 0; padding-left: 10px; border-left: 3px solid #e4e7ec; color: #344054; }
footer { color: #667085; font-size: 12px; padding: 8px 4px 32px; }
@media print { body { background: #fff; } section { box-shadow: none; break-inside: avoid; } header.title { break-after: page; } }
"""


def _a(href: str, text: str) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], empty: str, numeric: frozenset[int] = frozenset()) -> str:
    """A table of already escaped cells (`numeric`: right-aligned column indexes)."""
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    th = "".join(f'<th{" class=num" if i in numeric else ""}>{escape(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{c}</td>' for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML document (UTF-8)."""
    r = report
    out = ['<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<meta name="referrer" content="no-referrer">',
           f"<title>{escape(r.watchlist_name)} — {escape(r.title)} — Earful report</title>",
           f"<style>{CSS}</style></head><body><main>"]
    out.append(f'<header class="title"><p class="kicker">Earful executive report</p><h1>{escape(r.watchlist_name)}</h1>'
               f'<p class="period" data-from="{escape(r.period.lo.isoformat())}" data-to="{escape(r.period.hi.isoformat())}">'
               f"<strong>{escape(r.title)}</strong><br>{escape(r.period_label)}</p>"
               f"<p>Compared with the previous period, {escape(r.previous_label)}.<br>"
               f"Watchlist <code>{escape(r.watchlist_id)}</code>{' (' + escape(r.watchlist_kind) + ')' if r.watchlist_kind else ''}; "
               f"{count_text(r.mentions)} in the period. Generated {escape(_when(r))}.<br>"
               f"{_a(r.view, 'Open this period in the dashboard')}</p></header>")
    if not r.exact_view:
        out.append('<p class="muted">The dashboard shows periods of 6 h, 24 h, 7 d, 30 d or 90 d: this one is not one of them, '
                   "so its figures link to the mentions of exactly this period and to the dashboard view that holds its end.</p>")

    # Headline figures.
    cards = "".join(f'<div class="figure" data-figure="{escape(f.name)}"><div class="d">{escape(f.label)}</div>'
                    f'<div class="v">{_a(f.href, f.display)}</div>'
                    f'<div class="d">{escape(f.delta)} vs previous ({escape(f.previous_display)})</div></div>' for f in r.figures)
    out.append(f'<section id="figures"><h2>Headline figures</h2><div class="figures">{cards}</div></section>')

    # KPIs.
    kpi_rows = [[escape(k.label), escape(k.value), escape(k.target),
                 f'<span class="status-{escape(k.status.replace(" ", "-"))}">{escape(k.status)}</span>', escape(k.trend),
                 _a(k.href, "dashboard") if k.href else ""] for k in r.kpis]
    note = f'<p class="muted">{escape(r.kpi_note)}</p>' if r.kpi_note else ""
    out.append('<section id="kpis"><h2>KPIs against targets</h2>'
               + (_table(["KPI", "this period", "target", "status", "trend", ""], kpi_rows, r.kpi_note) if r.kpis else "")
               + note + "</section>")

    # Charts.
    figs = "".join(f'<figure data-chart="{escape(c.key)}"><h3>Chart {i}: {escape(c.title)}</h3>{c.svg}<figcaption>'
                   f"{escape(c.caption)} {_a(c.href, 'Open in the dashboard')}</figcaption></figure>"
                   for i, c in enumerate(r.charts, 1))
    out.append(f'<section id="charts"><h2>Charts</h2><div class="charts">{figs}</div></section>')

    # Share of voice.
    out.append('<section id="share"><h2>Share of voice</h2>' + _table(
        ["watchlist", "mentions", "share", "change"],
        [[_a(s["href"], s["name"]), count_text(s["mentions"]), escape(s["display"]), escape(s["delta"])] for s in r.share],
        "No compared watchlist has mentions in this period.", frozenset({1, 2, 3})) + "</section>")

    # Top risks.
    risk_rows = []
    for k in r.risks:
        loud = k["loudest"]
        post = "" if loud is None else (
            f'<blockquote>{escape(_clip(loud["text"], 280))}</blockquote><span class="muted">'
            f'{escape("@" + loud["author"] if loud["author"] else loud["source"])}'
            f'{", " + count_text(loud["followers"], "followers") if loud["followers"] else ""} · {_a(loud["href"], "open")}</span>')
        risk_rows.append([_a(k["href"], k["label"]), count_text(k["mentions"]), count_text(k["previous"]), escape(k["delta"]), post])
    out.append('<section id="risks"><h2>Top risks</h2>' + _table(
        ["risk", "mentions", "previous", "change", "loudest post (most followed author)"], risk_rows,
        "No mention carried a risk tag in this period or the previous one.", frozenset({1, 2, 3})) + "</section>")

    # Alerts.
    by_rule = _table(["rule", "alerts", "highest severity", "first", "first alert's summary"],
                     [[escape(x["rule"]), count_text(x["alerts"]), escape(x["severity"]), escape(x["first"]), escape(x["summary"])]
                      for x in r.alert_rules], "No alert fired in this period.", frozenset({1}))
    listed = (f"<h3>The notable alerts ({len(r.alerts)} of {r.alerts_total}: the rarest rules and highest severities)</h3>"
              + _table(["started", "severity", "rule", "summary"],
                       [[escape(a["when"]), escape(a["severity"]), escape(a["rule"]), _a(a["href"], a["summary"])] for a in r.alerts],
                       "") if r.alerts else "")
    out.append(f'<section id="alerts"><h2>Alerts of the period</h2><p>{count_text(r.alerts_total)} alerts started in this period.</p>'
               + by_rule + listed + "</section>")

    # Campaigns.
    camps = []
    for c in r.campaigns:
        rows = [[escape(x["label"]), escape(x["campaign"]), escape(x["baseline"]), escape(x["change"]), escape(x["interval"]),
                 escape(x["verdict"])] for x in c["lifts"]]
        chart = c["chart"]
        camps.append(f'<h3 data-campaign="{escape(c["id"])}">{_a(c["href"], c["name"])} <span class="muted">({escape(c["state"])})</span></h3>'
                     f'<p class="muted">Since launch: {escape(c["window"])}; baseline: {escape(c["baseline"])}.</p>'
                     + _table(["figure", "campaign", "baseline", "change", "95 % interval", "verdict"], rows, "Not started yet.",
                              frozenset({1, 2, 3}))
                     + "".join(f'<p class="muted">{escape(n)}</p>' for n in c["notes"])
                     + (f'<figure data-chart="{escape(chart.key)}" class="campaign-chart">{chart.svg}'
                        f"<figcaption>{escape(chart.caption)}</figcaption></figure>" if chart else ""))
    out.append('<section id="campaigns"><h2>Campaign lift</h2>' + "".join(camps)
               + (f'<p class="muted">{escape(r.campaign_note)}</p>' if r.campaign_note else "") + "</section>")

    # Entities and hashtags.
    def entity_rows(items: list[dict[str, Any]]) -> list[list[str]]:
        return [[_a(e["href"], e["text"]), escape(e["type"]), count_text(e["mentions"]), count_text(e["previous"]), escape(e["delta"])]
                for e in items]

    out.append(f'<section id="entities"><h2>Top entities</h2><p class="muted">Whole UTC days: {escape(r.entity_days)}</p>'
               + _table(["entity", "type", "mentions", "previous", "change"], entity_rows(r.entities), "No entity in this period.",
                        frozenset({2, 3, 4}))
               + "<h2>Top hashtags</h2>"
               + _table(["hashtag", "type", "mentions", "previous", "change"], entity_rows(r.hashtags), "No hashtag in this period.",
                        frozenset({2, 3, 4})) + "</section>")

    # Questions.
    q = r.questions
    out.append(f'<section id="questions"><h2>Customer questions</h2><p>{q.get("asked", 0)} asked, {q.get("answered", 0)} answered, '
               f'{q.get("open", 0)} still open; first reply median {escape(str(q.get("median_first_reply")))}, '
               f'p90 {escape(str(q.get("p90_first_reply")))}'
               + (f'; SLA {escape(str(q["sla"]))}, breached {q["sla_breached"]}' if q.get("sla") else "")
               + f'. {_a(r.view, "Open questions in the dashboard")}</p></section>')

    out.append(f"<footer>Every figure links to the dashboard view that shows it and to the mentions behind it. "
               f"Made again with <code>{escape(command_line(r))}</code>.</footer></main></body></html>\n")
    return "".join(out)


def count_text(n: Any, unit: str = "") -> str:
    text = f"{round(n or 0):,}"
    return escape(f"{text} {unit}".strip() if unit else text)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- PDF ----------------------------------------------------------------------------------------------------

#: Characters Windows-1252 lacks that the report prints, with what stands for them in the built-in fonts.
_PLAIN = str.maketrans({"−": "-", "▼": "v", "→": "->", "≈": "~", "≥": ">=", "≤": "<=", "\u00a0": " "})
BASE_FONT = "helvetica"
TTF_FAMILY = "earful"
BLUE = (24, 73, 169)
INK = (29, 35, 48)
MUTED = (102, 112, 133)


#: fpdf2 draws an SVG's text with the built-in fonts' Latin-1 widths only.
_LATIN1 = str.maketrans({"–": "-", "—": "-", "…": "...", "“": '"', "”": '"', "‘": "'", "’": "'", "•": "*", "€": "EUR"})


def plain(text: str, charset: str = "cp1252") -> str:
    """`text` in what the built-in PDF fonts hold (Windows-1252; Latin-1 in a chart), others as '?'."""
    text = str(text).translate(_PLAIN)
    if charset != "cp1252":
        text = text.translate(_LATIN1)
    return text.encode(charset, "replace").decode(charset)


class ReportPdf(FPDF):
    """A4 pages with a footer naming the watchlist, the period and the page."""

    def __init__(self, report: Report, fonts: Sequence[Path]) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.report = report
        self.unicode = bool(fonts)
        if fonts:
            for i, path in enumerate(fonts):
                family = TTF_FAMILY if i == 0 else f"{TTF_FAMILY}{i}"
                for style in ("", "B", "I"):
                    self.add_font(family, style, str(path))
            if len(fonts) > 1:
                self.set_fallback_fonts([f"{TTF_FAMILY}{i}" for i in range(1, len(fonts))])
            self.font_name = TTF_FAMILY
        else:
            self.set_doc_option("core_fonts_encoding", "windows-1252")
            self.font_name = BASE_FONT
        self.set_auto_page_break(True, margin=18)
        self.set_margins(16, 16, 16)
        self.set_title(self.t(f"{report.watchlist_name}: {report.title}"))
        self.set_author("Earful")
        self.set_creator("earful report")
        self.set_subject(self.t(f"Executive report, {report.period_label}"))
        self.set_creation_date(report.generated_at)

    def t(self, text: Any) -> str:
        return str(text) if self.unicode else plain(str(text))

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.font_name, "", 8)
        self.set_text_color(*MUTED)
        self.cell(0, 5, self.t(f"Earful report · {self.report.watchlist_name} · {self.report.title}"), align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"page {self.page_no()} of {{nb}}", align="R")

    def heading(self, text: str, size: float = 15, section: bool = True, level: int = 0) -> None:
        if section:
            self.start_section(self.t(text), level=level)
        self.set_font(self.font_name, "B", size)
        self.set_text_color(*INK)
        self.multi_cell(0, size * 0.5, self.t(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(2)

    def para(self, text: str, size: float = 10, color: tuple[int, int, int] = INK, link: str = "") -> None:
        self.set_font(self.font_name, "", size)
        self.set_text_color(*(BLUE if link else color))
        self.multi_cell(0, size * 0.5, self.t(text), link=link or None, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)

    def table_of(self, head: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]], widths: Sequence[float],
                 empty: str, numeric: frozenset[int] = frozenset()) -> None:
        """Rows of (text, link) cells; `empty` when there are none."""
        if not rows:
            self.para(empty, 9, MUTED)
            self.ln(3)
            return
        self.set_font(self.font_name, "", 8.5)
        self.set_text_color(*INK)
        with self.table(col_widths=tuple(widths), text_align="LEFT", line_height=4.4, padding=1.2,
                        headings_style=FontFace(emphasis="BOLD", color=MUTED), borders_layout="HORIZONTAL_LINES") as table:
            row = table.row()
            for i, h in enumerate(head):
                row.cell(self.t(h), align="RIGHT" if i in numeric else "LEFT")
            for cells in rows:
                row = table.row()
                for i, (text, link) in enumerate(cells):
                    style = FontFace(color=BLUE) if link else None
                    row.cell(self.t(text), align="RIGHT" if i in numeric else "LEFT", link=link or None, style=style)
        self.ln(4)

    def chart(self, chart: Chart, number: int, level: int = 1) -> None:
        svg = pdf_svg(chart.svg, TTF_FAMILY if self.unicode else BASE_FONT, self.unicode)
        width = self.epw
        height = width * _svg_ratio(chart.svg)
        if self.get_y() + height + 16 > self.page_break_trigger:
            self.add_page()
        self.start_section(self.t(f"Chart {number}: {chart.title}"), level=level)
        self.set_font(self.font_name, "B", 11)
        self.cell(0, 6, self.t(f"Chart {number}: {chart.title}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        top = self.get_y()
        self.image(io.BytesIO(svg.encode("utf-8")), x=self.l_margin, y=top, w=width, h=height)
        self.link(self.l_margin, top, width, height, chart.href)
        self.set_y(top + height + 1)
        self.set_font(self.font_name, "", 8.5)
        self.set_text_color(*MUTED)
        self.multi_cell(0, 4.2, self.t(chart.caption), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*BLUE)
        self.cell(0, 4.2, self.t("Open in the dashboard"), link=chart.href, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)
        self.ln(5)


def _svg_ratio(svg: str) -> float:
    root = ET.fromstring(svg)
    _, _, w, h = (float(v) for v in root.attrib["viewBox"].split())
    return h / w


def pdf_svg(svg: str, family: str, unicode: bool) -> str:
    """A dashboard chart as fpdf2 draws it: links unwrapped (fpdf2 skips `<a>` and what it holds;
    the PDF links the whole chart instead), tooltips dropped, text in the PDF's font."""
    root = ET.fromstring(svg)

    def unwrap(parent: ET.Element) -> None:
        for child in list(parent):
            unwrap(child)
        i = 0
        while i < len(parent):
            child = parent[i]
            if child.tag == _SVG + "title":
                parent.remove(child)
                continue
            if child.tag == _SVG + "a":
                parent.remove(child)
                for j, grandchild in enumerate(list(child)):
                    parent.insert(i + j, grandchild)
                continue
            i += 1

    unwrap(root)
    root.set("font-family", family)
    if not unicode:
        for el in root.iter():
            if el.text:
                el.text = plain(el.text, "latin-1")
    for name in ("role", "data-chart", "aria-label", "class"):
        root.attrib.pop(name, None)
    return ET.tostring(root, encoding="unicode")


def render_pdf(report: Report, fonts: Sequence[Path] = ()) -> bytes:
    """The report as a PDF: a title page, the figures and KPIs, the charts, the lists."""
    r = report
    pdf = ReportPdf(r, fonts)
    pdf.alias_nb_pages()

    # Title page.
    pdf.add_page()
    pdf.start_section(pdf.t(r.watchlist_name))
    pdf.ln(40)
    pdf.para("EARFUL EXECUTIVE REPORT", 10, MUTED)
    pdf.ln(2)
    pdf.set_font(pdf.font_name, "B", 30)
    pdf.multi_cell(0, 13, pdf.t(r.watchlist_name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    pdf.set_font(pdf.font_name, "B", 15)
    pdf.multi_cell(0, 8, pdf.t(r.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.para(f"Period: {r.period_label}", 11)
    pdf.para(f"Compared with: {r.previous_label}", 11)
    pdf.para(f"Watchlist: {r.watchlist_id}" + (f" ({r.watchlist_kind})" if r.watchlist_kind else ""), 11)
    pdf.para(f"Generated: {_when(r)}", 11)
    pdf.ln(6)
    pdf.para("Open this period in the dashboard", 11, link=r.view)
    pdf.ln(10)
    glance = {f.name: f for f in r.figures}
    for name in ("mentions", "net_sentiment", "share_of_voice", "alerts"):
        f = glance.get(name)
        if f is not None:
            pdf.para(f"{f.label}: {f.display} ({f.delta} vs previous period)", 12, link=f.href)
    if not r.exact_view:
        pdf.ln(6)
        pdf.para("The dashboard shows periods of 6 h, 24 h, 7 d, 30 d or 90 d: this one is not one of them, so its figures "
                 "link to the mentions of exactly this period and to the dashboard view that holds its end.", 9, MUTED)

    # Figures and KPIs.
    pdf.add_page()
    pdf.heading("Headline figures")
    pdf.table_of(["figure", "this period", "previous period", "change"],
                 [[(f.label, ""), (f.display, f.href), (f.previous_display, ""), (f.delta, "")] for f in r.figures],
                 (58, 50, 44, 26), "No figures.", frozenset({3}))
    pdf.heading("KPIs against targets")
    if r.kpis:
        pdf.table_of(["KPI", "this period", "target", "status", "trend"],
                     [[(k.label, ""), (k.value, k.href), (k.target, ""), (k.status, ""), (k.trend, "")] for k in r.kpis],
                     (44, 30, 28, 28, 48), r.kpi_note)
    if r.kpi_note:
        pdf.para(r.kpi_note, 9, MUTED)
        pdf.ln(3)
    pdf.heading("Share of voice")
    pdf.table_of(["watchlist", "mentions", "share", "change"],
                 [[(s["name"], s["href"]), (f"{s['mentions']:,}", ""), (s["display"], ""), (s["delta"], "")] for s in r.share],
                 (80, 34, 32, 32), "No compared watchlist has mentions in this period.", frozenset({1, 2, 3}))

    # Charts.
    pdf.add_page()
    pdf.heading("Charts")
    for i, chart in enumerate(r.charts, 1):
        pdf.chart(chart, i)

    # Risks, alerts, campaigns, entities, questions.
    pdf.add_page()
    pdf.heading("Top risks")
    rows = []
    for k in r.risks:
        loud = k["loudest"]
        post = "" if loud is None else (f'"{_clip(loud["text"], 220)}" - ' + ("@" + loud["author"] if loud["author"] else loud["source"])
                                        + (f", {loud['followers']:,} followers" if loud["followers"] else ""))
        rows.append([(k["label"], k["href"]), (f"{k['mentions']:,}", ""), (f"{k['previous']:,}", ""), (k["delta"], ""),
                     (post, loud["href"] if loud else "")])
    pdf.table_of(["risk", "mentions", "previous", "change", "loudest post (most followed author)"], rows, (30, 18, 18, 16, 96),
                 "No mention carried a risk tag in this period or the previous one.", frozenset({1, 2, 3}))
    pdf.heading("Alerts of the period")
    pdf.para(f"{r.alerts_total:,} alerts started in this period.", 9.5)
    pdf.ln(1)
    pdf.table_of(["rule", "alerts", "highest severity", "first", "first alert's summary"],
                 [[(x["rule"], ""), (f"{x['alerts']:,}", ""), (x["severity"], ""), (x["first"], ""), (_clip(x["summary"], 200), "")]
                  for x in r.alert_rules], (30, 14, 22, 30, 82), "No alert fired in this period.", frozenset({1}))
    if r.alerts:
        pdf.para(f"The notable alerts ({len(r.alerts)} of {r.alerts_total:,}: the rarest rules and highest severities)", 9.5)
        pdf.ln(1)
        pdf.table_of(["started", "severity", "rule", "summary"],
                     [[(a["when"], ""), (a["severity"], ""), (a["rule"], ""), (_clip(a["summary"], 300), a["href"])] for a in r.alerts],
                     (30, 18, 28, 102), "")
    pdf.heading("Campaign lift")
    for c in r.campaigns:
        pdf.heading(f"{c['name']} ({c['state']})", 11.5, level=1)
        pdf.para(f"Since launch: {c['window']}; baseline: {c['baseline']}.", 8.5, MUTED)
        pdf.para("Open the campaign in the dashboard", 8.5, link=c["href"])
        pdf.ln(1)
        pdf.table_of(["figure", "campaign", "baseline", "change", "95 % interval", "verdict"],
                     [[(x["label"], ""), (x["campaign"], ""), (x["baseline"], ""), (x["change"], ""), (x["interval"], ""),
                       (x["verdict"], "")] for x in c["lifts"]], (32, 24, 24, 30, 38, 30), "Not started yet.", frozenset({1, 2, 3}))
        for note in c["notes"]:
            pdf.para(note, 8.5, MUTED)
        if c["chart"] is not None:
            pdf.chart(c["chart"], len(r.charts) + 1 + r.campaigns.index(c), level=2)
    if r.campaign_note:
        pdf.para(r.campaign_note, 9, MUTED)
        pdf.ln(3)
    pdf.heading("Top entities")
    pdf.para(f"Whole UTC days: {r.entity_days}", 8.5, MUTED)
    pdf.ln(1)
    for title, items in (("entities", r.entities), ("hashtags", r.hashtags)):
        pdf.table_of([title[:-1] if title == "entities" else "hashtag", "type", "mentions", "previous", "change"],
                     [[(e["text"], e["href"]), (e["type"], ""), (f"{e['mentions']:,}", ""), (f"{e['previous']:,}", ""),
                       (e["delta"], "")] for e in items], (70, 30, 26, 26, 26), f"No {title} in this period.", frozenset({2, 3, 4}))
    pdf.heading("Customer questions")
    q = r.questions
    pdf.para(f"{q.get('asked', 0)} asked, {q.get('answered', 0)} answered, {q.get('open', 0)} still open; first reply median "
             f"{q.get('median_first_reply')}, p90 {q.get('p90_first_reply')}"
             + (f"; SLA {q['sla']}, breached {q['sla_breached']}" if q.get("sla") else "") + ".")
    pdf.para("Open questions in the dashboard", link=r.view)
    pdf.ln(6)
    pdf.para("Every figure links to the dashboard view that shows it and to the mentions behind it. Made again with: "
             + command_line(r), 8.5, MUTED)
    return bytes(pdf.output())


def render(report: Report, fmt: str, fonts: Sequence[Path] = ()) -> bytes:
    """The report in `fmt` (pdf or html) as bytes."""
    if fmt == "pdf":
        return render_pdf(report, fonts)
    if fmt == "html":
        return render_html(report).encode("utf-8")
    raise ValueError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")

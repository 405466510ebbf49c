"""The dashboard's charts as SVG, rendered on the server from plain numbers.

Why on the server: the charts are pure functions of the query results, so they are tested like
any other function (parse the output, count the bars), the page needs no charting library (nothing
to vendor, nothing from a CDN, works offline), and every text that reaches a chart (a watchlist
name, an entity, a tag) is escaped in one place, `_text`/`_attr`. The output is well-formed XML
(characters XML cannot hold are dropped), because the page reads it with a strict XML parser and
never as HTML.

Every mark that stands for mentions (a bar segment, a point, an alert marker) is a link (`<a href>`)
to the list of the mentions behind it, and carries a `<title>` the browser shows as a tooltip.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["Bar", "Column", "Interval", "Line", "Marker", "Segment", "hbars", "intervals", "lines", "nice_max",
           "stacked_columns"]

SVG_NS = "http://www.w3.org/2000/svg"
WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 52
FONT = 10
# Characters XML 1.0 cannot hold, even escaped (C0 controls but tab/newline/CR, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(value: object) -> str:
    return _NOT_XML.sub("", str(value))


def _text(value: object) -> str:
    """Character data, escaped."""
    return escape(_clean(value), quote=False)


def _attr(value: object) -> str:
    """An attribute value, quoted and escaped."""
    return '"' + escape(_clean(value), quote=True) + '"'


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Segment:
    """A part of a column: `value` mentions of one series, linking to them."""

    series: str
    value: float
    color: str
    href: str | None = None
    title: str = ""


@dataclass(frozen=True)
class Column:
    """One time bucket: its axis label and its stacked segments (bottom first)."""

    label: str
    segments: Sequence[Segment]

    @property
    def total(self) -> float:
        return sum(s.value for s in self.segments)


@dataclass(frozen=True)
class Marker:
    """A vertical mark over column `index` (an alert), linking to what it is about."""

    index: int
    label: str
    color: str = "#b42318"
    href: str | None = None


@dataclass(frozen=True)
class Line:
    """One series of a line chart: a value per column (None: no point), each point linking."""

    series: str
    color: str
    values: Sequence[float | None]
    hrefs: Sequence[str | None] = ()
    titles: Sequence[str] = ()
    emphasis: bool = False


@dataclass(frozen=True)
class Bar:
    """A horizontal bar: `value` this period, `previous` the period before (a tick), linking."""

    label: str
    value: float
    previous: float | None = None
    href: str | None = None
    color: str = "#2e6be6"
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^k at least `value` (at least 1): a readable top of the y axis."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _open(title: str, kind: str, height: int = HEIGHT) -> list[str]:
    # A named group, not an img: an img's content is hidden from assistive technology, and the marks are links.
    return [(f'<svg xmlns={_attr(SVG_NS)} viewBox="0 0 {WIDTH} {height}" role="group" class="chart"'
             f' data-chart={_attr(kind)} aria-label={_attr(title)} font-size="{FONT}" font-family="system-ui, sans-serif">'),
            f"<title>{_text(title)}</title>"]


def _link(href: str | None, inner: str) -> str:
    return f"<a href={_attr(href)}>{inner}</a>" if href else inner


def _y_axis(top: float, percent: bool = False) -> list[str]:
    out = []
    plot_h = HEIGHT - TOP - BOTTOM
    for frac in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - frac)
        value = top * frac
        label = f"{value:.0%}" if percent else (_num(value) if value < 1000 else f"{value / 1000:g}k")
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y)}" y2="{_num(y)}" stroke="#e4e7ec"/>')
        out.append(f'<text x="{LEFT - 4}" y="{_num(y + 3)}" text-anchor="end" fill="#667085">{_text(label)}</text>')
    return out


def _x_labels(labels: Sequence[str], x_of: list[float]) -> list[str]:
    """At most ~6 labels, evenly spaced, so they never overlap."""
    if not labels:
        return []
    every = max(1, math.ceil(len(labels) / 6))
    return [f'<text x="{_num(x_of[i])}" y="{HEIGHT - BOTTOM + 13}" text-anchor="middle" fill="#667085">{_text(labels[i])}</text>'
            for i in range(0, len(labels), every)]


def _legend(entries: Sequence[tuple[str, str]], y: float) -> list[str]:
    """Swatches and names in up to two rows ending at `y` (the rest dropped: a chart's title says what it shows)."""
    out, x, row = [], float(LEFT), 0
    for name, color in entries:
        width = 14 + 5.5 * len(name)
        if x + width > WIDTH - RIGHT:
            if row == 1:
                break
            x, row = float(LEFT), 1
        ry = y - 13 + 13 * row
        out.append(f'<g class="legend"><rect x="{_num(x)}" y="{_num(ry - 8)}" width="9" height="9" fill={_attr(color)}/>'
                   f'<text x="{_num(x + 12)}" y="{_num(ry)}" fill="#344054">{_text(name)}</text></g>')
        x += width + 8
    return out


def stacked_columns(columns: Sequence[Column], *, title: str, legend: Sequence[tuple[str, str]] = (),
                    markers: Sequence[Marker] = (), kind: str = "columns") -> str:
    """Columns of stacked segments over time (volume by sentiment, tags), alert markers on top."""
    out = _open(title, kind)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_max(max((c.total for c in columns), default=0))
    out += _y_axis(top)
    n = max(1, len(columns))
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.8)
    x_mid = [LEFT + slot * (i + 0.5) for i in range(len(columns))]
    for i, column in enumerate(columns):
        y: float = TOP + plot_h
        for s in column.segments:
            if s.value <= 0:
                continue
            h = plot_h * s.value / top
            y -= h
            rect = (f'<rect class="bar" x="{_num(x_mid[i] - bar_w / 2)}" y="{_num(y)}" width="{_num(bar_w)}"'
                    f' height="{_num(max(h, 0.5))}" fill={_attr(s.color)} data-series={_attr(s.series)}'
                    f' data-value="{_num(s.value)}"><title>{_text(s.title)}</title></rect>')
            out.append(_link(s.href, rect))
    for m in markers:
        if 0 <= m.index < len(columns):
            x = x_mid[m.index]
            mark = (f'<g class="marker"><line x1="{_num(x)}" x2="{_num(x)}" y1="{TOP}" y2="{TOP + plot_h}"'
                    f' stroke={_attr(m.color)} stroke-dasharray="3 2"/>'
                    f'<path d="M{_num(x - 5)},{TOP} L{_num(x + 5)},{TOP} L{_num(x)},{TOP + 7} Z" fill={_attr(m.color)}/>'
                    f"<title>{_text(m.label)}</title></g>")
            out.append(_link(m.href, mark))
    out += _x_labels([c.label for c in columns], x_mid)
    out += _legend(legend, HEIGHT - 6)
    if not any(c.total for c in columns):
        out.append(f'<text x="{WIDTH / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" fill="#98a2b3">no mentions in this period</text>')
    out.append("</svg>")
    return "".join(out)


def lines(labels: Sequence[str], series: Sequence[Line], *, title: str, percent: bool = True, kind: str = "lines") -> str:
    """One line per series over time (share of voice), a linked point per value."""
    out = _open(title, kind)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [v for s in series for v in s.values if v is not None]
    top = 1.0 if percent else nice_max(max(values, default=0))
    out += _y_axis(top, percent)
    n = len(labels)
    x_of = [LEFT + (plot_w * (i + 0.5) / n) for i in range(n)] if n else []
    for s in series:
        pts = [(x_of[i], TOP + plot_h * (1 - v / top)) for i, v in enumerate(s.values[:n]) if v is not None]
        if len(pts) > 1:
            d = " ".join(f"{'M' if j == 0 else 'L'}{_num(x)},{_num(y)}" for j, (x, y) in enumerate(pts))
            out.append(f'<path d="{d}" fill="none" stroke={_attr(s.color)} stroke-width="{3 if s.emphasis else 1.5}"'
                       f' data-series={_attr(s.series)}/>')
        for i, v in enumerate(s.values[:n]):
            if v is None:
                continue
            href = s.hrefs[i] if i < len(s.hrefs) else None
            tip = s.titles[i] if i < len(s.titles) else f"{s.series}: {v}"
            dot = (f'<circle class="point" cx="{_num(x_of[i])}" cy="{_num(TOP + plot_h * (1 - v / top))}"'
                   f' r="{3.5 if s.emphasis else 2.5}" fill={_attr(s.color)} data-series={_attr(s.series)}'
                   f' data-value="{v:.4g}"><title>{_text(tip)}</title></circle>')
            out.append(_link(href, dot))
    out += _x_labels(labels, x_of)
    out += _legend([(s.series, s.color) for s in series], HEIGHT - 6)
    if not values:
        out.append(f'<text x="{WIDTH / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" fill="#98a2b3">no mentions in this period</text>')
    out.append("</svg>")
    return "".join(out)


def hbars(bars: Sequence[Bar], *, title: str, kind: str = "bars") -> str:
    """Horizontal bars, largest first as given, the previous period's value as a dark tick."""
    row, label_w = 22, 110
    height = TOP + row * max(1, len(bars)) + 6
    out = _open(title, kind, height)
    plot_w = WIDTH - label_w - RIGHT - 70
    top = nice_max(max([b.value for b in bars] + [b.previous or 0 for b in bars], default=0))
    for i, b in enumerate(bars):
        y = TOP + i * row
        w = plot_w * b.value / top
        label = b.label if len(b.label) <= 18 else b.label[:17] + "…"
        tip = f"{b.label}: {_num(b.value)}" + (f" (previous period {_num(b.previous)})" if b.previous is not None else "")
        inner = (f'<g class="hbar" data-label={_attr(b.label)} data-value="{_num(b.value)}">'
                 f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" fill="#344054">{_text(label)}</text>'
                 f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{_num(max(w, 1))}" height="14" fill={_attr(b.color)}/>')
        if b.previous is not None:
            px = label_w + plot_w * b.previous / top
            inner += f'<line x1="{_num(px)}" x2="{_num(px)}" y1="{y + 1}" y2="{y + 19}" stroke="#1d2330" stroke-width="2"/>'
        end = max(w, plot_w * (b.previous or 0) / top, 1)
        inner += (f'<text x="{_num(label_w + end + 4)}" y="{y + 13}" fill="#344054">{_text(_num(b.value))}'
                  f'{(" " + _text(b.note)) if b.note else ""}</text><title>{_text(tip)}</title></g>')
        out.append(_link(b.href, inner))
    if not bars:
        out.append(f'<text x="{WIDTH / 2}" y="{TOP + 12}" text-anchor="middle" fill="#98a2b3">no mentions in this period</text>')
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class Interval:
    """One row of an interval chart: an estimate and its confidence interval, on a scale where
    `null` means no change (e.g. a log ratio with null 0, or a difference); None: not estimable."""

    label: str
    estimate: float | None
    low: float | None
    high: float | None
    null: float = 0.0
    text: str = ""  # what the row says, e.g. "×2.9 (×2.4 to ×3.5)"
    color: str = "#2e6be6"
    href: str | None = None


def intervals(rows: Sequence[Interval], *, title: str, kind: str = "intervals") -> str:
    """A forest plot: per row, the interval as a bar, the estimate as a dot and the no-change line;
    each row has its own scale (rows measure different things), symmetric around no change."""
    row, label_w, text_w = 34, 100, 200
    height = TOP + row * max(1, len(rows)) + 4
    out = _open(title, kind, height)
    x0, x1 = label_w, WIDTH - RIGHT - text_w
    mid = (x0 + x1) / 2
    for i, r in enumerate(rows):
        y = TOP + i * row + row / 2
        parts = [f'<g class="interval" data-label={_attr(r.label)}'
                 + (f' data-estimate="{r.estimate:.4g}"' if r.estimate is not None else "")
                 + (f' data-low="{r.low:.4g}" data-high="{r.high:.4g}"' if r.low is not None and r.high is not None else "")
                 + ">",
                 f'<text x="{label_w - 6}" y="{_num(y + 4)}" text-anchor="end" fill="#344054">{_text(r.label)}</text>',
                 (f'<line class="null" x1="{_num(mid)}" x2="{_num(mid)}" y1="{_num(y - 11)}" y2="{_num(y + 11)}"'
                  ' stroke="#98a2b3" stroke-dasharray="3 2"/>')]
        ends = [v - r.null for v in (r.estimate, r.low, r.high) if v is not None and math.isfinite(v)]
        span = max([abs(v) for v in ends] + [1e-9]) * 1.15

        def x_of(v: float, span: float = span, r: Interval = r) -> float:
            return mid + (x1 - x0) / 2 * max(-1.0, min(1.0, (v - r.null) / span))

        if r.low is not None and r.high is not None:
            a, b = x_of(r.low), x_of(r.high)
            parts.append(f'<rect class="ci" x="{_num(min(a, b))}" y="{_num(y - 4)}" width="{_num(max(abs(b - a), 1))}"'
                         f' height="8" rx="3" fill={_attr(r.color)} fill-opacity="0.35"/>')
        if r.estimate is not None:
            parts.append(f'<circle class="estimate" cx="{_num(x_of(r.estimate))}" cy="{_num(y)}" r="4.5" fill={_attr(r.color)}/>')
        parts.append(f'<text x="{x1 + 8}" y="{_num(y + 4)}" fill="#344054">{_text(r.text)}</text>')
        parts.append(f"<title>{_text(r.label + ': ' + r.text)}</title></g>")
        out.append(_link(r.href, "".join(parts)))
    if not rows:
        out.append(f'<text x="{WIDTH / 2}" y="{TOP + 12}" text-anchor="middle" fill="#98a2b3">nothing to compare yet</text>')
    out.append("</svg>")
    return "".join(out)

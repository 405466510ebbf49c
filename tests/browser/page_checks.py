"""Checks of a page as a person would meet it, run inside the real Chromium: axe-core's WCAG 2 A/AA
rules (the axe.min.js that the pinned axe-playwright-python ships, put into the page) and the layout
of a drawn screen (no sideways scrolling, charts with a size, text inside its box) with a screenshot
that is not blank. The checks return what they found, so a test can name it in its message."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from axe_playwright_python.base import AXE_SCRIPT
from PIL import Image

# Every WCAG 2.0/2.1/2.2 level A and AA rule of axe-core; its best-practice rules are left out.
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa")
BLOCKING = ("serious", "critical")


@dataclass(frozen=True)
class Violation:
    """One failed axe rule of impact serious or critical, with the elements that fail it."""

    rule: str
    impact: str
    help: str
    targets: tuple[str, ...]
    fix: str

    def describe(self) -> str:
        shown = ", ".join(self.targets[:6]) + (f" (+{len(self.targets) - 6} more)" if len(self.targets) > 6 else "")
        return f"{self.rule} ({self.impact}): {self.help} at {shown}; {self.fix}"


def blocking(results: dict[str, Any]) -> list[Violation]:
    """The serious and critical violations of an axe result (`axe.run`'s answer)."""
    out = []
    for v in results.get("violations", []):
        if v.get("impact") not in BLOCKING:
            continue
        nodes = v.get("nodes", [])
        targets = tuple(" ".join(str(t) for t in node.get("target", [])) for node in nodes)
        first = nodes[0] if nodes else {}
        fix = "; ".join(c["message"] for c in first.get("any", []) + first.get("all", []) + first.get("none", []))
        out.append(Violation(v["id"], v["impact"], v.get("help", ""), targets, fix))
    return out


async def axe(page: Any, include: list[str] | None = None) -> list[Violation]:
    """Run axe-core in `page` (on the elements matching `include`, or the whole document) and
    return its serious and critical WCAG 2 A/AA violations."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(AXE_SCRIPT)
    options = {"runOnly": {"type": "tag", "values": list(WCAG_TAGS)}, "resultTypes": ["violations"]}
    context = {"include": [[s] for s in include]} if include else None
    results = await page.evaluate("([context, options]) => axe.run(context || document, options)", [context, options])
    return blocking(results)


# --- the drawn screen -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Picture:
    """What a screenshot holds: its size, how many colours, how much of it is not the background."""

    width: int
    height: int
    colours: int
    drawn: float  # the share of pixels that differ from the most common colour


def picture(png: bytes) -> Picture:
    """Count a PNG's colours and its pixels that are not the background (its most common colour)."""
    img = Image.open(BytesIO(png)).convert("RGB")
    counts = img.getcolors(maxcolors=img.width * img.height) or []
    background = max(n for n, _ in counts)
    return Picture(img.width, img.height, len(counts), 1 - background / (img.width * img.height))


def blank_reasons(p: Picture, *, min_colours: int = 64, min_drawn: float = 0.04) -> list[str]:
    """Why a screenshot looks blank (empty when it does not): too few colours (text is anti-aliased,
    charts have a palette) or almost every pixel the background."""
    reasons = []
    if p.colours < min_colours:
        reasons.append(f"only {p.colours} colours (< {min_colours})")
    if p.drawn < min_drawn:
        reasons.append(f"only {100 * p.drawn:.1f} % of the pixels are not the background (< {100 * min_drawn:.0f} %)")
    return reasons


# In the page: elements of `selectors` that are shown and whose content is wider than their box
# (scrollWidth > clientWidth, unless they scroll on purpose), or that stick out of the box of
# their `container` (unless an element between them scrolls sideways); every chart SVG shown with
# its size; the document's scroll width against the viewport's.
_LAYOUT = r"""
([selectors, container, scope]) => {
  const shown = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden";
  const scrolls = (e) => /auto|scroll/.test(getComputedStyle(e).overflowX);
  const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
    (e.className && typeof e.className === "string" ? "." + e.className.trim().split(/\s+/).join(".") : "") +
    ` "${(e.textContent || "").trim().slice(0, 40)}"`;
  const root = scope ? document.querySelector(scope) : document;
  const overflowing = [];
  let checked = 0;
  for (const e of root.querySelectorAll(selectors)) {
    if (!shown(e)) continue;
    checked += 1;
    if (e.scrollWidth > e.clientWidth + 1 && !scrolls(e) && e.clientWidth > 0)
      overflowing.push(`${name(e)}: content ${e.scrollWidth}px wide in a ${e.clientWidth}px box`);
    const box = e.closest(container);
    if (!box || box === e) continue;
    let between = e.parentElement, clipped = false;
    while (between && between !== box) { if (scrolls(between)) { clipped = true; break; } between = between.parentElement; }
    if (clipped) continue;
    const r = e.getBoundingClientRect(), b = box.getBoundingClientRect();
    if (r.left < b.left - 1 || r.right > b.right + 1)
      overflowing.push(`${name(e)}: ${Math.round(r.left)}–${Math.round(r.right)}px outside its ${container} ` +
                       `(${Math.round(b.left)}–${Math.round(b.right)}px)`);
  }
  const charts = [...root.querySelectorAll(".chart svg")].filter(shown).map((s) => {
    const r = s.getBoundingClientRect();
    return {chart: s.closest(".chart").id || "?", width: r.width, height: r.height};
  });
  return {scrollWidth: document.scrollingElement.scrollWidth, viewport: window.innerWidth, checked, overflowing, charts};
}
"""
TEXT_BOXES = "h2, h3, th, td, .kpi, .kpi .v, .kpi .d, .chips span, nav#views a, header label, header button, table, .case"


@dataclass(frozen=True)
class Layout:
    """The layout problems of a drawn view (`layout`)."""

    scroll_width: int
    viewport: int
    checked: int  # the boxes measured
    overflowing: list[str]
    charts: list[dict[str, Any]]

    def problems(self, *, min_charts: int = 0) -> list[str]:
        out = []
        if self.scroll_width > self.viewport:
            out.append(f"sideways scrolling: the document is {self.scroll_width}px wide in a {self.viewport}px viewport")
        if not self.checked:
            out.append("no heading, KPI or table cell shown to measure")
        out += [f"text overflows: {o}" for o in self.overflowing]
        out += [f"chart {c['chart']} drawn {c['width']:.0f}×{c['height']:.0f}px" for c in self.charts
                if c["width"] < 1 or c["height"] < 1]
        if len(self.charts) < min_charts:
            out.append(f"{len(self.charts)} charts shown, expected at least {min_charts}")
        return out


async def layout(page: Any, scope: str | None = None, *, selectors: str = TEXT_BOXES, container: str = "section, header") -> Layout:
    """Measure the view in `page` (within `scope`, a selector, or the whole document)."""
    r = await page.evaluate(_LAYOUT, [selectors, container, scope])
    return Layout(r["scrollWidth"], r["viewport"], r["checked"], r["overflowing"], r["charts"])


async def screenshot(page: Any, path: Path) -> Picture:
    """A full-page screenshot saved at `path` (PNG), and what it holds."""
    png = await page.screenshot(full_page=True, path=str(path))
    return picture(png)

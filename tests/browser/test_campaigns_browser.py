"""The KPI strip and the campaign view in a real Chromium over a real storage process and PostgreSQL:
ten seeded days ending 35 days ago; the most mentioned brand has KPI targets and a response SLA,
and one watchlist is a campaign (with markup in its name) that ran for the last two days."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from earful_dev.seed import seed
from tests.browser.dashboard_stack import END, READ_KEY, storage_service

pytestmark = pytest.mark.browser
CAMPAIGN_NAME = '<b>Winter</b> sale & "friends"'
STATUSES = {"met", "at_risk", "missed", "no_data"}


async def seed_with_targets(pg_url: str, folder: Path) -> dict[str, Any]:
    wl_file = folder / "watchlists.yaml"
    await seed(pg_url, mentions=4000, days=10, watchlists=4, seed_value=18, end=END, watchlists_out=wl_file,
               progress=lambda m: None)
    doc = yaml.safe_load(wl_file.read_text(encoding="utf-8"))
    brand, campaign, competitor = doc["watchlists"][0], doc["watchlists"][2], doc["watchlists"][3]
    brand.update({"response_sla_s": 3600, "kpis": {"net_sentiment": 0.1, "share_of_voice": 0.4, "first_response_s": 1800,
                                                   "answered_within_sla": 0.8}})
    campaign.update({"kind": "campaign", "name": CAMPAIGN_NAME,
                     "campaign": {"launch_at": (END - timedelta(days=2)).isoformat(), "ends_at": END.isoformat()}})
    competitor["kind"] = "competitor"
    wl_file.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return {"watchlists_file": wl_file, "brand": brand["id"], "campaign": campaign["id"]}


@pytest.fixture(scope="module")
async def data(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return await seed_with_targets(pg_url, tmp_path_factory.mktemp("campaigns"))


@pytest.fixture(scope="module")
def api(base_env: dict[str, str], pg_url: str, data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with storage_service(base_env, pg_url, data["watchlists_file"], tmp_path_factory.mktemp("campaigns-browser")) as svc:
        yield svc


async def open_page(browser: Any, api: Any, **context: Any) -> tuple[Any, Any, list[str]]:
    """A fresh tab with the read key in its sessionStorage, the overview drawn; its console errors collected."""
    ctx = await browser.new_context(**{"viewport": {"width": 1280, "height": 900}, "timezone_id": "Europe/Berlin", **context})
    tab = await ctx.new_page()
    errors: list[str] = []
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    await tab.goto(api.url + "/")
    await tab.locator("#login.shown").wait_for()  # refused without a key (which would drop a key stored before the answer)
    await tab.evaluate("(k) => sessionStorage.setItem('earful.apiKey', k)", READ_KEY)
    await tab.reload()
    await tab.locator("#chart-volume svg rect.bar").first.wait_for()
    return ctx, tab, errors


async def test_the_kpi_strip_shows_status_and_trend_against_the_targets(browser: Any, api: Any, data: dict[str, Any]) -> None:
    ctx, tab, errors = await open_page(browser, api)
    try:
        await tab.locator("#targets .kpi[data-status]").first.wait_for()
        cards = tab.locator("#targets .kpi")
        assert await cards.count() == 4
        names = [await c.get_attribute("data-kpi") for c in await cards.all()]
        assert names == ["net_sentiment", "share_of_voice", "first_response_s", "answered_within_sla"]
        statuses = {await c.get_attribute("data-status") for c in await cards.all()}
        assert statuses <= STATUSES and statuses - {"no_data"}, statuses  # targets are set: judged, not "no target"
        first = tab.locator("#targets .kpi[data-kpi='first_response_s']")
        assert "≤ 30 min" in (await first.text_content() or "")
        assert await tab.locator("#targets .kpi [data-trend]").count() == 4
        assert "kpis" in (await tab.text_content("#targets-note") or "")
        # The strip follows the period picker: another length, another comparison.
        await tab.select_option("#len", "7d")
        await tab.locator("#period").filter(has_text="–").wait_for()
        await tab.wait_for_function("() => document.querySelectorAll('#targets .kpi').length === 4")
        assert [e for e in errors if "401" not in e] == []
    finally:
        await ctx.close()


async def test_the_campaign_view_shows_lift_intervals_charts_and_posts(browser: Any, api: Any, data: dict[str, Any]) -> None:
    ctx, tab, errors = await open_page(browser, api)
    try:
        row = tab.locator(f"#campaigns a[href='#campaign?id={data['campaign']}']")
        await row.wait_for()
        assert await row.text_content() == CAMPAIGN_NAME  # markup in a name stays text
        await row.click()
        await tab.locator("#campaign-lifts tr[data-metric]").first.wait_for()
        metrics = [await r.get_attribute("data-metric") for r in await tab.locator("#campaign-lifts tr[data-metric]").all()]
        assert metrics == ["volume", "reach", "net_sentiment", "share_of_voice"]
        verdicts = {await r.get_attribute("data-verdict") for r in await tab.locator("#campaign-lifts tr[data-metric]").all()}
        assert verdicts <= {"increase", "decrease", "no significant change", "not enough data"}
        assert await tab.text_content("#campaign-title") == "Campaign: " + CAMPAIGN_NAME
        assert await tab.locator("#campaign b, #campaign-body script").count() == 0
        assert await tab.locator("#campaign-chart-lift svg g.interval").count() == 4
        assert await tab.locator("#campaign-chart-series svg circle.point").count() > 10
        assert "same hours of the week" in (await tab.text_content("#campaign-period") or "")
        posts = tab.locator("#campaign-posts tr[data-mention]")
        assert await posts.count() >= 1
        # A post opens the mention behind it; the campaign stays on the page.
        await posts.first.locator("a").click()
        await tab.locator("#mention-text").wait_for()
        assert not await tab.locator("#campaign").is_hidden()
        png = await tab.screenshot(full_page=True)
        assert len(png) > 20_000  # a drawn page, not a blank one
        assert [e for e in errors if "401" not in e] == []
    finally:
        await ctx.close()


async def test_the_campaign_view_is_readable_on_a_phone(browser: Any, api: Any, data: dict[str, Any]) -> None:
    ctx, tab, errors = await open_page(browser, api, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        await tab.evaluate("(id) => { location.hash = '#campaign?id=' + id; }", data["campaign"])
        await tab.locator("#campaign-chart-lift svg").wait_for()
        await tab.locator("#targets .kpi").first.wait_for()
        assert await tab.evaluate("() => document.documentElement.scrollWidth") <= 391  # no sideways scrolling
        box = await tab.locator("#campaign-chart-lift svg").bounding_box()
        assert box is not None and 300 <= box["width"] <= 390
        assert [e for e in errors if "401" not in e] == []
    finally:
        await ctx.close()

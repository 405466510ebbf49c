"""The dashboard in a real Chromium over a real storage process and PostgreSQL: the key typed
into the page, the charts drawn without console errors, a bar opening the mentions behind it, a
correction made in the page landing in the API, hostile text shown as text, a report's link
opening the view it names, a phone-sized screen."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from earful.storage.api.queries import DAY, floor_to
from earful.storage.api.responses import iso
from earful.storage.report_data import Period, mentions_url, view_url
from tests.browser.dashboard_stack import HOSTILE, READ_KEY, WRITE_KEY, seed_month_old, storage_service

pytestmark = pytest.mark.browser
CHARTS = ("volume", "share_of_voice", "tags", "sources", "languages")


@pytest.fixture(scope="module")
async def data(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return await seed_month_old(pg_url, tmp_path_factory.mktemp("dash"))


@pytest.fixture(scope="module")
def api(base_env: dict[str, str], pg_url: str, data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    with storage_service(base_env, pg_url, data["watchlists_file"], tmp_path_factory.mktemp("dash-browser")) as svc:
        yield svc


@pytest.fixture
async def page(browser: Any, api: Any) -> Any:
    """A fresh tab (its own sessionStorage) with its console errors collected in `page.errors`."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Europe/Berlin")
    tab = await context.new_page()
    tab.errors = []
    tab.on("console", lambda msg: tab.errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    yield tab
    await context.close()


async def open_with_key(page: Any, api: Any, key: str) -> None:
    await page.goto(api.url + "/")
    try:
        await page.locator("#login.shown").wait_for(timeout=15000)  # keys are configured: the page asks for one
    except Exception as exc:
        raise AssertionError(f"no key form; console: {page.errors}") from exc
    await page.fill("#apikey", key)
    await page.click("#login button")
    await page.locator("#chart-volume svg rect.bar").first.wait_for()


async def test_charts_render_after_the_key_is_typed(page: Any, api: Any, data: dict[str, Any]) -> None:
    await open_with_key(page, api, READ_KEY)
    for name in CHARTS:
        assert await page.locator(f"#chart-{name} svg").count() == 1, name
    assert await page.locator("#chart-volume svg rect.bar").count() >= 10
    assert await page.locator("#chart-share_of_voice svg circle.point").count() > 0
    assert await page.locator("#kpis .kpi").count() == 7
    assert "amplification" in (await page.text_content("#advocates tr") or "")  # the advocates panel rendered
    assert await page.locator("#advocates tr td a[href^='#mention?id=']").count() > 0  # each links to a best post
    period = await page.text_content("#period") or ""
    assert "CET" in period or "CEST" in period  # local time (the browser's zone), the zone shown
    assert await page.evaluate("() => location.href.indexOf('dash-reader') === -1 && !location.search")
    assert await page.evaluate("() => sessionStorage.getItem('earful.apiKey')") == READ_KEY
    # Only the first request, before the key was typed, was refused.
    assert [e for e in page.errors if "401" not in e] == []


async def test_a_bar_opens_the_mentions_behind_it(page: Any, api: Any, data: dict[str, Any]) -> None:
    await open_with_key(page, api, READ_KEY)
    bar = page.locator("#chart-volume svg a rect.bar[data-series='negative']").first
    series = await bar.get_attribute("data-series")
    await bar.dispatch_event("click")
    rows = page.locator("#mention-list tr[data-mention]")
    await rows.first.wait_for()
    assert "#mentions?" in page.url and f"watchlist={data['watchlist']}" in page.url
    sentiments = await page.locator("#mention-list tr[data-mention] td:nth-child(4)").all_text_contents()
    assert sentiments and set(sentiments) == {series}
    assert page.errors == [] or all("401" in e for e in page.errors)


async def test_a_correction_made_in_the_page_lands_and_hostile_text_stays_text(page: Any, api: Any, data: dict[str, Any]) -> None:
    await open_with_key(page, api, WRITE_KEY)
    # The hostile mention is the newest of the watchlist: first in its list, then opened.
    await page.evaluate("(w) => { location.hash = '#mentions?watchlist=' + w; }", data["watchlist"])
    first = page.locator("#mention-list a.mention-text").first
    await first.wait_for()
    assert await first.text_content() == HOSTILE
    await first.click()
    await page.locator("#mention-text").wait_for()
    assert await page.text_content("#mention-text") == HOSTILE
    assert await page.locator("#drill-body script, #drill-body img, #drill-body b").count() == 0
    assert await page.evaluate("() => window.__pwned") is None
    assert await page.locator("#mention-models tr").count() >= 1  # model versions
    assert await page.locator("#mention-evidence tr").count() >= 2  # evidence spans
    await page.select_option("#correct select[name=sentiment]", "neutral")
    for box in await page.locator("#correct input[name=risk]").all():
        await box.set_checked(await box.get_attribute("value") in ("operational", "customer_question"))
    await page.fill("#correct input[name=note]", "<i>checked</i> in the browser")
    await page.click("#correct button.primary")
    await page.locator("#correct [role=status].positive").wait_for()
    trail = httpx.get(api.url + f"/v1/mentions/{data['hostile_id']}/corrections", headers={"X-API-Key": READ_KEY}).json()
    latest = {c["field"]: c for c in trail["corrections"] if c["superseded_by"] is None}
    assert latest["sentiment"]["value"] == "neutral" and latest["sentiment"]["principal"] == "key:writer"
    assert latest["risks"]["value"] == ["customer_question", "operational"]
    assert latest["sentiment"]["note"] == "<i>checked</i> in the browser"
    assert await page.locator("#mention-trail tr[data-correction]").count() >= 2
    assert await page.locator("#mention-trail i").count() == 0
    assert [e for e in page.errors if "401" not in e] == []


async def test_a_read_key_is_told_it_cannot_correct(page: Any, api: Any, data: dict[str, Any]) -> None:
    await open_with_key(page, api, READ_KEY)
    await page.evaluate("(id) => { location.hash = '#mention?id=' + id; }", data["hostile_id"])
    await page.locator("#correct").wait_for()
    await page.click("#correct button.primary")
    status = page.locator("#correct [role=status].negative")
    await status.wait_for()
    assert "write scope" in (await status.text_content() or "")


async def test_readable_on_a_phone(browser: Any, api: Any) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    tab = await context.new_page()
    try:
        await tab.goto(api.url + "/")
        await tab.locator("#login.shown").wait_for()  # the refusal removes a stored key: store it after, not before
        await tab.evaluate("(k) => sessionStorage.setItem('earful.apiKey', k)", READ_KEY)
        await tab.reload()
        await tab.locator("#chart-volume svg rect.bar").first.wait_for()
        assert await tab.evaluate("() => document.documentElement.scrollWidth") <= 391  # no sideways scrolling
        box = await tab.locator("#chart-volume svg").bounding_box()
        assert box is not None and 300 <= box["width"] <= 390
    finally:
        await context.close()


async def test_a_report_link_opens_the_view_it_names(page: Any, api: Any, data: dict[str, Any]) -> None:
    """The executive report links its figures to `/?watchlist=…&length=…&to=…#mentions?…` (built by
    the report's own functions here): the page shows that watchlist and period, not the one it kept."""
    await open_with_key(page, api, READ_KEY)  # the tab now keeps the default view: the top watchlist, 24 h
    assert await page.input_value("#wl") == data["watchlist"] != data["competitor"]
    hi = floor_to(data["newest"], DAY)  # a whole week ending at midnight UTC before the newest data
    period = Period(hi - timedelta(days=7), hi, "week")
    view = view_url(api.url + "/", data["competitor"], period)
    assert "length=7d" in view and "to=" in view
    await page.goto(mentions_url(view, watchlist=data["competitor"], from_=period.lo, to=period.hi))
    await page.locator("#chart-volume svg rect.bar").first.wait_for()
    expected = httpx.get(api.url + "/v1/dashboard", headers={"X-API-Key": READ_KEY}, timeout=60,
                         params={"watchlist": data["competitor"], "length": "7d", "to": iso(hi), "tz": "Europe/Berlin"}).json()
    await page.locator("#period").filter(has_text=expected["period"]["label"]).wait_for()
    assert await page.input_value("#wl") == data["competitor"] and await page.input_value("#len") == "7d"
    assert expected["period"]["to"] == iso(hi)
    assert await page.evaluate("() => !location.search && location.hash.startsWith('#mentions?')")
    # The figure's mentions are listed, of that watchlist and week.
    await page.locator("#mention-list tr[data-mention]").first.wait_for()
    assert f"watchlist: {data['competitor']}" in (await page.text_content("#drill-body .chips") or "")
    # The view is the tab's now: a reload keeps it (the address no longer carries it).
    await page.reload()
    await page.locator("#period").filter(has_text=expected["period"]["label"]).wait_for()
    assert await page.input_value("#wl") == data["competitor"]
    assert [e for e in page.errors if "401" not in e] == []

"""The dashboard's API (`/v1/dashboard`, `/v1/dashboard/mentions/{id}`) and page of a real storage
process over a month-old seeded database: the period defaults to where the data is, the charts
are well-formed SVG whose marks link to exactly the mentions they count, keys are required when
configured, and hostile text stays text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.browser.dashboard_stack import HOSTILE, READ_KEY, WRITE_KEY, seed_month_old, storage_service

pytestmark = pytest.mark.integration
SVG = "{http://www.w3.org/2000/svg}"
READ = {"X-API-Key": READ_KEY}


@pytest.fixture(scope="module")
async def data(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return await seed_month_old(pg_url, tmp_path_factory.mktemp("dash"))


@pytest.fixture(scope="module")
def api(base_env: dict[str, str], pg_url: str, data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    with storage_service(base_env, pg_url, data["watchlists_file"], tmp_path_factory.mktemp("dash-api")) as svc:
        yield svc


def overview(api: Any, **params: Any) -> dict[str, Any]:
    r = httpx.get(api.url + "/v1/dashboard", params=params, headers=READ, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def links(svg: str) -> list[tuple[str, ET.Element]]:
    """Every (href, mark) of a chart; parsing fails on anything that is not well-formed XML."""
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg"
    return [(a.attrib["href"], next(iter(a))) for a in root.iter(SVG + "a")]


def test_the_period_defaults_to_the_newest_data_not_to_now(api: Any, data: dict[str, Any]) -> None:
    d = overview(api)
    assert d["watchlist"]["id"] == data["watchlist"]  # the brand with the most mentions
    hi = datetime.fromisoformat(d["period"]["to"])
    lo = datetime.fromisoformat(d["period"]["from"])
    assert lo < data["newest"] <= hi and hi - lo == timedelta(hours=24)
    assert d["previous"]["to"] == d["period"]["from"]
    kpis = {k["name"]: k for k in d["kpis"]}
    assert kpis["mentions"]["value"] > 0 and kpis["mentions"]["previous"] > 0  # 3 days of data: both periods have some
    assert kpis["mentions"]["delta"].endswith("%") or kpis["mentions"]["delta"] == "new"
    week = overview(api, length="7d")
    assert datetime.fromisoformat(week["period"]["to"]) - datetime.fromisoformat(week["period"]["from"]) == timedelta(days=7)


def test_volume_bars_link_to_exactly_the_mentions_they_count(api: Any, data: dict[str, Any]) -> None:
    d = overview(api, length="24h")
    marks = links(d["charts"]["volume"])
    bars = [(href, m) for href, m in marks if m.tag == SVG + "rect"]
    assert len(bars) >= 10
    total = sum(float(m.attrib["data-value"]) for _, m in bars)
    assert total == {k["name"]: k for k in d["kpis"]}["mentions"]["value"]
    href, bar = max(bars, key=lambda b: float(b[1].attrib["data-value"]))
    assert href.startswith("#mentions?")
    filters = dict(parse_qsl(href.split("?", 1)[1]))
    assert filters["watchlist"] == data["watchlist"] and filters["sentiment"] == bar.attrib["data-series"]
    listed = httpx.get(api.url + "/v1/mentions", params={**filters, "limit": 500}, headers=READ, timeout=30).json()["mentions"]
    assert len(listed) == float(bar.attrib["data-value"])


def test_every_chart_is_there_and_links_to_mentions(api: Any, data: dict[str, Any]) -> None:
    d = overview(api, length="7d", tz="Europe/Paris")
    assert set(d["charts"]) == {"volume", "share_of_voice", "tags", "sources", "languages"}
    for name, svg in d["charts"].items():
        marks = links(svg)
        assert marks, name
        assert all(h.startswith("#mentions?") for h, _ in marks), name
    sov_series = {c.attrib["data-series"] for _, c in links(d["charts"]["share_of_voice"])}
    assert len(sov_series) == 4  # the selected brand against the other brands and the competitor
    tag_href = next(h for h, m in links(d["charts"]["tags"]) if m.attrib["data-series"] == "complaint")
    tagged = httpx.get(api.url + "/v1/mentions", params=dict(parse_qsl(tag_href.split("?", 1)[1])), headers=READ).json()
    assert tagged["mentions"] and all(any(r["tag"] == "complaint" for r in m["risks"]) for m in tagged["mentions"])
    assert "CET" in d["period"]["label"] or "CEST" in d["period"]["label"]
    assert d["lists"]["entities"] and d["lists"]["hashtags"]
    assert d["lists"]["questions"] and all("min" in q["waiting"] or " d" in q["waiting"] or " h" in q["waiting"]
                                           for q in d["lists"]["questions"])
    assert not any(q["waiting"].endswith("0000 min") for q in d["lists"]["questions"])


def test_alerts_show_as_markers(api: Any, data: dict[str, Any], pg_url: str) -> None:
    d = overview(api, length="7d")
    markers = [m for _, m in links(d["charts"]["volume"]) if m.tag == SVG + "g"]
    fired = {k["name"]: k for k in d["kpis"]}["alerts"]["value"]
    assert fired > 0 and len(markers) == fired == len(d["lists"]["alerts"])  # the seeder writes a few alerts


async def test_distinctive_terms_find_a_planted_phrase_and_link_to_its_mentions(api: Any, data: dict[str, Any],
                                                                                pg_url: str) -> None:
    """30 posts of the shown day that say "zeppelin hangar" (never said the day before) make it the
    period's most distinctive term, and its link lists exactly posts that say it.

    The day shown ends with an hour of 30-50 earned posts, and the phrase goes into 30 of them: the
    sample always reads the period's last hour, up to 50 posts of it in any order, so it reads all
    30 however the rows lie after the update (the default day ends wherever the newest data ends,
    and its last hour may hold only a handful of posts)."""
    import asyncpg

    newest = datetime.fromisoformat(overview(api, length="24h")["period"]["to"])
    earned = "$1 = ANY(watchlist_ids) AND NOT ($1 = ANY(owned_watchlist_ids)) AND mention_id <> $2::uuid"
    conn = await asyncpg.connect(pg_url)
    try:
        hours = await conn.fetch(
            f"SELECT date_trunc('hour', created_at) AS hour, count(*) AS posts FROM mentions WHERE {earned}"
            " AND created_at >= $3 AND created_at < $4 GROUP BY 1 ORDER BY 1 DESC",
            data["watchlist"], data["hostile_id"], newest - timedelta(hours=24), newest)
        hour = next((r["hour"] for r in hours if 30 <= r["posts"] <= 50), None)
        assert hour is not None, f"the seeded data has no hour of 30-50 earned posts: {[(r['hour'], r['posts']) for r in hours]}"
        planted = await conn.fetch(
            "UPDATE mentions SET text = text || ' The zeppelin hangar smelled of smoke.' WHERE mention_id IN ("
            f" SELECT mention_id FROM mentions WHERE {earned} AND created_at >= $3 AND created_at < $4"
            " ORDER BY created_at DESC LIMIT 30) RETURNING mention_id",
            data["watchlist"], data["hostile_id"], hour, hour + timedelta(hours=1))
    finally:
        await conn.close()
    assert len(planted) == 30
    d = overview(api, length="24h", to=(hour + timedelta(hours=1)).isoformat())
    assert datetime.fromisoformat(d["period"]["to"]) == hour + timedelta(hours=1)
    terms = {t["term"]: t for t in d["lists"]["terms"][:2]}
    assert set(terms) == {"zeppelin hangar", "hangar smelled"}, d["lists"]["terms"]  # equally distinctive
    top = terms["zeppelin hangar"]
    assert top["posts"] == 30 and top["previous_share"] == 0.0  # the sample read every planted post
    assert 30 <= d["lists"]["terms_sample"]["posts"] <= {k["name"]: k for k in d["kpis"]}["mentions"]["value"]
    filters = dict(parse_qsl(top["href"].split("?", 1)[1]))
    assert filters["q"] == '"zeppelin hangar"' and filters["watchlist"] == data["watchlist"]
    listed = httpx.get(api.url + "/v1/mentions", params={**filters, "limit": 100}, headers=READ, timeout=30).json()["mentions"]
    assert {m["mention_id"] for m in listed} == {str(r["mention_id"]) for r in planted}


def test_bad_parameters_are_named(api: Any) -> None:
    for params, name in (({"length": "2y"}, "length"), ({"tz": "Mars/Olympus"}, "tz"), ({"to": "2026-01-01T00:00:00"}, "to"),
                         ({"watchlist": "Bad Id"}, "watchlist")):
        r = httpx.get(api.url + "/v1/dashboard", params=params, headers=READ)
        assert r.status_code == 422, r.text
        assert [e["loc"][-1] for e in r.json()["errors"]] == [name]
    assert httpx.get(api.url + "/v1/dashboard", params={"watchlist": "nobody"}, headers=READ).status_code == 404


def test_keys_are_required_and_never_read_from_the_url(api: Any) -> None:
    assert httpx.get(api.url + "/v1/dashboard").status_code == 401
    assert httpx.get(api.url + "/v1/dashboard", params={"key": READ_KEY}).status_code == 401
    page = httpx.get(api.url + "/")
    assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
    csp = page.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp and "connect-src 'self'" in csp
    assert "innerHTML" not in page.text and "sessionStorage" in page.text and '"X-API-Key"' in page.text


def test_a_mention_shows_its_enrichment_and_hostile_text_as_text(api: Any, data: dict[str, Any]) -> None:
    r = httpx.get(api.url + f"/v1/dashboard/mentions/{data['hostile_id']}", headers=READ)
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["text"] == HOSTILE and "".join(p["text"] for p in m["pieces"]) == HOSTILE
    assert m["models"] and "lang_confidence" in m and m["watchlist_ids"]
    assert httpx.get(api.url + "/v1/dashboard/mentions/00000000-0000-0000-0000-000000000000", headers=READ).status_code == 404
    assert httpx.get(api.url + f"/v1/dashboard/mentions/{data['hostile_id']}").status_code == 401
    # A read key cannot correct; a write key can, and the detail shows the correction at once.
    body = {"sentiment": "positive", "risks": ["complaint"], "note": "checked by hand"}
    url = api.url + f"/v1/mentions/{data['hostile_id']}/corrections"
    assert httpx.post(url, json=body, headers=READ).status_code == 403
    assert httpx.post(url, json=body, headers={"X-API-Key": WRITE_KEY}).status_code == 201
    after = httpx.get(api.url + f"/v1/dashboard/mentions/{data['hostile_id']}", headers=READ).json()
    assert after["sentiment"] == "positive" and [r["tag"] for r in after["risks"]] == ["complaint"]


def test_without_keys_the_dashboard_is_open(base_env: dict[str, str], pg_url: str, data: dict[str, Any],
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    with storage_service(base_env, pg_url, data["watchlists_file"], tmp_path_factory.mktemp("open"), keys=None) as svc:
        r = httpx.get(svc.url + "/v1/dashboard", params={"length": "6h"})
        assert r.status_code == 200 and r.json()["kpis"][0]["value"] > 0


async def test_a_panel_query_that_times_out_fails_the_overview_with_its_own_error(pg_url: str, data: dict[str, Any]) -> None:
    """The panels are read at once; the API's handlers (a timeout is a 503) must still see the
    database's own error, not a group of them."""
    import asyncpg

    from earful.storage.dashboard_views import Request, overview
    from earful.watchlists import WatchlistSet
    from earful.watchlists.files import load_watchlists

    watchlists = WatchlistSet(load_watchlists(data["watchlists_file"]))
    blocker = await asyncpg.connect(pg_url)
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=4, server_settings={"statement_timeout": "300"})
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE")  # only a panel's read waits on it
            with pytest.raises(asyncpg.QueryCanceledError):
                await overview(pool, watchlists, Request(data["watchlist"], "7d", None, ZoneInfo("UTC")))
        assert (await overview(pool, watchlists, Request(data["watchlist"], "7d", None, ZoneInfo("UTC"))))["lists"]["terms_sample"]["posts"] > 0
    finally:
        await pool.close()
        await blocker.close()

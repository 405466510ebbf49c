"""The care inbox and the leads & policy view in a real Chromium over a real storage process and
PostgreSQL. The cases, leads and policy flags are made by the real writer from enriched mentions:
questions to Acme Air (one with markup in its text, one answered by the brand's care handle), a
question to Globex (no agents: unassigned), a purchase-intent post, and a staff post that breaks
the sample policy. The page lists the waiting cases by priority with humane waiting times and the
share of the SLA used, acts on them through the API (a refusal shows the API's own words), and
shows the leads and flags with their evidence."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from earful.core.migrate import migrate
from earful.core.settings import PACKAGE_DIR
from earful.storage.cases import CareBook
from earful.storage.signals import SignalRules, use_signals
from earful.storage.writer import BrandHandles, mention_row, write_batch
from earful.watchlists.model import parse_watchlist
from earful.watchlists.owned import OwnedHandles
from earful.watchlists.policy import Staff, load_policy
from tests.browser.dashboard_stack import READ_KEY, WRITE_KEY, storage_service
from tests.integration.test_storage_db import enriched

pytestmark = pytest.mark.browser
UTC = timezone.utc
HOSTILE_QUESTION = '@AcmeAirHelp where is my bag? <img src=x onerror="window.__pwned = 3"> & <b>now</b>'
LEAD_TEXT = "Thinking of switching to Acme Air for my work trips"
STAFF_TEXT = "Project Falcon is almost ready, internal only for now"
WATCHLISTS = [
    {"id": "acme-air", "name": "Acme Air", "kind": "brand", "terms": ["Acme Air"], "handles": ["AcmeAir", "AcmeAirHelp"],
     "response_sla_s": 4 * 3600},
    {"id": "globex", "name": "Globex", "kind": "brand", "terms": ["Globex"], "handles": ["GlobexCares"],
     "response_sla_s": 3600},
    {"id": "acme-staff", "name": "Acme staff", "kind": "staff", "terms": ["Project Falcon"], "handles": ["sam_at_acme"]},
]
AGENTS = {"acme-air": ("ann", "bob")}
CASE = {"long": "acme-air:twitter:q-long", "fresh": "acme-air:twitter:q-fresh", "globex": "globex:twitter:q-globex",
        "answered": "acme-air:twitter:q-answered"}


def question(source_id: str, created: datetime, **options: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"handle": "li", "followers": 150, "sentiment": "neutral", "risks": ("customer_question",),
                                "text": "@AcmeAirHelp can I change my seat?", "entities": []}
    return enriched(source_id, created, **{**defaults, **options})


async def seed_care(pg_url: str, folder: Path) -> dict[str, Any]:
    """Cases, a lead and a policy flag stored by the real writer; the watchlists file of the service."""
    now = datetime.now(UTC).replace(microsecond=0)
    watchlists = [parse_watchlist(w, "test") for w in WATCHLISTS]
    lead = enriched("lead-1", now - timedelta(hours=2), handle="jdoe", followers=321, sentiment="positive", text=LEAD_TEXT,
                    entities=[])
    lead["risks"] = [{"tag": "purchase_intent", "evidence": "Thinking of switching", "start": 0, "end": 21}]
    records = [
        question("q-long", now - timedelta(hours=3, minutes=20), handle="jane", followers=12400, sentiment="negative",
                 risks=("customer_question", "complaint"), text=HOSTILE_QUESTION),
        question("q-fresh", now - timedelta(minutes=30)),
        question("q-answered", now - timedelta(hours=2), handle="max"),
        enriched("r-answered", now - timedelta(hours=2) + timedelta(minutes=20), handle="AcmeAirHelp", sentiment="neutral",
                 reply_to="q-answered", text="@max yes, in the app", entities=[], watchlists=()),
        question("q-globex", now - timedelta(hours=1), handle="kim", watchlists=("globex",), text="@GlobexCares is my order late?"),
        lead,
        enriched("staff-1", now - timedelta(hours=1), handle="sam_at_acme", sentiment="neutral", text=STAFF_TEXT, entities=[],
                 watchlists=("acme-staff",)),
    ]
    rules = SignalRules(7, OwnedHandles.of(watchlists), Staff.of(watchlists), {w.id: w.kind for w in watchlists},
                        load_policy(PACKAGE_DIR / "sample" / "policy.yaml"))
    token = use_signals(rules)
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate(conn)
        await write_batch(conn, [mention_row(r) for r in records], [], brands=BrandHandles.of(watchlists),
                          owned=OwnedHandles.of(watchlists), care=CareBook.of(watchlists, AGENTS))
        states = {r["case_id"]: (r["state"], r["owner"]) for r in await conn.fetch("SELECT case_id, state, owner FROM cases")}
        leads = await conn.fetchval("SELECT count(*) FROM leads")
        flags = await conn.fetchval("SELECT count(*) FROM policy_flags")
    finally:
        await conn.close()
        use_signals(None)
        del token
    # Acme Air's agents take its cases in turn, oldest first; Globex has none.
    assert states == {CASE["long"]: ("assigned", "ann"), CASE["answered"]: ("answered", "bob"),
                      CASE["fresh"]: ("assigned", "ann"), CASE["globex"]: ("open", None)}, states
    assert (leads, flags) == (1, 1)
    wl_file = folder / "watchlists.yaml"
    wl_file.write_text(yaml.safe_dump({"watchlists": WATCHLISTS}, sort_keys=False), encoding="utf-8")
    return {"watchlists_file": wl_file, "now": now}


@pytest.fixture(scope="module")
async def data(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return await seed_care(pg_url, tmp_path_factory.mktemp("inbox"))


@pytest.fixture(scope="module")
def api(base_env: dict[str, str], pg_url: str, data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with storage_service(base_env, pg_url, data["watchlists_file"], tmp_path_factory.mktemp("inbox-browser")) as svc:
        yield svc


async def open_view(browser: Any, api: Any, key: str, hash_: str, **context: Any) -> tuple[Any, Any, list[str]]:
    """A fresh tab with `key` in its sessionStorage, opened at `hash_`; its console errors collected."""
    ctx = await browser.new_context(**{"viewport": {"width": 1280, "height": 900}, "timezone_id": "Europe/Berlin", **context})
    tab = await ctx.new_page()
    errors: list[str] = []
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    await tab.goto(api.url + "/")
    await tab.locator("#login.shown").wait_for()  # refused without a key (which would drop a key stored before the answer)
    await tab.evaluate("(k) => sessionStorage.setItem('earful.apiKey', k)", key)
    await tab.goto(api.url + "/" + hash_)
    await tab.reload()
    return ctx, tab, errors


def card(tab: Any, case_id: str) -> Any:
    return tab.locator(f"#cases article.case[data-case='{case_id}']")


async def test_the_inbox_lists_waiting_cases_by_priority_with_sla_and_escaped_text(browser: Any, api: Any) -> None:
    ctx, tab, errors = await open_view(browser, api, READ_KEY, "#inbox")
    try:
        await tab.locator("#cases article.case").first.wait_for()
        assert await tab.locator("#inbox").is_visible() and not await tab.locator("#chart-volume").is_visible()
        assert await tab.get_attribute("#views a[data-view='inbox']", "aria-current") == "page"
        ids = [await c.get_attribute("data-case") for c in await tab.locator("#cases article.case").all()]
        assert ids[0] == CASE["long"] and set(ids) == {CASE["long"], CASE["fresh"], CASE["globex"]}  # answered: not waiting
        long = card(tab, CASE["long"])
        assert await long.locator(".question").text_content() == HOSTILE_QUESTION
        assert await tab.locator("#cases img, #cases b").count() == 0
        assert await tab.evaluate("() => window.__pwned") is None
        assert re.fullmatch(r"waiting 3 h 2\d min", await long.locator(".waiting").text_content() or "")
        assert await long.locator(".owner").text_content() == "owner: ann"
        assert "@jane · 12,400 followers" in (await long.locator(".meta").first.text_content() or "")
        # 3 h 20 min of a 4 h SLA: past 75 %, a red bar; half an hour of it: a short green one.
        sla = long.locator(".sla")
        assert "late" in (await sla.get_attribute("class") or "") and float(await sla.get_attribute("data-sla-used") or 0) > 0.8
        fill = await sla.locator(".bar span").evaluate("(e) => [getComputedStyle(e).backgroundColor, e.getBoundingClientRect().width,"
                                                       " e.parentElement.getBoundingClientRect().width]")
        assert fill[0] == "rgb(180, 35, 24)" and 0.8 < fill[1] / fill[2] < 0.95
        fresh = card(tab, CASE["fresh"]).locator(".sla")
        assert "late" not in (await fresh.get_attribute("class") or "")
        assert await card(tab, CASE["globex"]).locator(".owner").text_content() == "unassigned"
        # The response-time KPIs of the watchlist shown (Acme Air): one case answered after 20 min.
        await tab.locator("#care-kpis .kpi[data-kpi='median_first_reply']").wait_for()
        assert await tab.locator("#care-kpis .kpi").count() == 4
        assert await tab.locator("#care-kpis .kpi[data-kpi='median_first_reply'] .v").text_content() == "20 min"
        assert await tab.locator("#care-kpis .kpi[data-kpi='within_sla'] .v").text_content() == "100 %"
        # Filters: by owner, by state.
        await tab.fill("#inbox-filters input[name=owner]", "ann")
        await tab.click("#inbox-filters button")
        await tab.wait_for_function("() => document.querySelectorAll('#cases article.case').length === 2")
        assert "owner=ann" in tab.url and await card(tab, CASE["globex"]).count() == 0
        await tab.fill("#inbox-filters input[name=owner]", "")
        await tab.select_option("#inbox-filters select[name=state]", "answered")
        await tab.click("#inbox-filters button")
        await card(tab, CASE["answered"]).wait_for()
        assert await tab.locator("#cases article.case").count() == 1
        assert await card(tab, CASE["answered"]).locator("button[data-action]").all_text_contents() == ["Reopen"]
        # By watchlist: Globex's one case, and Globex's response times above it (none answered yet).
        await tab.select_option("#inbox-filters select[name=state]", "")
        await tab.select_option("#inbox-filters select[name=watchlist]", "globex")
        await tab.click("#inbox-filters button")
        await tab.locator("#care-note", has_text="globex").wait_for()
        assert [await c.get_attribute("data-case") for c in await tab.locator("#cases article.case").all()] == [CASE["globex"]]
        assert await tab.locator("#care-kpis .kpi[data-kpi='median_first_reply'] .v").text_content() == "n/a"
        # A read key may look, not act: the API's refusal is shown as it said it.
        await card(tab, CASE["globex"]).locator("input[name=arg]").fill("ann")
        await card(tab, CASE["globex"]).locator("button[data-action=assign]").click()
        refused = card(tab, CASE["globex"]).locator("[role=status].negative")
        await refused.wait_for()
        assert "lacks the scope 'write'" in (await refused.text_content() or "")
        assert [e for e in errors if "401" not in e and "403" not in e] == []
    finally:
        await ctx.close()


async def test_acting_on_a_case_goes_through_the_api(browser: Any, api: Any) -> None:
    ctx, tab, errors = await open_view(browser, api, WRITE_KEY, "#inbox")
    try:
        fresh = card(tab, CASE["fresh"])
        await fresh.wait_for()
        assert await fresh.get_attribute("data-state") == "assigned"
        # Assign needs an owner: said in the page, nothing sent.
        await fresh.locator("button[data-action=assign]").click()
        assert await fresh.locator("[role=status]").text_content() == "type the owner first"
        await fresh.locator("input[name=arg]").fill("carol")
        await fresh.locator("button[data-action=assign]").click()
        await tab.locator(f"#cases article.case[data-case='{CASE['fresh']}'] .owner", has_text="owner: carol").wait_for()
        body = httpx.get(f"{api.url}/v1/cases/{CASE['fresh']}", headers={"X-API-Key": READ_KEY}).json()
        assert (body["state"], body["owner"]) == ("assigned", "carol")
        assert (body["events"][-1]["event"], body["events"][-1]["actor"]) == ("assigned", "writer")
        assert "owner carol" in (await tab.text_content("#inbox-status") or "")
        # Assigning to the same owner again is refused by the API (409): its message is shown.
        fresh = card(tab, CASE["fresh"])
        await fresh.locator("input[name=arg]").fill("carol")
        await fresh.locator("button[data-action=assign]").click()
        refused = fresh.locator("[role=status].negative")
        await refused.wait_for()
        assert await refused.text_content() == "the case is already assigned to carol"
        # Escalate the Globex case with a reason; it stays waiting, escalated, and cannot be escalated again.
        globex = card(tab, CASE["globex"])
        await globex.locator("input[name=arg]").fill("order lost twice")
        await globex.locator("button[data-action=escalate]").click()
        await tab.locator(f"#cases article.case[data-case='{CASE['globex']}'][data-state=escalated]").wait_for()
        globex = card(tab, CASE["globex"])
        assert "reason: order lost twice" in (await globex.text_content() or "")
        assert await globex.locator("button[data-action=escalate]").count() == 0
        # Dismiss needs a reason; answered takes none and the case leaves the waiting list.
        await globex.locator("button[data-action=answer]").click()
        await card(tab, CASE["globex"]).wait_for(state="detached")
        body = httpx.get(f"{api.url}/v1/cases/{CASE['globex']}", headers={"X-API-Key": READ_KEY}).json()
        assert body["state"] == "answered" and [e["event"] for e in body["events"]] == ["opened", "escalated", "answered"]
        assert [e for e in errors if "401" not in e and "409" not in e] == []
    finally:
        await ctx.close()


async def test_leads_and_policy_flags_show_their_evidence(browser: Any, api: Any) -> None:
    ctx, tab, errors = await open_view(browser, api, READ_KEY, "#leads")
    try:
        lead = tab.locator("#leads td[data-lead]")
        await lead.first.wait_for()
        assert await lead.count() == 1
        assert await lead.locator("mark").text_content() == "Thinking of switching"
        assert (await lead.locator(".evidence-text").text_content()) == LEAD_TEXT
        row = tab.locator("#leads tr", has=tab.locator("td[data-lead]"))
        assert "@jdoe" in (await row.text_content() or "") and "321 followers" in (await row.text_content() or "")
        flag = tab.locator("#flags td[data-flag]")
        await flag.first.wait_for()
        marks = await flag.locator("mark").all_text_contents()
        assert {"Project Falcon", "internal only"} <= set(marks)
        frow = tab.locator("#flags tr", has=tab.locator("td[data-flag]"))
        text = await frow.text_content() or ""
        assert "confidential-projects" in text and "@sam_at_acme" in text and "critical" in text
        assert not await tab.locator("#chart-volume").is_visible()
        assert errors == [] or all("401" in e for e in errors)
    finally:
        await ctx.close()


async def test_the_inbox_is_readable_on_a_phone(browser: Any, api: Any) -> None:
    ctx, tab, _ = await open_view(browser, api, READ_KEY, "#inbox", viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True)
    try:
        await tab.locator("#cases article.case").first.wait_for()
        await tab.locator("#care-kpis .kpi").first.wait_for()
        assert await tab.evaluate("() => document.documentElement.scrollWidth") <= 391  # no sideways scrolling
        box = await tab.locator("#cases article.case").first.bounding_box()
        assert box is not None and box["width"] <= 390
        await tab.evaluate("() => { location.hash = '#leads'; }")
        await tab.locator("#flags td[data-flag]").first.wait_for()
        assert await tab.evaluate("() => document.documentElement.scrollWidth") <= 391
    finally:
        await ctx.close()

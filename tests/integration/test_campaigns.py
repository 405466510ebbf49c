"""Campaign lift and KPIs against a real PostgreSQL, with mentions stored by the real writer.

Planted data, ten days around a Monday-morning launch, every series following the same daily
rhythm with Poisson noise: `winter-sale` triples its volume at launch and turns more positive,
while `quiet-promo` goes on exactly as before. The first must show a lift whose intervals exclude
no change, the second no significant change. The data are one fixed draw (seed 19): in any one
draw a null campaign has a 5 % chance per figure of looking like a change (seed 18, for one, gives
the quiet campaign a share-of-voice "decrease" of 4.2 pp by chance); that the intervals hold 95 %
over many draws is checked by simulation in tests/unit/test_campaign_lift.py. `acme-air` carries
KPI targets and customer questions answered by its care handle, some within the SLA, some late,
some still open.
"""

from __future__ import annotations

import math
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from earful.core.auth import KeyRing
from earful.core.health import Health
from earful.core.http import RequestLimits
from earful.core.migrate import migrate
from earful.core.settings import Settings
from earful.storage.api import build_api
from earful.storage.campaigns import campaign_lift
from earful.storage.kpis import Window, compared_ids, watchlist_kpis
from earful.storage.writer import BrandHandles, WriterState, mention_row, write_batch
from earful.watchlists import WatchlistSet, parse_watchlist
from earful.watchlists.model import BusinessHours, Care
from tests.support import example

pytestmark = pytest.mark.integration
UTC = timezone.utc
LAUNCH = datetime(2026, 3, 2, 9, tzinfo=UTC)  # a Monday
AS_OF = LAUNCH + timedelta(days=3)
DRIVER = "The winter sale is on: every seat to Lisbon for 19 euros"
WATCHLISTS = [
    {"id": "acme-air", "name": "Acme Air", "kind": "brand", "terms": ["Acme Air"], "handles": ["AcmeAir", "AcmeAirHelp"],
     "response_sla_s": 1800,
     "kpis": {"net_sentiment": 0.1, "share_of_voice": 0.62, "first_response_s": 900, "answered_within_sla": 0.9}},
    {"id": "skyjet", "name": "SkyJet", "kind": "competitor", "terms": ["SkyJet"]},
    {"id": "winter-sale", "name": "Winter sale", "kind": "campaign", "terms": ["#AcmeWinterSale"],
     "campaign": {"launch_at": LAUNCH.isoformat()}},
    {"id": "quiet-promo", "name": "Quiet promo", "kind": "campaign", "terms": ["#AcmeQuiet"],
     "campaign": {"launch_at": LAUNCH.isoformat(), "ends_at": (LAUNCH + timedelta(days=3)).isoformat()}},
]


def record(source_id: str, created: datetime, watchlists: list[str], *, sentiment: str | None = "neutral",
           followers: int = 100, likes: int = 0, text: str = "a post", handle: str | None = None,
           risks: tuple[str, ...] = (), reply_to: str | None = None) -> dict[str, Any]:
    """An enriched mention (the schema's example, changed in what these tests vary)."""
    r = example("enriched_mention/v2/01_english_complaint")
    handle = handle or f"user{source_id}"
    r["mention"].update({
        "mention_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"twitter/{source_id}")), "source": "twitter", "source_id": source_id,
        "url": None, "text": text, "lang": "en", "created_at": created, "received_at": created + timedelta(seconds=1),
        "author": {"id": f"id-{handle}", "handle": handle, "display_name": handle, "followers": followers},
        "in_reply_to": reply_to, "reposted_from": None, "country": None,
        "engagement": {"likes": likes, "reposts": 0, "replies": 0, "observed_at": None}})
    r.update({"language": {"code": "en", "confidence": 0.99}, "entities": [],
              "sentiment": {"label": sentiment, "score": 0.0, "reason": None, "probabilities": None},
              "risks": [{"tag": t, "evidence": "?", "start": 0, "end": 1} for t in risks], "watchlist_ids": watchlists,
              "matches": [{"watchlist_id": w, "start": 0, "end": 1, "term": "x"} for w in watchlists],
              "enriched_at": created + timedelta(seconds=2)})
    return r


def rhythm(hour: int) -> float:
    """Busy days, quiet nights (UTC): from 0.4 to 1.6 of the mean."""
    return 1 + 0.6 * math.sin(2 * math.pi * (hour - 9) / 24)


def planted() -> list[dict[str, Any]]:
    """Ten days of mentions from a week before launch to AS_OF, and the questions of acme-air."""
    rng = np.random.default_rng(19)
    out: list[dict[str, Any]] = []
    seq = iter(range(10 ** 9))

    def post(at: datetime, wl: str, mix: tuple[float, float, float], **kw: Any) -> None:
        sentiment = str(rng.choice(["positive", "neutral", "negative"], p=mix))
        followers = int(rng.lognormal(5, 1.2))
        out.append(record(str(next(seq)), at, [wl], sentiment=sentiment, followers=followers,
                          likes=int(rng.poisson(2)), **kw))

    start = LAUNCH - timedelta(days=7)
    for h in range(10 * 24):
        hour = start + timedelta(hours=h)
        after = hour >= LAUNCH
        f = rhythm(hour.hour)
        rates = {"acme-air": (6 * f, (0.5, 0.3, 0.2) if after else (0.3, 0.4, 0.3)),
                 "skyjet": (4 * f, (0.3, 0.4, 0.3)),
                 "winter-sale": ((9 if after else 3) * f, (0.45, 0.4, 0.15) if after else (0.2, 0.5, 0.3)),
                 "quiet-promo": (2 * f, (0.3, 0.45, 0.25))}
        for wl, (rate, mix) in rates.items():
            for _ in range(int(rng.poisson(rate))):
                post(hour + timedelta(seconds=float(rng.uniform(0, 3600))), wl, mix)
    out.append(record("driver", LAUNCH + timedelta(hours=5), ["winter-sale"], sentiment="positive", followers=250_000,
                      likes=40_000, text=DRIVER, handle="travelbargains"))

    def question(at: datetime, answered_after: timedelta | None) -> None:
        qid = f"q{next(seq)}"
        out.append(record(qid, at, ["acme-air"], risks=("customer_question",), text="@AcmeAir how do I change my booking?"))
        if answered_after is not None:
            out.append(record(f"r{qid}", at + answered_after, [], handle="AcmeAirHelp", reply_to=qid, text="DM us"))

    for i in range(20):  # the previous KPI period (the three days before launch): 16 fast answers, 4 late
        question(LAUNCH - timedelta(days=3) + timedelta(hours=1, minutes=5 * i),
                 timedelta(minutes=10) if i < 16 else timedelta(hours=2))
    for i in range(10):  # the KPI period: 10 fast answers
        question(LAUNCH + timedelta(hours=1, minutes=5 * i), timedelta(minutes=10))
    for i in range(4):  # 4 answered after an hour
        question(LAUNCH + timedelta(hours=3, minutes=5 * i), timedelta(hours=1))
    for i in range(2):  # Monday 16:50, answered Tuesday 09:15: late on the wall clock, in time in business hours
        question(LAUNCH + timedelta(hours=7, minutes=50 + 2 * i), timedelta(hours=16, minutes=25 - 2 * i))
    for i in range(2):  # open since Tuesday: breached
        question(LAUNCH + timedelta(days=1, hours=2, minutes=i), None)
    for i in range(2):  # asked ten minutes before the end: may still make it
        question(AS_OF - timedelta(minutes=10 - i), None)
    return out


@pytest.fixture(scope="module")
async def db(pg_url: str) -> AsyncIterator[dict[str, Any]]:
    watchlists = WatchlistSet([parse_watchlist(w, "test") for w in WATCHLISTS])
    conn = await asyncpg.connect(pg_url)
    await migrate(conn)
    records = planted()
    brands, state = BrandHandles.of(watchlists.watchlists.values()), WriterState()
    rows = [mention_row(r) for r in records]
    for i in range(0, len(rows), 500):
        await write_batch(conn, rows[i:i + 500], [], brands=brands, state=state)
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=3)
    try:
        yield {"conn": conn, "pool": pool, "watchlists": watchlists, "records": records}
    finally:
        await pool.close()
        await conn.close()


def net_sentiment_of(records: list[dict[str, Any]], wid: str, lo: datetime, hi: datetime) -> float:
    """(positive − negative) / (positive + negative) of the planted mentions of `wid` in [lo, hi)."""
    labels = [r["sentiment"]["label"] for r in records if wid in r["watchlist_ids"] and lo <= r["mention"]["created_at"] < hi]
    pos, neg = labels.count("positive"), labels.count("negative")
    return (pos - neg) / (pos + neg)


async def lift_of(db: dict[str, Any], wid: str, as_of: datetime = AS_OF, **kw: Any) -> Any:
    ws = db["watchlists"]
    return await campaign_lift(db["pool"], ws.watchlists[wid], as_of=as_of,
                               compared=await compared_ids(db["pool"], wid, ws), **kw)


async def test_a_planted_lift_is_found_with_intervals_that_exclude_no_change(db: dict[str, Any]) -> None:
    lift = await lift_of(db, "winter-sale")
    assert lift.state == "running" and lift.window == Window(LAUNCH, AS_OF)
    assert lift.baseline == Window(LAUNCH - timedelta(days=7), LAUNCH - timedelta(days=4))  # same hours, a week before
    assert lift.compared == ("winter-sale", "acme-air", "skyjet")
    volume = lift.lift("volume")
    assert volume.verdict == "increase" and volume.low > 1 and 2.4 < volume.estimate < 3.6  # planted: × 3
    assert volume.low < 3 < volume.high
    # The counts behind it are the stored mentions of each window, exactly.
    stored = [r for r in db["records"] if r["watchlist_ids"] == ["winter-sale"]]
    assert volume.campaign == sum(LAUNCH <= r["mention"]["created_at"] < AS_OF for r in stored)
    assert volume.baseline == sum(lift.baseline.start <= r["mention"]["created_at"] < lift.baseline.end for r in stored)
    assert sum(p.campaign for p in lift.series) == volume.campaign and sum(p.baseline for p in lift.series) == volume.baseline
    # Planted: from (0.2 − 0.3) / 0.5 = −0.2 to (0.45 − 0.15) / 0.6 = +0.5, (positive − negative) / (positive + negative).
    sentiment = lift.lift("net_sentiment")
    assert sentiment.verdict == "increase" and sentiment.low > 0 and 0.5 < sentiment.estimate < 0.9
    assert sentiment.campaign == pytest.approx(net_sentiment_of(db["records"], "winter-sale", LAUNCH, AS_OF))
    share = lift.lift("share_of_voice")
    assert share.verdict == "increase" and share.low > 0
    assert lift.lift("reach").verdict == "increase"
    assert lift.dispersion < 1.5  # Poisson noise on a shared rhythm is not overdispersion
    # The posts that drive it: the planted viral post first.
    assert lift.posts[0].text == DRIVER and lift.posts[0].engagement == 40_000
    assert lift.posts[0].engagement_share is not None and lift.posts[0].engagement_share > 0.9


async def test_a_planted_null_campaign_shows_no_lift(db: dict[str, Any]) -> None:
    lift = await lift_of(db, "quiet-promo", as_of=AS_OF + timedelta(days=30))  # ended: measured over its whole run
    assert lift.state == "ended" and lift.window == Window(LAUNCH, LAUNCH + timedelta(days=3))
    for metric in ("volume", "net_sentiment", "share_of_voice"):
        x = lift.lift(metric)
        assert x.verdict == "no significant change", (metric, x)
        assert x.low < x.no_change < x.high
    assert 0.7 < lift.lift("volume").estimate < 1.4


async def test_the_adjacent_baseline_and_a_campaign_not_started(db: dict[str, Any]) -> None:
    lift = await lift_of(db, "winter-sale", align="adjacent")
    assert lift.baseline == Window(LAUNCH - timedelta(days=3), LAUNCH)
    assert lift.lift("volume").verdict == "increase"
    early = await campaign_lift(db["pool"], db["watchlists"].watchlists["winter-sale"], as_of=LAUNCH - timedelta(days=1))
    assert early.state == "scheduled" and early.lifts == () and early.notes


async def test_kpis_against_targets_and_the_previous_period(db: dict[str, Any]) -> None:
    ws = db["watchlists"]
    acme = ws.watchlists["acme-air"]
    report = await watchlist_kpis(db["pool"], acme, Window(LAUNCH, AS_OF), compared=await compared_ids(db["pool"], "acme-air", ws),
                                  now=AS_OF)
    assert report.previous == Window(LAUNCH - timedelta(days=3), LAUNCH) and report.has_targets
    ns = report.figure("net_sentiment")  # planted: 0.0 before, (0.5 − 0.2) / 0.7 = +0.43 after; target +0.1
    assert ns.status == "met" and ns.trend == "improving" and ns.value is not None and 0.3 < ns.value < 0.55
    assert ns.value == pytest.approx(net_sentiment_of(db["records"], "acme-air", LAUNCH, AS_OF))
    sov = report.figure("share_of_voice")  # 6 : 4 against skyjet, target 62 %
    assert sov.value is not None and 0.56 < sov.value < 0.62 and sov.status == "at_risk"
    assert report.compared == ("acme-air", "skyjet")
    first = report.figure("first_response_s")  # 10 × 10 min, 4 × 1 h, 2 × overnight: median 10 min
    assert first.value == 600 and first.previous == 600 and first.status == "met" and first.trend == "steady"
    sla = report.figure("answered_within_sla")  # 10 in time of 18 decided (2 may still make it); before: 16 of 20
    assert sla.value == pytest.approx(10 / 18) and sla.previous == pytest.approx(0.8)
    assert sla.basis["pending"] == 2 and sla.basis["decided"] == 18
    assert (sla.status, sla.trend, report.sla_clock) == ("missed", "worsening", "wall-clock")
    # With business hours (09:00-17:00 on weekdays) the two overnight answers were in time.
    office = replace(acme, care=Care(BusinessHours("UTC", dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), (("09:00", "17:00"),)))))
    business = await watchlist_kpis(db["pool"], office, Window(LAUNCH, AS_OF), now=AS_OF)
    assert business.sla_clock == "business-hours"
    assert business.figure("answered_within_sla").value == pytest.approx(12 / 18)
    assert business.figure("share_of_voice").value is None  # nothing compared


@pytest.fixture(scope="module")
async def api(db: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(_env_file=None)
    app = build_api(db["pool"], Health("storage"), KeyRing.from_settings(settings), lambda: db["watchlists"],
                    limits=RequestLimits.from_settings(settings, keys_configured=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost", timeout=60) as client:
        yield client


async def test_the_campaign_api(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/v1/campaigns", params={"as_of": AS_OF.isoformat()})).json()
    assert [c["watchlist_id"] for c in listed["campaigns"]] == ["winter-sale", "quiet-promo"]
    verdicts = {c["watchlist_id"]: {x["metric"]: x["verdict"] for x in c["lifts"]} for c in listed["campaigns"]}
    assert verdicts["winter-sale"]["volume"] == "increase" and verdicts["quiet-promo"]["volume"] == "no significant change"
    r = await api.get("/v1/campaigns/winter-sale", params={"as_of": AS_OF.isoformat(), "tz": "Europe/Berlin", "posts": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["window"] == {"from": "2026-03-02T09:00:00Z", "to": "2026-03-05T09:00:00Z"}
    assert body["baseline"] == {"from": "2026-02-23T09:00:00Z", "to": "2026-02-26T09:00:00Z"}
    assert len(body["posts"]) == 3 and body["posts"][0]["text"] == DRIVER and body["posts"][0]["href"].startswith("#mention?")
    volume = next(x for x in body["lifts"] if x["metric"] == "volume")
    assert volume["low"] > 1 and volume["interval_display"].startswith("×") and "quasi-Poisson" in volume["method"]
    for name in ("lift", "series"):
        root = ET.fromstring(body["charts"][name])  # well-formed SVG
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (await api.get("/v1/campaigns/acme-air")).status_code == 404  # a brand, not a campaign
    assert (await api.get("/v1/campaigns/nope")).status_code == 404
    assert (await api.get("/v1/campaigns/winter-sale", params={"as_of": "2026-03-05T09:00:00"})).status_code == 422
    assert (await api.get("/v1/campaigns/winter-sale", params={"tz": "Mars/Olympus"})).status_code == 422


async def test_the_kpi_api(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/watchlists/acme-air/kpis", params={"from": LAUNCH.isoformat(), "to": AS_OF.isoformat()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["period"] == {"from": "2026-03-02T09:00:00Z", "to": "2026-03-05T09:00:00Z"} and body["configured"]
    kpis = {k["name"]: k for k in body["kpis"]}
    assert list(kpis) == ["net_sentiment", "share_of_voice", "first_response_s", "answered_within_sla"]
    assert kpis["first_response_s"]["display"] == "10 min" and kpis["first_response_s"]["target_display"] == "≤ 15 min"
    assert kpis["net_sentiment"]["status"] == "met" and kpis["answered_within_sla"]["status"] == "missed"
    # Without a period: the week up to the newest stored mention, not up to now.
    default = (await api.get("/v1/watchlists/acme-air/kpis")).json()
    assert datetime.fromisoformat(default["period"]["to"]) <= AS_OF + timedelta(days=1)
    assert datetime.fromisoformat(default["period"]["to"]) - datetime.fromisoformat(default["period"]["from"]) == timedelta(days=7)
    # A watchlist without targets still has its figures; an unknown one is a 404.
    sky = (await api.get("/v1/watchlists/skyjet/kpis", params={"from": LAUNCH.isoformat(), "to": AS_OF.isoformat()})).json()
    assert not sky["has_targets"] and {k["status"] for k in sky["kpis"]} == {"no_target"}
    assert (await api.get("/v1/watchlists/nope/kpis")).status_code == 404


"""Owned and earned, and advocates, on the bundled sample: enriched for real, stored by the writer
with the sample watchlists in force, read back through the query API and the dashboard.

The brand's care handle (@AcmeAirHelp) posts more about Acme Air than anyone: stored, it still
answers questions but is no longer counted as a mention of the brand, so it is not the top author;
the top advocates are people, not the news outlets or the brands' own accounts; and every rollup
still agrees with a recount from the stored mentions.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest

from earful.core.auth import KeyRing
from earful.core.health import Health
from earful.core.http import RequestLimits
from earful.core.mention import MentionIn, to_record
from earful.core.migrate import migrate
from earful.core.settings import Settings
from earful.enrichment.processor import EnrichmentProcessor
from earful.storage.api import build_api
from earful.storage.api.entities import top_advocates, top_authors
from earful.storage.api.queries import AUTHOR_KEY, VELOCITY, advocate_ranking
from earful.storage.writer import BrandHandles, WriterState, mention_row, write_batch
from earful.watchlists import WatchlistSet
from earful.watchlists.authors import author_type
from earful.watchlists.owned import OwnedHandles
from earful_dev.sample.generator import read_meta, read_stream
from tests.integration.test_storage_db import assert_rollups_match_recount

pytestmark = pytest.mark.integration
UTC = timezone.utc
BRAND = "acme-air"
CARE = "acmeairhelp"
OWN = {"acmeair", "acmeairhelp"}  # acme-air's `handles`, lower case


@pytest.fixture(scope="module")
async def stored(pg_url: str) -> AsyncIterator[dict[str, Any]]:
    """The sample, enriched and written in batches as the storage consumer writes them."""
    settings = Settings(_env_file=None)
    watchlists = WatchlistSet.from_file(settings.watchlists_dir)
    meta = read_meta()
    end = datetime.fromisoformat(meta["end"].replace("Z", "+00:00"))
    received = end + timedelta(hours=1)  # a fixed "now": engagement velocities do not depend on the day the test runs
    records = [to_record(MentionIn.model_validate(line["mention"]), received) for line in read_stream()]
    processor = EnrichmentProcessor(watchlists, settings.spacy_model)
    enriched = [e for i in range(0, len(records), 64) for e in processor.enrich(records[i:i + 64], received)]
    owned = OwnedHandles.of(watchlists.watchlists.values())
    brands = BrandHandles.of(watchlists.watchlists.values())
    conn = await asyncpg.connect(pg_url)
    await migrate(conn)
    state = WriterState()
    rows = [mention_row(e) for e in enriched]
    for i in range(0, len(rows), 250):
        await write_batch(conn, rows[i:i + 250], [], brands=brands, owned=owned, state=state)
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=3)
    start = datetime.fromisoformat(meta["start"].replace("Z", "+00:00"))
    try:
        yield {"conn": conn, "pool": pool, "watchlists": watchlists, "owned": owned, "lo": start,
               "hi": start + timedelta(days=1)}
    finally:
        await pool.close()
        await conn.close()


async def test_the_care_handle_is_stored_but_not_counted_as_a_mention(stored: dict[str, Any]) -> None:
    conn = stored["conn"]
    # Without the owned rule the care handle would be the brand's top author: a recount ignoring it.
    unfiltered = await conn.fetch(
        "SELECT lower(author_handle) AS author, count(*) AS n FROM mentions WHERE $1 = ANY(watchlist_ids)"
        " GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3", BRAND)
    assert unfiltered[0]["author"] == CARE, unfiltered
    # Stored, marked owned for acme-air only, and in nobody's rollups for it.
    owned_rows = await conn.fetch("SELECT lower(author_handle) AS author, watchlist_ids, owned_watchlist_ids FROM mentions"
                                  " WHERE cardinality(owned_watchlist_ids) > 0")
    assert owned_rows and {r["author"] for r in owned_rows if BRAND in r["owned_watchlist_ids"]} <= OWN
    assert any(r["author"] == CARE for r in owned_rows)
    for r in owned_rows:
        assert set(r["owned_watchlist_ids"]) <= set(r["watchlist_ids"])
    authors = await top_authors(stored["pool"], BRAND, stored["lo"], stored["hi"], 10)
    assert authors and (authors[0]["author_handle"] or "").lower() != CARE, authors[:3]
    assert not {(a["author_handle"] or "").lower() for a in authors} & OWN, authors
    assert not await conn.fetchval("SELECT count(*) FROM author_totals WHERE watchlist_id = $1 AND author_key = ANY($2)",
                                   BRAND, sorted(OWN))
    # Still replies: the care handle's answers are brand replies, and questions they answer are answered.
    assert await conn.fetchval("SELECT count(*) FROM brand_replies WHERE watchlist_id = $1", BRAND) > 0
    assert await conn.fetchval("SELECT count(*) FROM questions WHERE watchlist_id = $1 AND first_reply_at IS NOT NULL",
                               BRAND) > 0
    # Volume counts earned mentions only: the rollups hold exactly the stored mentions minus the owned ones.
    earned = await conn.fetchval("SELECT count(*) FROM mentions WHERE $1 = ANY(watchlist_ids)"
                                 " AND $1 <> ALL(owned_watchlist_ids)", BRAND)
    total = await conn.fetchval("SELECT count(*) FROM mentions WHERE $1 = ANY(watchlist_ids)", BRAND)
    assert earned < total
    assert await conn.fetchval("SELECT sum(mentions) FROM mention_rollups_day WHERE watchlist_id = $1", BRAND) == earned
    assert await conn.fetchval("SELECT sum(mentions) FROM watchlist_rollups_day WHERE watchlist_id = $1", BRAND) == earned
    await assert_rollups_match_recount(conn)


async def test_the_top_advocates_are_people(stored: dict[str, Any]) -> None:
    pool, owned = stored["pool"], stored["owned"]
    lo, hi = stored["lo"], stored["hi"]
    # The brand's most prolific earned authors include news outlets (they post most after the care
    # handle): the advocates, ranked by how far praise travels, are people only.
    authors = await top_authors(pool, BRAND, lo, hi, 10)
    outlets = {a["author_handle"] for a in authors if author_type(a["source"], a["author_handle"], None, a["author_name"],
                                                                    None, owned) == "media"}
    assert outlets, authors
    sql, args = advocate_ranking(BRAND, lo, hi, 1)
    ranked = await pool.fetch(sql, *args)
    assert ranked and all(r["positive"] >= 1 for r in ranked)
    for wid in ("acme-air", "globex", "initech", "skyjet"):
        found = await top_advocates(pool, wid, lo, hi, 10, 1, owned)
        assert found, wid
        for a in found:
            assert a["author_type"] == "person" and a["source"] != "news" and a["author_handle"] not in outlets, (wid, a)
            assert owned.account_kind(a["source"], a["author_handle"], a["author_id"]) is None, (wid, a)
            assert a["positive"] >= 1 and a["positive"] > a["negative"]
            assert 1 <= len(a["best_posts"]) <= 3 and a["best_posts"][0]["amplification"] <= a["amplification"] + 1e-6
        amplification = [a["amplification"] for a in found]
        assert amplification == sorted(amplification, reverse=True), wid
    top = (await top_advocates(pool, BRAND, lo, hi, 1, 1, owned))[0]
    assert top["best_posts"] and top["reposts"] + top["replies"] + top["velocity"] == pytest.approx(top["amplification"], abs=0.02)


#: The advocates' figures counted straight from the stored mentions (what the ranking read before
#: the author rollups held engagement): per earned author of the brand, positive and negative posts
#: in [$2, $3) and what the positive ones gathered; previous: the same positive figures in [$4, $2).
FROM_MENTIONS = f"""
    SELECT m.source, {AUTHOR_KEY} AS author_key,
           count(*) FILTER (WHERE m.created_at >= $2 AND m.sentiment = 'positive') AS positive,
           count(*) FILTER (WHERE m.created_at >= $2 AND m.sentiment = 'negative') AS negative,
           coalesce(sum(m.reposts + m.replies + {VELOCITY}) FILTER (WHERE m.created_at >= $2 AND m.sentiment = 'positive'), 0)
               AS amplification,
           coalesce(sum(m.likes) FILTER (WHERE m.created_at >= $2 AND m.sentiment = 'positive'), 0) AS likes,
           coalesce(sum(m.reposts + m.replies + {VELOCITY}) FILTER (WHERE m.created_at < $2 AND m.sentiment = 'positive'), 0)
               AS previous_amplification
    FROM mentions m
    WHERE $1 = ANY (m.watchlist_ids) AND $1 <> ALL (m.owned_watchlist_ids) AND m.created_at >= $4 AND m.created_at < $3
      AND (m.author_handle IS NOT NULL OR m.author_id IS NOT NULL)
    GROUP BY 1, 2"""


BEST_FROM_MENTIONS = f"""
    SELECT m.mention_id FROM mentions m
    WHERE $1 = ANY (m.watchlist_ids) AND $1 <> ALL (m.owned_watchlist_ids) AND m.created_at >= $2 AND m.created_at < $3
      AND m.source = $4 AND {AUTHOR_KEY} = $5 AND m.sentiment = 'positive'
    ORDER BY m.reposts + m.replies + {VELOCITY} DESC, m.created_at DESC, m.mention_id LIMIT 3"""


async def test_the_advocates_from_rollups_are_the_advocates_counted_from_the_mentions(stored: dict[str, Any]) -> None:
    """Engagement keeps changing after a post is stored; the rollups must rank as a count from the
    posts would, on every watchlist of the sample."""
    pool, owned, lo, hi = stored["pool"], stored["owned"], stored["lo"], stored["hi"]
    for wid in ("acme-air", "globex", "initech", "skyjet"):
        counted = {(r["source"], r["author_key"]): r for r in await pool.fetch(FROM_MENTIONS, wid, lo, hi, lo - (hi - lo))}
        found = await top_advocates(pool, wid, lo, hi, 10, 1, owned, best_posts=3)
        assert found, wid
        for a in found:  # the best posts, read from the days that can hold them, are the author's best
            key = (a["author_handle"] or "").lower() or f"id:{a['author_id']}"
            best = await pool.fetch(BEST_FROM_MENTIONS, wid, lo, hi, a["source"], key)
            assert [p["mention_id"] for p in a["best_posts"]] == [str(r["mention_id"]) for r in best], (wid, a)
        for a in found:
            c = counted[(a["source"], (a["author_handle"] or "").lower() or f"id:{a['author_id']}")]
            assert (a["positive"], a["negative"], a["likes"]) == (c["positive"], c["negative"], c["likes"]), (wid, a)
            assert a["amplification"] == pytest.approx(float(c["amplification"]), abs=0.01), (wid, a)
            assert a["previous_amplification"] == pytest.approx(float(c["previous_amplification"]), abs=0.01), (wid, a)
        # No person outside the list gathered more than its last place.
        shown = {(a["source"], (a["author_handle"] or "").lower() or f"id:{a['author_id']}") for a in found}
        better = [k for k, c in counted.items() if k not in shown and c["positive"] >= 1 and c["positive"] > c["negative"]
                  and float(c["amplification"]) > found[-1]["amplification"] + 0.01
                  and author_type(k[0], k[1], None, None, None, owned) == "person"]
        assert not better or len(found) < 10, (wid, better[:3])


@pytest.fixture
async def api(stored: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(_env_file=None)
    app = build_api(stored["pool"], Health("storage"), KeyRing.from_settings(settings), lambda: stored["watchlists"],
                    limits=RequestLimits.from_settings(settings, keys_configured=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost", timeout=60) as client:
        yield client


async def test_the_api_keeps_owned_and_earned_apart(api: httpx.AsyncClient, stored: dict[str, Any]) -> None:
    period = {"from": stored["lo"].isoformat(), "to": stored["hi"].isoformat()}
    owned = (await api.get("/v1/mentions", params={"watchlist": BRAND, "owned": "true", "limit": 500, **period})).json()
    assert owned["mentions"] and all(m["owned"] and (m["author_handle"] or "").lower() in OWN for m in owned["mentions"])
    earned = (await api.get("/v1/mentions", params={"watchlist": BRAND, "owned": "false", "limit": 500, **period})).json()
    assert earned["mentions"] and not any(m["owned"] or (m["author_handle"] or "").lower() in OWN for m in earned["mentions"])
    listed = (await api.get("/v1/mentions", params={"watchlist": BRAND, "source": "twitter", "limit": 500, **period})).json()
    marked = {m["mention_id"]: m["owned"] for m in listed["mentions"]}  # default any: both, each marked
    assert True in marked.values() and False in marked.values()
    assert (await api.get("/v1/mentions", params={"owned": "maybe"})).status_code == 422
    entities = (await api.get(f"/v1/watchlists/{BRAND}/entities", params=period)).json()
    assert (entities["authors"][0]["author_handle"] or "").lower() != CARE
    body = (await api.get(f"/v1/watchlists/{BRAND}/advocates", params={"min_positive": 1, **period})).json()
    assert body["advocates"] and all(a["author_type"] == "person" for a in body["advocates"])
    assert {"trend", "change", "previous_amplification", "velocity", "best_posts"} <= set(body["advocates"][0])
    exported = await api.get(f"/v1/watchlists/{BRAND}/advocates", params={"min_positive": 1, "format": "csv", **period})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["author_handle"] for r in table] == [a["author_handle"] for a in body["advocates"]]
    assert table[0]["best_posts"].startswith("http")


async def test_the_dashboard_advocates_panel_shows_people(api: httpx.AsyncClient, stored: dict[str, Any]) -> None:
    r = await api.get("/v1/dashboard", params={"watchlist": BRAND, "length": "24h", "to": stored["hi"].isoformat()})
    assert r.status_code == 200, r.text
    panel = r.json()["lists"]["advocates"]
    assert panel and all(a["author_type"] == "person" and a["source"] != "news" for a in panel)
    assert not {(a["author_handle"] or "").lower() for a in panel} & OWN
    assert all(a["href"].startswith("#mention?id=") for a in panel)

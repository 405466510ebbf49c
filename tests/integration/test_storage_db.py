"""Storage against a real PostgreSQL: migrations (empty and upgrade), the idempotent writer, rollups
against a recount, engagement updates, questions, erasure and retention."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from earful.core.db import drop_database, ensure_database, with_database
from earful.core.migrate import MIGRATIONS_DIR, migrate, migration_files
from earful.storage.api.entities import top_advocates
from earful.storage.api.mentions import newest_first
from earful.storage.api.queries import MentionFilter, mention_search
from earful.storage.erasure import erase_author
from earful.storage.retention import apply_retention, create_partitions_ahead
from earful.storage.writer import (
    BrandHandles,
    WriterState,
    alert_row,
    existing_partitions,
    mention_row,
    nul_columns,
    write_batch,
)
from earful.watchlists import Watchlist
from earful.watchlists.owned import OwnedHandles
from tests.support import eventually, example

pytestmark = pytest.mark.integration
UTC = timezone.utc
REPO = Path(__file__).resolve().parents[2]
BRANDS = BrandHandles.of([Watchlist("acme-air", "Acme Air", "brand", ("Acme Air",), ("AcmeAir", "AcmeAirHelp")),
                          Watchlist("globex", "Globex", "brand", ("Globex",), ("GlobexCares",))])
ROLLUPS = ("mention_rollups_minute", "mention_rollups_hour", "mention_rollups_day")


def enriched(source_id: str, created: datetime, *, watchlists: tuple[str, ...] = ("acme-air",), handle: str = "jane",
             author_id: str | None = None, sentiment: str | None = "negative", text: str = "Acme Air lost my bag",
             entities: list[dict[str, Any]] | None = None, risks: tuple[str, ...] = (), reply_to: str | None = None,
             likes: int = 0, observed: datetime | None = None, lang: str = "en", source: str = "twitter",
             followers: int | None = 100) -> dict[str, Any]:
    """The schema's first enriched example, changed in what these tests vary."""
    record = example("enriched_mention/v2/01_english_complaint")
    record["mention"].update({
        "mention_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source}/{source_id}")), "source": source,
        "source_id": source_id, "url": None,
        "author": {"id": author_id or f"id-{handle}", "handle": handle, "display_name": handle.title(), "followers": followers},
        "text": text, "lang": lang, "created_at": created, "received_at": created + timedelta(seconds=1),
        "in_reply_to": reply_to, "reposted_from": None, "country": None,
        "engagement": {"likes": likes, "reposts": 0, "replies": 0, "observed_at": observed},
    })
    record.update({
        "language": {"code": lang, "confidence": 0.99},
        "entities": entities if entities is not None else [{"text": "#AcmeAir", "type": "hashtag", "start": 0, "end": 8, "origin": "rules"}],
        "sentiment": {"label": sentiment, "score": 0.0, "reason": None if sentiment else "unsupported_language:de", "probabilities": None},
        "risks": [{"tag": r, "evidence": "x", "start": 0, "end": 1} for r in risks], "watchlist_ids": list(watchlists),
        "matches": [{"watchlist_id": w, "start": 0, "end": 4, "term": "Acme Air"} for w in watchlists],
        "enriched_at": created + timedelta(seconds=2),
    })
    return record


def rows(*records: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [mention_row(r) for r in records]


@pytest.fixture
async def db(pg_url: str) -> Any:
    """A fresh, migrated database per test (on the module's server)."""
    url = with_database(pg_url, f"earful_s_{uuid.uuid4().hex[:10]}")
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    await migrate(conn)
    try:
        yield conn, url
    finally:
        await conn.close()
        await drop_database(url)


async def val(conn: asyncpg.Connection, sql: str, *args: Any) -> Any:
    return await conn.fetchval(sql, *args)


async def assert_rollups_match_recount(conn: asyncpg.Connection) -> None:
    for table in ROLLUPS:
        granularity = table.rsplit("_", 1)[1]
        for a, b in ((table, (f"(SELECT watchlist_id, bucket, sentiment, source, lang, mentions FROM mention_rollups_recount"
                              f" WHERE granularity = '{granularity}') r")),):
            diff = await conn.fetch(f"(SELECT watchlist_id, bucket, sentiment, source, lang, mentions FROM {a} EXCEPT SELECT * FROM {b})"
                                    f" UNION ALL (SELECT * FROM {b} EXCEPT SELECT watchlist_id, bucket, sentiment, source, lang, mentions FROM {a})")
            assert not diff, (table, diff[:5])
    for unit in ("minute", "hour", "day"):
        diff = await conn.fetch(
            f"(SELECT bucket, watchlist_id, sentiment, mentions FROM watchlist_rollups_{unit} EXCEPT"
            f" SELECT bucket, watchlist_id, sentiment, sum(mentions) FROM mention_rollups_recount WHERE granularity = '{unit}' GROUP BY 1, 2, 3)"
            f" UNION ALL (SELECT bucket, watchlist_id, sentiment, sum(mentions) FROM mention_rollups_recount"
            f" WHERE granularity = '{unit}' GROUP BY 1, 2, 3 EXCEPT SELECT bucket, watchlist_id, sentiment, mentions FROM watchlist_rollups_{unit})")
        assert not diff, (unit, diff[:5])
        tags = f"(SELECT watchlist_id, bucket, tag, mentions FROM tag_rollups_recount WHERE granularity = '{unit}') r"
        diff = await conn.fetch(f"(SELECT watchlist_id, bucket, tag, mentions FROM tag_rollups_{unit} EXCEPT SELECT * FROM {tags})"
                                f" UNION ALL (SELECT * FROM {tags} EXCEPT SELECT watchlist_id, bucket, tag, mentions FROM tag_rollups_{unit})")
        assert not diff, (f"tag_rollups_{unit}", diff[:5])
    for table, cols in (("mention_totals_day", "bucket, mentions"),
                        ("entity_rollups_day", "watchlist_id, bucket, entity_type, entity_key, mentions"),
                        ("author_rollups_day", ("watchlist_id, bucket, source, author_key, mentions, positive, negative, reach,"
                                                " pos_likes, pos_reposts, pos_replies, pos_velocity")),
                        ("author_totals", "watchlist_id, source, author_key, mentions, positive, negative"),
                        ("entity_totals", "watchlist_id, entity_type, entity_key, mentions")):
        recount = {"mention_totals_day": "mention_totals_recount"}.get(table, table.replace("_day", "") + "_recount")
        diff = await conn.fetch(f"(SELECT {cols} FROM {table} EXCEPT SELECT {cols} FROM {recount})"
                                f" UNION ALL (SELECT {cols} FROM {recount} EXCEPT SELECT {cols} FROM {table})")
        assert not diff, (table, diff[:5])
    # The best positive post's amplification of an author-day is kept as an upper bound (it only grows).
    below = await conn.fetch(
        "SELECT r.* FROM author_rollups_recount r JOIN author_rollups_day t USING (watchlist_id, bucket, source, author_key)"
        " WHERE r.pos_best IS NOT NULL AND (t.pos_best IS NULL OR t.pos_best < r.pos_best)")
    assert not below, ("author_rollups_day.pos_best", below[:5])


# --- migrations --------------------------------------------------------------------------------


async def test_migrations_from_empty_then_again(db: Any) -> None:
    conn, _ = db
    assert await migrate(conn) == []  # applied by the fixture already; a second run changes nothing
    assert await val(conn, "SELECT relkind::text FROM pg_class WHERE relname = 'mentions'") == "p"
    versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [version for version, _, _ in migration_files()]  # every file, storage's and alerting's
    assert await val(conn, "SELECT earful_text_search_config('de')::text") == "german"
    assert await val(conn, "SELECT earful_text_search_config('xx')::text") == "simple"


async def test_the_text_search_configuration_is_inlined(db: Any) -> None:
    """Not inlined, the function ran once per row written (as costly as stemming the text)."""
    conn, _ = db
    plan = "\n".join(r[0] for r in await conn.fetch(
        "EXPLAIN VERBOSE SELECT to_tsvector(earful_text_search_config(lang), text) FROM mentions"))
    assert "earful_text_search_config" not in plan and "CASE lang" in plan


async def test_upgrade_from_version_001_with_data(pg_url: str, tmp_path: Path) -> None:
    url = with_database(pg_url, f"earful_u_{uuid.uuid4().hex[:10]}")
    await ensure_database(url)
    only_001 = tmp_path / "m"
    only_001.mkdir()
    shutil.copy(MIGRATIONS_DIR / "001_initial.sql", only_001)
    conn = await asyncpg.connect(url)
    try:
        assert await migrate(conn, only_001) == ["001_initial"]
        t0 = datetime(2026, 10, 30, 23, 59, 30, tzinfo=UTC)
        old = [(uuid.uuid4(), "twitter", f"v1-{i}", None, "u1", "jdoe", "J", 10 + i, f"Flights cancelled again {i}", "en", "en",
                0.9, t0 + timedelta(minutes=i), t0, t0, None, None, i, 0, 0, "negative" if i else None, -0.5, None,
                ["acme-air"] if i != 1 else [], '[{"text": "#AcmeAir", "type": "hashtag", "start": 0, "end": 8, "origin": "rules"}]',
                '[{"tag": "operational", "evidence": "cancelled", "start": 8, "end": 17}]', "[]", "{}")
               for i in range(3)]
        await conn.copy_records_to_table("mentions", records=old, columns=(
            "mention_id", "source", "source_id", "url", "author_id", "author_handle", "author_name", "author_followers",
            "text", "declared_lang", "lang", "lang_confidence", "created_at", "received_at", "enriched_at",
            "in_reply_to", "reposted_from", "likes", "reposts", "replies", "sentiment", "sentiment_score",
            "sentiment_reason", "watchlist_ids", "entities", "risks", "matches", "models"))
        await conn.execute("INSERT INTO mention_rollups_minute VALUES ('acme-air', $1, 'negative', 2)", t0)
        await conn.execute(
            "INSERT INTO alerts (alert_id, status, fingerprint, rule, watchlist_id, severity, labels, summary, observed,"
            " baseline, score, bucket_seconds, starts_at, detected_at, sample_mention_ids)"
            " VALUES ('a-1', 'firing', 'fp', 'volume_spike', 'acme-air', 'critical', '{}', 's', 1, 1, 1, 10, $1, $1, '{}')", t0)

        applied = await migrate(conn)
        assert applied == [f"{version:03d}_{name}" for version, name, _ in migration_files() if version > 1]
        assert await val(conn, "SELECT count(*) FROM mentions") == 3
        assert await val(conn, "SELECT count(*) FROM mention_keys") == 3
        assert sorted(d.isoformat() for d in await existing_partitions(conn)) == ["2026-10-30", "2026-10-31"]
        assert await val(conn, "SELECT facets FROM mentions WHERE source_id = 'v1-0'") == ["w:acme-air", "e:#acmeair", "r:operational"]
        assert await val(conn, "SELECT count(*) FROM mentions WHERE tsv @@ websearch_to_tsquery('english', 'cancel flight')") == 3
        assert await val(conn, "SELECT count(*) FROM mentions WHERE facets @> '{e:#acmeair}'") == 3
        # Rollups were rebuilt with the new dimensions: 3 mentions, one under '(none)', one sentiment unknown.
        assert await val(conn, "SELECT sum(mentions) FROM mention_rollups_minute") == 3
        assert await val(conn, "SELECT sum(mentions) FROM mention_rollups_day WHERE watchlist_id = '(none)'") == 1
        assert await val(conn, "SELECT sum(mentions) FROM mention_rollups_hour WHERE sentiment = 'unknown'") == 1
        await assert_rollups_match_recount(conn)
        assert await val(conn, "SELECT annotations::text FROM alerts") == "{}"
        # The upgraded database takes new writes; the old rows still deduplicate.
        again = enriched("v1-2", t0 + timedelta(minutes=2))
        result = await write_batch(conn, rows(again, enriched("v2-new", t0 + timedelta(hours=1))), [])
        assert (result.mentions_inserted, result.mentions_duplicate) == (1, 1)
        await assert_rollups_match_recount(conn)
    finally:
        await conn.close()
        await drop_database(url)


# --- the writer --------------------------------------------------------------------------------


async def test_same_batch_twice_and_a_replay_change_nothing(db: Any) -> None:
    conn, _ = db
    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    batch = rows(*(enriched(f"s{i}", t + timedelta(seconds=37 * i), watchlists=("acme-air",) if i % 3 else ())
                   for i in range(50)))
    state = WriterState()
    first = await write_batch(conn, batch, [], state=state)
    assert (first.mentions_inserted, first.mentions_duplicate) == (50, 0)
    snapshot = await conn.fetch("SELECT * FROM mention_rollups_minute ORDER BY 1, 2, 3, 4, 5")
    second = await write_batch(conn, batch, [], state=state)
    assert (second.mentions_inserted, second.mentions_duplicate, second.mentions_updated) == (0, 50, 0)
    # A replay in other batch boundaries, with a fresh writer (a restarted process).
    for i in range(0, 50, 7):
        assert (await write_batch(conn, batch[i:i + 7], [])).mentions_inserted == 0
    assert await val(conn, "SELECT count(*) FROM mentions") == 50
    assert await conn.fetch("SELECT * FROM mention_rollups_minute ORDER BY 1, 2, 3, 4, 5") == snapshot
    assert await val(conn, "SELECT sum(mentions) FROM mention_rollups_minute") == 50
    # The same mention twice in one batch is one row.
    dup = await write_batch(conn, rows(enriched("x1", t), enriched("x1", t)), [])
    assert (dup.mentions_inserted, dup.mentions_duplicate) == (1, 1)
    await assert_rollups_match_recount(conn)


async def test_a_later_observation_updates_engagement_only(db: Any) -> None:
    conn, _ = db
    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    await write_batch(conn, rows(enriched("v", t, likes=3, observed=t + timedelta(minutes=1))), [])
    rollups = await conn.fetch("SELECT * FROM mention_rollups_minute")
    newer = await write_batch(conn, rows(enriched("v", t, likes=900, observed=t + timedelta(hours=1))), [])
    assert (newer.mentions_inserted, newer.mentions_updated) == (0, 1)
    older = await write_batch(conn, rows(enriched("v", t, likes=7, observed=t + timedelta(minutes=30))), [])
    assert older.mentions_updated == 0
    row = await conn.fetchrow("SELECT likes, engagement_observed_at FROM mentions")
    assert (row["likes"], row["engagement_observed_at"]) == (900, t + timedelta(hours=1))
    assert await conn.fetch("SELECT * FROM mention_rollups_minute") == rollups
    assert await val(conn, "SELECT count(*) FROM mentions") == 1


async def test_a_positive_posts_new_engagement_moves_its_authors_rollup(db: Any) -> None:
    """The advocates' ranking reads what an author's positive posts gathered from author_rollups_day:
    a re-observed post's engagement (and velocity) must move there too, and only a positive one's."""
    conn, _ = db
    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    await write_batch(conn, rows(enriched("p", t, sentiment="positive", likes=3, observed=t + timedelta(hours=2)),
                                 enriched("n", t, handle="bob", likes=5, observed=t + timedelta(hours=2))), [])
    await write_batch(conn, rows(enriched("p", t, sentiment="positive", likes=900, observed=t + timedelta(hours=3)),
                                 enriched("n", t, handle="bob", likes=50, observed=t + timedelta(hours=3))), [])
    day = await conn.fetch("SELECT author_key, pos_likes, pos_velocity FROM author_rollups_day ORDER BY author_key")
    assert [(r["author_key"], r["pos_likes"], float(r["pos_velocity"])) for r in day] == [("bob", 0, 0.0), ("jane", 900, 300.0)]
    await assert_rollups_match_recount(conn)


async def test_tags_are_counted_once_per_mention_and_not_for_the_brands_own_posts(db: Any) -> None:
    conn, _ = db
    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    await write_batch(conn, rows(enriched("a", t, risks=("complaint", "complaint", "operational")),
                                 enriched("b", t + timedelta(minutes=1), risks=("complaint",), watchlists=("acme-air", "globex")),
                                 enriched("own", t, handle="AcmeAir", risks=("complaint",)),
                                 enriched("none", t, watchlists=(), risks=("complaint",))), [], owned=OWNED)
    got = await conn.fetch("SELECT watchlist_id, tag, mentions FROM tag_rollups_day ORDER BY 1, 2")
    assert [tuple(r) for r in got] == [("acme-air", "complaint", 2), ("acme-air", "operational", 1), ("globex", "complaint", 1)]
    assert await val(conn, "SELECT sum(mentions) FROM tag_rollups_minute WHERE tag = 'complaint'") == 3
    await assert_rollups_match_recount(conn)


async def test_a_newest_first_search_read_in_windows_is_the_one_query_answer(db: Any) -> None:
    """The mentions search reads the period's last days first and widens (SEARCH_WINDOWS): every
    page, with and without a cursor or bounds, must be what one query over the period returns."""
    conn, url = db
    end = datetime.now(UTC).replace(microsecond=0)
    ages = [0.2, 0.5, 1, 1.5, 3, 5, 9, 13, 16, 20, 30, 45]  # days: inside each window and beyond
    await write_batch(conn, rows(*[enriched(f"s{i}", end - timedelta(days=d)) for i, d in enumerate(ages)]), [])
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        for f in (MentionFilter(watchlist="acme-air"), MentionFilter(watchlist="acme-air", from_=end - timedelta(days=10)),
                  MentionFilter(to=end - timedelta(days=1))):
            for limit in (1, 3, 5, 20):
                sql, args = mention_search(f, "time", None, limit)
                whole = await pool.fetch(sql, *args)
                assert [r["mention_id"] for r in await newest_first(pool, f, "time", None, limit)] == \
                       [r["mention_id"] for r in whole], (f, limit)
                if len(whole) > limit:  # the next page, after the cursor
                    after = (whole[limit - 1]["sort_key"], whole[limit - 1]["mention_id"])
                    sql, args = mention_search(f, "time", after, limit)
                    assert [r["mention_id"] for r in await newest_first(pool, f, "time", after, limit)] == \
                           [r["mention_id"] for r in await pool.fetch(sql, *args)], (f, limit, "next page")
    finally:
        await pool.close()


async def test_rollups_agree_with_a_recount(db: Any) -> None:
    conn, _ = db
    t = datetime(2026, 11, 1, 23, 50, tzinfo=UTC)
    ents = [{"text": "#AcmeAir", "type": "hashtag", "start": 0, "end": 8, "origin": "rules"},
            {"text": "#acmeair", "type": "hashtag", "start": 9, "end": 17, "origin": "rules"},
            {"text": "Zürich", "type": "location", "start": 18, "end": 24, "origin": "ner"}]
    records = []
    for i in range(120):
        records.append(enriched(
            f"r{i}", t + timedelta(minutes=i * 0.37), watchlists=(("acme-air",), ("globex",), ("acme-air", "globex"), ())[i % 4],
            handle=f"user{i % 9}", sentiment=(None, "negative", "neutral", "positive")[i % 4], lang=("en", "de", "fr")[i % 3],
            source=("twitter", "mastodon")[i % 2], entities=ents[: i % 4], followers=i * 10 if i % 5 else None))
    state = WriterState()
    for i in range(0, len(records), 25):
        await write_batch(conn, rows(*records[i:i + 25]), [], state=state)
    await write_batch(conn, rows(*records[10:60]), [], state=state)  # re-delivered
    await assert_rollups_match_recount(conn)
    assert await val(conn, "SELECT count(*) FROM mentions") == 120
    await erase_author(conn, "twitter", "user2", via="test")
    await assert_rollups_match_recount(conn)
    assert await val(conn, "SELECT count(*) FROM mention_rollups_minute WHERE mentions <= 0") == 0


# --- owned and earned ------------------------------------------------------------------------------

OWNED = OwnedHandles.of([
    Watchlist("acme-air", "Acme Air", "brand", ("Acme Air",), ("AcmeAir", "AcmeAirHelp")),
    Watchlist("globex", "Globex", "brand", ("Globex",), ("GlobexCares", "bluesky:id:did:plc:globex")),
    Watchlist("acme-staff", "Acme staff", "staff", ("Acme",), ("pat_at_acme",)),
], extra=("mastodon:acmenews",))


async def test_owned_posts_are_stored_but_left_out_of_every_rollup(db: Any) -> None:
    """A brand's own accounts (its handles, a staff watchlist's, EARFUL_OWNED_HANDLES) are stored,
    marked owned per watchlist, left out of that watchlist's rollups, and still reply to questions;
    the rollups agree with a recount under the same rule, through re-delivery, erasure and a rebuild."""
    conn, _ = db
    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    both = ("acme-air", "globex")
    records = [
        enriched("q", t, handle="ann", risks=("customer_question",), sentiment="negative"),
        enriched("care", t + timedelta(minutes=3), handle="AcmeAirHelp", reply_to="q", sentiment="positive", watchlists=both),
        enriched("brand", t + timedelta(minutes=4), handle="acmeair", sentiment="positive"),
        enriched("staff", t + timedelta(minutes=5), handle="Pat_At_Acme", sentiment="positive", watchlists=both),
        enriched("setting", t + timedelta(minutes=6), handle="AcmeNews", source="mastodon", watchlists=both),
        enriched("setting-elsewhere", t + timedelta(minutes=6), handle="AcmeNews", source="twitter"),
        enriched("did", t + timedelta(minutes=7), author_id="did:plc:globex", source="bluesky", watchlists=both),
        enriched("fan", t + timedelta(minutes=8), handle="fan", sentiment="positive", watchlists=both),
        enriched("staff-list", t + timedelta(minutes=9), handle="pat_at_acme", watchlists=("acme-staff",)),
    ]
    records[6]["mention"]["author"]["handle"] = None  # Bluesky posts carry the account's DID, no handle
    state = WriterState()
    await write_batch(conn, rows(*records), [], brands=BRANDS, owned=OWNED, state=state)
    await write_batch(conn, rows(*records[2:6]), [], brands=BRANDS, owned=OWNED, state=state)  # re-delivered
    got = {r["source_id"]: r["owned_watchlist_ids"]
           for r in await conn.fetch("SELECT source_id, owned_watchlist_ids FROM mentions")}
    assert got == {"q": [], "care": ["acme-air"], "brand": ["acme-air"], "staff": ["acme-air", "globex"],
                   "setting": ["acme-air", "globex"], "setting-elsewhere": [], "did": ["globex"], "fan": [],
                   "staff-list": []}  # a staff watchlist owns nothing: its staff's posts are what it watches
    counted = {r["watchlist_id"]: r["n"] for r in await conn.fetch(
        "SELECT watchlist_id, sum(mentions) AS n FROM mention_rollups_day GROUP BY 1")}
    assert counted == {"acme-air": 4, "globex": 2, "acme-staff": 1}  # q, setting-elsewhere, did, fan; care, fan; staff-list
    assert await val(conn, "SELECT count(*) FROM author_totals WHERE author_key IN ('acmeairhelp', 'acmeair')"
                           " AND watchlist_id = 'acme-air'") == 0
    assert await val(conn, "SELECT mentions FROM author_totals WHERE author_key = 'acmeairhelp' AND watchlist_id = 'globex'") == 1
    assert await val(conn, "SELECT count(*) FROM mentions") == 9  # all stored
    assert await val(conn, "SELECT first_reply_at FROM questions WHERE source_id = 'q'") == t + timedelta(minutes=3)
    await assert_rollups_match_recount(conn)
    await erase_author(conn, "twitter", "acmeairhelp", via="test")  # an owned post leaves no count behind to undo
    await assert_rollups_match_recount(conn)
    tables = (*ROLLUPS, "watchlist_rollups_day", "author_rollups_day", "author_totals", "entity_rollups_day", "entity_totals")
    snapshot = {t: {tuple(r) for r in await conn.fetch(f"SELECT * FROM {t}")} for t in tables}
    await conn.execute("SELECT earful_rebuild_rollups()")  # a rebuild from the mentions follows the same rule
    assert {t: {tuple(r) for r in await conn.fetch(f"SELECT * FROM {t}")} for t in tables} == snapshot


async def test_advocates_are_people_ranked_by_amplification(db: Any) -> None:
    """Outlets and brand accounts with the most amplified praise are passed over; people are ranked by
    reposts + replies + engagement velocity of their positive posts, with the previous period's trend."""
    conn, url = db
    lo = datetime(2026, 11, 2, tzinfo=UTC)
    hi, prev = lo + timedelta(days=1), lo - timedelta(days=1)

    def post(sid: str, at: datetime, handle: str, *, source: str = "twitter", sentiment: str = "positive",
             reposts: int = 0, replies: int = 0, likes: int = 0, name: str | None = None, age_h: float = 10) -> dict[str, Any]:
        r = enriched(sid, at, handle=handle, source=source, sentiment=sentiment, likes=likes,
                     observed=at + timedelta(hours=age_h))
        r["mention"]["engagement"].update(reposts=reposts, replies=replies)
        if name:
            r["mention"]["author"]["display_name"] = name
        return r

    noon = lo + timedelta(hours=12)
    records = [
        post("o1", noon, "metrowire", source="news", reposts=900),  # an outlet: the most amplified, never an advocate
        post("o2", noon, "thedailyledger", reposts=800),  # an outlet by its handle
        post("o3", noon, "wanda", reposts=700, name="Wanda Radio"),  # ... by its name
        post("b1", noon, "SkyJetHelp", reposts=600),  # a competitor's care handle: a brand account
        post("b2", noon, "Pat_At_Acme", reposts=500),  # staff
        post("p1", noon, "jane", reposts=10, replies=5, likes=100),  # velocity 115 / 10 h = 11.5 → 26.5
        post("p2", noon + timedelta(hours=1), "jane", reposts=1),  # → 1.1; jane: 27.6
        post("p3", noon, "kim", reposts=20, likes=0, age_h=0.1),  # velocity floored at 1 hour: 20 + 20 = 40
        post("p4", noon, "lou", reposts=30, sentiment="negative"),  # lou: more negative than positive
        post("p5", noon, "lou", reposts=1),
        post("p6", noon, "lou", reposts=1, sentiment="negative"),
        post("prev-jane", prev + timedelta(hours=12), "jane", reposts=100),  # jane's previous period: down
        post("prev-kim", prev + timedelta(hours=12), "kim", reposts=5),  # kim: up
    ]
    await write_batch(conn, rows(*records), [], owned=OWNED)
    accounts = OwnedHandles.of([
        Watchlist("acme-air", "Acme Air", "brand", ("Acme Air",), ("AcmeAir", "AcmeAirHelp")),
        Watchlist("skyjet", "SkyJet", "competitor", ("SkyJet",), ("SkyJetHelp",)),
        Watchlist("acme-staff", "Acme staff", "staff", ("Acme",), ("pat_at_acme",))])
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        found = await top_advocates(pool, "acme-air", lo, hi, 5, 1, accounts, best_posts=2)
    finally:
        await pool.close()
    assert [a["author_handle"] for a in found] == ["kim", "jane"]
    kim, jane = found
    assert (kim["amplification"], kim["velocity"], kim["previous_amplification"], kim["trend"]) == (40.0, 20.0, 5.5, "up")
    assert jane["amplification"] == 27.6 and (jane["reposts"], jane["replies"], jane["likes"], jane["positive"]) == (11, 5, 100, 2)
    assert jane["trend"] == "down" and jane["change"] == round((27.6 - 110.0) / 110.0, 4)
    assert [p["mention_id"] for p in jane["best_posts"]] == [records[5]["mention"]["mention_id"], records[6]["mention"]["mention_id"]]
    assert all(a["author_type"] == "person" for a in found)


async def test_killed_between_insert_and_commit_leaves_nothing(db: Any) -> None:
    conn, url = db
    child = textwrap.dedent(f"""
        import asyncio, sys
        from datetime import datetime, timedelta, timezone
        import asyncpg
        sys.path.insert(0, {str(REPO)!r})
        from tests.integration.test_storage_db import enriched, rows
        from earful.storage.writer import write_batch, alert_row

        async def stall(self, *args, **kwargs):  # the alerts come after the mentions, inside the transaction
            print("inserted", flush=True)
            await asyncio.sleep(3600)  # not a wait: holds the transaction open until the test kills this process

        asyncpg.Connection.executemany = stall
        async def main():
            conn = await asyncpg.connect({url!r})
            t = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
            batch = rows(*(enriched(f"k{{i}}", t + timedelta(seconds=i)) for i in range(30)))
            await write_batch(conn, batch, [("alert",)])
        asyncio.run(main())
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "services"), str(REPO)])}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        assert line.strip() == "inserted", proc.stderr.read()
        # Inside the open transaction the rows exist; kill -9 before COMMIT.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    other_sessions = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"

    async def rolled_back() -> bool:  # the server notices the dead connection and rolls back
        return not await val(conn, other_sessions)

    assert await eventually(rolled_back, timeout_s=30, interval_s=0.1), "the killed writer's session is still open"
    assert await val(conn, "SELECT count(*) FROM mentions") == 0
    assert await val(conn, "SELECT count(*) FROM mention_keys") == 0
    assert await val(conn, "SELECT count(*) FROM mention_rollups_minute") == 0
    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    redelivered = await write_batch(conn, rows(*(enriched(f"k{i}", t + timedelta(seconds=i)) for i in range(30))), [])
    assert redelivered.mentions_inserted == 30
    await assert_rollups_match_recount(conn)


async def test_alerts_v2_are_stored_once(db: Any) -> None:
    conn, _ = db
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    alert = {"alert_id": "fp-1", "status": "firing", "fingerprint": "fp", "rule": "volume_spike", "watchlist_id": "acme-air",
             "severity": "critical", "labels": {"watchlist": "acme-air"}, "summary": "spike", "observed": 30.0,
             "baseline": 2.0, "score": 9.0, "bucket_seconds": 10, "starts_at": at, "ends_at": None, "detected_at": at,
             "first_received_at": at, "sample_mention_ids": ["m1"], "annotations": {"runbook_url": "https://r.example"},
             "group_key": "acme-air", "explanation": {"top_posts": [], "top_terms": [{"term": "leak", "count": 9}],
                                                     "window_start": at, "window_end": None}}
    for _ in range(2):
        await write_batch(conn, [], [alert_row(alert)])
    row = await conn.fetchrow("SELECT count(*) OVER () AS n, annotations, group_key, explanation FROM alerts")
    assert row["n"] == 1 and row["group_key"] == "acme-air"
    assert '"window_start": "2026-11-02T09:00:00Z"' in row["explanation"]


# --- questions -----------------------------------------------------------------------------------


async def test_questions_and_first_brand_reply_in_any_order(db: Any) -> None:
    conn, _ = db
    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    q1 = enriched("q1", t, risks=("customer_question",), handle="ann")
    q2 = enriched("q2", t + timedelta(minutes=1), risks=("customer_question",), handle="bob", watchlists=("acme-air", "globex"))
    own = enriched("q3", t, risks=("customer_question",), handle="AcmeAirHelp")  # the brand asking: not a customer question
    r1 = enriched("r1", t + timedelta(minutes=30), handle="AcmeAirHelp", reply_to="q1", watchlists=())
    r1_later = enriched("r1b", t + timedelta(minutes=50), handle="acmeair", reply_to="q1", watchlists=())
    r2_stranger = enriched("r2", t + timedelta(minutes=5), handle="carol", reply_to="q2", watchlists=())
    r2_early = enriched("r2b", t + timedelta(minutes=20), handle="GlobexCares", reply_to="q2", watchlists=())
    await write_batch(conn, rows(q1, own, r2_early), [], brands=BRANDS)  # globex's reply arrives before q2
    await write_batch(conn, rows(r1_later, r2_stranger, q2), [], brands=BRANDS)
    await write_batch(conn, rows(r1, q1), [], brands=BRANDS)  # q1 again (duplicate) with an earlier reply
    got = {(r["watchlist_id"], r["source_id"]): r["first_reply_at"]
           for r in await conn.fetch("SELECT watchlist_id, source_id, first_reply_at FROM questions")}
    assert got == {("acme-air", "q1"): t + timedelta(minutes=30), ("acme-air", "q2"): None,
                   ("globex", "q2"): t + timedelta(minutes=20)}


# --- erasure -------------------------------------------------------------------------------------


async def test_erasure_removes_the_author_everywhere_and_stays_erased(db: Any) -> None:
    conn, _ = db
    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    theirs = [enriched(f"e{i}", t + timedelta(minutes=i), handle="Leaky", author_id="777", risks=("customer_question",),
                       sentiment="positive") for i in range(4)]
    others = [enriched(f"o{i}", t + timedelta(minutes=i), handle="other") for i in range(3)]
    reply = enriched("help", t + timedelta(minutes=9), handle="AcmeAirHelp", reply_to="e0", watchlists=())
    await write_batch(conn, rows(*theirs, *others, reply), [], brands=BRANDS)
    alert = {"alert_id": "fp-1", "status": "firing", "fingerprint": "fp", "rule": "volume_spike", "watchlist_id": "acme-air",
             "severity": "critical", "labels": {}, "summary": "s", "observed": 1.0, "baseline": 1.0, "score": 1.0,
             "bucket_seconds": 10, "starts_at": t, "ends_at": None, "detected_at": t, "first_received_at": None,
             "sample_mention_ids": [theirs[0]["mention"]["mention_id"], others[0]["mention"]["mention_id"]],
             "annotations": {}, "group_key": None,
             "explanation": {"top_posts": [{"mention_id": theirs[1]["mention"]["mention_id"], "source": "twitter",
                                            "author_handle": "leaky", "text": "secret", "created_at": t},
                                           {"mention_id": "x", "source": "twitter", "author_handle": "other", "text": "ok",
                                            "created_at": t}]}}
    await write_batch(conn, [], [alert_row(alert)])

    erasure = await erase_author(conn, "twitter", "@LEAKY", via="test")
    assert erasure.mentions_erased == 4
    assert await val(conn, "SELECT count(*) FROM mentions WHERE author_id = '777' OR lower(author_handle) = 'leaky'") == 0
    assert await val(conn, "SELECT count(*) FROM mention_keys WHERE source_id LIKE 'e%'") == 0
    assert await val(conn, "SELECT count(*) FROM author_rollups_day WHERE author_key = 'leaky'") == 0
    assert await val(conn, "SELECT count(*) FROM questions") == 0
    assert await val(conn, "SELECT sum(mentions) FROM mention_rollups_day") == 4  # the 3 others and the brand reply
    await assert_rollups_match_recount(conn)
    a = await conn.fetchrow("SELECT sample_mention_ids, explanation FROM alerts")
    assert a["sample_mention_ids"] == [others[0]["mention"]["mention_id"]]
    assert "secret" not in a["explanation"] and "ok" in a["explanation"]
    recorded = await conn.fetchrow("SELECT * FROM erasures")
    assert recorded["mentions_erased"] == 4 and recorded["requested_via"] == "test"
    assert "leaky" not in str(dict(recorded)).lower() and len(recorded["author_hashes"]) == 2  # handle and account id
    # A re-delivered old mention is refused, by handle or by account id; a new post after the erasure is stored.
    again = await write_batch(conn, rows(theirs[2], enriched("e-by-id", t, handle="renamed", author_id="777")), [])
    assert (again.mentions_inserted, again.mentions_erased) == (0, 2)
    later = enriched("e-new", datetime.now(UTC) + timedelta(seconds=5), handle="leaky")
    assert (await write_batch(conn, rows(later), [])).mentions_inserted == 1


# --- partitions and retention ----------------------------------------------------------------------


async def test_partitions_are_created_ahead_and_on_demand(db: Any) -> None:
    conn, _ = db
    now = datetime(2026, 11, 2, 12, tzinfo=UTC)
    assert await create_partitions_ahead(conn, 3, now=now) == 5
    assert await create_partitions_ahead(conn, 3, now=now) == 0
    days = sorted(d.isoformat() for d in await existing_partitions(conn))
    assert days == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]
    # A back-filled mention from years ago gets its own partition.
    assert (await write_batch(conn, rows(enriched("old", datetime(2019, 5, 1, tzinfo=UTC))), [])).mentions_inserted == 1
    assert await val(conn, "SELECT count(*) FROM mentions_20190501") == 1


async def test_retention_drops_old_days_everywhere(db: Any) -> None:
    conn, _ = db
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    records = [enriched(f"d{d}", now - timedelta(days=d), risks=("customer_question",)) for d in (0, 5, 20, 40, 41)]
    state = WriterState()
    await write_batch(conn, rows(*records), [], state=state)
    dry = await apply_retention(conn, 30, now=now, dry_run=True)
    assert dry.mentions_dropped == 2 and await val(conn, "SELECT count(*) FROM mentions") == 5
    result = await apply_retention(conn, 30, now=now)
    assert result.partitions_dropped == ["mentions_20261020", "mentions_20261021"] and result.mentions_dropped == 2
    assert await val(conn, "SELECT count(*) FROM mentions") == 3
    assert await val(conn, "SELECT count(*) FROM mention_keys") == 3
    assert await val(conn, "SELECT count(*) FROM questions") == 3
    assert await val(conn, "SELECT min(bucket) FROM mention_rollups_day") >= datetime(2026, 10, 31, tzinfo=UTC)
    await assert_rollups_match_recount(conn)
    # The writer refuses what retention would drop, even when re-delivered...
    refused = await write_batch(conn, rows(records[3]), [], state=state, retention_days=30, now=now)
    assert (refused.mentions_inserted, refused.mentions_expired) == (0, 1)
    # ...and a writer that still believes in a dropped partition recreates it when told to keep old data.
    kept = await write_batch(conn, rows(records[4]), [], state=state)
    assert kept.mentions_inserted == 1


async def test_concurrent_batches_link_a_question_and_its_reply(db: Any) -> None:
    """The service writes batches concurrently: a question and the brand's reply in two batches at
    the same moment must still be linked, whichever commits first."""
    conn, url = db
    other = await asyncpg.connect(url)
    try:
        t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        for i in range(8):
            q = enriched(f"cq{i}", t + timedelta(minutes=i), risks=("customer_question",), handle=f"c{i}")
            r = enriched(f"cr{i}", t + timedelta(minutes=i + 5), handle="AcmeAirHelp", reply_to=f"cq{i}", watchlists=())
            first, second = (q, r) if i % 2 else (r, q)
            await asyncio.gather(write_batch(conn, rows(first), [], brands=BRANDS),
                                 write_batch(other, rows(second), [], brands=BRANDS))
        assert await val(conn, "SELECT count(*) FROM questions WHERE source_id LIKE 'cq%'") == 8
        assert await val(conn, "SELECT count(*) FROM questions WHERE source_id LIKE 'cq%' AND first_reply_at IS NULL") == 0
    finally:
        await other.close()


async def test_the_rows_nul_columns_flags_are_the_rows_postgresql_refuses(db: Any) -> None:
    """`nul_columns` (what ingest's model mirrors) says exactly which rows PostgreSQL refuses for a NUL."""
    conn, _ = db
    now = datetime.now(UTC)
    nul_name = enriched("nul-1", now, handle="ja\x00ne")
    nul_entity = enriched("nul-2", now, entities=[{"text": "#Acme\x00", "type": "hashtag", "start": 0, "end": 6, "origin": "rules"}])
    nul_id = enriched("nul-3\x00", now)
    for record, columns in ((nul_name, ["author_id", "author_handle", "author_name"]), (nul_entity, ["entities", "facets"]),
                            (nul_id, ["source_id"])):
        (row,) = rows(record)
        assert nul_columns(row) == columns
        with pytest.raises((asyncpg.DataError, asyncpg.UntranslatableCharacterError)):
            await write_batch(conn, [row], [], brands=BRANDS, state=WriterState())
    (clean,) = rows(enriched("nul-0", now))
    assert nul_columns(clean) == []
    assert (await write_batch(conn, [clean], [], brands=BRANDS, state=WriterState())).mentions_inserted == 1

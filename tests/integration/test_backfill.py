"""A new or changed watchlist applied to stored history (earful.storage.backfill), against a real
PostgreSQL: mentions gain and lose the watchlist, every rollup equals a recount afterwards, a job
stopped mid-way (an error inside a batch, a killed command) resumes without counting anything
twice, a second run changes nothing, the backtest reads the back-filled matches, and the storage
API starts a job that the storage service runs and reports."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from earful.alerting.detection.backtest import _HISTORY_SQL, mention_from_row
from earful.core.db import drop_database, ensure_database, with_database
from earful.core.migrate import migrate
from earful.storage.backfill import Backfiller, get_backfill, start_backfill
from earful.storage.history import BACKFILL_LOCK_CLASS, AccountsInForce, Throttle, try_lock_job
from earful.storage.writer import WriterState, mention_row, write_batch
from earful.watchlists import Watchlist, WatchlistSet
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.integration.test_storage_db import assert_rollups_match_recount, enriched
from tests.support import eventually

pytestmark = pytest.mark.integration
UTC = timezone.utc
SERVICES = str(Path(__file__).resolve().parents[2] / "services")
T0 = (datetime.now(UTC) - timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
KEY = "backfill-test-key"

ACME = Watchlist("acme-air", "Acme Air", "brand", ("Acme Air",), ("AcmeAir", "AcmeAirHelp"))
GLOBEX = Watchlist("globex", "Globex", "brand", ("Globex",), ("GlobexCares",))
#: The new watchlist: none of the stored mentions were matched against it when they arrived.
RIVAL = Watchlist("rival", "Rival Air", "brand", query='"Rival Air" OR #RivalAir', handles=("RivalAir",))
BEFORE = WatchlistSet([ACME, GLOBEX])
NOW = WatchlistSet([ACME, GLOBEX, RIVAL])
TABLES = ("mention_rollups_minute", "mention_rollups_hour", "mention_rollups_day", "watchlist_rollups_minute",
          "watchlist_rollups_hour", "watchlist_rollups_day", "tag_rollups_minute", "tag_rollups_hour",
          "tag_rollups_day", "mention_totals_day", "entity_rollups_day",
          "entity_totals", "author_rollups_day", "author_totals", "questions")


def _tag(text: str, tag: str, kind: str = "hashtag") -> dict[str, Any]:
    start = text.index(tag)
    return {"text": tag, "type": kind, "start": start, "end": start + len(tag), "origin": "rules"}


def history() -> list[dict[str, Any]]:
    """Stored mentions as the writer stored them before `rival` existed, plus one that a wrong earlier
    version of it had matched."""
    def m(sid: str, minutes: float, text: str, *, watchlists: tuple[str, ...] = ("acme-air",), **kw: Any) -> dict[str, Any]:
        hashtag = next((w for w in text.split() if w.startswith("#")), None)
        kw.setdefault("entities", [_tag(text, hashtag)] if hashtag else [])
        return enriched(sid, T0 + timedelta(minutes=minutes), watchlists=watchlists, text=text, **kw)

    return [
        m("b-both", 0, "Acme Air beats Rival Air on legroom #AcmeAir", sentiment="positive", handle="ann", followers=50),
        m("b-rival-only", 1, "Rival Air lost my bag #RivalAir", watchlists=(), sentiment="negative", handle="bob"),
        m("b-rival-de", 2.5, "Rival Air hat meinen Koffer verloren", watchlists=(), sentiment=None, lang="de",
          handle="carl"),
        m("b-own", 3, "Our lounges at Rival Air reopen today #RivalAir", watchlists=(), sentiment="positive",
          handle="RivalAir"),  # the brand's own account: owned for rival once it matches
        m("b-question", 4, "Rival Air when does my flight to Oslo board?", watchlists=(), sentiment="neutral",
          handle="dana", risks=("customer_question",)),
        m("b-acme-only", 5, "Acme Air was on time #AcmeAir", sentiment="positive", handle="erin"),
        m("b-globex", 6, "Globex and Rival Air merge? #Globex", watchlists=("globex",), sentiment="neutral",
          handle="fay", followers=700),
        # Matched by a wrong earlier `rival` query: not about Rival Air at all. The author has a second post that
        # day which rightly matches, with fewer followers: the day's reach must fall back to it.
        m("b-stale", 7, "Arrival times at the airport #Travel", watchlists=("rival",), sentiment="negative",
          handle="gus", followers=5000),
        m("b-gus", 8, "Rival Air again late #RivalAir", watchlists=(), sentiment="negative", handle="gus",
          followers=100),
        m("b-old", -60 * 24 * 3, "Rival Air before the back-fill period", watchlists=(), handle="hal"),
        m("b-none", 9, "Nothing about any brand here", watchlists=(), sentiment="neutral", handle="ivy"),
    ]


RIVAL_IDS = {"b-both", "b-rival-only", "b-rival-de", "b-own", "b-question", "b-globex", "b-gus"}


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    """A fresh, migrated database per test, holding `history()` as the writer stored it."""
    url = with_database(pg_url, f"earful_b_{uuid.uuid4().hex[:10]}")
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    await migrate(conn)
    accounts = AccountsInForce(lambda: BEFORE)
    rows = [mention_row(r) for r in history()]
    await write_batch(conn, rows, [], brands=accounts.brands(), owned=accounts.owned(), state=WriterState())
    await assert_rollups_match_recount(conn)
    try:
        yield conn, url
    finally:
        await conn.close()
        await drop_database(url)


async def snapshot(conn: asyncpg.Connection) -> dict[str, set[str]]:
    """Every row of the rollups, the questions and the mentions, as text."""
    return {t: set(await conn.fetchval(f"SELECT coalesce(array_agg(x::text), '{{}}') FROM {t} x"))
            for t in (*TABLES, "mentions")}


async def stored(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    return {r["source_id"]: r for r in await conn.fetch(
        "SELECT source_id, watchlist_ids, owned_watchlist_ids, matches::text, facets FROM mentions")}


async def run_job(conn: asyncpg.Connection, since: datetime, watchlists: Callable[[], WatchlistSet] = lambda: NOW,
                  batch_size: int = 3) -> asyncpg.Record:
    accounts = AccountsInForce(watchlists)
    started = await start_backfill(conn, RIVAL, since, via="cli", requested_by="test")
    assert started.created
    worker = Backfiller(conn, watchlists, accounts.owned, accounts.brands, batch_size=batch_size)
    return await worker.run(started.job["job_id"], Throttle(None))


async def test_a_new_watchlist_applies_to_history_exactly(db: tuple[asyncpg.Connection, str]) -> None:
    conn, _ = db
    job = await run_job(conn, T0 - timedelta(hours=1))
    assert (job["state"], job["added"], job["removed"], job["scanned"], job["total"]) == ("done", 7, 1, 10, 10)
    after = await stored(conn)
    assert {sid for sid, r in after.items() if "rival" in r["watchlist_ids"]} == RIVAL_IDS  # b-old is before --since
    assert after["b-both"]["watchlist_ids"] == ["acme-air", "rival"] and "w:rival" in after["b-both"]["facets"]
    assert '"term": "Rival Air"' in after["b-both"]["matches"] and '"term": "Acme Air"' in after["b-both"]["matches"]
    assert after["b-stale"]["watchlist_ids"] == [] and "w:rival" not in after["b-stale"]["facets"]
    assert after["b-own"]["owned_watchlist_ids"] == ["rival"]  # the brand's own post: stored, not counted
    assert after["b-globex"]["watchlist_ids"] == ["globex", "rival"]
    await assert_rollups_match_recount(conn)  # volume, share of voice, entities, authors (reach included)
    day = await conn.fetch("SELECT sentiment, mentions FROM watchlist_rollups_day WHERE watchlist_id = 'rival'")
    assert {r["sentiment"]: r["mentions"] for r in day} == {"positive": 1, "negative": 2, "unknown": 1, "neutral": 2}
    assert await conn.fetchval("SELECT reach FROM author_rollups_day WHERE watchlist_id = 'rival' AND author_key = 'gus'") == 100
    assert await conn.fetchval("SELECT count(*) FROM questions WHERE watchlist_id = 'rival'") == 1
    # The backtest replays what is stored: the back-filled matches are its history now.
    rows = await conn.fetch(_HISTORY_SQL, T0 - timedelta(hours=1), T0 + timedelta(hours=1), "rival", [])
    assert {r["source_id"] for r in rows if mention_from_row(r, "rival").matched} == RIVAL_IDS

    before = await snapshot(conn)
    again = await run_job(conn, T0 - timedelta(hours=1))
    assert (again["state"], again["added"], again["removed"], again["scanned"]) == ("done", 0, 0, 10)
    assert await snapshot(conn) == before  # a second run changes nothing


async def test_an_error_mid_way_rolls_back_its_batch_and_the_job_resumes(db: tuple[asyncpg.Connection, str]) -> None:
    conn, url = db
    accounts = AccountsInForce(lambda: NOW)
    calls = 0

    def brands_then_crash() -> Any:  # called inside each batch's transaction, after its mentions were rewritten
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("killed mid-batch")
        return accounts.brands()

    started = await start_backfill(conn, RIVAL, T0 - timedelta(hours=1), via="cli")
    job_id = started.job["job_id"]
    worker = Backfiller(conn, lambda: NOW, accounts.owned, brands_then_crash, batch_size=3)
    with pytest.raises(RuntimeError, match="killed mid-batch"):
        await worker.run(job_id, Throttle(None))
    job = await get_backfill(conn, job_id)
    assert (job["state"], job["scanned"]) == ("running", 3)  # the first batch only: the second rolled back whole
    assert {sid for sid, r in (await stored(conn)).items() if "rival" in r["watchlist_ids"]} == {
        "b-both", "b-rival-only", "b-rival-de", "b-stale"}  # the first batch, and the stale match not reached yet
    await assert_rollups_match_recount(conn)
    await conn.close()  # the process dies: its session lock goes with it

    conn = await asyncpg.connect(url)
    try:
        resumed = Backfiller(conn, lambda: NOW, accounts.owned, accounts.brands, batch_size=3)
        assert await try_lock_job(conn, BACKFILL_LOCK_CLASS, job_id)  # as `--resume` takes it
        job = await resumed.run(job_id, Throttle(None))
        assert (job["state"], job["scanned"], job["added"], job["removed"]) == ("done", 10, 7, 1)
        await assert_rollups_match_recount(conn)
        assert await conn.fetchval("SELECT sum(mentions) FROM watchlist_rollups_day WHERE watchlist_id = 'rival'") == 6
    finally:
        await conn.close()


async def test_a_changed_watchlist_begins_again_and_a_deleted_one_fails(db: tuple[asyncpg.Connection, str]) -> None:
    conn, _ = db
    narrower = Watchlist("rival", "Rival Air", "brand", query="#RivalAir", handles=("RivalAir",))
    current = [NOW]
    accounts = AccountsInForce(lambda: current[0])
    started = await start_backfill(conn, RIVAL, T0 - timedelta(hours=1), via="cli")
    worker = Backfiller(conn, lambda: current[0], accounts.owned, accounts.brands, batch_size=4)
    assert await worker.batch(started.job["job_id"], RIVAL) == 4
    current[0] = WatchlistSet([ACME, GLOBEX, narrower])  # changed while the job runs
    job = await worker.run(started.job["job_id"], Throttle(None))
    assert (job["state"], job["restarts"], job["revision"]) == ("done", 1, narrower.revision)
    assert {sid for sid, r in (await stored(conn)).items() if "rival" in r["watchlist_ids"]} == {
        "b-rival-only", "b-own", "b-gus"}  # the hashtag only
    await assert_rollups_match_recount(conn)

    current[0] = BEFORE  # deleted
    started = await start_backfill(conn, RIVAL, T0, via="cli")
    job = await worker.run(started.job["job_id"], Throttle(None))
    assert job["state"] == "failed" and "no longer in force" in job["error"]


# --- the command and the API --------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A watchlist folder with the three watchlists (what the seed of the set in force reads)."""
    out = tmp_path / "watchlists"
    out.mkdir()
    for w in (ACME, GLOBEX, RIVAL):
        (out / f"{w.id}.yaml").write_text(
            f"id: {w.id}\nname: {w.name}\nkind: {w.kind}\nhandles: [{', '.join(w.handles)}]\nquery: '{w.query}'\n",
            encoding="utf-8")
    return out


def _env(base_env: dict[str, str], url: str, folder: Path) -> dict[str, str]:
    return {**base_env, "EARFUL_DATABASE_URL": url, "EARFUL_WATCHLISTS_DIR": str(folder), "PYTHONPATH": SERVICES}


async def test_the_command_killed_mid_way_resumes(db: tuple[asyncpg.Connection, str], base_env: dict[str, str],
                                                  folder: Path) -> None:
    conn, url = db
    env = _env(base_env, url, folder)
    since = (T0 - timedelta(hours=1)).isoformat()
    command = [sys.executable, "-m", "earful", "watchlists", "backfill", "rival", "--since", since, "--rate", "2"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        assert await eventually(lambda: _scanned(conn, "rival"), timeout_s=60), proc.stderr.read() if proc.poll() else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    job = await conn.fetchrow("SELECT * FROM backfill_jobs WHERE watchlist_id = 'rival'")
    assert job["state"] == "running" and 0 < job["scanned"] < 10
    await assert_rollups_match_recount(conn)

    done = await asyncio.to_thread(subprocess.run, [*command[:6], "--resume", str(job["job_id"]), "--no-progress"],
                                   env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert '"state": "done"' in done.stdout.splitlines()[-1] and '"added": 7' in done.stdout
    await assert_rollups_match_recount(conn)
    assert await conn.fetchval("SELECT sum(mentions) FROM watchlist_rollups_day WHERE watchlist_id = 'rival'") == 6


async def _scanned(conn: asyncpg.Connection, watchlist_id: str) -> bool:
    return bool(await conn.fetchval("SELECT scanned > 0 FROM backfill_jobs WHERE watchlist_id = $1", watchlist_id))


async def test_the_api_starts_a_backfill_that_the_storage_service_runs(db: tuple[asyncpg.Connection, str],
                                                                      base_env: dict[str, str], folder: Path,
                                                                      tmp_path: Path) -> None:
    conn, url = db
    port = free_port()
    env = {**base_env, "EARFUL_DATABASE_URL": url, "EARFUL_API_KEYS": f"ops:read+write:{KEY}",
           "EARFUL_WATCHLISTS_DIR": str(folder)}
    svc = ServiceProcess("storage", port, service_env(env, "storage", port), tmp_path / "storage.log")
    svc.start()
    try:
        svc.wait_ready(60)
        headers = {"X-API-Key": KEY}
        async with httpx.AsyncClient(base_url=svc.url, headers=headers, timeout=30) as api:
            assert (await api.post("/v1/watchlists/nope/backfill", json={"since": T0.isoformat()})).status_code == 404
            future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
            bad = await api.post("/v1/watchlists/rival/backfill", json={"since": future})
            assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "since"], bad.text
            assert (await api.get("/v1/watchlists/rival/backfill")).status_code == 404
            since = (T0 - timedelta(hours=1)).isoformat()
            started = await api.post("/v1/watchlists/rival/backfill", json={"since": since, "rate": 50})
            assert started.status_code == 202, started.text
            job_id = started.json()["job_id"]
            assert started.json()["state"] in ("pending", "running") and started.json()["requested_via"] == "api"

            async def done() -> bool:
                return (await api.get(f"/v1/backfills/{job_id}")).json()["state"] == "done"

            assert await eventually(done, timeout_s=60), svc.log_tail()
            job = (await api.get("/v1/watchlists/rival/backfill")).json()
            assert (job["job_id"], job["added"], job["removed"], job["progress"], job["total"]) == (job_id, 7, 1, 1.0, 10)
            assert (await api.get("/v1/backfills/999999")).status_code == 404
            sov = await api.get("/v1/share-of-voice", params={"from": (T0 - timedelta(hours=1)).isoformat(),
                                                               "to": (T0 + timedelta(hours=1)).isoformat()})
            assert sov.status_code == 200 and "rival" in sov.text, sov.text
    finally:
        assert svc.stop() == 0, svc.log_tail()
    await assert_rollups_match_recount(conn)

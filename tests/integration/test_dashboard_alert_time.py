"""The dashboard places alerts at their episode's start, not at the time they were detected:
against a real PostgreSQL, a month-old seeded period, an alert detected weeks after its episode
(as when a stored sample is replayed) marks the period of its mentions, and an old episode
detected during the period does not."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import yaml

from earful.storage.charts import LEFT, RIGHT, WIDTH
from earful.storage.dashboard_views import Request, overview
from earful.watchlists import WatchlistSet, parse_watchlist
from earful_dev.seed import seed

pytestmark = pytest.mark.integration
UTC = timezone.utc
SVG = "{http://www.w3.org/2000/svg}"
END = (datetime.now(UTC) - timedelta(days=35)).replace(minute=17, second=0, microsecond=0)
INSERT = ("INSERT INTO alerts (alert_id, status, fingerprint, rule, watchlist_id, severity, labels, summary, observed,"
          " baseline, score, bucket_seconds, starts_at, ends_at, detected_at, sample_mention_ids)"
          " VALUES ($1, 'firing', $1, $2, $3, 'critical', '{}', $4, 10, 1, 5, 300, $5, $6, $7, '{}')")


@pytest.fixture(scope="module")
async def db(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    wl_file: Path = tmp_path_factory.mktemp("alert-time") / "watchlists.yaml"
    await seed(pg_url, mentions=800, days=2, watchlists=2, seed_value=7, end=END, watchlists_out=wl_file,
               progress=lambda m: None)
    doc = yaml.safe_load(wl_file.read_text(encoding="utf-8"))
    watchlists = WatchlistSet([parse_watchlist(w, "test") for w in doc["watchlists"]])
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=2)
    try:
        wl = await pool.fetchval("SELECT watchlist_id FROM mention_rollups_day WHERE watchlist_id <> '(none)'"
                                 " GROUP BY 1 ORDER BY sum(mentions) DESC LIMIT 1")
        await pool.execute("DELETE FROM alerts")  # only the alerts of this test
        yield {"pool": pool, "watchlists": watchlists, "watchlist": wl}
    finally:
        await pool.close()


async def test_a_replayed_alert_marks_the_period_of_its_episode(db: dict[str, Any]) -> None:
    pool, wl = db["pool"], db["watchlist"]
    first = await overview(pool, db["watchlists"], Request(wl, "24h", None, ZoneInfo("UTC")))
    lo, hi = datetime.fromisoformat(first["period"]["from"]), datetime.fromisoformat(first["period"]["to"])
    step = timedelta(seconds=first["period"]["interval_s"])
    now = datetime.now(UTC)
    episode = lo + 5 * step + timedelta(minutes=10)
    # Replayed: its episode is in the period, it was detected weeks later (now).
    await pool.execute(INSERT, "replayed", "volume_spike", wl, "replayed spike", episode, episode + timedelta(minutes=30), now)
    # Its episode started in the previous period: counted there, detected now as well.
    await pool.execute(INSERT, "earlier", "negative_shift", wl, "earlier shift", lo - timedelta(hours=3), None, now)
    # An old episode (ten days before) detected during the period: not this period's alert.
    await pool.execute(INSERT, "old", "volume_spike", wl, "old episode", lo - timedelta(days=10), None, lo + 2 * step)

    d = await overview(pool, db["watchlists"], Request(wl, "24h", None, ZoneInfo("UTC")))
    assert (d["period"]["from"], d["period"]["to"]) == (first["period"]["from"], first["period"]["to"])
    alerts = {k["name"]: k for k in d["kpis"]}["alerts"]
    assert (alerts["value"], alerts["previous"]) == (1, 1)
    assert [a["summary"] for a in d["lists"]["alerts"]] == ["replayed spike"]
    listed = d["lists"]["alerts"][0]
    assert datetime.fromisoformat(listed["starts_at"]) == episode and datetime.fromisoformat(listed["detected_at"]) == now

    root = ET.fromstring(d["charts"]["volume"])
    marks = [(a.attrib["href"], next(iter(a))) for a in root.iter(SVG + "a")]
    markers = [(href, m) for href, m in marks if m.tag == SVG + "g"]
    assert len(markers) == 1
    href, marker = markers[0]
    title = "".join(marker.itertext())
    assert "replayed spike" in title and "detected" in title
    filters = dict(parse_qsl(href.split("?", 1)[1]))
    assert filters["watchlist"] == wl
    assert datetime.fromisoformat(filters["from"]) == episode
    assert datetime.fromisoformat(filters["to"]) == episode + timedelta(minutes=30)
    # The marker stands over the sixth column, the one its episode started in (its detection time
    # is weeks past the end of the period: a marker placed by it would not be drawn at all).
    slot = (WIDTH - LEFT - RIGHT) / ((hi - lo) // step)
    line = marker.find(SVG + "line")
    assert line is not None and float(line.attrib["x1"]) == pytest.approx(LEFT + slot * 5.5, abs=0.1)

    # The period before shows the earlier episode.
    before = await overview(pool, db["watchlists"], Request(wl, "24h", lo, ZoneInfo("UTC")))
    assert [a["summary"] for a in before["lists"]["alerts"]] == ["earlier shift"]

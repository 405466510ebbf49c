"""`earful ingest` as a process: connectors start from settings alone, report metrics, stop cleanly;
`earful replay` from files, through the API and straight to Kafka."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from earful.core.mention import mention_id
from earful.core.settings import Settings
from earful.core.topics import RAW
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.dates import shift_dates, shifted_bytes
from tests.protocol_servers import FeedDoc, FeedServer, JetstreamServer
from tests.support import codecs, consume_all, eventually

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
REPO = Path(__file__).resolve().parents[2]


async def test_connectors_run_from_settings_and_stop_cleanly(base_env: dict[str, str], settings: Settings, tmp_path: Path) -> None:
    feeds = FeedServer()
    # Dates moved to recent days: connectors skip items older than the retention period.
    feeds.docs["atom"] = FeedDoc(shifted_bytes((FIXTURES / "atom.xml").read_bytes()), "application/atom+xml")
    jetstream = JetstreamServer(events=shift_dates((FIXTURES / "jetstream.jsonl").read_text()).splitlines())
    await feeds.start()
    await jetstream.start()
    port = free_port()
    env = {**base_env, "EARFUL_INGEST_FEED_URLS": f"{feeds.url}/atom", "EARFUL_INGEST_FEED_INTERVAL_S": "1",
           "EARFUL_INGEST_BLUESKY_URL": jetstream.ws_url, "EARFUL_INGEST_STATE_DIR": str(tmp_path / "state")}
    svc = ServiceProcess("ingest", port, service_env(env, "ingest", port), tmp_path / "ingest.log")
    try:
        await asyncio.to_thread(svc.start)
        await asyncio.to_thread(svc.wait_ready, 60)
        wanted = {mention_id("rss", "tag:reiseblog-nord.example,2026:post-311"),
                  mention_id("bluesky", "at://did:plc:eygmaihciaxprqvxpfvl6flk/app.bsky.feed.post/3l3qo2vuowo2b")}
        found: dict[str, dict] = {}
        codec = codecs(settings).for_topic(RAW)

        async def arrived() -> bool:
            for m in await consume_all(settings, RAW, expect=10**9, timeout_s=0.5):
                if m.key.decode() in wanted:
                    found[m.key.decode()] = codec.decode(m.value)
            return set(found) == wanted

        assert await eventually(arrived, timeout_s=30), svc.log_tail()
        assert {r["connector"] for r in found.values()} == {"feed", "bluesky"}
        metrics = (await asyncio.to_thread(httpx.get, svc.url + "/metrics")).text
        assert 'earful_ingest_produced_total{connector="feed"} 1.0' in metrics
        assert 'earful_ingest_produced_total{connector="bluesky"} 4.0' in metrics
        assert 'earful_ingest_lag_seconds{connector="bluesky"}' in metrics
        assert await asyncio.to_thread(svc.stop) == 0, svc.log_tail()
        assert sorted(p.suffix for p in (tmp_path / "state").iterdir()) == [".json", ".json"]
    finally:
        svc.stop()
        await feeds.stop()
        await jetstream.stop()


def test_bad_connector_settings_stop_the_service_with_one_line(base_env: dict[str, str], tmp_path: Path) -> None:
    env = {**base_env, "EARFUL_INGEST_FEEDS_FILE": str(tmp_path / "missing.yaml")}
    proc = subprocess.run([sys.executable, "-m", "earful", "ingest"], env=service_env(env, "ingest", free_port()),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "cannot read feeds file" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def _replay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "earful", "replay", *args], env=service_env(env, "cli", free_port()),
                          capture_output=True, text=True, timeout=120, cwd=REPO)


async def test_replay_csv_export_to_kafka_and_jsonl_through_the_api(base_env: dict[str, str], settings: Settings,
                                                                    tmp_path: Path) -> None:
    export = tmp_path / "brandwatch_export.csv"  # dated recently: replay refuses lines older than the retention period
    export.write_bytes(shifted_bytes((FIXTURES / export.name).read_bytes()))
    proc = await asyncio.to_thread(_replay, base_env, str(export), "--to-kafka")
    assert proc.returncode == 1, proc.stderr  # two bad rows, reported by line
    assert "brandwatch_export.csv:4: created_at (column 'Date')" in proc.stderr
    assert "accepted 2 (0 duplicates)" in proc.stderr and "bad lines 2" in proc.stderr
    tweet = mention_id("twitter", "1850000000000000001")

    port = free_port()
    svc = ServiceProcess("ingest", port, service_env(base_env, "ingest", port), tmp_path / "ingest.log")
    await asyncio.to_thread(svc.start)
    try:
        await asyncio.to_thread(svc.wait_ready, 60)
        lines = tmp_path / "mentions.jsonl"
        posted = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
        lines.write_text(json.dumps({"source": "forum", "source_id": "f-1", "text": "Acme Air lost my bag",
                                     "created_at": posted.isoformat()}) + "\n"
                         + json.dumps({"mention": {"source": "forum", "source_id": "f-2", "text": "Globex rocks",
                                                   "created_at": (posted + timedelta(seconds=1)).isoformat()}}) + "\n")
        proc = await asyncio.to_thread(_replay, base_env, str(lines), "--ingest-url", svc.url, "--speed", "1")
        assert proc.returncode == 0, proc.stderr
        assert "accepted 2" in proc.stderr
        proc = await asyncio.to_thread(_replay, base_env, str(lines), "--ingest-url", svc.url)
        assert "accepted 2 (2 duplicates)" in proc.stderr  # the same file again: nothing produced twice
    finally:
        svc.stop()
    codec = codecs(settings).for_topic(RAW)
    records = {m.key.decode(): codec.decode(m.value) for m in await consume_all(settings, RAW, expect=10**9, timeout_s=2)}
    assert records[tweet]["connector"] == "replay" and records[tweet]["content_type"] == "text/csv"
    assert records[tweet]["engagement"]["likes"] == 12
    assert records[mention_id("forum", "f-1")]["connector"] == "replay"
    assert records[mention_id("forum", "f-2")]["content_type"] == "application/json"


def test_replay_refuses_bad_arguments_in_one_line(base_env: dict[str, str], tmp_path: Path) -> None:
    for args, message in [(("nope.jsonl",), "does not exist"), ((str(FIXTURES / "feed.json"), "--speed", "-1"), "--speed"),
                          ((str(FIXTURES / "brandwatch_export.csv"), "--map", "colour=red"), "unknown field 'colour'")]:
        proc = _replay(base_env, *args)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr

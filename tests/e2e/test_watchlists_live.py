"""End to end: change watchlists through the storage service's API while all four services run;
the next mentions are matched by the new queries in enrichment, and alerting alerts on them
with the new rules, without restarting anything."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from earful_dev.stack.processes import Pipeline
from tests.support import eventually, webhook_receiver

pytestmark = pytest.mark.e2e
SAMPLE = Path(__file__).resolve().parents[2] / "services" / "earful" / "sample" / "watchlists"


@pytest.fixture(scope="module")
async def stack(base_env, pg_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("seed") / "watchlists"
    shutil.copytree(SAMPLE, folder)
    async with webhook_receiver() as receiver:
        env = {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_WEBHOOK_URLS": receiver.url,
               "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "EARFUL_WATCHLISTS_DIR": str(folder)}
        pipeline = Pipeline(env, tmp_path_factory.mktemp("logs"), prefer_default_ports=False)
        await asyncio.to_thread(pipeline.start, 120)
        yield pipeline, receiver, folder
        codes = await asyncio.to_thread(pipeline.stop)
    assert all(code == 0 for code in codes.values()), codes


def _revision(metrics: str, service: str) -> str | None:
    found = re.search(rf'earful_watchlists_revision_info{{revision="([0-9a-f]+)",service="{service}"}} 1\.0', metrics)
    return found.group(1) if found else None


def _mention(i: str, text: str, at: datetime) -> dict[str, Any]:
    return {"source": "twitter", "source_id": f"wl-{i}", "text": text, "lang": "en",
            "created_at": at.isoformat().replace("+00:00", "Z"), "author": {"handle": "someone", "followers": 5}}


async def test_api_changes_apply_live_in_enrichment_and_alerting(stack, pg_url) -> None:
    pipeline, receiver, folder = stack
    storage, ingest = pipeline["storage"].url, pipeline["ingest"].url
    async with httpx.AsyncClient(timeout=30) as http:
        acme = (await http.get(f"{storage}/v1/watchlists/acme-air")).json()
        new_acme = {k: acme[k] for k in ("id", "name", "kind", "owner_team", "handles", "labels", "response_sla_s")}
        new_acme["query"] = '"Acme Airways" OR #AcmeAirways'
        new_acme["alert_rules"] = [{"rule": "volume_spike", "severity": "warning", "thresholds": {"min_count": 8}}]
        resp = await http.put(f"{storage}/v1/watchlists/acme-air", json=new_acme, headers={"If-Match": f'"{acme["revision"]}"'})
        assert resp.status_code == 200, resp.text
        resp = await http.post(f"{storage}/v1/watchlists", json={
            "id": "zephyr", "name": "Zephyr Jets", "kind": "competitor", "query": "Zephyr NEAR/2 (jet OR jets)",
            "alert_rules": [{"rule": "volume_spike", "severity": "critical"}]})
        assert resp.status_code == 201, resp.text
        assert (await http.delete(f"{storage}/v1/watchlists/globex")).status_code == 204
        revision = (await http.get(f"{storage}/v1/watchlists")).json()["revision"]

        async def everyone_applied() -> bool:
            for name in ("enrichment", "alerting"):
                metrics = (await http.get(f"{pipeline[name].url}/metrics")).text
                if _revision(metrics, name) != revision:
                    return False
            return True

        assert await eventually(everyone_applied, timeout_s=30), "the services did not apply the change"

        # The folder followed the API (it is writable here).
        assert "Acme Airways" in (folder / "acme-air.yaml").read_text()
        assert (folder / "zephyr.yaml").is_file() and not (folder / "globex.yaml").exists()

        now = datetime.now(timezone.utc)
        start = now - timedelta(minutes=15)
        mentions = []
        for i in range(40):  # a quiet history: one mention every 20 s for ~13 minutes
            mentions.append(_mention(f"base{i}", "Flying Acme Airways, and Zephyr jets look nice",
                                     start + timedelta(seconds=20 * i)))
        spike_at = start + timedelta(seconds=20 * 40 + 5)
        for i in range(25):  # then a spike for both, within one 10 s bucket
            at = spike_at + timedelta(milliseconds=100 * i)
            mentions.append(_mention(f"acme{i}", f"Acme Airways lost my bag again ({i})", at))
            mentions.append(_mention(f"zephyr{i}", f"Zephyr jets grounded at the gate ({i})", at))
        controls = [_mention("old-query", "Acme Air is late again", now), _mention("deleted", "Globex is down", now)]
        resp = await http.post(f"{ingest}/v1/mentions", json={"mentions": mentions + controls})
        assert resp.status_code == 202, resp.text

        async def alerted() -> bool:
            fired = {a["labels"]["watchlist"] for a, _ in receiver.alerts_with("firing")}
            return fired >= {"acme-air", "zephyr"}

        assert await eventually(alerted, timeout_s=90), [s.log_tail() for s in pipeline.services.values()]

    firing = {a["labels"]["watchlist"]: a for a, _ in receiver.alerts_with("firing")}
    assert set(firing) == {"acme-air", "zephyr"}
    assert firing["acme-air"]["labels"]["severity"] == "warning"  # the rule from the API, not the service default
    assert firing["zephyr"]["labels"]["severity"] == "critical"

    conn = await asyncpg.connect(pg_url)
    try:
        async def all_stored() -> bool:
            return await conn.fetchval("SELECT count(*) FROM mentions WHERE source_id LIKE 'wl-%'") == len(mentions) + 2

        assert await eventually(all_stored, timeout_s=60)
        rows = dict(await conn.fetch("SELECT source_id, watchlist_ids FROM mentions WHERE source_id LIKE 'wl-%'"))
    finally:
        await conn.close()
    assert rows["wl-base0"] == ["acme-air", "zephyr"]
    assert rows["wl-acme3"] == ["acme-air"] and rows["wl-zephyr3"] == ["zephyr"]
    assert rows["wl-old-query"] == []  # the replaced query no longer matches: stored, marked as matching nothing
    assert rows["wl-deleted"] == []  # the deleted watchlist matches nothing any more

"""Enrichment as a real process with EARFUL_ENRICH_DROP_UNMATCHED=true: mentions that match no
watchlist are not published (and counted); the others are, with the query filters applied."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import httpx
import pytest

from earful.core.topics import ENRICHED, RAW
from earful_dev.stack.processes import ServiceProcess
from tests.support import codecs, consume_all, eventually, produce, raw_record, service_process

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def enrichment(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("watchlists")
    (folder / "apple.yaml").write_text(
        "id: apple\nname: Apple\nkind: competitor\nquery: >-\n"
        "  (Apple OR iPhone*) AND NOT (pie OR juice) lang:en\n", encoding="utf-8")
    with service_process("enrichment", base_env, tmp_path_factory.mktemp("logs"), EARFUL_ENRICH_DROP_UNMATCHED="true",
                         EARFUL_WATCHLISTS_DIR=str(folder)) as svc:
        yield svc


async def test_unmatched_mentions_are_dropped(enrichment: ServiceProcess, settings) -> None:
    c = codecs(settings)
    now = datetime.now(timezone.utc)
    texts = {"keep-1": "My new iPhone died after one day, so disappointed with Apple support.",
             "drop-fruit": "Grandma's apple pie is the best pie in town, fresh from the orchard.",
             "drop-other": "The weather in Berlin is lovely today, sunny and warm all afternoon.",
             "drop-german": "Mein neues iPhone ist kaputt, Apple hilft mir überhaupt nicht weiter.",
             "keep-2": "Apple stock jumped after the iPhones sold out in every single store."}
    raws = [raw_record(key, text, now) for key, text in texts.items()]
    await produce(settings, RAW, [(r["mention_id"].encode(), c.for_topic(RAW).encode(r)) for r in raws])

    async def counted() -> bool:
        metrics = httpx.get(f"{enrichment.url}/metrics", timeout=5).text
        found = re.search(r'earful_messages_total{outcome="dropped_unmatched",service="enrichment",topic="[^"]+"} (\S+)',
                          metrics)
        return found is not None and float(found.group(1)) == 3.0

    assert await eventually(counted, timeout_s=60), enrichment.log_tail()
    enriched = await consume_all(settings, ENRICHED, expect=3, timeout_s=5)
    decoded = [c.for_topic(ENRICHED).decode(m.value) for m in enriched]
    assert sorted(d["mention"]["source_id"] for d in decoded) == ["keep-1", "keep-2"]
    assert all(d["watchlist_ids"] == ["apple"] for d in decoded)
    keep = next(d for d in decoded if d["mention"]["source_id"] == "keep-1")
    assert [(m["term"], keep["mention"]["text"][m["start"]:m["end"]]) for m in keep["matches"]] == [
        ("iPhone*", "iPhone"), ("Apple", "Apple")]
    assert keep["models"]["watchlists"].startswith("earful-query/1@")

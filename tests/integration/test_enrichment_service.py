"""Enrichment as a real process: raw → enriched through the shipped models; garbage → DLQ and the agent goes on."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest

from earful.core.topics import DLQ, ENRICHED, RAW
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.support import codecs, consume_all, produce, raw_record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def enrichment(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    svc = ServiceProcess("enrichment", port, service_env(base_env, "enrichment", port),
                         tmp_path_factory.mktemp("logs") / "enrichment.log")
    svc.start()
    svc.wait_ready(90)
    yield svc
    assert svc.stop() == 0, svc.log_tail()


async def test_raw_to_enriched_with_dead_letters(enrichment: ServiceProcess, settings) -> None:
    c = codecs(settings)
    now = datetime.now(timezone.utc)
    texts = ["Tim Cook visited London and praised Acme Air, great service!",
             "Acme Air hatte ein Datenleck, meine Daten sind weg. Skandal!",
             "How do I change my booking @AcmeAir?"]
    raws = [raw_record(f"e{i}", texts[i % 3], now) for i in range(150)]  # batches of several model chunks
    items = [(r["mention_id"].encode(), c.for_topic(RAW).encode(r)) for r in raws[:75]]
    items += [(b"garbage-1", b"\x00\x01not avro"), (b"garbage-2", b"\xc3\x01" + b"\xff" * 8 + b"x")]
    items += [(r["mention_id"].encode(), c.for_topic(RAW).encode(r)) for r in raws[75:]]
    await produce(settings, RAW, items)

    enriched = await consume_all(settings, ENRICHED, expect=150)
    decoded = {m.key.decode(): c.for_topic(ENRICHED).decode(m.value) for m in enriched}
    assert set(decoded) == {r["mention_id"] for r in raws}
    english = decoded[raws[0]["mention_id"]]
    assert english["language"]["code"] == "en"
    assert ("location", "London") in {(e["type"], e["text"]) for e in english["entities"]}
    assert english["sentiment"]["label"] == "positive"
    assert english["watchlist_ids"] == ["acme-air"]
    assert english["models"]["ner"].startswith("spacy:en_earful_ner_social@")
    assert english["models"]["sentiment"].startswith("earful-linear-sentiment@")
    german = decoded[raws[1]["mention_id"]]
    assert german["language"]["code"] == "de" and german["sentiment"]["label"] is not None  # a supported language
    assert all(e["origin"] == "rules" for e in german["entities"])  # NER runs on English only
    assert "legal_privacy" in {t["tag"] for t in german["risks"]}
    question = decoded[raws[2]["mention_id"]]
    assert "customer_question" in {t["tag"] for t in question["risks"]}

    dead = await consume_all(settings, DLQ, expect=2)
    letters = [c.for_topic(DLQ).decode(m.value) for m in dead]
    assert sorted(d["key"] for d in letters) == [b"garbage-1", b"garbage-2"]
    assert {d["error_kind"] for d in letters} == {"decode_error"}
    assert all(d["service"] == "enrichment" and d["topic"] == RAW for d in letters)
    assert any(d["value"] == b"\x00\x01not avro" for d in letters)

    metrics = httpx.get(enrichment.url + "/metrics").text
    assert 'earful_dead_letters_total{kind="decode_error",service="enrichment"} 2.0' in metrics
    assert "earful_enrichment_messages_received_total" in metrics  # Faust's own sensors
    model_s = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("earful_enrichment_model_seconds_total")]
    assert model_s and model_s[0] > 0  # the models' busy time is counted


async def test_offsets_are_committed_once_the_enriched_records_are_acknowledged(enrichment: ServiceProcess, settings) -> None:
    """A batch's offsets are released only after the broker acknowledged its enriched records (the
    events carry an extra reference until then); this checks they are then released, so the group's
    committed offsets reach the end of the raw topic instead of stalling at the first batch."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from tests.support import eventually

    c = codecs(settings)
    now = datetime.now(timezone.utc)
    raws = [raw_record(f"commit-{i}", f"Acme Air flight {i} was on time, thanks!", now) for i in range(300)]
    await produce(settings, RAW, [(r["mention_id"].encode(), c.for_topic(RAW).encode(r)) for r in raws])
    await consume_all(settings, ENRICHED, expect=300 + 150)  # this test's records and the previous test's

    # A consumer of the service's group that never subscribes (so never joins) can read its commits.
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id="earful-enrichment",
                              enable_auto_commit=False)
    await reader.start()
    try:
        await reader.topics()  # metadata
        partitions = [TopicPartition(RAW, p) for p in sorted(reader.partitions_for_topic(RAW) or [])]
        assert partitions

        async def committed_all() -> bool:
            committed = [await reader.committed(tp) for tp in partitions]
            return sum(offset or 0 for offset in committed) >= 452

        assert await eventually(committed_all, timeout_s=30), [await reader.committed(tp) for tp in partitions]
    finally:
        await reader.stop()

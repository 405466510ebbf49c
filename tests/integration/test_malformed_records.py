"""Malformed records on every consumed topic, against the real services as processes: each bad record
is dead-lettered with its reason and its original bytes, and every valid record around it is still
processed (enriched, stored, counted). Watchlist records are rejected and counted instead of
dead-lettered (see `earful.watchlists.live`), and the valid ones after them still apply.

One broker, one database, and each of enrichment, storage and alerting started once for the module.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from earful.core.codec import CONFLUENT_MAGIC, SINGLE_OBJECT_MAGIC, AvroCodec
from earful.core.kafka import Codecs
from earful.core.settings import Settings
from earful.core.topics import ALERTS, DLQ, ENRICHED, RAW, WATCHLISTS
from earful.watchlists import Watchlist
from earful.watchlists.model import to_record
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.support import consume_all, enriched_record, eventually, example, raw_record, scraped

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "services" / "earful" / "sample" / "watchlists"
MARKER = "Zq9xMARKERxq9Z"
HUGE = 2**62
CONSUMERS = {RAW: ["enrichment"], ENRICHED: ["storage", "alerting"], ALERTS: ["storage", "alerting"]}


def zigzag(n: int) -> bytes:
    """An Avro long as written on the wire (also every string, bytes, array and map length)."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@dataclass
class Sent:
    """One record as produced, with where it landed and, for a bad one, the reason expected."""

    name: str
    key: bytes | None
    value: bytes | None
    reason: str | None = None  # a fragment of the dead letter's error_message; None: a valid record
    partition: int = -1
    offset: int = -1


def bad_records(codec: AvroCodec, valid: dict[str, Any], text_field: str, foreign: bytes) -> list[Sent]:
    """Every kind of malformed value for `codec`'s topic, built from a valid record of it."""
    good = codec.encode(valid)
    body = good[10:]
    marked = codec.encode(_with_text(valid, text_field, MARKER))
    plain = zigzag(len(MARKER)) + MARKER.encode()
    return [
        Sent("truncated", b"bad-truncated", good[: len(good) // 2], "corrupt"),
        Sent("wrong-magic", b"bad-magic", b"\x7b" + good[1:], "unknown framing byte 0x7b"),
        Sent("unknown-fingerprint", b"bad-fingerprint", SINGLE_OBJECT_MAGIC + bytes(range(1, 9)) + body,
             "unknown writer schema fingerprint 0102030405060708"),
        Sent("wrong-schema-id", b"bad-schema-id", CONFLUENT_MAGIC + struct.pack(">I", 7) + body,
             "no schema registry configured"),
        Sent("other-schema", b"bad-other-schema", foreign, "corrupt"),
        Sent("huge-length", b"bad-huge-length", marked.replace(plain, zigzag(HUGE) + MARKER.encode()), str(HUGE)),
        Sent("empty-value", b"bad-empty", b"", "empty value"),
        Sent("null-key", None, b"\x01\x02 not avro", "unknown framing byte 0x01"),
    ]


def _with_text(record: dict[str, Any], path: str, text: str) -> dict[str, Any]:
    """`record` with the string at `path` ("mention.text") replaced."""
    head, _, rest = path.partition(".")
    return {**record, head: _with_text(record[head], rest, text) if rest else text}


def interleave(good: list[Sent], bad: list[Sent]) -> list[Sent]:
    """good, bad, good, bad, ..., good: a valid record after every bad one."""
    out = [good[0]]
    for i, item in enumerate(bad):
        out += [item, *good[1 + i:2 + i]]
    return out + good[len(bad) + 1:]


async def send(settings: Settings, topic: str, items: list[Sent]) -> list[Sent]:
    """Produce `items` in order, noting each one's partition and offset."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=4 * 2**20)
    await producer.start()
    try:
        for item in items:
            meta = await producer.send_and_wait(topic, item.value, key=item.key)
            item.partition, item.offset = meta.partition, meta.offset
    finally:
        await producer.stop()
    return items


async def assert_dead_lettered(settings: Settings, topic: str, items: list[Sent]) -> None:
    """Each bad item has one dead letter per consuming service, with its reason and original bytes."""
    bad = [i for i in items if i.reason is not None]
    services = CONSUMERS[topic]
    codec = Codecs(settings).for_topic(DLQ)

    async def letters() -> dict[tuple[str, int, int], dict[str, Any]]:
        found = {}
        for msg in await consume_all(settings, DLQ, expect=10**6, timeout_s=1.0):
            letter = codec.decode(msg.value)
            if letter["topic"] == topic:
                found[(letter["service"], letter["partition"], letter["offset"])] = letter
        return found

    wanted = {(s, i.partition, i.offset) for s in services for i in bad}
    assert await eventually(lambda: _covers(letters(), wanted), timeout_s=60), f"dead letters missing on {topic}"
    found = await letters()
    for service in services:
        for item in bad:
            letter = found[(service, item.partition, item.offset)]
            assert letter["error_kind"] == "decode_error", (service, item.name, letter)
            assert item.reason in letter["error_message"], (service, item.name, letter["error_message"])
            assert (letter["key"], letter["value"]) == (item.key, item.value), (service, item.name)
    assert not any(k[1:] in {(i.partition, i.offset) for i in items if i.reason is None} for k in found)


async def _covers(letters: Any, wanted: set[tuple[str, int, int]]) -> bool:
    return wanted <= set(await letters)


async def letters_for(settings: Settings, topic: str, item: Sent) -> dict[str, dict[str, Any]]:
    """The dead letters of `item`, by the service that wrote them, once the storage service wrote one."""
    codec = Codecs(settings).for_topic(DLQ)

    async def read() -> dict[str, dict[str, Any]]:
        found = {}
        for msg in await consume_all(settings, DLQ, expect=10**6, timeout_s=1.0):
            letter = codec.decode(msg.value)
            if (letter["topic"], letter["partition"], letter["offset"]) == (topic, item.partition, item.offset):
                found[letter["service"]] = letter
        return found

    async def storage_wrote() -> bool:
        return "storage" in await read()

    await eventually(storage_wrote, timeout_s=60)
    return await read()


async def decodable_on(settings: Settings, topic: str) -> int:
    """How many records on `topic` decode (what a consumer of it should finish with)."""
    codec = Codecs(settings).for_topic(topic)
    count = 0
    for msg in await consume_all(settings, topic, expect=10**6, timeout_s=1.0):
        try:
            codec.decode(msg.value)
            count += 1
        except Exception:
            pass
    return count


def metric(svc: ServiceProcess, sample: str, **labels: str) -> float:
    return scraped(svc.url + "/metrics", sample, **labels)


async def fetchval(pg_url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


# --- the services ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services(base_env: dict[str, str], pg_url: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, ServiceProcess]]:
    """Enrichment, storage and alerting, started together, on a copy of the sample watchlists."""
    folder = tmp_path_factory.mktemp("watchlists") / "watchlists"
    shutil.copytree(SAMPLE, folder)
    logs = tmp_path_factory.mktemp("logs")
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_WATCHLISTS_DIR": str(folder),
           "EARFUL_STORAGE_BATCH_SIZE": "5"}
    started: dict[str, ServiceProcess] = {}
    try:
        for name in ("storage", "enrichment", "alerting"):
            port = free_port()
            started[name] = ServiceProcess(name, port, service_env(env, name, port), logs / f"{name}.log")
            started[name].start()
        for svc in started.values():
            svc.wait_ready(120)
        yield started
    finally:
        codes = {name: svc.stop() for name, svc in started.items()}
    assert all(code == 0 for code in codes.values()), {n: (c, started[n].log_tail()) for n, c in codes.items()}


@pytest.fixture(scope="module")
def codecs(settings: Settings) -> Codecs:
    return Codecs(settings)


# --- the tests ------------------------------------------------------------------------------------


async def test_enrichment_dead_letters_bad_raw_records_and_enriches_the_rest(services, settings, codecs) -> None:
    raw = codecs.for_topic(RAW)
    now = datetime.now(timezone.utc)
    raws = [raw_record(f"mal-raw-{i}", f"Acme Air lost bag number {i}, terrible service", now) for i in range(10)]
    good = [Sent(r["source_id"], r["mention_id"].encode(), raw.encode(r)) for r in raws]
    good[-1].key = None  # a valid record without a key is enriched, keyed by its mention id
    foreign = codecs.for_topic(ENRICHED).encode(enriched_record(raws[0], ["acme-air"]))
    items = await send(settings, RAW, interleave(good, bad_records(raw, raws[0], "text", foreign)))

    enriched = await consume_all(settings, ENRICHED, expect=len(good), timeout_s=90)
    decoded = {m.key: codecs.for_topic(ENRICHED).decode(m.value) for m in enriched}
    assert set(decoded) == {r["mention_id"].encode() for r in raws}, services["enrichment"].log_tail()
    assert all(d["watchlist_ids"] == ["acme-air"] for d in decoded.values())
    await assert_dead_lettered(settings, RAW, items)
    assert metric(services["enrichment"], "earful_dead_letters_total", service="enrichment", kind="decode_error") == 8


async def test_storage_and_alerting_dead_letter_bad_enriched_records_and_handle_the_rest(services, settings, codecs,
                                                                                        pg_url: str) -> None:
    enriched = codecs.for_topic(ENRICHED)
    now = datetime.now(timezone.utc)
    raws = [raw_record(f"mal-enr-{i}", f"Globex order {i} arrived late", now) for i in range(10)]
    records = [enriched_record(r, ["globex"]) for r in raws]
    good = [Sent(r["source_id"], r["mention_id"].encode(), enriched.encode(e)) for r, e in zip(raws, records)]
    good[-1].key = None
    foreign = codecs.for_topic(RAW).encode(raws[0])
    sequence = interleave(good, bad_records(enriched, records[0], "mention.text", foreign))
    # Avro that decodes, with a mention id PostgreSQL cannot take: storage's poison path, in the same batch.
    unstorable = Sent("not-a-uuid", b"bad-uuid", enriched.encode(_with_text(records[0], "mention.mention_id", "x")))
    sequence.insert(3, unstorable)
    items = [item for item in await send(settings, ENRICHED, sequence) if item is not unstorable]

    ids = [r["mention_id"] for r in raws]
    stored = "SELECT count(*) FROM mentions WHERE mention_id::text = ANY($1::text[])"
    assert await eventually(lambda: _equals(fetchval(pg_url, stored, ids), len(ids)), timeout_s=60), \
        services["storage"].log_tail()
    await assert_dead_lettered(settings, ENRICHED, items)
    refused = await letters_for(settings, ENRICHED, unstorable)
    assert list(refused) == ["storage"], refused  # alerting needs no mention id
    assert refused["storage"]["error_kind"] == "storage_error" and refused["storage"]["value"] == unstorable.value
    assert "PostgreSQL refused the row" in refused["storage"]["error_message"]
    total = await decodable_on(settings, ENRICHED)  # these, the unstorable one and what enrichment wrote

    def fanned() -> bool:
        counts = [metric(services["alerting"], "earful_messages_total", service="alerting", topic=ENRICHED,
                         outcome=outcome) for outcome in ("fanned_out", "no_watchlist")]
        return sum(counts) == total

    assert await eventually(fanned, timeout_s=60), services["alerting"].log_tail()


async def test_storage_and_alerting_dead_letter_bad_alert_events_and_record_the_rest(services, settings, codecs,
                                                                                    pg_url: str) -> None:
    alerts = codecs.for_topic(ALERTS)
    base = example("alert_event/v2/02_resolved")
    events = [{**base, "alert_id": f"mal-alert-{i}", "fingerprint": f"mal-fp-{i}"} for i in range(10)]
    good = [Sent(e["alert_id"], e["fingerprint"].encode(), alerts.encode(e)) for e in events]
    foreign = codecs.for_topic(DLQ).encode(example("dead_letter/v1/01_decode_error_garbage_value"))
    sequence = interleave(good, bad_records(alerts, events[0], "summary", foreign))
    # Avro that decodes, with a NUL character PostgreSQL cannot store: both consumers' poison paths.
    nul = {**base, "alert_id": "mal-alert-nul", "fingerprint": "mal-fp-nul", "summary": "NUL \x00 inside"}
    unstorable = Sent("nul-in-summary", b"mal-fp-nul", alerts.encode(nul))
    sequence.insert(3, unstorable)
    items = [item for item in await send(settings, ALERTS, sequence) if item is not unstorable]

    ids = [e["alert_id"] for e in events]
    stored = "SELECT count(DISTINCT alert_id) FROM alerts WHERE alert_id = ANY($1::text[])"
    assert await eventually(lambda: _equals(fetchval(pg_url, stored, ids), len(ids)), timeout_s=60), \
        services["storage"].log_tail()
    await assert_dead_lettered(settings, ALERTS, items)
    refused = await letters_for(settings, ALERTS, unstorable)
    assert sorted(refused) == ["alerting", "storage"], refused
    assert all(d["error_kind"] == "storage_error" and d["value"] == unstorable.value for d in refused.values())
    total = await decodable_on(settings, ALERTS) - 1  # the one with a NUL is dead-lettered, not recorded

    def delivered() -> bool:
        counts = [metric(services["alerting"], "earful_messages_total", service="alerting", topic=ALERTS,
                         outcome=outcome) for outcome in ("recorded", "unchanged")]
        return sum(counts) == total

    assert await eventually(delivered, timeout_s=60), services["alerting"].log_tail()


async def test_bad_watchlist_records_are_rejected_and_the_next_valid_one_applies(services, settings, codecs) -> None:
    codec = codecs.for_topic(WATCHLISTS)
    now = datetime.now(timezone.utc)
    zephyr = to_record(Watchlist("zephyr", "Zephyr Jets", "competitor", query="Zephyr"), now, "test")
    impostor = to_record(Watchlist("impostor", "Impostor", "brand", query="Impostor"), now, "test")
    bad = bad_records(codec, zephyr, "name", codecs.for_topic(RAW).encode(raw_record("w", "x", now)))
    for item in bad:
        item.key = item.key and b"zephyr"  # the key is the watchlist id; a null key stays null
    bad.append(Sent("key-differs-from-id", b"zephyr", codec.encode(impostor), "differs from the record's id"))
    before = {name: metric(svc, "earful_watchlist_updates_total", service=name, outcome="rejected")
              for name, svc in services.items()}
    await send(settings, WATCHLISTS, [*bad, Sent("zephyr", b"zephyr", codec.encode(zephyr))])

    for name, svc in services.items():
        def applied(svc: ServiceProcess = svc, name: str = name) -> bool:
            rejected = metric(svc, "earful_watchlist_updates_total", service=name, outcome="rejected") - before[name]
            return rejected == len(bad) and metric(svc, "earful_watchlists", service=name) == 5

        assert await eventually(applied, timeout_s=30), (name, svc.log_tail())
        assert httpx.get(svc.url + "/readyz").status_code == 200  # still following the topic
    raw = raw_record("mal-zephyr", "Zephyr jets are cheaper than ever", now)
    await send(settings, RAW, [Sent("zephyr-mention", raw["mention_id"].encode(), codecs.for_topic(RAW).encode(raw))])

    async def matched() -> bool:
        for msg in await consume_all(settings, ENRICHED, expect=10**6, timeout_s=1.0):
            if msg.key == raw["mention_id"].encode():
                return bool(codecs.for_topic(ENRICHED).decode(msg.value)["watchlist_ids"] == ["zephyr"])
        return False

    assert await eventually(matched, timeout_s=60), services["enrichment"].log_tail()


async def test_huge_texts_on_the_raw_topic_neither_stall_nor_stop_enrichment(services, settings, codecs,
                                                                             pg_url: str) -> None:
    """Half a megabyte is enriched from its start and kept whole; a megabyte, whose enriched record
    the producer may not send, is dead-lettered with the reason; the mention after both is enriched."""
    now = datetime.now(timezone.utc) - timedelta(seconds=1)
    unit = "Acme Air ? @AcmeAir #AcmeAir https://acme.example/x?y=1 refund "
    half, whole = (unit * 20_000)[:500_000], (unit * 20_000)[:1_000_000]
    mentions = [raw_record(name, text, now) for name, text in
                (("mal-half-mb", half), ("mal-one-mb", whole), ("mal-after-huge", "Acme Air was on time today"))]
    raw = codecs.for_topic(RAW)
    items = await send(settings, RAW, [Sent(m["source_id"], m["mention_id"].encode(), raw.encode(m)) for m in mentions])

    async def enriched() -> dict[bytes, dict[str, Any]]:
        wanted = {m["mention_id"].encode() for m in mentions}
        return {m.key: codecs.for_topic(ENRICHED).decode(m.value)
                for m in await consume_all(settings, ENRICHED, expect=10**6, timeout_s=1.0) if m.key in wanted}

    assert await eventually(lambda: _has_len(enriched(), 2), timeout_s=90), services["enrichment"].log_tail()
    out = await enriched()
    assert mentions[2]["mention_id"].encode() in out
    half_out = out[mentions[0]["mention_id"].encode()]
    assert half_out["mention"]["text"] == half and half_out["watchlist_ids"] == ["acme-air"]
    assert max(e["end"] for e in half_out["entities"]) <= 20_000
    assert metric(services["enrichment"], "earful_enrichment_texts_clipped_total") == 2

    big = items[1]
    letters = [codecs.for_topic(DLQ).decode(m.value) for m in await consume_all(settings, DLQ, expect=10**6, timeout_s=1.0)]
    (letter,) = [d for d in letters if (d["topic"], d["partition"], d["offset"]) == (RAW, big.partition, big.offset)]
    assert letter["error_kind"] == "processing_error" and letter["key"] == big.key and letter["value"] is None
    assert "over the producer's 1000000-byte request limit" in letter["error_message"]
    assert "original is not kept" in letter["error_message"]
    stored = "SELECT length(text) FROM mentions WHERE mention_id = $1::uuid"
    assert await eventually(lambda: _equals(fetchval(pg_url, stored, mentions[0]["mention_id"]), len(half)),
                            timeout_s=60), services["storage"].log_tail()


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _has_len(value: Any, expected: int) -> bool:
    return len(await value) == expected

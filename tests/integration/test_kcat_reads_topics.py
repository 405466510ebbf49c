"""Stock Kafka clients read what Earful writes with a schema registry (the local stack's default):
an enriched mention produced by Earful's codec against the local stack's registry
(earful_dev.stack.registry) is read back by tools that know nothing of Earful.

* kcat (librdkafka) sees the Confluent header: magic byte 0 and the schema id the registry gave.
* confluent-kafka's own consumer with its AvroDeserializer, given only the registry URL, decodes
  the whole record.
* kcat with ``-s value=avro -r <registry>`` decodes it too, where kcat was built with Avro support
  (Debian's is not: its ``-s value=avro`` answers "This build of kcat lacks Avro/Schema-Registry
  support", and that test is skipped there).

kcat runs on the librdkafka that confluent-kafka ships: Debian 12's librdkafka (2.0.2) fails on the
local broker's ApiVersions v3 answer ("Read underflow", at its tagged fields), a newer one does not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import confluent_kafka
import httpx
import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from earful.core.kafka import Codecs
from earful.core.settings import Settings
from earful_dev.stack.broker import LocalBroker
from earful_dev.stack.registry import CONTENT_TYPE, LocalRegistry
from tests.support import enriched_record, produce, raw_record

KCAT = shutil.which("kcat") or "/usr/bin/kcat"  # `make install-system` installs it
TOPIC = "earful.mentions.enriched.v1"


@pytest.fixture(scope="module")
def kcat_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """kcat's environment: confluent-kafka's librdkafka first on the library path."""
    bundled = sorted((Path(confluent_kafka.__file__).parents[1] / "confluent_kafka.libs").glob("librdkafka-*.so.1"))
    assert bundled, "confluent-kafka's wheel ships librdkafka in confluent_kafka.libs/"
    libs = tmp_path_factory.mktemp("librdkafka")
    (libs / "librdkafka.so.1").symlink_to(bundled[0])
    return {**os.environ, "LD_LIBRARY_PATH": str(libs)}


@pytest.fixture(scope="module")
def registry() -> Iterator[LocalRegistry]:
    running = LocalRegistry.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
async def written(broker: LocalBroker, settings: Settings, registry: LocalRegistry) -> dict[str, Any]:
    """One enriched mention on TOPIC, encoded by Earful's codec with the registry configured."""
    with_registry = Settings(kafka_bootstrap=broker.bootstrap, schema_registry_url=registry.url)
    codecs = Codecs(with_registry)
    record = enriched_record(raw_record("kcat-1", "The checkout page times out again", datetime.now(timezone.utc)),
                             ["acme"])
    value = codecs.for_topic(TOPIC).encode(record)
    await produce(with_registry, TOPIC, [(record["mention"]["mention_id"].encode(), value)])
    return {"record": record, "value": value}


def _kcat(broker: LocalBroker, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([KCAT, "-b", broker.bootstrap, "-C", "-t", TOPIC, "-o", "beginning", "-c", "1", "-e",
                           *extra], capture_output=True, timeout=60, stdin=subprocess.DEVNULL, env=env)
    # An envelope's payload may hold the value's undecoded bytes, which need not be UTF-8.
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(errors="replace"),
                                       done.stderr.decode(errors="replace"))


def test_the_registry_serves_what_stock_clients_ask(written: dict[str, Any], registry: LocalRegistry) -> None:
    subject = f"{TOPIC}-value"
    latest = httpx.get(f"{registry.url}/subjects/{subject}/versions/latest")
    assert latest.status_code == 200 and latest.headers["content-type"] == CONTENT_TYPE
    body = latest.json()
    assert body["version"] == 1 and json.loads(body["schema"])["name"] == "EnrichedMention", body
    assert httpx.get(f"{registry.url}/subjects/{subject}/versions/1").json() == body
    assert subject in httpx.get(f"{registry.url}/subjects").json()
    assert httpx.get(f"{registry.url}/schemas/ids/{body['id']}").json()["schema"] == body["schema"]
    missing = [httpx.get(f"{registry.url}{path}") for path in
               (f"/subjects/{subject}/versions/2", "/subjects/nope/versions/latest", "/schemas/ids/999")]
    assert [(r.status_code, r.json()["error_code"]) for r in missing] == [(404, 40402), (404, 40401), (404, 40403)]
    assert httpx.get(f"{registry.url}/subjects/{subject}/versions/x").json()["error_code"] == 42202


def test_kcat_reads_the_confluent_header(broker: LocalBroker, written: dict[str, Any], registry: LocalRegistry,
                                         kcat_env: dict[str, str]) -> None:
    """kcat unpacks the first five bytes as a signed byte and a big-endian unsigned int (the
    rest of the value it skips)."""
    done = _kcat(broker, kcat_env, "-s", "value=>bI", "-f", "%k %s\n")
    assert done.returncode == 0, done.stderr
    schema_id = httpx.get(f"{registry.url}/subjects/{TOPIC}-value/versions/latest").json()["id"]
    # kcat prints the unpacked fields one after another: "0" (the magic byte), then the id.
    assert done.stdout == f"{written['record']['mention']['mention_id']} 0{schema_id}\n", done.stdout


def test_confluent_kafka_decodes_the_record(broker: LocalBroker, written: dict[str, Any], registry: LocalRegistry) -> None:
    """Confluent's consumer and Avro deserializer, with the registry URL and nothing of Earful."""
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "kcat-test-stock", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    try:
        consumer.subscribe([TOPIC])
        message = None
        for _ in range(120):  # up to a minute: the group's first assignment takes a few seconds
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None, message and message.error()
        decoded = deserialize(message.value(), SerializationContext(TOPIC, MessageField.VALUE))
    finally:
        consumer.close()
    record = written["record"]
    assert decoded["mention"]["mention_id"] == record["mention"]["mention_id"]
    assert decoded["mention"]["text"] == record["mention"]["text"] == "The checkout page times out again"
    assert decoded["watchlist_ids"] == ["acme"]


def test_kcat_decodes_the_record_where_it_has_avro(broker: LocalBroker, written: dict[str, Any],
                                                   registry: LocalRegistry, kcat_env: dict[str, str]) -> None:
    done = _kcat(broker, kcat_env, "-J", "-s", "value=avro", "-r", registry.url)
    if "lacks Avro" in done.stderr:
        pytest.skip("this kcat build has no Avro/Schema-Registry support (Debian's has none)")
    assert done.returncode == 0, done.stderr
    envelope = json.loads(done.stdout.strip().splitlines()[-1])
    payload = envelope["payload"]
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert payload["mention"]["mention_id"] == written["record"]["mention"]["mention_id"]
    assert payload["mention"]["text"] == written["record"]["mention"]["text"]

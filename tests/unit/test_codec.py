"""The Avro codecs: CRC-64-AVRO, both wire formats byte for byte, and every way bytes can be bad."""

from __future__ import annotations

import json
import struct
from datetime import timezone
from pathlib import Path

import fastavro
import fastavro.schema
import pytest

from earful.core.codec import (
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_MAGIC,
    AvroCodec,
    AvroSchema,
    EmbeddingEncoder,
    SchemaStore,
    crc64_avro,
)
from earful.core.errors import CodecError, DecodeError, EncodeError, RegistryError, SchemaError
from earful.core.kafka import Codecs
from earful.core.settings import Settings
from earful.core.topics import ALERTS, DLQ, ENRICHED, RAW
from tests.support import example

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
SCHEMA_FILES = sorted(SCHEMAS.glob("*.avsc"))

TINY = {
    "type": "record",
    "name": "T",
    "namespace": "earful.test",
    "doc": "A tiny test record.",
    "fields": [
        {"name": "a", "type": "int", "doc": "a number"},
        {"name": "s", "type": "string", "doc": "a string"},
    ],
}
TINY_RECORD = {"a": 1, "s": "hi"}
TINY_BODY = bytes.fromhex("02 04 68 69")  # zigzag(1)=2, len 2 -> 4, "hi"


class FakeRegistry:
    """An in-memory SchemaRegistry: one schema, one id."""

    def __init__(self, schema: AvroSchema, schema_id: int = 42) -> None:
        self.schema = schema
        self.schema_id = schema_id
        self.id_calls: list[tuple[str, int]] = []

    def id_for(self, subject: str, schema: AvroSchema) -> int:
        self.id_calls.append((subject, schema.fingerprint))
        return self.schema_id

    def schema_for(self, schema_id: int) -> AvroSchema:
        if schema_id != self.schema_id:
            raise RegistryError(f"unknown schema id {schema_id}")
        return self.schema


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    (tmp_path / "t.avsc").write_text(json.dumps(TINY), encoding="utf-8")
    return tmp_path


@pytest.fixture
def tiny_store(tiny_dir: Path) -> SchemaStore:
    return SchemaStore(tiny_dir)


@pytest.fixture
def tiny_codec(tiny_store: SchemaStore) -> AvroCodec:
    return AvroCodec(tiny_store.current("t"), tiny_store)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("EARFUL_"):
            monkeypatch.delenv(name)


# --- CRC-64-AVRO ------------------------------------------------------------------------------


def test_crc64_avro_matches_the_avro_specification_value() -> None:
    assert crc64_avro(b'"int"').to_bytes(8, "little").hex() == "8f5c393f1ad57572"


def test_crc64_avro_of_nothing_is_the_empty_fingerprint() -> None:
    assert crc64_avro(b"") == 0xC15D213AA4D7A795


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_fingerprint_equals_fastavro(path: Path) -> None:
    schema = AvroSchema.from_file(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    canonical = fastavro.schema.to_parsing_canonical_form(raw)
    assert schema.canonical == canonical
    expected = fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
    assert crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little").hex() == expected
    assert schema.fingerprint_bytes.hex() == expected


def test_schema_files_exist() -> None:
    assert {p.stem for p in SCHEMA_FILES} >= {"raw_mention", "enriched_mention", "alert_event", "dead_letter"}


def test_fingerprint_ignores_docs_but_not_structure() -> None:
    base = AvroSchema.from_dict(TINY)
    redocumented = AvroSchema.from_dict({**TINY, "doc": "other words"})
    renamed_field = AvroSchema.from_dict({**TINY, "fields": [TINY["fields"][0], {**TINY["fields"][1], "name": "t"}]})
    assert redocumented.fingerprint == base.fingerprint
    assert renamed_field.fingerprint != base.fingerprint


def test_invalid_schema_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="invalid Avro schema"):
        AvroSchema.from_dict({"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]})
    bad = tmp_path / "broken.avsc"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SchemaError, match="cannot load Avro schema"):
        AvroSchema.from_file(bad)
    with pytest.raises(SchemaError, match="does not exist"):
        SchemaStore(tmp_path / "missing")


# --- exact bytes ------------------------------------------------------------------------------


def test_single_object_bytes_are_exact(tiny_codec: AvroCodec) -> None:
    schema = tiny_codec.schema
    data = tiny_codec.encode(TINY_RECORD)
    assert data == bytes.fromhex("c3 01") + schema.fingerprint_bytes + TINY_BODY
    assert data[:2] == SINGLE_OBJECT_MAGIC
    assert schema.fingerprint_bytes.hex() == fastavro.schema.fingerprint(schema.canonical, "CRC-64-AVRO")
    assert tiny_codec.decode(data) == TINY_RECORD


def test_confluent_bytes_are_exact(tiny_store: SchemaStore) -> None:
    schema = tiny_store.current("t")
    registry = FakeRegistry(schema, 42)
    codec = AvroCodec(schema, tiny_store, registry)
    data = codec.encode(TINY_RECORD)
    assert data == bytes.fromhex("00 00 00 00 2a 02 04 68 69")
    assert data[:1] == CONFLUENT_MAGIC
    assert codec.decode(data) == TINY_RECORD
    # The schema is registered once under the default subject, not once per record.
    codec.encode(TINY_RECORD)
    assert registry.id_calls == [("earful.test.T-value", schema.fingerprint)]


def test_confluent_subject_can_be_named(tiny_store: SchemaStore) -> None:
    schema = tiny_store.current("t")
    registry = FakeRegistry(schema, 7)
    AvroCodec(schema, tiny_store, registry, subject="earful.test.topic-value").encode(TINY_RECORD)
    assert registry.id_calls == [("earful.test.topic-value", schema.fingerprint)]


def test_registry_codec_still_decodes_single_object(tiny_store: SchemaStore, tiny_codec: AvroCodec) -> None:
    schema = tiny_store.current("t")
    with_registry = AvroCodec(schema, tiny_store, FakeRegistry(schema, 42))
    single_object = tiny_codec.encode(TINY_RECORD)
    assert single_object[:2] == SINGLE_OBJECT_MAGIC
    assert with_registry.decode(single_object) == TINY_RECORD


def test_unknown_registry_id_is_a_registry_error_not_a_decode_error(tiny_store: SchemaStore) -> None:
    # A registry problem may be transient (retry), unlike bad bytes (dead letter).
    schema = tiny_store.current("t")
    codec = AvroCodec(schema, tiny_store, FakeRegistry(schema, 42))
    with pytest.raises(RegistryError):
        codec.decode(b"\x00" + struct.pack(">I", 43) + TINY_BODY)


def test_older_writer_schema_resolves_to_current(tmp_path: Path) -> None:
    """Bytes written with a frozen version decode into the current shape (new field → default)."""
    v2 = {**TINY, "fields": [*TINY["fields"], {"name": "b", "type": ["null", "string"], "default": None, "doc": "new"}]}
    (tmp_path / "t.avsc").write_text(json.dumps(v2), encoding="utf-8")
    (tmp_path / "history" / "t").mkdir(parents=True)
    (tmp_path / "history" / "t" / "v1.avsc").write_text(json.dumps(TINY), encoding="utf-8")
    store = SchemaStore(tmp_path)
    old = AvroCodec(AvroSchema.from_file(tmp_path / "history" / "t" / "v1.avsc"), store)
    new = AvroCodec(store.current("t"), store)
    assert [s.fingerprint for s in store.history("t")] == [old.schema.fingerprint]
    assert new.decode(old.encode(TINY_RECORD)) == {"a": 1, "s": "hi", "b": None}
    assert new.decode(new.encode({"a": 2, "s": "x", "b": "y"})) == {"a": 2, "s": "x", "b": "y"}


# --- bad bytes --------------------------------------------------------------------------------


def _fp(codec: AvroCodec) -> bytes:
    return codec.schema.fingerprint_bytes


BAD_VALUES = [
    # (id, bytes builder, message fragment)
    ("none", lambda c: None, "empty value"),
    ("empty", lambda c: b"", "empty value"),
    ("unknown-magic", lambda c: b"\x7b\x22a\x22: 1}", "unknown framing byte 0x7b"),
    ("half-single-object-magic", lambda c: b"\xc3\x02" + _fp(c) + TINY_BODY, "unknown framing byte 0xc3"),
    ("truncated-single-object-header", lambda c: SINGLE_OBJECT_MAGIC + _fp(c)[:5], "truncated single-object header"),
    ("magic-only", lambda c: SINGLE_OBJECT_MAGIC, "truncated single-object header"),
    ("unknown-fingerprint", lambda c: SINGLE_OBJECT_MAGIC + bytes(range(1, 9)) + TINY_BODY,
     "unknown writer schema fingerprint 0102030405060708"),
    ("corrupt-body-short-string", lambda c: SINGLE_OBJECT_MAGIC + _fp(c) + bytes.fromhex("02 0a 68"), "corrupt earful.test.T body"),
    ("corrupt-body-missing-field", lambda c: SINGLE_OBJECT_MAGIC + _fp(c) + bytes.fromhex("02"), "corrupt earful.test.T body"),
    ("header-without-body", lambda c: SINGLE_OBJECT_MAGIC + _fp(c), "corrupt earful.test.T body"),
    ("trailing-bytes", lambda c: SINGLE_OBJECT_MAGIC + _fp(c) + TINY_BODY + b"\x00\x00", "2 trailing bytes"),
    ("confluent-without-registry", lambda c: bytes.fromhex("00 00 00 00 2a") + TINY_BODY, "no schema registry configured"),
]


@pytest.mark.parametrize("build,fragment", [(b, f) for _, b, f in BAD_VALUES], ids=[i for i, _, _ in BAD_VALUES])
def test_bad_bytes_raise_decode_error(tiny_codec: AvroCodec, build, fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        tiny_codec.decode(build(tiny_codec))
    assert fragment in str(info.value)
    assert info.value.kind == "decode_error"


def test_truncated_confluent_header_with_registry(tiny_store: SchemaStore) -> None:
    schema = tiny_store.current("t")
    codec = AvroCodec(schema, tiny_store, FakeRegistry(schema, 42))
    with pytest.raises(DecodeError, match="truncated Confluent header"):
        codec.decode(b"\x00\x00\x00")


def test_corrupt_confluent_body(tiny_store: SchemaStore) -> None:
    schema = tiny_store.current("t")
    codec = AvroCodec(schema, tiny_store, FakeRegistry(schema, 42))
    with pytest.raises(DecodeError, match=r"corrupt earful.test.T body"):
        codec.decode(bytes.fromhex("00 00 00 00 2a 02 0a 68"))


@pytest.mark.parametrize(
    "record",
    [
        {"a": 1},  # missing required field
        {"s": "hi"},
        {"a": "one", "s": "hi"},  # wrong type
        {"a": 1, "s": None},
    ],
    ids=["missing-s", "missing-a", "string-for-int", "null-for-string"],
)
def test_record_not_fitting_the_schema_raises_encode_error(tiny_codec: AvroCodec, record: dict) -> None:
    with pytest.raises(EncodeError, match=r"does not fit earful.test.T") as info:
        tiny_codec.encode(record)
    assert isinstance(info.value, CodecError)
    assert info.value.kind == "encode_error"


def test_int_out_of_range_raises_encode_error(tiny_codec: AvroCodec) -> None:
    with pytest.raises(EncodeError, match=r"does not fit earful.test.T"):
        tiny_codec.encode({"a": 2**40, "s": "hi"})


# --- realistic records through the per-topic codecs -----------------------------------------


RAW_RECORD = example("raw_mention/v2/01_twitter_complaint")
ENRICHED_RECORD = example("enriched_mention/v4/01_english_complaint_reprocessed")
# The enriched mention's scores are Avro floats (32 bits): for the round trip to compare with ==,
# these records hold values a float keeps exactly.
ENRICHED_RECORD["sentiment"].update(score=-0.875, probabilities={"negative": 0.875, "neutral": 0.0625, "positive": 0.0625})
HINDI_ENRICHED_RECORD = example("enriched_mention/v4/02_romanised_hindi")
HINDI_ENRICHED_RECORD["language"]["confidence"] = 0.9375
HINDI_ENRICHED_RECORD["sentiment"].update(score=-0.625, probabilities={"negative": 0.75, "neutral": 0.125, "positive": 0.125})
ALERT_RECORD = example("alert_event/v3/01_firing_explained")
RESOLVED_RECORD = example("alert_event/v3/03_resolved")
DEAD_LETTER_RECORD = example("dead_letter/v1/01_decode_error_garbage_value")
NULLS_DEAD_LETTER_RECORD = example("dead_letter/v1/02_null_key_and_value")

ROUND_TRIPS = [
    (RAW, RAW_RECORD, "earful.v1.RawMention"),
    (ENRICHED, ENRICHED_RECORD, "earful.v1.EnrichedMention"),
    (ENRICHED, HINDI_ENRICHED_RECORD, "earful.v1.EnrichedMention"),
    (ALERTS, ALERT_RECORD, "earful.v1.AlertEvent"),
    (ALERTS, RESOLVED_RECORD, "earful.v1.AlertEvent"),
    (DLQ, DEAD_LETTER_RECORD, "earful.v1.DeadLetter"),
    (DLQ, NULLS_DEAD_LETTER_RECORD, "earful.v1.DeadLetter"),
]


@pytest.mark.parametrize(
    "topic,record,schema_name", ROUND_TRIPS,
    ids=["raw", "enriched", "enriched-romanised-hindi", "alert-firing", "alert-resolved", "dead-letter", "dead-letter-nulls"],
)
def test_realistic_records_round_trip_through_topic_codecs(clean_env: None, topic: str, record: dict, schema_name: str) -> None:
    settings = Settings()
    assert settings.schema_dir == SCHEMAS
    codecs = Codecs(settings)
    assert codecs.registry is None
    codec = codecs.for_topic(topic)
    assert codec.schema.name == schema_name
    data = codec.encode(record)
    assert data[:10] == SINGLE_OBJECT_MAGIC + codec.schema.fingerprint_bytes
    assert codec.decode(data) == record


def test_codecs_cover_every_topic_with_a_schema(clean_env: None) -> None:
    codecs = Codecs(Settings())
    for topic in (RAW, ENRICHED, ALERTS, DLQ):
        assert codecs.for_topic(topic).subject == f"{topic}-value"
    with pytest.raises(KeyError):
        codecs.for_topic("earful-alerting-detector-changelog")  # Faust JSON, no Avro schema


def test_aware_timestamps_keep_their_instant(clean_env: None) -> None:
    """An aware timestamp keeps its instant through the codec, whatever its zone."""
    from datetime import timedelta

    codec = Codecs(Settings()).for_topic(RAW)
    cet = timezone(timedelta(hours=1))
    record = {**RAW_RECORD, "created_at": RAW_RECORD["created_at"].astimezone(cet)}
    assert codec.decode(codec.encode(record))["created_at"] == RAW_RECORD["created_at"]


# --- EmbeddingEncoder: the raw mention's bytes copied into the enriched record ---------------------

@pytest.fixture
def embedding(clean_env: None) -> tuple[EmbeddingEncoder, AvroCodec, AvroCodec]:
    codecs = Codecs(Settings())
    raw, enriched = codecs.for_topic(RAW), codecs.for_topic(ENRICHED)
    return EmbeddingEncoder(enriched, raw), raw, enriched


@pytest.mark.parametrize("raw_name", ["01_twitter_complaint.json", "02_mastodon_german_boost.json", "03_news_feed_item.json"])
@pytest.mark.parametrize("enriched_name", ["01_english_complaint.json", "02_german_unsupported_sentiment.json"])
def test_embedding_writes_the_bytes_a_full_encode_writes(embedding, raw_name: str, enriched_name: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    encoder, raw, enriched = embedding
    raw_bytes = raw.encode(example(f"raw_mention/v2/{raw_name}"))
    mention = raw.decode(raw_bytes)
    record = {**example(f"enriched_mention/v2/{enriched_name}"), "mention": mention}
    expected = enriched.encode(record)
    monkeypatch.setattr(enriched, "encode", lambda record: pytest.fail("encoded in full instead of copying"))
    spliced = encoder.encode(record, mention, raw_bytes)
    assert spliced == expected
    assert enriched.decode(spliced)["mention"] == mention


def test_embedding_falls_back_to_a_full_encode_when_the_bytes_cannot_be_copied(embedding) -> None:
    encoder, raw, enriched = embedding
    record_v1 = example("raw_mention/v1/01_twitter_complaint")
    old_schema = AvroSchema.from_file(SCHEMAS / "history" / "raw_mention" / "v1.avsc")
    old_bytes = AvroCodec(old_schema, raw.store).encode(record_v1)  # written with an older schema
    mention = raw.decode(old_bytes)
    record = {**example("enriched_mention/v2/01_english_complaint"), "mention": mention}
    assert encoder.encode(record, mention, old_bytes) == enriched.encode(record)
    # The record no longer holds the decoded dict: its mention is encoded, not copied.
    new_bytes = raw.encode(example("raw_mention/v2/01_twitter_complaint"))
    decoded = raw.decode(new_bytes)
    changed = {**decoded, "text": "edited after decoding"}
    record = {**record, "mention": changed}
    out = encoder.encode(record, decoded, new_bytes)
    assert enriched.decode(out)["mention"]["text"] == "edited after decoding"
    assert encoder.encode(record, changed, None) == enriched.encode(record)


def test_embedding_checks_the_rest_as_a_full_encode_does(embedding) -> None:
    encoder, raw, _ = embedding
    raw_bytes = raw.encode(example("raw_mention/v2/01_twitter_complaint"))
    mention = raw.decode(raw_bytes)
    good = {**example("enriched_mention/v2/01_english_complaint"), "mention": mention}
    with pytest.raises(EncodeError, match="EnrichedMention"):
        encoder.encode({**good, "sentiment": {"label": "furious"}}, mention, raw_bytes)
    with pytest.raises(EncodeError, match="EnrichedMention"):
        encoder.encode({**good, "unexpected": 1}, mention, raw_bytes)
    with pytest.raises(EncodeError):
        encoder.encode({**good, "schema_version": 2**40}, mention, raw_bytes)
    with pytest.raises(EncodeError):
        encoder.encode({**good, "entities": [{**good["entities"][0], "start": 2**40}]}, mention, raw_bytes)


def test_embedding_refuses_schemas_that_do_not_nest(embedding) -> None:
    _, raw, enriched = embedding
    with pytest.raises(SchemaError):
        EmbeddingEncoder(raw, raw)  # the raw mention does not embed itself
    with pytest.raises(SchemaError):
        EmbeddingEncoder(enriched, AvroCodec(AvroSchema.from_file(SCHEMAS / "history" / "raw_mention" / "v1.avsc"), raw.store))

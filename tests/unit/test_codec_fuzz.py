"""Every topic's decoder against hostile bytes: whatever arrives, `decode` returns a record or raises
DecodeError, promptly and without allocating more than the input warrants.

Both framings are covered: Avro single-object (0xC3 0x01 + fingerprint, no registry) and
Confluent (0x00 + schema id) against a local server speaking the schema registry's REST API.
Hand-made cases name each failure; hypothesis searches around them.
"""

from __future__ import annotations

import json
import re
import struct
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earful.core.codec import CONFLUENT_MAGIC, SINGLE_OBJECT_MAGIC, AvroCodec, HttpSchemaRegistry, SchemaStore
from earful.core.errors import CodecError, DecodeError, EarfulError, RegistryError, ValidationError
from earful.core.topics import ALERTS, DLQ, ENRICHED, RAW, WATCHLISTS, load_topics
from earful.watchlists.model import from_record
from tests.support import SCHEMAS, example

TOPICS = [RAW, ENRICHED, ALERTS, WATCHLISTS, DLQ]
EXAMPLES = {
    RAW: "raw_mention/v2/01_twitter_complaint",
    ENRICHED: "enriched_mention/v2/01_english_complaint",
    ALERTS: "alert_event/v2/01_firing",
    WATCHLISTS: "watchlist/v1/01_brand_with_rules",
    DLQ: "dead_letter/v1/01_decode_error_garbage_value",
}
FRAMINGS = ["single-object", "confluent"]
HUGE = 2**62
MEMORY_BOUND = 32 * 1024 * 1024  # bytes any one decode below may allocate at its peak
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def zigzag(n: int) -> bytes:
    """An Avro int/long (or a string, bytes, array or map length) as written on the wire."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# --- a schema registry speaking the Confluent REST API ------------------------------------------


class Registry(ThreadingHTTPServer):
    """The two calls the codec makes (register a schema, fetch one by id) on 127.0.0.1, in a thread.
    Unknown ids get the API's 404 with error_code 40403; `failing` answers 500 to everything."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RegistryHandler)
        self.schemas: dict[int, dict[str, Any]] = {999: {"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"},
                                                   998: {"schema": json.dumps({"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]})}}
        self.failing = False
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def register(self, schema: str) -> int:
        with self.lock:
            for schema_id, known in self.schemas.items():
                if known["schema"] == schema:
                    return schema_id
            schema_id = len(self.schemas) + 1
            self.schemas[schema_id] = {"schema": schema}
            return schema_id


class _RegistryHandler(BaseHTTPRequestHandler):
    server: Registry

    def do_GET(self) -> None:
        found = re.fullmatch(r"/schemas/ids/(\d+)", self.path)
        if self.server.failing or not found:
            self._answer(500, {"error_code": 50001, "message": "store unavailable"})
        elif int(found[1]) in self.server.schemas:
            self._answer(200, self.server.schemas[int(found[1])])
        else:
            self._answer(404, {"error_code": 40403, "message": f"Schema {found[1]} not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._answer(200, {"id": self.server.register(body["schema"])})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(SCHEMAS)


@pytest.fixture(scope="module")
def codecs(store: SchemaStore, registry: Registry) -> dict[tuple[str, str], AvroCodec]:
    """Each topic's codec in each framing, as `Codecs` builds them."""
    client = HttpSchemaRegistry(registry.url, timeout_s=5.0)
    out = {}
    for spec in load_topics(SCHEMAS).values():
        if spec.name in TOPICS:
            schema = store.current(spec.value_schema)
            out[(spec.name, "single-object")] = AvroCodec(schema, store, None, f"{spec.name}-value")
            out[(spec.name, "confluent")] = AvroCodec(schema, store, client, f"{spec.name}-value")
    return out


@pytest.fixture(scope="module")
def valid(codecs: dict[tuple[str, str], AvroCodec]) -> dict[tuple[str, str], bytes]:
    """A realistic record of each topic, encoded in each framing."""
    return {(topic, framing): codec.encode(example(EXAMPLES[topic])) for (topic, framing), codec in codecs.items()}


def header_length(data: bytes) -> int:
    return 10 if data[:2] == SINGLE_OBJECT_MAGIC else 5


def refused(codec: AvroCodec, data: bytes | None) -> DecodeError:
    """The DecodeError `codec` raises on `data` (any other outcome fails the test)."""
    try:
        record = codec.decode(data)
    except DecodeError as exc:
        assert isinstance(exc, EarfulError) and exc.kind == "decode_error"
        return exc
    raise AssertionError(f"decoded {len(data or b'')} hostile bytes into a record: {str(record)[:300]}")


def decodes_or_refuses(codec: AvroCodec, data: bytes) -> None:
    """Mutated bytes may still spell a valid record; anything but a record or a DecodeError fails."""
    try:
        assert isinstance(codec.decode(data), dict)
    except DecodeError:
        pass


def peak_memory(run: Callable[[], None]) -> int:
    """Bytes allocated at the peak while `run` ran."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


CASES = [(t, f) for t in TOPICS for f in FRAMINGS]
SHORT = {RAW: "raw", ENRICHED: "enriched", ALERTS: "alerts", WATCHLISTS: "watchlists", DLQ: "dlq"}
CASE_IDS = [f"{SHORT[t]}-{f}" for t, f in CASES]


def test_the_examples_round_trip_in_both_framings(codecs, valid) -> None:
    for key, data in valid.items():
        assert data[:1] == (CONFLUENT_MAGIC if key[1] == "confluent" else SINGLE_OBJECT_MAGIC[:1])
        assert codecs[key].decode(data)


# --- hand-made cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("topic,framing", CASES, ids=CASE_IDS)
def test_every_truncation_is_refused(codecs, valid, topic: str, framing: str) -> None:
    codec, data = codecs[(topic, framing)], valid[(topic, framing)]
    for end in range(len(data)):
        refused(codec, data[:end])


@pytest.mark.parametrize("topic,framing", CASES, ids=CASE_IDS)
def test_empty_and_null_values_are_refused(codecs, topic: str, framing: str) -> None:
    for value in (None, b""):
        assert "empty value" in str(refused(codecs[(topic, framing)], value))


@pytest.mark.parametrize("topic,framing", CASES, ids=CASE_IDS)
def test_wrong_magic_is_refused(codecs, valid, topic: str, framing: str) -> None:
    codec, data = codecs[(topic, framing)], valid[(topic, framing)]
    for first in set(range(256)) - {0x00, 0xC3}:
        assert "unknown framing byte" in str(refused(codec, bytes([first]) + data[1:]))
    for second in set(range(256)) - {0x01}:
        refused(codec, b"\xc3" + bytes([second]) + data[2:])


@pytest.mark.parametrize("topic,framing", CASES, ids=CASE_IDS)
def test_unknown_fingerprint_and_schema_id_are_refused(codecs, valid, topic: str, framing: str) -> None:
    codec, data = codecs[(topic, framing)], valid[(topic, framing)]
    body = data[header_length(data):]
    unknown = SINGLE_OBJECT_MAGIC + (codec.schema.fingerprint ^ 1).to_bytes(8, "little") + body
    assert "unknown writer schema fingerprint" in str(refused(codec, unknown))
    message = str(refused(codec, CONFLUENT_MAGIC + struct.pack(">I", 4_000_000) + body))
    assert ("has no schema 4000000" if framing == "confluent" else "no schema registry configured") in message


def test_registry_ids_naming_no_usable_avro_schema_are_refused(codecs, valid) -> None:
    codec, data = codecs[(RAW, "confluent")], valid[(RAW, "confluent")]
    body = data[5:]
    assert "PROTOBUF schema, not Avro" in str(refused(codec, CONFLUENT_MAGIC + struct.pack(">I", 999) + body))
    assert "not a valid Avro schema" in str(refused(codec, CONFLUENT_MAGIC + struct.pack(">I", 998) + body))


def test_a_failing_registry_is_an_outage_not_a_bad_record(codecs, valid, registry: Registry) -> None:
    """A registry that cannot answer says nothing about the record: RegistryError (retry), never DLQ."""
    codec, data = codecs[(RAW, "confluent")], valid[(RAW, "confluent")]
    registry.failing = True
    try:
        with pytest.raises(RegistryError) as info:
            codec.decode(CONFLUENT_MAGIC + struct.pack(">I", 4_000_001) + data[5:])
        assert not isinstance(info.value, DecodeError)
    finally:
        registry.failing = False
    assert codec.decode(data)  # known ids are cached: a registry outage does not stop those


@pytest.mark.parametrize("topic,framing", CASES, ids=CASE_IDS)
def test_valid_framing_around_another_schemas_body_is_refused(codecs, valid, topic: str, framing: str) -> None:
    """The header of one schema with the body of another, and another topic's complete record."""
    codec, data = codecs[(topic, framing)], valid[(topic, framing)]
    header = data[:header_length(data)]
    for other in TOPICS:
        if other == topic:
            continue
        foreign = valid[(other, framing)]
        refused(codec, header + foreign[header_length(foreign):])
        assert "corrupt" in str(refused(codec, foreign))  # writer and reader schemas do not resolve


# Each: the topic, a field set to a marker value, and the marker's encoding with its length or count
# prefix (the part replaced by a huge one).
MARKER = "Zq9xMARKERxq9Z"
_M = zigzag(len(MARKER)) + MARKER.encode()
LENGTH_CASES = [
    ("raw-text-string", RAW, lambda r: {**r, "text": MARKER}, _M, lambda n: zigzag(n) + MARKER.encode()),
    ("enriched-watchlist-ids-array", ENRICHED, lambda r: {**r, "watchlist_ids": [MARKER]},
     zigzag(1) + _M, lambda n: zigzag(n) + _M),
    ("enriched-array-negative-block", ENRICHED, lambda r: {**r, "watchlist_ids": [MARKER]},
     zigzag(1) + _M, lambda n: zigzag(-n) + zigzag(n) + _M),
    ("alert-labels-map", ALERTS, lambda r: {**r, "labels": {MARKER: "v"}}, zigzag(1) + _M,
     lambda n: zigzag(n) + _M),
    ("alert-sample-ids-array", ALERTS, lambda r: {**r, "sample_mention_ids": [MARKER]}, zigzag(1) + _M,
     lambda n: zigzag(n) + _M),
    ("watchlist-handles-array", WATCHLISTS, lambda r: {**r, "handles": [MARKER]}, zigzag(1) + _M,
     lambda n: zigzag(n) + _M),
    ("dead-letter-value-bytes", DLQ, lambda r: {**r, "value": MARKER.encode()}, _M,
     lambda n: zigzag(n) + MARKER.encode()),
]


def _with_length(codecs, case: tuple[Any, ...], framing: str, length: int) -> tuple[AvroCodec, bytes]:
    _, topic, change, original, replaced = case
    codec = codecs[(topic, framing)]
    data = codec.encode(change(example(EXAMPLES[topic])))
    assert data.count(original) == 1
    return codec, data.replace(original, replaced(length))


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("case", LENGTH_CASES, ids=[c[0] for c in LENGTH_CASES])
def test_huge_lengths_are_refused_without_allocating_them(codecs, case, framing: str) -> None:
    for length in (HUGE, 2**63 - 1, 2**31, 10**9):
        codec, data = _with_length(codecs, case, framing, length)
        assert peak_memory(lambda codec=codec, data=data: refused(codec, data)) < MEMORY_BOUND


@pytest.mark.parametrize("topic,framing", CASES, ids=CASE_IDS)
def test_a_huge_length_anywhere_is_refused_or_read_within_bounds(codecs, valid, topic: str, framing: str) -> None:
    """A huge varint inserted at every position: wherever a length, count, union branch or enum
    index is read it is refused; where a number is read the bytes may still spell a record."""
    codec, data = codecs[(topic, framing)], valid[(topic, framing)]
    errors: list[str] = []

    def sweep() -> None:
        for at in range(header_length(data), len(data) + 1):
            big = zigzag(HUGE if at % 2 else -HUGE)
            for candidate in (data[:at] + big + data[at:], data[:at] + big + bytes(1000)):
                try:
                    codec.decode(candidate)
                except DecodeError as exc:
                    errors.append(str(exc))

    assert peak_memory(sweep) < MEMORY_BOUND
    assert any(str(HUGE) in e for e in errors)  # some insertions did land on a length prefix


# --- hypothesis -----------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=2048))
@pytest.mark.parametrize("topic,framing", CASES, ids=CASE_IDS)
def test_random_bytes_never_raise_anything_but_decode_error(codecs, topic: str, framing: str, data: bytes) -> None:
    decodes_or_refuses(codecs[(topic, framing)], data)


@FUZZ
@given(body=st.binary(max_size=2048), historic=st.booleans())
@pytest.mark.parametrize("topic,framing", CASES, ids=CASE_IDS)
def test_random_bodies_behind_a_known_header(codecs, valid, store: SchemaStore, topic: str, framing: str,
                                             body: bytes, historic: bool) -> None:
    codec, data = codecs[(topic, framing)], valid[(topic, framing)]
    history = store.history(codec.schema.path.stem)
    header = (SINGLE_OBJECT_MAGIC + history[0].fingerprint_bytes) if historic and history \
        else data[:header_length(data)]
    decodes_or_refuses(codec, header + body)


@FUZZ
@given(st.data())
@pytest.mark.parametrize("topic,framing", CASES, ids=CASE_IDS)
def test_mutated_records(codecs, valid, topic: str, framing: str, data: st.DataObject) -> None:
    """Valid records with bytes overwritten, inserted or removed: a record or a DecodeError."""
    codec, good = codecs[(topic, framing)], bytearray(valid[(topic, framing)])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(good)))
        patch = data.draw(st.binary(min_size=1, max_size=12))
        action = data.draw(st.sampled_from(["overwrite", "insert", "delete"]))
        if action == "overwrite":
            good[at:at + len(patch)] = patch
        elif action == "insert":
            good[at:at] = patch
        else:
            del good[at:at + len(patch)]
    decodes_or_refuses(codec, bytes(good))


@FUZZ
@given(length=st.integers(-(2**63), 2**63 - 1))
@pytest.mark.parametrize("case", LENGTH_CASES, ids=[c[0] for c in LENGTH_CASES])
def test_any_length_prefix_is_refused_or_read(codecs, case, length: int) -> None:
    codec, data = _with_length(codecs, case, "single-object", length)
    decodes_or_refuses(codec, data)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_the_reason_stays_short_whatever_the_record_holds(codecs, framing: str) -> None:
    """A megabyte of invalid UTF-8 in the text: the reason names the problem without quoting it."""
    codec = codecs[(RAW, framing)]
    data = codec.encode({**example(EXAMPLES[RAW]), "text": MARKER})
    bad = b"\xff" * 1_000_000
    message = str(refused(codec, data.replace(_M, zigzag(len(bad)) + bad)))
    assert "invalid UTF-8" in message and len(message) < 500


@FUZZ
@given(st.data())
def test_mutated_watchlist_records_are_rejected_the_way_the_live_store_expects(codecs, valid, data: st.DataObject) -> None:
    """The watchlist store rejects what raises CodecError or ValidationError and applies the rest;
    anything else would stop it following the topic."""
    good = bytearray(valid[(WATCHLISTS, "single-object")])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(10, len(good) - 1))
        good[at] = data.draw(st.integers(0, 255))
    try:
        from_record(codecs[(WATCHLISTS, "single-object")].decode(bytes(good)))
    except (CodecError, ValidationError):
        pass

"""Schema rules: documentation, frozen history, backward compatibility with every example."""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from earful.core.codec import AvroCodec, AvroSchema, SchemaStore
from earful.core.topics import load_topics

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
STEMS = sorted(p.stem for p in SCHEMAS.glob("*.avsc"))
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _history(stem: str) -> list[tuple[int, Path]]:
    paths = (SCHEMAS / "history" / stem).glob("v*.avsc")
    return sorted(((int(p.stem[1:]), p) for p in paths if re.fullmatch(r"v\d+", p.stem)), key=lambda t: t[0])


def _examples() -> list[tuple[str, int, Path]]:
    out = []
    for stem in STEMS:
        for version, _ in _history(stem):
            for path in sorted((SCHEMAS / "examples" / stem / f"v{version}").glob("*.json")):
                out.append((stem, version, path))
    return out


EXAMPLES = _examples()


# --- documentation ----------------------------------------------------------------------------


def undocumented(schema: Any, where: str = "") -> Iterator[str]:
    """Paths of records, enums, fixed types and fields without a non-empty doc."""
    if isinstance(schema, list):
        for branch in schema:
            yield from undocumented(branch, where)
        return
    if not isinstance(schema, dict):
        return  # a primitive or a reference to a named type defined elsewhere
    kind = schema.get("type")
    if kind in ("record", "error", "enum", "fixed"):
        name = f"{where}<{schema.get('name')}>"
        if not str(schema.get("doc", "")).strip():
            yield name
        for f in schema.get("fields", []) if kind != "enum" else []:
            path = f"{name}.{f.get('name')}"
            if not str(f.get("doc", "")).strip():
                yield path
            yield from undocumented(f.get("type"), path)
    elif kind == "array":
        yield from undocumented(schema.get("items"), where + "[]")
    elif kind == "map":
        yield from undocumented(schema.get("values"), where + "{}")
    elif isinstance(kind, (dict, list)):
        yield from undocumented(kind, where)


def test_the_doc_checker_finds_gaps() -> None:
    schema = {
        "type": "record", "name": "R", "doc": "ok",
        "fields": [
            {"name": "a", "type": "int", "doc": "ok"},
            {"name": "b", "type": "int"},
            {"name": "c", "doc": "ok", "type": {"type": "enum", "name": "E", "symbols": ["x"]}},
            {"name": "d", "doc": "ok", "type": {"type": "array", "items": {
                "type": "record", "name": "I", "doc": " ", "fields": [{"name": "e", "type": "int", "doc": ""}]}}},
            {"name": "f", "doc": "ok", "type": ["null", {"type": "map", "values": {
                "type": "record", "name": "M", "doc": "ok", "fields": [{"name": "g", "type": "long"}]}}]},
        ],
    }
    assert sorted(undocumented(schema)) == sorted(
        ["<R>.b", "<R>.c<E>", "<R>.d[]<I>", "<R>.d[]<I>.e", "<R>.f{}<M>.g"]
    )


def test_expected_schemas_exist() -> None:
    assert STEMS == ["alert_event", "case_event", "correction", "dead_letter", "enriched_mention", "erasure", "lead",
                     "policy_flag", "raw_mention", "watchlist"]


@pytest.mark.parametrize("stem", STEMS)
def test_schema_parses(stem: str) -> None:
    schema = AvroSchema.from_file(SCHEMAS / f"{stem}.avsc")
    assert schema.name.startswith("earful.v1.")
    assert schema.raw["type"] == "record"


@pytest.mark.parametrize("stem", STEMS)
def test_every_record_enum_and_field_is_documented(stem: str) -> None:
    assert list(undocumented(_load(SCHEMAS / f"{stem}.avsc"))) == []


@pytest.mark.parametrize("stem", STEMS)
def test_every_new_field_has_a_default_or_existed_in_v1(stem: str) -> None:
    """Backward compatibility: a field the first version lacked must have a default."""
    history = _history(stem)
    assert history, f"no frozen versions of {stem}"
    first = {f["name"] for f in _load(history[0][1])["fields"]}
    for f in _load(SCHEMAS / f"{stem}.avsc")["fields"]:
        assert f["name"] in first or "default" in f, f"{stem}.{f['name']} was added without a default"


# --- frozen history ---------------------------------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_history_versions_are_contiguous_from_v1(stem: str) -> None:
    versions = [v for v, _ in _history(stem)]
    assert versions == list(range(1, len(versions) + 1)), f"{stem} history: {versions}"
    assert versions, f"schemas/history/{stem}/v1.avsc is missing"


@pytest.mark.parametrize("stem", STEMS)
def test_current_schema_is_the_latest_frozen_version(stem: str) -> None:
    current = AvroSchema.from_file(SCHEMAS / f"{stem}.avsc")
    latest_version, latest_path = _history(stem)[-1]
    latest = AvroSchema.from_file(latest_path)
    assert current.fingerprint == latest.fingerprint, (
        f"{stem}.avsc changed: freeze it as history/{stem}/v{latest_version + 1}.avsc and bump schema_version"
    )
    assert current.version == latest_version


@pytest.mark.parametrize("stem", STEMS)
def test_each_frozen_version_declares_its_number(stem: str) -> None:
    for version, path in _history(stem):
        schema = AvroSchema.from_file(path)
        defaults = [f.get("default") for f in schema.raw["fields"] if f["name"] == "schema_version"]
        assert defaults == [version], f"{path}: schema_version default {defaults}, expected [{version}]"


@pytest.mark.parametrize("stem", STEMS)
def test_schema_store_knows_every_frozen_version(stem: str) -> None:
    store = SchemaStore(SCHEMAS)
    history = store.history(stem)
    assert [s.version for s in history] == [v for v, _ in _history(stem)]
    for schema in history:
        assert store.by_fingerprint(schema.fingerprint) is not None


# --- examples: every version's records decode with the current schema ------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_every_version_has_examples(stem: str) -> None:
    for version, _ in _history(stem):
        files = list((SCHEMAS / "examples" / stem / f"v{version}").glob("*.json"))
        assert 2 <= len(files) <= 3, f"examples/{stem}/v{version}: {len(files)} files"


def _named(schema: Any, names: dict[str, Any], namespace: str = "") -> None:
    """Collect named types by full and short name (for schema-guided comparison)."""
    if isinstance(schema, list):
        for s in schema:
            _named(s, names, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "enum", "fixed"):
            ns = schema.get("namespace", namespace)
            names[schema["name"]] = schema
            names[f"{ns}.{schema['name']}" if ns else schema["name"]] = schema
            for f in schema.get("fields", []):
                _named(f["type"], names, ns)
        elif kind == "array":
            _named(schema["items"], names, namespace)
        elif kind == "map":
            _named(schema["values"], names, namespace)


def _resolve(t: Any, names: dict[str, Any]) -> Any:
    return names.get(t, t) if isinstance(t, str) else t


def assert_common_fields_equal(writer: Any, reader: Any, example: Any, decoded: Any, path: str,
                               wnames: dict[str, Any], rnames: dict[str, Any]) -> None:
    """Compare a decoded value with the example on every field both schemas have."""
    writer, reader = _resolve(writer, wnames), _resolve(reader, rnames)
    if isinstance(writer, list) or isinstance(reader, list):
        if example is None or decoded is None:
            assert example == decoded, path
            return
        w = [b for b in (writer if isinstance(writer, list) else [writer]) if _resolve(b, wnames) != "null"]
        r = [b for b in (reader if isinstance(reader, list) else [reader]) if _resolve(b, rnames) != "null"]
        if len(w) == 1 and len(r) == 1:
            assert_common_fields_equal(w[0], r[0], example, decoded, path, wnames, rnames)
        else:
            assert example == decoded, path
        return
    wkind = writer.get("type") if isinstance(writer, dict) else writer
    if wkind == "record":
        rfields = {f["name"]: f for f in reader["fields"]}
        for f in writer["fields"]:
            if f["name"] in rfields:
                name = f["name"]
                assert name in example and name in decoded, f"{path}.{name}"
                assert_common_fields_equal(f["type"], rfields[name]["type"], example[name], decoded[name],
                                           f"{path}.{name}", wnames, rnames)
    elif wkind == "array":
        assert len(example) == len(decoded), path
        for i, (a, b) in enumerate(zip(example, decoded)):
            assert_common_fields_equal(writer["items"], reader["items"], a, b, f"{path}[{i}]", wnames, rnames)
    elif wkind == "map":
        assert example.keys() == decoded.keys(), path
        for k in example:
            assert_common_fields_equal(writer["values"], reader["values"], example[k], decoded[k], f"{path}.{k}",
                                       wnames, rnames)
    elif wkind == "float":
        assert math.isclose(example, decoded, rel_tol=1e-6, abs_tol=1e-7), f"{path}: {example} != {decoded}"
    else:
        assert example == decoded, f"{path}: {example!r} != {decoded!r}"


def test_the_comparison_catches_differences() -> None:
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "x", "type": "float"}, {"name": "y", "type": ["null", "string"]},
        {"name": "z", "type": {"type": "array", "items": {"type": "map", "values": "long"}}}]}
    names: dict[str, Any] = {}
    _named(schema, names)
    good = {"x": 0.1, "y": "a", "z": [{"k": 1}]}
    assert_common_fields_equal(schema, schema, good, {**good, "x": 0.10000000149011612}, "", names, names)
    for bad in ({**good, "x": 0.2}, {**good, "y": None}, {**good, "z": [{"k": 2}]}, {**good, "z": [{"j": 1}]},
                {**good, "z": []}):
        with pytest.raises(AssertionError):
            assert_common_fields_equal(schema, schema, good, bad, "", names, names)


@pytest.mark.parametrize(
    "stem,version,path", EXAMPLES, ids=[f"{s}/v{v}/{p.name}" for s, v, p in EXAMPLES]
)
def test_example_decodes_with_the_current_schema(stem: str, version: int, path: Path) -> None:
    store = SchemaStore(SCHEMAS)
    writer = AvroSchema.from_file(SCHEMAS / "history" / stem / f"v{version}.avsc")
    with path.open(encoding="utf-8") as fo:
        records = list(fastavro.json_reader(fo, writer.raw))
    assert len(records) == 1, f"{path}: one record per file"
    example = records[0]
    assert example["schema_version"] == version

    data = AvroCodec(writer, store).encode(example)
    assert data[:2] == b"\xc3\x01" and data[2:10] == writer.fingerprint_bytes
    current = store.current(stem)
    decoded = AvroCodec(current, store).decode(data)

    wnames: dict[str, Any] = {}
    rnames: dict[str, Any] = {}
    _named(writer.raw, wnames)
    _named(current.raw, rnames)
    assert_common_fields_equal(writer.raw, current.raw, example, decoded, stem, wnames, rnames)


def test_examples_cover_nulls_and_values() -> None:
    """Across each schema's examples, every optional field appears both null and non-null."""
    for stem in STEMS:
        for version, hpath in _history(stem):
            schema = _load(hpath)
            files = sorted((SCHEMAS / "examples" / stem / f"v{version}").glob("*.json"))
            records = []
            for f in files:
                with f.open(encoding="utf-8") as fo:
                    records += list(fastavro.json_reader(fo, schema))
            for path, seen in _optional_values(schema, records).items():
                assert seen == {True, False}, f"{stem} v{version}: {path} is never {'set' if True in seen else 'null'}"


def _optional_values(schema: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, set[bool]]:
    """Top-level and nested-record optional fields → {is-null observations}."""
    out: dict[str, set[bool]] = {}

    def walk(s: dict[str, Any], values: list[dict[str, Any]], prefix: str) -> None:
        for f in s["fields"]:
            t = f["type"]
            key = f"{prefix}{f['name']}"
            if isinstance(t, list) and "null" in t:
                out.setdefault(key, set()).update(v[f["name"]] is None for v in values)
            elif isinstance(t, dict) and t.get("type") == "record":
                walk(t, [v[f["name"]] for v in values], key + ".")

    walk(schema, records, "")
    return out


def test_examples_are_written_as_fastavro_json_writer_writes_them() -> None:
    for stem, version, path in EXAMPLES:
        schema = _load(SCHEMAS / "history" / stem / f"v{version}.avsc")
        text = path.read_text(encoding="utf-8")
        with path.open(encoding="utf-8") as fo:
            records = list(fastavro.json_reader(fo, schema))
        out = io.StringIO()
        fastavro.json_writer(out, schema, records)
        assert out.getvalue().strip() == text.strip(), path


# --- embedded schemas and topics --------------------------------------------------------------


def test_raw_mention_embedded_in_enriched_mention_is_identical() -> None:
    enriched = _load(SCHEMAS / "enriched_mention.avsc")
    raw = _load(SCHEMAS / "raw_mention.avsc")
    (mention_field,) = [f for f in enriched["fields"] if f["name"] == "mention"]
    assert mention_field["type"] == raw
    embedded = AvroSchema.from_dict(mention_field["type"])
    assert embedded.fingerprint == AvroSchema.from_file(SCHEMAS / "raw_mention.avsc").fingerprint


def test_topics_load_and_name_existing_schemas() -> None:
    topics = load_topics(SCHEMAS)
    assert topics
    store = SchemaStore(SCHEMAS)
    used = set()
    for spec in topics.values():
        if spec.value_schema is None:
            continue
        assert (SCHEMAS / spec.value_schema).is_file(), spec.name
        used.add(store.current(spec.value_schema).path.stem)
    assert used == set(STEMS), "every schema is the value of some topic"

"""Topic declarations: the real topics.yaml, every validation error, and partition overrides."""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from earful.core.errors import SchemaError
from earful.core.settings import Settings
from earful.core.topics import (
    ALERTING_BY_WATCHLIST,
    ALERTING_DETECTOR_CHANGELOG,
    ALERTS,
    CASES,
    CORRECTIONS,
    DLQ,
    ENRICHED,
    ERASURES,
    LEADS,
    POLICY_FLAGS,
    RAW,
    WATCHLISTS,
    TopicSpec,
    load_topics,
    partitions_for,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
REAL = yaml.safe_load((SCHEMAS / "topics.yaml").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("EARFUL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    """A schemas folder with copies of the real .avsc files and no topics.yaml yet."""
    for path in SCHEMAS.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _write(schema_dir: Path, doc: Any) -> Path:
    (schema_dir / "topics.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return schema_dir


def _topic(doc: dict[str, Any], name: str) -> dict[str, Any]:
    (entry,) = [t for t in doc["topics"] if t["name"] == name]
    return entry


# --- the real declarations --------------------------------------------------------------------


def test_real_topics_load() -> None:
    topics = load_topics(SCHEMAS)
    assert set(topics) == {RAW, ENRICHED, ALERTS, DLQ, WATCHLISTS, CORRECTIONS, ERASURES, CASES, LEADS, POLICY_FLAGS,
                           ALERTING_BY_WATCHLIST, ALERTING_DETECTOR_CHANGELOG}
    assert all(isinstance(t, TopicSpec) for t in topics.values())


def test_real_topic_details() -> None:
    topics = load_topics(SCHEMAS)
    raw = topics[RAW]
    assert (raw.key, raw.value_schema, raw.dlq, raw.public) == ("mention_id", "raw_mention.avsc", DLQ, True)
    assert raw.producers == ("ingest",) and raw.consumers == ("enrichment",)
    assert raw.config() == {"cleanup.policy": "delete", "retention.ms": "604800000"}
    assert topics[DLQ].dlq is None
    assert topics[ALERTS].key == "fingerprint"
    changelog = topics[ALERTING_DETECTOR_CHANGELOG]
    assert changelog.value_schema is None and changelog.retention_ms is None
    assert changelog.config() == {"cleanup.policy": "compact"}
    assert changelog.copartitioned_with == ALERTING_BY_WATCHLIST
    assert changelog.partitions == topics[ALERTING_BY_WATCHLIST].partitions
    assert topics[ALERTING_BY_WATCHLIST].public is False


def test_real_topics_dead_letters_go_to_the_dlq() -> None:
    for spec in load_topics(SCHEMAS).values():
        assert spec.dlq in (None, DLQ), spec.name
        if spec.value_schema:
            assert spec.dlq == DLQ or spec.name == DLQ, spec.name


def test_a_copy_of_the_real_declarations_loads(schema_dir: Path) -> None:
    assert set(load_topics(_write(schema_dir, REAL))) == set(load_topics(SCHEMAS))


# --- errors -----------------------------------------------------------------------------------


def _drop(field: str, name: str = ENRICHED) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        del _topic(doc, name)[field]
    return mutate


def _set(field: str, value: Any, name: str = ENRICHED) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        _topic(doc, name)[field] = value
    return mutate


def _duplicate(doc: dict[str, Any]) -> None:
    doc["topics"].append(copy.deepcopy(_topic(doc, RAW)))


def _index(name: str) -> int:
    return [t["name"] for t in REAL["topics"]].index(name)


ERRORS = [
    ("missing-partitions", _drop("partitions"), f"topic #{_index(ENRICHED)} lacks partitions"),
    ("missing-value-schema", _drop("value_schema", RAW), f"topic #{_index(RAW)} lacks value_schema"),
    ("missing-doc", _drop("doc", ALERTS), f"topic #{_index(ALERTS)} lacks doc"),
    ("missing-name", _drop("name", DLQ), f"topic #{_index(DLQ)} lacks name"),
    ("missing-consumers", _drop("consumers"), "lacks consumers"),
    ("undeclared-dlq", _set("dlq", "earful.dlq.v2"), f"{ENRICHED} refers to undeclared topic earful.dlq.v2"),
    ("missing-schema", _set("value_schema", "enriched_mention_v2.avsc"),
     f"{ENRICHED} names missing schema enriched_mention_v2.avsc"),
    ("copartition-mismatch", _set("partitions", 3, ALERTING_DETECTOR_CHANGELOG),
     f"{ALERTING_DETECTOR_CHANGELOG} must have the partitions of {ALERTING_BY_WATCHLIST}"),
    ("copartition-mismatch-other-side", _set("partitions", 12, ALERTING_BY_WATCHLIST),
     f"{ALERTING_DETECTOR_CHANGELOG} must have the partitions of {ALERTING_BY_WATCHLIST}"),
    ("copartition-undeclared", _set("copartitioned_with", "earful.nope.v1", ALERTING_DETECTOR_CHANGELOG),
     "refers to undeclared topic earful.nope.v1"),
    ("declared-twice", _duplicate, f"{RAW} declared twice"),
]


@pytest.mark.parametrize("mutate,fragment", [(m, f) for _, m, f in ERRORS], ids=[i for i, _, _ in ERRORS])
def test_invalid_declarations(schema_dir: Path, mutate: Callable[[dict[str, Any]], None], fragment: str) -> None:
    doc = copy.deepcopy(REAL)
    mutate(doc)
    _write(schema_dir, doc)
    with pytest.raises(SchemaError) as info:
        load_topics(schema_dir)
    assert fragment in str(info.value)
    assert str(schema_dir / "topics.yaml") in str(info.value)


def test_missing_schema_file_on_disk(schema_dir: Path) -> None:
    (schema_dir / "alert_event.avsc").unlink()
    with pytest.raises(SchemaError, match=f"{ALERTS} names missing schema alert_event.avsc"):
        load_topics(_write(schema_dir, REAL))


def test_missing_topics_file(schema_dir: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read topic declarations"):
        load_topics(schema_dir)


def test_unparsable_topics_file(schema_dir: Path) -> None:
    (schema_dir / "topics.yaml").write_text("topics: [ {name: x\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="cannot read topic declarations"):
        load_topics(schema_dir)


def test_optional_fields_default(schema_dir: Path) -> None:
    entry = {k: v for k, v in _topic(copy.deepcopy(REAL), RAW).items()
             if k not in ("retention_ms", "dlq", "public", "copartitioned_with")}
    spec = load_topics(_write(schema_dir, {"topics": [entry]}))[RAW]
    assert (spec.retention_ms, spec.dlq, spec.public, spec.copartitioned_with) == (None, None, False, None)


def test_empty_topics_file_is_a_schema_error(schema_dir: Path) -> None:
    (schema_dir / "topics.yaml").write_text("# nothing declared yet\n", encoding="utf-8")
    with pytest.raises(SchemaError):
        load_topics(schema_dir)


def test_non_numeric_partitions_is_a_schema_error(schema_dir: Path) -> None:
    doc = copy.deepcopy(REAL)
    _topic(doc, RAW)["partitions"] = "six"
    with pytest.raises(SchemaError, match=RAW):
        load_topics(_write(schema_dir, doc))


# --- partitions_for ---------------------------------------------------------------------------


def test_partitions_as_declared() -> None:
    settings = Settings()
    for spec in load_topics(SCHEMAS).values():
        assert partitions_for(spec, settings) == spec.partitions
    assert partitions_for(load_topics(SCHEMAS)[RAW], settings) == 6


@pytest.mark.parametrize("override", [1, 2, 24])
def test_partitions_override_applies_to_every_topic(override: int) -> None:
    settings = Settings(topic_partitions=override)
    assert {partitions_for(s, settings) for s in load_topics(SCHEMAS).values()} == {override}


def test_partitions_override_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARFUL_TOPIC_PARTITIONS", "1")
    spec = load_topics(SCHEMAS)[ENRICHED]
    assert partitions_for(spec, Settings()) == 1

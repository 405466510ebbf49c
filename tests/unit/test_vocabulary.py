"""One vocabulary of tags and entity types: every producer and consumer of them agrees with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from earful.core import vocabulary
from earful.core.settings import Settings
from earful.enrichment.ner import WNUT_TYPES
from earful.enrichment.rules import RISK_PATTERNS
from earful_dev.seed import RISKS

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "enriched_mention.avsc"


def _field_doc(record: dict[str, Any], record_name: str, field: str) -> str:
    """The doc string of `field` in the nested record named `record_name`."""
    stack: list[Any] = [record]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "record" and node.get("name") == record_name:
                return next(f["doc"] for f in node["fields"] if f["name"] == field)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise AssertionError(f"no record {record_name} in {SCHEMA.name}")


def test_the_schema_documents_the_vocabulary() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert _field_doc(schema, "RiskTag", "tag") == vocabulary.prose(vocabulary.TAGS) + "."
    assert _field_doc(schema, "Entity", "type") == vocabulary.prose(vocabulary.ENTITY_TYPES) + "."


def test_enrichment_produces_exactly_the_vocabulary() -> None:
    pattern_tags = set(RISK_PATTERNS)
    assert pattern_tags | {"customer_question"} == set(vocabulary.TAGS)
    assert tuple(WNUT_TYPES) == vocabulary.NER_ENTITY_TYPES


def test_the_seeder_and_the_detector_use_the_vocabulary() -> None:
    assert set(RISKS) == set(vocabulary.TAGS)
    assert set(Settings().alert_risk_tags) <= set(vocabulary.RISK_TAGS)


def test_prose_lists_like_the_docs() -> None:
    assert vocabulary.prose(("a",)) == "a"
    assert vocabulary.prose(("a", "b", "c")) == "a, b or c"
